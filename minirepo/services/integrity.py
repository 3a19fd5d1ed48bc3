"""Blobs against rows: quarantine orphans at start, and `minirepo fsck`.

An upload links its blob into place before its rows commit (SECURITY.md D5), so a crash in
between leaves a blob no row names. It is never served (files are found through rows), and
the next start moves it to `<data>/quarantine/`, where an operator can still recover it.
Blobs younger than an hour are left alone: a writer in another process may be about to
commit them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from minirepo import db, models
from minirepo.storage import LocalBlobStore

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
# An upload links its blob before its rows commit; a blob younger than this may belong to
# a writer in another process that is about to commit, so it is no orphan yet.
ORPHAN_MIN_AGE = 3600.0


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str
    key: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}: {self.detail}"


def _rows() -> dict[str, tuple[int, str]]:
    """storage key -> (size, sha256) for every live file row."""
    query = models.File.select(models.File.storage_key, models.File.size, models.File.sha256)
    return {row.storage_key: (row.size, row.sha256) for row in query}


def _tombstoned() -> set[str]:
    """Keys only tombstones name: not orphans, they wait for garbage collection."""
    return {row.storage_key for row in models.Tombstone.select(models.Tombstone.storage_key)}


def _blob_keys(store: LocalBlobStore) -> Iterator[str]:
    """Keys of what lies at `files/<a>/<b>/<leaf>`; never descends through a symlink."""
    if not store.root.is_dir():
        return
    for first in _plain_dirs(store.root):
        for second in _plain_dirs(Path(first.path)):
            for leaf in os.scandir(second.path):
                yield f"{first.name}/{second.name}/{leaf.name}"


def _plain_dirs(folder: Path) -> list[os.DirEntry[str]]:
    entries = []
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            entries.append(entry)
        else:
            log.warning("unexpected entry in the blob store: %s (left alone)", entry.path)
    return entries


def _orphans(store: LocalBlobStore, known: set[str]) -> Iterator[str]:
    """Keys of blobs no row names, old enough not to be an upload about to commit."""
    limit = time.time() - ORPHAN_MIN_AGE
    for key in _blob_keys(store):
        if key in known:
            continue
        try:
            if store.local_path(key).lstat().st_mtime <= limit:
                yield key
        except FileNotFoundError:
            continue


def quarantine_orphans(store: LocalBlobStore, quarantine: Path) -> list[str]:
    """Move blobs that no row names out of `files/`; returns their keys."""
    moved = []
    for key in list(_orphans(store, set(_rows()) | _tombstoned())):
        source = store.local_path(key)
        target = quarantine / f"{int(time.time())}-{key.replace('/', '-')}"
        try:
            if len(target.name.encode()) > 255:  # NAME_MAX: keep the filename whole
                target = target.parent / target.name[: -len(source.name) - 1] / source.name
                target.parent.mkdir(mode=0o700, exist_ok=True)
            os.replace(source, target)
        except OSError as exc:
            log.error("could not quarantine %s: %s", key, exc)
            continue
        store.delete(key)
        log.warning("quarantined %s: no row names it (an upload interrupted by a crash?)", key)
        moved.append(key)
    return moved


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fsck(
    store: LocalBlobStore, *, checksum: bool = True, progress: Callable[[int], None] | None = None
) -> list[Problem]:
    """Every row's blob exists with its size (and hash); no orphan blobs; SQLite is sound."""
    problems = [Problem("database", db.current().label, text) for text in db.current().check()]
    rows = _rows()
    tombstoned = _tombstoned()
    for key, (size, sha256) in rows.items():
        path = store.local_path(key)
        if not path.is_file():
            problems.append(Problem("missing", key, "the file is gone"))
        elif path.stat().st_size != size:
            problems.append(Problem("size", key, f"{path.stat().st_size} bytes, expected {size}"))
        elif checksum and _sha256(path) != sha256:
            problems.append(Problem("hash", key, "contents do not match the recorded sha256"))
        if progress is not None:
            progress(1)
    problems += [
        Problem("orphan", key, "no row names this file")
        for key in _orphans(store, set(rows) | tombstoned)
    ]
    return problems


def count_files() -> int:
    return int(models.File.select().count())
