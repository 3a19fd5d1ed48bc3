"""The `auth` counter is trusted for COUNTER_MAX_AGE: never longer, and never past a forget."""

from __future__ import annotations

import sqlite3

import pytest
from flask import Flask

from minirepo import db, models


def _bump_elsewhere(app: Flask) -> None:
    """What `minirepo token revoke` does from its own process: a commit on another connection."""
    path = app.extensions["minirepo"].settings.database_path
    with sqlite3.connect(path) as other:
        other.execute("UPDATE counter SET value = value + 1 WHERE name = ?", (models.AUTH_COUNTER,))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(db.time, "monotonic", lambda: now[0])
    return now


def test_another_process_change_counts_after_max_age(app: Flask, clock: list[float]) -> None:
    with db.write_transaction():
        models.bump_counter(models.AUTH_COUNTER)
    models.forget_counters()
    before = models.read_counter(models.AUTH_COUNTER)
    _bump_elsewhere(app)
    clock[0] += db.COUNTER_MAX_AGE / 2
    assert models.read_counter(models.AUTH_COUNTER) == before  # trusted, no query
    clock[0] += db.COUNTER_MAX_AGE / 2
    assert models.read_counter(models.AUTH_COUNTER) == before + 1


def test_forget_makes_this_process_change_count_at_once(app: Flask, clock: list[float]) -> None:
    before = models.read_counter(models.AUTH_COUNTER)
    with db.write_transaction():
        models.bump_counter(models.AUTH_COUNTER)
    models.forget_counters()
    assert models.read_counter(models.AUTH_COUNTER) == before + 1


def test_a_read_in_flight_during_a_forget_is_not_kept(
    app: Flask, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value read before a commit must not be cached after the committer's forget."""
    handle = db.current().handle
    real_execute_sql = handle.execute_sql

    def commit_then_execute_sql(*args: object, **kwargs: object) -> object:
        models.forget_counters()  # another thread commits and forgets mid-read
        return real_execute_sql(*args, **kwargs)

    monkeypatch.setattr(handle, "execute_sql", commit_then_execute_sql)
    counters = db.current().counters
    counters.read(models.AUTH_COUNTER)
    assert models.AUTH_COUNTER not in counters.values
