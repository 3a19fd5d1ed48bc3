"""`minirepo gc`: free the blobs of deleted, replaced and pruned files after a grace.

A deleted file becomes a tombstone that still names its blob, so a mistaken delete can be
undone from the blob store for a while. After the grace the blob goes, unless something
else names the same key: blobs are shared by key across repositories (the same bytes
under the same filename), so a live file row anywhere, or a tombstone still within its
grace, keeps it. The tombstone itself stays, its `storage_key` emptied, as the record of
what was deleted (the name stays burned through `UsedFilename`).

An upload of the very same bytes may find the blob in place just before it goes. So each
blob is first moved aside, the references are read again, and the blob is put back if a
row now names it; an upload that committed after that read puts it back itself
(`UploadService.publish`). Disk work never happens inside a transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
from pathlib import Path

from minirepo import models
from minirepo.db import rows, write_transaction
from minirepo.services import repair
from minirepo.storage import BlobStore

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Freed:
    key: str
    size: int  # 0: the blob was already gone


def collect(store: BlobStore, aside: Path, grace: float, *, dry_run: bool = False) -> list[Freed]:
    """Remove the blobs only tombstones older than `grace` seconds name; returns them.
    `aside`: the data folder's tmp/; the local store renames a blob there (the same
    filesystem), an S3 store downloads it there and deletes the object (`quarantine`)."""
    cutoff = models.utcnow() - datetime.timedelta(seconds=grace)
    freed = []
    for key in sorted(_candidates(cutoff)):
        info = store.info(key)
        if dry_run or _remove(store, aside, key, cutoff):
            freed.append(Freed(key, info.size if info else 0))
    if freed and not dry_run:
        with write_transaction():
            models.Tombstone.update(storage_key="").where(
                models.Tombstone.storage_key.in_([item.key for item in freed])
                & (models.Tombstone.deleted_at < cutoff)
            ).execute()
    return freed


def _candidates(cutoff: datetime.datetime) -> set[str]:
    """Keys that tombstones past the grace name and nothing else keeps."""
    old: set[str] = set()
    young: set[str] = set()
    query = models.Tombstone.select(models.Tombstone.storage_key, models.Tombstone.deleted_at)
    for key, deleted_at in rows(query.where(models.Tombstone.storage_key != "").tuples()):
        (old if deleted_at < cutoff else young).add(str(key))
    live = {str(key) for (key,) in rows(models.File.select(models.File.storage_key).tuples())}
    return old - young - live


def _kept(key: str, cutoff: datetime.datetime) -> bool:
    """Whether a file row, or a tombstone within its grace, names `key` now."""
    young = models.Tombstone.select().where(
        (models.Tombstone.storage_key == key) & (models.Tombstone.deleted_at >= cutoff)
    )
    return bool(repair.holders(key)) or young.exists()


def _remove(store: BlobStore, aside: Path, key: str, cutoff: datetime.datetime) -> bool:
    """False when a row came to name the blob meanwhile (it stays)."""
    try:
        moved = store.quarantine(key, aside)
    except FileNotFoundError:
        return True  # already gone: only the tombstones' reference is left to clear
    try:
        if _kept(key, cutoff):
            log.info("gc: %s was uploaded again meanwhile: kept", key)
            store.put(moved, key)
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            moved.unlink()
        if moved.parent != aside:  # a long filename gets a folder of its own
            with contextlib.suppress(OSError):
                moved.parent.rmdir()
    return True
