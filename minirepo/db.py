"""The database handle, its pragmas, the write transaction and the schema.

SQLite in WAL mode lets pages be read while an upload commits; every write takes the lock
up front (`BEGIN IMMEDIATE`), because a deferred transaction that reads and then writes
fails with "database is locked" at once instead of waiting (SECURITY.md D6).
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager
from pathlib import Path

import peewee

log = logging.getLogger(__name__)

database = peewee.DatabaseProxy()


def open_sqlite(path: Path, busy_timeout: float) -> peewee.SqliteDatabase:
    """Open (creating if needed) the SQLite file with a private mode and WAL."""
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    for private in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if private.exists() and private.stat().st_mode & 0o077:
            log.warning("%s was readable by others; setting its mode to 0600", private)
            private.chmod(0o600)
    return peewee.SqliteDatabase(
        str(path),
        timeout=busy_timeout,
        pragmas={
            "journal_mode": "wal",
            "synchronous": "full",
            "foreign_keys": 1,
            "busy_timeout": int(busy_timeout * 1000),
            "cache_size": -8000,
        },
    )


def bind(db: peewee.Database) -> None:
    database.initialize(db)


def write_transaction() -> AbstractContextManager[object]:
    if isinstance(database.obj, peewee.SqliteDatabase):
        result: AbstractContextManager[object] = database.atomic(lock_type="IMMEDIATE")
        return result
    result = database.atomic()
    return result


def is_locked(exc: BaseException) -> bool:
    """True for SQLite's busy errors, which become a 503 with Retry-After, not a 500."""
    return isinstance(exc, peewee.OperationalError) and "locked" in str(exc).lower()


_DISK_ERRORS = ("database or disk is full", "disk i/o error")


def is_disk_full(exc: BaseException) -> bool:
    """True when SQLite could not write (full disk, file size limit, I/O error).

    SQLite rolls back by itself on these, and peewee's own rollback then fails with "no
    transaction is active", hiding the cause: so the exception's context is searched too.
    """
    current: BaseException | None = exc
    for _ in range(5):
        if current is None:
            return False
        if any(text in str(current).lower() for text in _DISK_ERRORS):
            return True
        current = current.__context__
    return False
