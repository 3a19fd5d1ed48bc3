"""SQLite's writers queue across processes (`writerlock.WriterFile`): the workers of
`serve --workers N` must not get 503 "database is locked" from SQLite's polling busy handler.
One process (`shared=False`, the default) keeps today's path: no lock file, no helper.

Two `Database` objects on one file stand for two processes: each has its own writer lock
and its own open lock file, as a forked worker has.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from minirepo.db import Database, open_database

WAIT = 10.0


def opened(path: Path, busy_timeout: float) -> Database:
    database = open_database("", path, busy_timeout, create=True, shared=True)
    with database.write_transaction():
        database.handle.execute_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    return database


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "minirepo.sqlite3"


def insert(database: Database, value: int, hold: float = 0.0) -> None:
    with database.write_transaction():
        database.handle.execute_sql("INSERT INTO t VALUES (?)", (value,))
        time.sleep(hold)


def count(database: Database) -> int:
    return int(database.handle.execute_sql("SELECT count(*) FROM t").fetchone()[0])


@contextlib.contextmanager
def held(database: Database) -> Iterator[threading.Event]:
    """`database`'s writer lock, held by another thread until the event given is set."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with database.write_transaction():
            holding.set()
            assert release.wait(WAIT)
        database.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(WAIT)
    try:
        yield release
    finally:
        release.set()
        thread.join(WAIT)


def test_a_writer_of_another_process_goes_as_soon_as_the_lock_is_free(path: Path) -> None:
    first, second = opened(path, 5.0), opened(path, 5.0)
    with held(first) as release:
        done: list[float] = []
        waiter = threading.Thread(target=lambda: (insert(second, 1), done.append(time.monotonic())))
        waiter.start()
        time.sleep(0.2)  # the waiter is queued by now
        assert not done
        released = time.monotonic()
        release.set()
        waiter.join(WAIT)
    assert done
    assert done[0] - released < 1.0
    assert count(second) == 1


def test_a_writer_gives_up_after_busy_timeout_and_the_lock_stays_usable(path: Path) -> None:
    first, second = opened(path, 5.0), opened(path, 0.3)
    with held(first):
        started = time.monotonic()
        with pytest.raises(peewee.OperationalError, match="locked"):
            insert(second, 1)
        assert 0.25 < time.monotonic() - started < 2
    insert(second, 2)  # the grant nobody waited for was let go
    insert(first, 3)
    assert count(second) == 2


# A process writing back to back (5 ms a write) until its stop file appears, or 30 s.
STEADY = """
import sys, time
from pathlib import Path
import peewee
from minirepo.db import open_database
database = open_database("", Path(sys.argv[1]), 5.0, create=False, shared=True)
stop, deadline = Path(sys.argv[2]), time.monotonic() + 30
Path(sys.argv[3]).touch()
while not stop.exists() and time.monotonic() < deadline:
    try:
        with database.write_transaction():
            database.handle.execute_sql("INSERT INTO t VALUES (0)")
            time.sleep(0.005)
    except peewee.OperationalError:
        pass
"""


def test_steady_writers_do_not_starve_another_process(path: Path, tmp_path: Path) -> None:
    """Three processes writing back to back, a fourth now and then: its writes all go
    within busy_timeout. With SQLite's own polling a fifth of them got "database is
    locked"; with a plain flock the process that had just let go took it again."""
    quiet = opened(path, 1.0)
    stop = tmp_path / "stop"
    started = [tmp_path / f"started-{n}" for n in range(3)]
    writers = [
        subprocess.Popen([sys.executable, "-c", STEADY, str(path), str(stop), str(mark)])
        for mark in started
    ]
    refused = 0
    try:
        deadline = time.monotonic() + WAIT
        while not all(mark.exists() for mark in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # writing by now
        for value in range(1, 21):
            try:
                insert(quiet, value)
            except peewee.OperationalError:
                refused += 1
            time.sleep(0.02)
    finally:
        stop.touch()
        for writer in writers:
            writer.wait(timeout=WAIT)
    assert refused == 0


def test_nested_writes_take_the_file_once(path: Path) -> None:
    database = opened(path, 0.5)
    with database.write_transaction(), database.write_transaction():
        database.handle.execute_sql("INSERT INTO t VALUES (1)")
    assert count(database) == 1


def test_one_process_takes_no_lock_file(path: Path) -> None:
    database = open_database("", path, 0.5, create=True)
    with database.write_transaction():
        database.handle.execute_sql("CREATE TABLE t (x INTEGER)")
    assert not path.with_name(path.name + "-writer").exists()
