"""One data folder's database: opened from its URL, the write transaction, error classifiers.

An app (or a CLI command) owns a `Database` and activates it for the work it does; the
models are bound to `database`, a proxy that resolves to the `Database` active in the
current context. So one process can hold two data folders (the tests build many) without
re-pointing models, and no request sees another app's database.

SQLite runs in WAL mode, so pages are read while an upload commits; every write takes the
lock up front (`BEGIN IMMEDIATE`), because a deferred transaction that reads and then
writes fails with "database is locked" at once instead of waiting. Writers queue first in
their process (a lock), then, for the workers of `serve --workers N`, across processes
(`WriterFile`, a lock file beside the database). PostgreSQL is reached through
the same models by a `postgresql://` URL (psycopg 3, the `postgres` extra).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import peewee

from minirepo.errors import UserError
from minirepo.writerlock import WriterFile

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# How long a process may trust a counter value it read. Re-reading it on every request
# costs a query, which releases the GIL: under load that took a fifth off authenticated
# page throughput. Commands that bump a counter from another process wait this long after
# their commit (`models.wait_counter_in_force`), so when they return it counts everywhere.
COUNTER_MAX_AGE = 0.25

_active: contextvars.ContextVar[Database | None] = contextvars.ContextVar(
    "minirepo_database", default=None
)


class _ActiveDatabase(peewee.DatabaseProxy):
    """What the models are bound to: the Peewee handle of the active `Database`."""

    __slots__ = ()

    def __init__(self) -> None:
        object.__setattr__(self, "_callbacks", [])

    @property
    def obj(self) -> peewee.Database | None:
        active = _active.get()
        return None if active is None else active.handle


database = _ActiveDatabase()


def current() -> Database:
    """The database of the app or command this code runs for."""
    active = _active.get()
    if active is None:
        raise RuntimeError("no minirepo database is active in this context")
    return active


class CounterCache:
    """Counter values this process read, and when; `forget` outruns any read in flight."""

    def __init__(self, owner: Database) -> None:
        self.owner = owner
        self.values: dict[str, tuple[float, int]] = {}
        self.forgets = 0
        self.lock = threading.Lock()

    def read(self, name: str) -> int:
        now = time.monotonic()
        cached = self.values.get(name)
        if cached is not None and now - cached[0] < COUNTER_MAX_AGE:
            return cached[1]
        forgets = self.forgets
        handle = self.owner.handle
        cursor = handle.execute_sql(  # type: ignore[no-untyped-call]
            f"SELECT value FROM counter WHERE name = {handle.param}",  # noqa: S608 - a placeholder
            (name,),
        )
        row = cursor.fetchone()
        value = int(row[0]) if row else 0
        with self.lock:
            if forgets == self.forgets:  # else a change committed while we read: keep none
                self.values[name] = (now, value)
        return value

    def forget(self) -> None:
        with self.lock:
            self.forgets += 1
            self.values.clear()


class Database:
    """A Peewee handle with what belongs to it alone: its writer queue and counter cache."""

    def __init__(
        self,
        handle: peewee.Database,
        busy_timeout: float,
        label: str,
        writer_file: WriterFile | None = None,
        shared: bool = False,
    ) -> None:
        """`writer_file`: SQLite's queue across processes; PostgreSQL needs none, since
        its writers wait in the server for the rows they lock, each as soon as it is free.
        `shared`: other processes serve this database too (workers of one server, or
        servers on several boxes): what they cache may lag (`models.forget_counters`)."""
        self.handle = handle
        self.busy_timeout = busy_timeout
        self.label = label  # for messages: a path or a URL without its password
        self.counters = CounterCache(self)
        # One writer at a time per process, queued here: waiters on this lock are woken
        # as it is released. Reentrant: a write may call another inside it.
        self._writer = threading.RLock()
        self._writer_file = writer_file
        self.shared = shared
        self._depth = 0  # writes of the thread holding `_writer`, nested

    @property
    def is_sqlite(self) -> bool:
        return isinstance(self.handle, peewee.SqliteDatabase)

    @contextlib.contextmanager
    def activated(self) -> Iterator[Database]:
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)

    def wsgi(self, app: WSGIApp) -> WSGIApp:
        """`app` with this database active for each request (waitress threads start bare)."""

        def bound(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            token = _active.set(self)
            try:
                return app(environ, start_response)
            finally:
                _active.reset(token)

        return bound

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[None]:
        with self._queued():
            if self.is_sqlite:
                with self.handle.atomic(lock_type="IMMEDIATE"):
                    yield
            else:
                with self.handle.atomic():
                    yield

    @contextlib.contextmanager
    def _queued(self) -> Iterator[None]:
        """This process's turn, then (outermost write only) the other processes' turn;
        both waits together within `busy_timeout`."""
        deadline = time.monotonic() + self.busy_timeout
        if not self._writer.acquire(timeout=self.busy_timeout):
            raise peewee.OperationalError("database is locked (the other writers took too long)")
        writers = self._writer_file if self._depth == 0 else None
        try:
            if writers is not None and not writers.acquire(max(deadline - time.monotonic(), 0)):
                raise peewee.OperationalError(
                    "database is locked (another process's writers took too long)"
                )
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if writers is not None:
                    writers.release()
        finally:
            self._writer.release()

    @contextlib.contextmanager
    def schema_change(self) -> Iterator[None]:
        """A write transaction for a migration.

        SQLite changes some tables by copying them into a new one and dropping the old,
        and with foreign keys on, that drop cascades: every project's releases and files
        would go with it. So foreign keys are off during the change (SQLite only allows
        that outside a transaction) and checked whole before they are on again.
        """
        if not self.is_sqlite:
            with self.write_transaction():
                yield
            return
        self.handle.execute_sql("PRAGMA foreign_keys = OFF")  # type: ignore[no-untyped-call]
        try:
            with self.write_transaction():
                yield
                broken = self.handle.execute_sql(  # type: ignore[no-untyped-call]
                    "PRAGMA foreign_key_check"
                ).fetchall()
                if broken:
                    raise peewee.IntegrityError(f"the migration broke foreign keys: {broken[:5]}")
        finally:
            self.handle.execute_sql("PRAGMA foreign_keys = ON")  # type: ignore[no-untyped-call]

    def copy_to(self, target: Path) -> Path:
        """A consistent copy of the live SQLite database (`VACUUM INTO`), mode 0600."""
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        old_umask = os.umask(0o077)  # the copy is never readable by others, not even briefly
        try:
            self.handle.execute_sql("VACUUM INTO ?", (str(target),))  # type: ignore[no-untyped-call]
        finally:
            os.umask(old_umask)
        return target

    def copy_aside(self, schema: str) -> str:
        """PostgreSQL's counterpart of `copy_to` before an upgrade: every table of the
        database copied, rows and all, into a new schema `schema` of the same database, in
        one transaction (`CREATE TABLE ... AS TABLE`: columns and rows, no indexes). It
        costs the database's size again, on the server that already holds it, and needs no
        client tool of the server's version; `pg_dump --schema` takes it elsewhere."""
        tables = self.handle.get_tables()
        quoted = f'"{schema}"'
        with self.handle.atomic():
            self.handle.execute_sql(f"CREATE SCHEMA {quoted}")  # type: ignore[no-untyped-call]
            for table in tables:
                self.handle.execute_sql(  # type: ignore[no-untyped-call]
                    f'CREATE TABLE {quoted}."{table}" AS TABLE "{table}"'
                )
        return schema

    def checkpoint(self) -> None:
        """Move what the WAL holds into the database file and empty the WAL (SQLite). After
        a first start or an upgrade the WAL holds the whole new schema, a few hundred KB,
        and would keep that size until its next automatic checkpoint; the small writes
        that follow need the room more."""
        if self.is_sqlite:
            self.handle.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[no-untyped-call]

    def ping(self) -> None:
        """One round trip: raises when the database does not answer."""
        self.handle.execute_sql("SELECT 1").fetchone()  # type: ignore[no-untyped-call]

    def check(self) -> list[str]:
        """What the database itself reports as damaged (SQLite's quick_check); [] if sound."""
        if not self.is_sqlite:
            return []
        cursor = self.handle.execute_sql("PRAGMA quick_check")  # type: ignore[no-untyped-call]
        return [str(row[0]) for row in cursor.fetchall() if row[0] != "ok"]

    def close(self) -> None:
        if not self.handle.is_closed():
            self.handle.close()


def rows(query: object) -> list[tuple[Any, ...]]:
    """The rows of a `.tuples()` query; Peewee's stubs type them as models."""
    return list(cast("Iterable[tuple[Any, ...]]", query))


def write_transaction() -> contextlib.AbstractContextManager[None]:
    """A write on the active database: short, and never around network or disk work."""
    return current().write_transaction()


def open_sqlite(path: Path, busy_timeout: float) -> peewee.SqliteDatabase:
    """Open (creating if needed) the SQLite file with a private mode and WAL. A file made
    wider by a restore is narrowed by the data folder's rule (`datafolder`), before this."""
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
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


def sqlite_path(url: str, default: Path) -> Path | None:
    """The SQLite file a `database` setting names (empty: `default`), else None."""
    if not url:
        return default
    if url.startswith("sqlite:///"):
        return Path(unquote(url.removeprefix("sqlite://")))
    return None


def redact(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def open_database(
    url: str, default: Path, busy_timeout: float, *, create: bool, shared: bool = False
) -> Database:
    """The database a `database` setting names; `create` allows a new SQLite file.

    Without `create`, a missing SQLite file is an error: the CLI must never make an empty
    data folder by being run in the wrong directory. `shared`: SQLite writers queue with
    the other processes that say so (`WriterFile`: the workers of one server); the others,
    one server process and the CLI, leave that to SQLite's busy handler, as before.
    """
    path = sqlite_path(url, default)
    if path is not None:
        if not create and not path.is_file():
            raise MissingDataFolder(path.parent if not url else path)
        writers = WriterFile(path.with_name(path.name + "-writer")) if shared else None
        return Database(open_sqlite(path, busy_timeout), busy_timeout, str(path), writers, shared)
    from playhouse.db_url import connect

    try:
        handle = connect(url)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"Setting 'database' is not usable: {exc}") from exc
    return Database(handle, busy_timeout, redact(url), shared=shared)


class MissingDataFolder(UserError):
    """The configured database has no minirepo schema (or does not exist)."""

    def __init__(self, where: Path | str) -> None:
        where = Path(where).resolve() if isinstance(where, Path) else where
        super().__init__(
            f"No minirepo data folder at {where}: run minirepo serve first, "
            "or pass --data, --config or MINIREPO_DATA"
        )


def is_locked(exc: BaseException) -> bool:
    """True for busy errors, which become a 503 with Retry-After, not a 500."""
    if not isinstance(exc, peewee.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "lock timeout" in text or "could not serialize" in text


_DISK_ERRORS = ("database or disk is full", "disk i/o error", "no space left on device")


def is_disk_full(exc: BaseException) -> bool:
    """True when the database could not write (full disk, file size limit, I/O error).

    SQLite rolls back by itself on these, and peewee's own rollback then fails with "no
    transaction is active", hiding the cause: so the exception's context is searched too.
    """
    current_exc: BaseException | None = exc
    for _ in range(5):
        if current_exc is None:
            return False
        if any(text in str(current_exc).lower() for text in _DISK_ERRORS):
            return True
        current_exc = current_exc.__context__
    return False
