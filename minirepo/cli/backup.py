"""`backup` and `restore`: a copy of the data folder taken while the server runs."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import click

from minirepo import migrations
from minirepo.cli.base import fail, main, pass_folder, pass_settings
from minirepo.config import Settings
from minirepo.services import backup as backups
from minirepo.services.datafolder import DataFolder
from minirepo.units import format_size


def _bar(label: str) -> backups.Progress:
    def bar(keys: list[str]) -> AbstractContextManager[Iterable[str]]:
        return click.progressbar(keys, label=label)

    return bar


@main.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--tar", "as_tar", is_flag=True, help="Write DEST as one .tar or .tar.gz file.")
@pass_folder
def backup(folder: DataFolder, dest: Path, as_tar: bool) -> None:
    """Copy the database, the stored files and the secret to DEST, while the server runs.

    DEST must be a new or empty folder (with --tar, a new .tar or .tar.gz file). The
    database is copied first, in one snapshot that holds up no upload; then every file it
    names, checked against its sha256. Restore with minirepo restore.

    On PostgreSQL the database is not copied: take a pg_dump just before, then run
    this, which copies the files and the secret.

    \b
    Example:  minirepo backup /mnt/usb/minirepo-2026-05-01
    """
    manifest = backups.backup(folder, dest, tar=as_tar, bar=_bar("Copying files"))
    what = "the database" if manifest.database == backups.SQLITE else "no database"
    click.echo(
        f"Backed up {manifest.blobs} file(s) ({format_size(manifest.blob_bytes)}), "
        f"{what} and the secret to {dest}."
    )
    if manifest.database == backups.POSTGRESQL:
        click.echo(
            "minirepo: the database is on PostgreSQL and not in this backup: keep a pg_dump "
            "taken just before it (pg_dump -Fc), so every file the dump names is here",
            err=True,
        )
    if manifest.damaged:
        for key in manifest.damaged:
            click.echo(f"damaged or missing: {key}")
        fail(f"{len(manifest.damaged)} stored file(s) could not be backed up: run minirepo fsck")


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@pass_settings()
def restore(settings: Settings, source: Path) -> None:
    """Restore a backup made by minirepo backup into a new or empty data folder.

    SOURCE is the backup folder or .tar file. Every file is checked against its sha256
    before anything is moved into place; a newer schema is refused, an older one is
    upgraded by the next minirepo serve.

    \b
    Example:  minirepo restore /mnt/usb/minirepo-2026-05-01 --data /var/lib/minirepo
    """
    restored = backups.restore(settings, source, bar=_bar("Restoring files"))
    for key in restored.skipped:
        click.echo(f"skipped (damaged before the backup): {key}")
    data = settings.data
    made = restored.manifest
    what = "no database" if restored.schema is None else "the database"
    click.echo(
        f"Restored {restored.blobs} file(s) ({format_size(restored.size)}), {what} and the "
        f"secret into {data}, from the backup of {made.created} (minirepo "
        f"{made.minirepo_version})."
    )
    if restored.schema is None:
        click.echo(
            "The database was on PostgreSQL: pg_restore the dump taken with this backup into "
            "the database the 'database' setting names before you start the server."
        )
    elif restored.schema < migrations.LATEST:
        click.echo(f"Its schema {restored.schema} is upgraded by the first minirepo serve.")
    click.echo(f"Next: minirepo serve --data {data}   then: minirepo fsck --data {data}")
