"""`backup` and `restore`: a copy of the data folder taken while the server runs;
`migrate-data`: the folder copied into PostgreSQL and S3."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import click

from minirepo import config, migrations
from minirepo.cli.base import fail, main, pass_folder, pass_settings
from minirepo.config import Settings
from minirepo.db import open_database, redact
from minirepo.services import backup as backups
from minirepo.services import datafolder, migrate_data
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

    On PostgreSQL the rows are exported into the backup as a SQLite file, in one
    snapshot; a restore copies them into the database the target's settings name.

    \b
    Example:  minirepo backup /mnt/usb/minirepo-2026-05-01
    """
    manifest = backups.backup(folder, dest, tar=as_tar, bar=_bar("Copying files"))
    click.echo(
        f"Backed up {manifest.blobs} file(s) ({format_size(manifest.blob_bytes)}), "
        f"the database and the secret to {dest}."
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


def _steps(label: str, length: int) -> AbstractContextManager[migrate_data.Progress]:
    """A progress bar of `length` steps, advanced by the count the copy reports."""
    return _Advancing(click.progressbar(length=length, label=label))


class _Advancing:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __enter__(self) -> migrate_data.Progress:
        self.bar.__enter__()
        return self.bar.update  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


@main.command("migrate-data")
@click.option(
    "--to-database", metavar="URL", help="Where the rows go: postgresql://user:pass@host/db"
)
@click.option("--to-storage", metavar="URL", help="Where the files go: s3://bucket/prefix")
@click.option("--verify", is_flag=True, help="Read every file back from the target: its sha256.")
@pass_folder
def migrate_data_cmd(
    folder: DataFolder, to_database: str | None, to_storage: str | None, verify: bool
) -> None:
    """Copy this data folder's database into PostgreSQL and its files into S3, for
    several servers on one database and bucket; the folder itself is only read.

    Stop the server first (what it stores during the copy may be missed). The target
    database must be empty; a copy cut short is run again once it is emptied, and files
    already in the bucket are not sent twice. The bucket's endpoint and region are the
    settings s3_endpoint_url and s3_region, as for serve; its credentials come from the
    AWS_* variables or AWS_PROFILE.

    \b
    Example:  minirepo migrate-data --to-database postgresql://minirepo@db/minirepo \\
                  --to-storage s3://packages/minirepo --verify
    """
    if not to_database and not to_storage:
        fail("Name a target: --to-database URL, --to-storage URL or both")
    target = dataclasses.replace(
        folder.settings, database=to_database or "", storage=to_storage or ""
    )
    target_db = None
    if to_database:
        config.check_database_url(to_database)
        target_db = open_database(
            to_database, target.database_path, target.busy_timeout, create=False
        )
    target_store = datafolder.blob_store(target) if to_storage else None
    try:
        copied = migrate_data.migrate(folder, target_db, target_store, check=verify, bar=_steps)
    finally:
        if target_db is not None:
            target_db.close()
    for problem in copied.problems:
        click.echo(f"problem: {problem}")
    if copied.problems:
        fail(f"{len(copied.problems)} problem(s): the target is not a usable copy")
    click.echo(
        f"Copied {copied.rows} row(s) and {copied.blobs} file(s) "
        f"({format_size(copied.size)}; {copied.present} were there already)"
        + (f", {copied.verified} read back and verified." if verify else ".")
    )
    click.echo("Next, in minirepo.toml of every server:")
    if to_database:
        click.echo(f'    database = "{redact(to_database)}"')
    if to_storage:
        click.echo(f'    storage = "{to_storage}"')
        for name in ("s3_endpoint_url", "s3_region"):
            if getattr(target, name):
                click.echo(f'    {name} = "{getattr(target, name)}"')
    click.echo(
        '    secret_key = "…"  # the same on every server; make one with: '
        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
