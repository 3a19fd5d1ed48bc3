"""`minirepo migrate-data`: a one-box install (SQLite and a folder) copied into the engines
several boxes share (PostgreSQL and an S3 bucket); the old folder is only read.

The order is the backup's: blobs are immutable and content-addressed, and a row must never
name a blob the target lacks. So the blobs the source names are copied first, then the
rows (`rowcopy`, one snapshot), then the blobs of rows committed between the two (a server
left running meanwhile). A blob already on the target with its size is not sent again, so a
copy cut short is simply run again, once its database has been emptied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from minirepo import migrations, models
from minirepo.db import Database, rows
from minirepo.errors import DamagedFile, UserError
from minirepo.services import rowcopy
from minirepo.services.datafolder import DataFolder
from minirepo.storage import BlobStore, LocalBlobStore

Progress = Callable[[int], None]


@dataclasses.dataclass
class Copied:
    blobs: int = 0  # sent to the target now
    present: int = 0  # already on the target with the right size
    size: int = 0
    rows: int = 0
    verified: int = 0  # read back from the target with --verify
    damaged: list[str] = dataclasses.field(default_factory=list)  # in the source
    problems: list[str] = dataclasses.field(default_factory=list)


def named_blobs(database: Database) -> dict[str, int]:
    """Every key a row names (files and tombstones not yet collected), with its size."""
    with database.activated():
        files = models.File.select(models.File.storage_key, models.File.size)
        buried = models.Tombstone.select(models.Tombstone.storage_key, models.Tombstone.size)
        named = rows(files.tuples()) + rows(
            buried.where(models.Tombstone.storage_key != "").tuples()
        )
    return {str(key): int(size) for key, size in named}


def refuse_used(target: Database) -> None:
    """Refuse a target that holds another schema or any row: a copy never merges."""
    version = migrations.version_of(target)
    if version is not None and version != migrations.LATEST:
        raise UserError(
            f"The database {target.label} holds a minirepo schema {version}, not this "
            f"release's {migrations.LATEST}: copy into an empty database (nothing changed)"
        )
    if version is not None:
        rowcopy.refuse_rows(target)


def prepare_target(target: Database, backups: Path) -> None:
    """Make the target's schema, after `refuse_used` (`backups` is where an upgrade would
    copy a database first: never used for a schema made new)."""
    refuse_used(target)
    migrations.prepare(target, backups)


@contextlib.contextmanager
def _readable_path(store: BlobStore, key: str, size: int) -> Iterator[Path]:
    """A local file holding the blob, checked against its size and sha256 on the way."""
    if isinstance(store, LocalBlobStore):
        store.open_checked(key, size).close()
        yield store.local_path(key)
        return
    fd, temp = store.new_temp()
    try:
        with os.fdopen(fd, "wb") as spool, store.open_checked(key, size) as handle:
            shutil.copyfileobj(handle, spool, 1024 * 1024)
        yield temp
    finally:
        temp.unlink(missing_ok=True)


def copy_blobs(
    source: BlobStore, target: BlobStore, wanted: dict[str, int], copied: Copied, bar: Progress
) -> None:
    for key, size in sorted(wanted.items()):
        info = target.info(key)
        if info is not None and info.size == size:
            copied.present += 1
        else:
            try:
                with _readable_path(source, key, size) as path:
                    if not target.put(path, key):
                        target.replace(path, key)  # there, but not at its size: damaged
            except DamagedFile:
                copied.damaged.append(key)
            else:
                copied.blobs += 1
                copied.size += size
        bar(1)


def refuse_damaged(keys: list[str]) -> None:
    """A copy of a damaged folder would serve the damage from everywhere: stop before any
    row is written, naming the files."""
    if keys:
        names = ", ".join(key.rsplit("/", 1)[-1] for key in keys[:5])
        raise UserError(
            f"{len(keys)} stored file(s) are damaged or missing in this folder ({names}): "
            "run minirepo fsck (with --repair-from a backup) first; no row was copied"
        )


def verify(target: BlobStore, wanted: dict[str, int], copied: Copied, bar: Progress) -> None:
    """Read every blob back from the target in full: its sha256 must be its key's."""
    for key in sorted(wanted):
        if target.sha256(key) != key.split("/")[1]:
            copied.problems.append(f"{key}: its sha256 on the target is not its key's")
        copied.verified += 1
        bar(1)


def migrate(
    folder: DataFolder,
    target_db: Database | None,
    target_store: BlobStore | None,
    *,
    check: bool,
    bar: Callable[[str, int], contextlib.AbstractContextManager[Progress]],
) -> Copied:
    """Copy the folder's rows into `target_db` and its blobs into `target_store` (either
    may be None: that part stays where it is)."""
    copied = Copied()
    if target_db is not None:
        prepare_target(target_db, folder.settings.data / "backups")
    store = target_store or folder.store
    wanted = named_blobs(folder.database)
    if target_store is not None:
        with bar("Copying files", len(wanted)) as progress:
            copy_blobs(folder.store, target_store, wanted, copied, progress)
        refuse_damaged(copied.damaged)
    if target_db is not None:
        with bar("Copying rows", sum(rowcopy.row_counts(folder.database).values())) as progress:
            copied.rows = rowcopy.copy_rows(
                folder.database, target_db, lambda _table, count: progress(count)
            )
        late = {key: size for key, size in named_blobs(target_db).items() if key not in wanted}
        if late and target_store is not None:
            copy_blobs(folder.store, target_store, late, copied, lambda _count: None)
        wanted |= late
    missing = [key for key, size in wanted.items() if _size(store, key) != size]
    copied.problems += [f"{key}: missing or of the wrong size on the target" for key in missing]
    if check and target_store is not None:
        with bar("Verifying files", len(wanted)) as progress:
            verify(target_store, wanted, copied, progress)
    return copied


def _size(store: BlobStore, key: str) -> int | None:
    info = store.info(key)
    return None if info is None else info.size
