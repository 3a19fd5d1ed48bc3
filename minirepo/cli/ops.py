"""`serve`, `fsck` and `audit`: running the index and looking after it."""

from __future__ import annotations

import datetime
import json

import click

from minirepo.cli.base import fail, main, pass_folder, pass_settings
from minirepo.config import Settings
from minirepo.services import audit, integrity
from minirepo.services.datafolder import DataFolder


@main.command()
@click.option("--host", help="Address to bind (default 127.0.0.1; 0.0.0.0 for the LAN).")
@click.option("--port", type=int, help="Port to bind (default 8080).")
@click.option(
    "--no-upstream",
    "upstream",
    flag_value="",
    default=None,
    help='On first start, create no pypi-proxy and no all group (setting upstream = "").',
)
@click.option(
    "--offline",
    is_flag=True,
    default=None,
    help="Proxies ask no upstream: they serve what they have cached.",
)
@pass_settings("host", "port", "upstream", "offline")
def serve(settings: Settings) -> None:
    """Run the index on waitress; creates or upgrades the data folder.

    On first start it creates the repository main for uploads, the proxy pypi-proxy of
    PyPI and the group all (main first, then pypi-proxy) for installs.

    \b
    Example:  minirepo serve --data ./minirepo-data --host 0.0.0.0 --port 8080
    """
    from minirepo import server

    server.run(settings)


@main.command()
@click.option("--no-checksum", is_flag=True, help="Check existence and size only (fast).")
@pass_folder
def fsck(folder: DataFolder, no_checksum: bool) -> None:
    """Check every stored file against its row; exit 1 naming each problem.

    \b
    Example:  minirepo fsck --data /var/lib/minirepo
    """
    with click.progressbar(length=integrity.count_files(), label="Checking files") as bar:
        problems = integrity.fsck(folder.store, checksum=not no_checksum, progress=bar.update)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        fail(f"{len(problems)} problem(s) found")
    click.echo("No problems found.")


@main.command("audit")
@click.option("--repo", help="Only this repository's events.")
@click.option("--since", type=click.DateTime(), help="Only events from this date (UTC) on.")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_folder
def audit_log(
    folder: DataFolder,
    repo: str | None,
    since: datetime.datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the audit log, newest first: uploads, deletes, yanks, grants, tokens, users,
    failed logins (one line per account and address per window).

    \b
    Example:  minirepo audit --repo main --since 2026-01-01
    """
    for entry in audit.entries(repo, since, limit):
        if as_json:
            click.echo(json.dumps(entry.as_dict(), sort_keys=True))
            continue
        where = "/".join(filter(None, (entry.repository, entry.project, entry.filename)))
        click.echo(
            "\t".join(
                (
                    f"{entry.time:%Y-%m-%d %H:%M:%S}",
                    entry.actor or "-",
                    entry.action,
                    where or "-",
                    entry.detail or "-",
                    entry.remote_addr or "-",
                )
            )
        )
