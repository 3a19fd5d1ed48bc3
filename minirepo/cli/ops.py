"""`serve`, `fsck` and `audit`: running the index and looking after it."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import click

from minirepo.cli.base import fail, main, pass_folder, pass_settings
from minirepo.config import LOG_FORMATS, Settings
from minirepo.services import audit, integrity, repair
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
@click.option(
    "--workers",
    metavar="N|auto",
    help="Processes answering on the port (default 1; auto: one per core).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    help="Log lines as text (default) or json, one object per line.",
)
@pass_settings("host", "port", "upstream", "offline", "workers", "log_format")
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
@click.option(
    "--repair-from",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A backup (a copy of the data folder, or of its files/) to put damaged files back from.",
)
@pass_folder
def fsck(folder: DataFolder, no_checksum: bool, repair_from: Path | None) -> None:
    """Check the database, every stored file against its row's size and sha256, rows
    without files and files without rows; exit 1 naming each problem and its remedy.

    A damaged or missing file is withdrawn from the pages (so pip and uv take another
    file, an sdist say) until the identical file is uploaded again or --repair-from puts
    it back from a backup.

    \b
    Example:  minirepo fsck --data /var/lib/minirepo
              minirepo fsck --repair-from /mnt/backup/minirepo-data
    """
    with click.progressbar(length=integrity.count_files(), label="Checking files") as bar:
        problems = integrity.fsck(folder.store, checksum=not no_checksum, progress=bar.update)
    quarantine = folder.settings.data / "quarantine"
    settled = repair.settle(folder.store, quarantine, problems, repair_from)
    folder.store.flush()
    for problem in settled:
        click.echo(str(problem))
    left = [problem for problem in settled if not problem.repaired]
    if left:
        fail(f"{len(left)} problem(s) left of {len(settled)} found")
    click.echo(
        f"{len(settled)} problem(s) found, all dealt with." if settled else "No problems found."
    )


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
