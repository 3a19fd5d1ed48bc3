"""Database failures become the right status: 503 when locked, 507 when the disk is full."""

from __future__ import annotations

from pathlib import Path

import peewee
import pytest
from flask.testing import FlaskClient

from minirepo import db, models
from minirepo.config import Settings
from tests.conftest import post_upload, snapshot


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
    monkeypatch.setattr(models.UsedFilename, "create", fail)
    response = post_upload(client, admin, wheel)
    assert response.status_code == status
    assert "\n" not in response.status
    if status == 503:
        assert response.headers["Retry-After"]
    assert snapshot(settings) == before
