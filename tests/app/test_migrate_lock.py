"""Several processes starting at once on one PostgreSQL database: the schema is created
or upgraded once, under the migrations' advisory lock, and every process ends at LATEST."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

import psycopg
import pytest

from minirepo import migrations, models
from minirepo.db import open_database
from tests.helpers.postgres import restore_dump

STARTS = 2
FIXTURES = Path(__file__).parent.parent / "fixtures" / "datafolders"


def prepare_at_once(url: str, backups: Path) -> list[bool]:
    """`migrations.prepare` in STARTS threads at the same moment, each on its own
    connection as separate processes would be; what each returned."""
    ready = threading.Barrier(STARTS)

    def start() -> bool:
        database = open_database(url, backups / "unused.sqlite3", 30.0, create=False)
        try:
            ready.wait(timeout=30)
            return migrations.prepare(database, backups)
        finally:
            database.close()

    with concurrent.futures.ThreadPoolExecutor(STARTS) as pool:
        return list(pool.map(lambda _: start(), range(STARTS)))


def stored(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as pg:
        return pg.execute(query).fetchall()


TABLES = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"


def test_two_first_starts_create_one_schema(postgres_url: str, tmp_path: Path) -> None:
    assert sorted(prepare_at_once(postgres_url, tmp_path)) == [False, True]  # one created it
    assert stored(postgres_url, "SELECT version FROM schemaversion") == [(migrations.LATEST,)]
    # Every model's table and the search index, once each.
    assert stored(postgres_url, TABLES) == [(len(models.MODELS) + 1,)]
    assert stored(postgres_url, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(2,)]


def test_two_starts_upgrade_an_old_database_once(postgres_url: str, tmp_path: Path) -> None:
    restore_dump(postgres_url, FIXTURES / "0.5.0.dev0-postgres" / "dump.sql")
    projects = stored(postgres_url, "SELECT count(*) FROM project")
    assert prepare_at_once(postgres_url, tmp_path) == [False, False]  # neither a first start
    assert stored(postgres_url, "SELECT version FROM schemaversion") == [(migrations.LATEST,)]
    assert stored(postgres_url, "SELECT count(*) FROM project") == projects
    searchable = "SELECT count(*) FROM project_search"
    with_release = "SELECT count(DISTINCT project_id) FROM release"
    assert stored(postgres_url, searchable) == stored(postgres_url, with_release)


def test_the_lock_is_released_after_a_failed_upgrade(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("step failed")

    monkeypatch.setattr(migrations, "STEPS", ((migrations.LATEST, broken),))
    restore_dump(postgres_url, FIXTURES / "0.5.0.dev0-postgres" / "dump.sql")
    database = open_database(postgres_url, tmp_path / "unused.sqlite3", 30.0, create=False)
    try:
        with pytest.raises(RuntimeError, match="step failed"):
            migrations.prepare(database, tmp_path)
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        assert stored(postgres_url, held) == [(0,)]
    finally:
        database.close()
