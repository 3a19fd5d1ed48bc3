"""The throwaway PostgreSQL of tests/helpers/postgres.py: peewee opens its URLs, and each
test's database is its own, so tests on PostgreSQL cannot see one another's rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playhouse.db_url import connect

from tests.helpers.postgres import PostgresServer, fresh_database


@pytest.fixture
def other_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A second database in the same test, made as `postgres_url` makes its own."""
    with fresh_database(postgres_server) as url:
        yield url


def database_names(server: PostgresServer) -> set[str]:
    with server.connect_admin() as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_url_opens_with_peewee(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:")
    db = connect(postgres_url)
    try:
        assert db.execute_sql("SELECT 1").fetchone() == (1,)
        assert db.get_tables() == []  # fresh and empty
        db.execute_sql("CREATE TABLE probe (id integer PRIMARY KEY, name text NOT NULL)")
        db.execute_sql("INSERT INTO probe (id, name) VALUES (1, 'one')")
        assert db.execute_sql("SELECT name FROM probe").fetchall() == [("one",)]
    finally:
        db.close()


def test_two_databases_are_independent(postgres_url: str, other_postgres_url: str) -> None:
    assert postgres_url != other_postgres_url
    first, second = connect(postgres_url), connect(other_postgres_url)
    try:
        first.execute_sql("CREATE TABLE probe (id integer PRIMARY KEY)")
        assert first.get_tables() == ["probe"]
        assert second.get_tables() == []
        second.execute_sql("CREATE TABLE probe (id integer PRIMARY KEY)")  # no clash
    finally:
        first.close()
        second.close()


def test_database_is_dropped_even_while_connected(postgres_server: PostgresServer) -> None:
    """A test may leave a server process connected; the drop must not wait for it."""
    with fresh_database(postgres_server) as url:
        name = url.rsplit("/", 1)[1]
        assert name in database_names(postgres_server)
        db = connect(url)
        db.execute_sql("SELECT 1")  # the connection stays open through the drop
    try:
        assert name not in database_names(postgres_server)
    finally:
        db.close()
