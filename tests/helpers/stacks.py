"""The two stacks a minirepo server runs on in the tests: the embedded default (SQLite and
the data folder's files) and PostgreSQL with an S3 bucket (SeaweedFS); what a test needs
to know about either without asking which it is."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from minirepo import config
from minirepo.config import Settings
from tests.helpers.postgres import fresh_database
from tests.helpers.seaweed import S3Storage
from tests.helpers.serverproc import Server

DEFAULT_STACK = "sqlite+local"
STACKS = (DEFAULT_STACK, "postgresql+s3")


class Stack:
    """Where a server keeps its rows and files, as its environment: each `env()` a fresh
    PostgreSQL database and bucket prefix, so two servers of one test never share them
    unless the test passes one's environment to the other."""

    def __init__(self, name: str, request: pytest.FixtureRequest, held: contextlib.ExitStack):
        self.name = name
        self.request = request
        self.held = held

    def env(self) -> dict[str, str]:
        if self.name == DEFAULT_STACK:
            return {}
        database = self.held.enter_context(
            fresh_database(self.request.getfixturevalue("postgres_server"))
        )
        seaweed = self.request.getfixturevalue("seaweed_server")
        prefix = uuid.uuid4().hex
        storage = S3Storage(seaweed, f"s3://{seaweed.bucket}/{prefix}", prefix)
        return {"MINIREPO_DATABASE": database, **storage.env()}


def settings_of(server: Server) -> Settings:
    """The server's own settings (read from its environment), for work done in-process
    beside it."""
    return config.load(None, server.env)


def bucket_keys(server: Server) -> list[str]:
    """Every object in the server's bucket prefix; [] for a server keeping files/."""
    env = server.env
    storage = env.get("MINIREPO_STORAGE", "")
    if not storage:
        return []
    bucket, _, prefix = storage.removeprefix("s3://").partition("/")
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=env["MINIREPO_S3_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return sorted(str(item["Key"]) for page in pages for item in page.get("Contents", ()))


def stored_blobs(server: Server, filename: str) -> list[str]:
    """Where the server keeps blobs named `filename`: paths below its files/, or keys in
    its bucket prefix."""
    if not server.env.get("MINIREPO_STORAGE"):
        return [str(path) for path in (server.data / "files").rglob(filename)]
    return [key for key in bucket_keys(server) if Path(key).name == filename]


def row_counts(server: Server, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows per table, read from outside the server (read-only on SQLite)."""
    url = server.env.get("MINIREPO_DATABASE", "")
    if url:
        with psycopg.connect(url) as connection:
            return {table: _count(connection.execute(_counting(table))) for table in tables}
    uri = f"file:{server.data / 'minirepo.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
        return {table: _count(connection.execute(_counting(table))) for table in tables}


def _counting(table: str) -> str:
    return f'SELECT count(*) FROM "{table}"'  # noqa: S608 - the tests' own table names


def _count(cursor: Any) -> int:
    return int(cursor.fetchone()[0])
