"""A data folder left readable by others is made private when it is opened (issue 14, 10b).

An older version, a `cp -r`, a restore from backup or a wide umask can leave the secret
(which signs sessions), the database (password hashes, token digests) and the folders
readable by every local user. Opening the folder narrows them and says so in one line.
"""

from __future__ import annotations

import logging
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minirepo.config import Settings
from minirepo.services.datafolder import DataFolder, ServeLock, open_data, open_for_serving
from tests.helpers.serverproc import FAST_HASH

DATABASE = "minirepo.sqlite3"
FOLDERS = ("", "files", "tmp", "backups", "quarantine")
FILES = ("secret", "serve.lock", DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm")
BACKUP = "backups/minirepo-schema1-20260101T000000.sqlite3"

Opener = Callable[[Settings], DataFolder]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data=tmp_path / "data", password_hash=FAST_HASH)


@pytest.fixture
def live_database(settings: Settings) -> Iterator[sqlite3.Connection]:
    """A made data folder whose database another process holds open: its -wal and -shm
    files exist, as beside a running server."""
    open_for_serving(settings).database.close()
    lock = ServeLock(settings.data)
    lock.acquire()
    lock.release()
    (settings.data / "backups").mkdir(mode=0o700, exist_ok=True)
    (settings.data / BACKUP).write_bytes(b"a copy of the database")
    (settings.data / BACKUP).chmod(0o600)  # as `Database.copy_to` makes it
    connection = sqlite3.connect(settings.data / DATABASE)
    connection.execute("CREATE TABLE IF NOT EXISTS keep_wal (x)")
    connection.commit()
    yield connection
    connection.close()


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def widen(data: Path) -> None:
    for name in FOLDERS:
        (data / name).chmod(0o755)
    for name in (*FILES, BACKUP):
        (data / name).chmod(0o644)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("opener", [open_for_serving, open_data], ids=["serve", "cli"])
def test_wide_modes_are_narrowed_with_one_warning(
    settings: Settings,
    live_database: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
    opener: Opener,
) -> None:
    data = settings.data
    widen(data)
    caplog.set_level(logging.WARNING, logger="minirepo")
    opener(settings).database.close()
    assert {name: mode(data / name) for name in FOLDERS} == dict.fromkeys(FOLDERS, "0o700")
    files = (*FILES, BACKUP)
    assert {name: mode(data / name) for name in files} == dict.fromkeys(files, "0o600")
    [line] = warnings(caplog)  # one line for all, none from the database's own check
    for name in ("secret", "serve.lock", "files/", "quarantine/", f"{DATABASE}-shm", BACKUP):
        assert name in line


@pytest.mark.parametrize("opener", [open_for_serving, open_data], ids=["serve", "cli"])
def test_a_private_folder_is_opened_without_a_warning(
    settings: Settings,
    live_database: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
    opener: Opener,
) -> None:
    (settings.data / "secret").chmod(0o400)  # narrower than asked: left as it is
    caplog.set_level(logging.WARNING, logger="minirepo")
    opener(settings).database.close()
    assert warnings(caplog) == []
    assert mode(settings.data / "secret") == "0o400"


def test_links_inside_the_folder_are_not_followed(
    settings: Settings, live_database: sqlite3.Connection, tmp_path: Path
) -> None:
    """Only what minirepo made is changed: never a file elsewhere through a planted link."""
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not minirepo's\n")
    outside.chmod(0o644)
    (settings.data / "backups" / "link.sqlite3").symlink_to(outside)
    open_for_serving(settings).database.close()
    assert mode(outside) == "0o644"
