"""Database failures become the right status: 503 when locked, 507 when the disk is full."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import peewee
import pytest
from flask.testing import FlaskClient

from minirepo import db, models
from minirepo.app import create_app
from minirepo.config import Settings
from tests.conftest import post_upload, snapshot
from tests.helpers.serverproc import FAST_HASH


def _failed_rollback() -> None:
    """What peewee raises when SQLite already rolled back after a failed write."""
    try:
        raise peewee.OperationalError("disk I/O error")
    except peewee.OperationalError:
        raise peewee.OperationalError("cannot rollback - no transaction is active") from None


def test_disk_full_is_found_behind_a_failed_rollback() -> None:
    with pytest.raises(peewee.OperationalError) as info:
        _failed_rollback()
    assert db.is_disk_full(info.value)
    assert not db.is_disk_full(peewee.OperationalError("no such table: x"))
    assert db.is_locked(peewee.OperationalError("database is locked"))


@pytest.mark.parametrize(
    ("message", "status"),
    [("database or disk is full", 507), ("database is locked", 503), ("no such column", 500)],
)
def test_upload_database_failure_status(
    client: FlaskClient,
    admin: str,
    wheel: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    message: str,
    status: int,
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise peewee.OperationalError(message)

    before = snapshot(settings)
    monkeypatch.setattr(models.Event, "create", fail)  # the last insert of an upload
    response = post_upload(client, admin, wheel)
    assert response.status_code == status
    assert "\n" not in response.status
    if status == 503:
        assert response.headers["Retry-After"]
    assert snapshot(settings) == before


def test_a_writer_waits_in_the_queue_not_in_sqlite(tmp_path: Path) -> None:
    """A second writer waits for the first on the process's lock, even with SQLite's own
    busy wait at zero: the queue, not SQLite's polling busy handler (which sleeps up to
    100 ms between tries and keeps no queue), is what orders writers in one process.
    Without the queue, its BEGIN IMMEDIATE fails at once with "database is locked".
    """
    app = create_app(Settings(data=tmp_path / "data", password_hash=FAST_HASH))
    database = app.extensions["minirepo"].folder.database
    holding, queued = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def holder() -> None:
        with database.activated():
            with db.write_transaction():
                models.bump_counter("test")
                holding.set()
                queued.wait(timeout=30)
                time.sleep(0.2)  # let the other writer reach the queue; passing never needs it
            db.current().handle.close()

    def waiter() -> None:
        with database.activated():
            holding.wait(timeout=30)
            db.current().handle.execute_sql("PRAGMA busy_timeout = 0")  # SQLite would not wait
            queued.set()
            try:
                with db.write_transaction():
                    models.bump_counter("test")
            except peewee.OperationalError as exc:
                failures.append(exc)
            finally:
                db.current().handle.close()

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    with database.activated():
        assert models.Counter.get(models.Counter.name == "test").value == 2
    database.close()


def test_a_writer_that_waits_past_busy_timeout_gets_locked(
    client: FlaskClient, settings: Settings
) -> None:
    """The in-process queue keeps the busy_timeout bound: past it, the 503 path."""
    database = db.current()
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with database.activated():
            with db.write_transaction():
                holding.set()
                release.wait(timeout=30)
            database.handle.close()

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(timeout=30)
    old_timeout = database.busy_timeout
    database.busy_timeout = 0.05  # the queue's wait; SQLite's own is for other processes
    try:
        with pytest.raises(peewee.OperationalError) as info, db.write_transaction():
            pass
    finally:
        database.busy_timeout = old_timeout
        release.set()
        thread.join(timeout=30)
    assert db.is_locked(info.value)
