"""The database handle, its pragmas, the write transaction and the schema.

SQLite in WAL mode lets pages be read while an upload commits; every write takes the lock
up front (`BEGIN IMMEDIATE`), because a deferred transaction that reads and then writes
fails with "database is locked" at once instead of waiting (SECURITY.md D6).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import peewee

log = logging.getLogger(__name__)

database = peewee.DatabaseProxy()

# How long a process may trust a counter value it read. Re-reading it on every request
# costs a query, which releases the GIL: under load that took a fifth off authenticated
# page throughput. Commands that bump a counter from another process wait this long after
# their commit (`models.wait_counter_in_force`), so when they return it counts everywhere.
COUNTER_MAX_AGE = 0.25


class CounterCache:
    """Counter values this process read, and when; `forget` outruns any read in flight."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[float, int]] = {}
        self.forgets = 0
        self.lock = threading.Lock()

    def read(self, name: str) -> int:
        now = time.monotonic()
        cached = self.values.get(name)
        if cached is not None and now - cached[0] < COUNTER_MAX_AGE:
            return cached[1]
        forgets = self.forgets
        connection = database.connection()
        row = connection.execute("SELECT value FROM counter WHERE name = ?", (name,)).fetchone()
        value = int(row[0]) if row else 0
        with self.lock:
            if forgets == self.forgets:  # else a change committed while we read: keep none
                self.values[name] = (now, value)
        return value

    def forget(self) -> None:
        with self.lock:
            self.forgets += 1
            self.values.clear()


counters = CounterCache()


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
    counters.forget()  # values read from another database mean nothing here


# One writer at a time per process, queued here. SQLite's busy handler polls (sleeping up
# to 100 ms between tries) and keeps no queue: under steady uploads from 4 clients one
# writer missed every free moment for the whole busy_timeout (1 upload in 5 000 got a 503
# after 5.03 s). Waiters on this lock are woken as it is released; SQLite's own wait is
# left for other processes (the CLI). Reentrant: a write may call another inside it.
_writer = threading.RLock()


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    timeout = getattr(database.obj, "timeout", 5.0)  # the busy_timeout setting
    if not _writer.acquire(timeout=timeout):
        raise peewee.OperationalError("database is locked (the other writers took too long)")
    try:
        if isinstance(database.obj, peewee.SqliteDatabase):
            with database.atomic(lock_type="IMMEDIATE"):
                yield
        else:
            with database.atomic():
                yield
    finally:
        _writer.release()


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
