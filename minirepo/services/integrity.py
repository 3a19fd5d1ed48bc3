"""Blobs against rows: quarantine orphans at start, and `minirepo fsck`.

An upload puts its blob in the store before its rows commit, so a crash in
between leaves a blob no row names. It is never served (files are found through rows), and
the next start moves it to `<data>/quarantine/`, where an operator can still recover it.
Blobs younger than an hour (by their mtime, or an S3 object's LastModified) are left alone:
a writer in another process, or on another box sharing the bucket, may be about to commit
them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from minirepo import db, models
from minirepo.storage import BlobStore

log = logging.getLogger(__name__)

# An upload links its blob before its rows commit; a blob younger than this may belong to
# a writer in another process that is about to commit, so it is no orphan yet.
ORPHAN_MIN_AGE = 3600.0

DATABASE_REMEDY = "stop the server and restore the database from a backup"
ORPHAN_REMEDY = "the next minirepo serve moves it to quarantine/ (an upload cut short by a crash)"


@dataclasses.dataclass(frozen=True)
class Problem:
    """`remedy`: what was done and what is left to do (an operator reads fsck's output
    to act on it); `repaired`: nothing is left to do."""

    kind: str
    key: str
    detail: str
    remedy: str = ""
    repaired: bool = False

    def __str__(self) -> str:
        text = f"{self.kind}: {self.key}: {self.detail}"
        return f"{text}; {self.remedy}" if self.remedy else text


def _rows() -> dict[str, tuple[int, str]]:
    """storage key -> (size, sha256) for every live file row. Tuples, not model instances
    (half the time): the orphan sweep reads them all at every start."""
    query = models.File.select(models.File.storage_key, models.File.size, models.File.sha256)
    return {str(key): (int(size), str(sha256)) for key, size, sha256 in db.rows(query.tuples())}


def _tombstoned() -> set[str]:
    """Keys only tombstones name: not orphans, they wait for garbage collection."""
    query = models.Tombstone.select(models.Tombstone.storage_key)
    return {str(key) for (key,) in db.rows(query.tuples())}


def _orphans(store: BlobStore, known: set[str]) -> Iterator[str]:
    """Keys of blobs no row names, old enough not to be an upload about to commit."""
    limit = time.time() - ORPHAN_MIN_AGE
    for key in store.stored_keys():
        if key in known:
            continue
        info = store.info(key)
        if info is None or info.mtime <= limit:
            yield key


def quarantine_orphans(store: BlobStore, quarantine: Path) -> list[str]:
    """Move blobs that no row names out of the store; returns their keys."""
    moved = []
    for key in list(_orphans(store, set(_rows()) | _tombstoned())):
        try:
            store.quarantine(key, quarantine)
        except OSError as exc:
            log.error("could not quarantine %s: %s", key, exc)
            continue
        log.warning("quarantined %s: no row names it (an upload interrupted by a crash?)", key)
        moved.append(key)
    return moved


def fsck(
    store: BlobStore, *, checksum: bool = True, progress: Callable[[int], None] | None = None
) -> list[Problem]:
    """Every row's blob exists with its size (and hash); no orphan blobs; SQLite is sound."""
    problems = [
        Problem("database", db.current().label, text, DATABASE_REMEDY)
        for text in db.current().check()
    ]
    rows = _rows()
    tombstoned = _tombstoned()
    for key, (size, sha256) in rows.items():
        info = store.info(key)
        if info is None:
            problems.append(Problem("missing", key, "the file is gone"))
        elif info.size != size:
            problems.append(Problem("size", key, f"{info.size} bytes, expected {size}"))
        elif checksum and store.sha256(key) != sha256:
            problems.append(Problem("hash", key, "contents do not match the recorded sha256"))
        if progress is not None:
            progress(1)
    problems += [
        Problem("orphan", key, "no row names this file", ORPHAN_REMEDY)
        for key in _orphans(store, set(rows) | tombstoned)
    ]
    return problems


def count_files() -> int:
    return int(models.File.select().count())
