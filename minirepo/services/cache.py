"""A proxy's cache of files: which were used when, and which go when it is over its cap.

Each download of a cached file would be a database write if its last-use time were
stored at once; on a Pi's SD card that wear is the cost of every `pip install`. So uses
are kept in memory and written at most once a minute, in one transaction: the LRU order
only needs to be roughly right. Eviction removes the least recently used files past the
proxy's `cache_max`; a file being read keeps its bytes until its reader is done (its open
descriptor holds them), and an evicted file stays listed on its page and is fetched
again when asked for, never a 500.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time

import peewee

from minirepo import models
from minirepo.db import rows, write_transaction
from minirepo.services.repos import RepoInfo
from minirepo.services.upload import is_referenced
from minirepo.storage import BlobStore

log = logging.getLogger(__name__)

FLUSH_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class CachedFile:
    project: str
    filename: str
    size: int
    last_used: datetime.datetime
    gone: bool  # its project is gone upstream (404 or 410): only the cache has it now


class LastUse:
    """Last-use times, batched: `note` in memory, written by `flush` at most once a
    minute (or when forced: eviction and `cache list` want them current)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], datetime.datetime] = {}
        self._flushed = time.monotonic()
        self.writes = 0  # transactions written, for tests and benchmarks

    def note(self, repo_id: int, filename: str) -> None:
        with self._lock:
            self._pending[(repo_id, filename)] = models.utcnow()
            due = time.monotonic() - self._flushed >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flushed = time.monotonic()
            if pending:
                self.writes += 1
        if not pending:
            return
        with write_transaction():
            for (repo_id, filename), when in pending.items():
                models.File.update(last_used=when).where(
                    (models.File.repository == repo_id) & (models.File.filename == filename)
                ).execute()


def _last_used() -> peewee.Node:
    return peewee.fn.COALESCE(models.File.last_used, models.File.upload_time)


def listing(repo: RepoInfo, project: str | None = None, gone: bool = False) -> list[CachedFile]:
    """The files a proxy holds, least recently used first."""
    gone_names = {
        str(name)
        for (name,) in rows(
            models.CachedPage.select(models.CachedPage.normalized)
            .where((models.CachedPage.repository == repo.id) & models.CachedPage.gone)
            .tuples()
        )
    }
    query = (
        models.File.select(
            models.Project.normalized, models.File.filename, models.File.size, _last_used()
        )
        .join(models.Release)
        .join(models.Project)
        .where(models.File.repository == repo.id)
        .order_by(_last_used(), models.File.id)
    )
    if project is not None:
        query = query.where(models.Project.normalized == project)
    found = [
        CachedFile(str(p), str(f), int(size), _as_datetime(used), str(p) in gone_names)
        for p, f, size, used in rows(query.tuples())
    ]
    return [item for item in found if item.gone] if gone else found


def _as_datetime(value: object) -> datetime.datetime:
    """SQLite hands COALESCE's result back as text."""
    if isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(str(value))


def evict(store: BlobStore, repo: RepoInfo, limit: int) -> list[str]:
    """Remove the least recently used files until the proxy holds at most `limit` bytes;
    returns their names. Rows go in one transaction, blobs after it (no disk call inside
    a transaction), and only when no other row names them."""
    files = listing(repo)
    total = sum(item.size for item in files)
    doomed: list[str] = []
    for item in files:
        if total <= limit:
            break
        doomed.append(item.filename)
        total -= item.size
    if not doomed:
        return []
    with write_transaction():
        keys = [
            str(key)
            for (key,) in rows(
                models.File.select(models.File.storage_key)
                .where((models.File.repository == repo.id) & models.File.filename.in_(doomed))
                .tuples()
            )
        ]
        models.FileMetadata.delete().where(
            models.FileMetadata.file.in_(
                models.File.select(models.File.id).where(
                    (models.File.repository == repo.id) & models.File.filename.in_(doomed)
                )
            )
        ).execute()
        models.File.delete().where(
            (models.File.repository == repo.id) & models.File.filename.in_(doomed)
        ).execute()
    for key in keys:
        if not is_referenced(key):
            store.delete(key)
    log.info("proxy %s: evicted %d file(s) to stay under %d bytes", repo.name, len(doomed), limit)
    return doomed
