"""`attestations verify`: check again the PEP 740 attestations kept unverified."""

from __future__ import annotations

import click

from minirepo.cli.base import main, pass_folder
from minirepo.services import provenance
from minirepo.services.datafolder import DataFolder


@main.group("attestations")
def attestations_group() -> None:
    """PEP 740 attestations uploaded with files (minirepo repo set R --attestations).

    \b
    Example:  minirepo attestations verify
    """


@attestations_group.command("verify")
@pass_folder
def verify(folder: DataFolder) -> None:
    """Verify the attestations stored unverified (uploaded before the attestations extra
    was installed, or while sigstore's trust root could not be read); the files whose
    attestations verify get their provenance served from now on.

    \b
    Example:  pip install 'minirepo-server[attestations]' && minirepo attestations verify
    """
    done = provenance.recheck()
    for item in done:
        click.echo(f"{item.repository}\t{item.filename}\t{item.status}\t{item.reason}")
    verified = sum(item.status == "verified" for item in done)
    click.echo(f"{verified} of {len(done)} unverified file(s) verified now.")
