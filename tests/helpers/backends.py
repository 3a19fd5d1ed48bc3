"""An app on each backend: the tests that must hold on SQLite and PostgreSQL alike take
`request.param` from `BACKENDS` and build their app here, so its settings and its teardown
are written once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask

from minirepo.app import create_app
from minirepo.cli import main
from minirepo.config import Settings
from minirepo.services.container import Services
from tests.helpers.seaweed import S3Storage
from tests.helpers.serverproc import FAST_HASH

BACKENDS = ["sqlite", "postgresql"]
# PostgreSQL with its files in an S3 bucket (SeaweedFS, tests/helpers/seaweed.py), for the
# tests whose files go through more than the upload path (the imports).
WITH_S3 = "postgresql+s3"


def backend_settings(request: pytest.FixtureRequest, tmp_path: Path, **overrides: Any) -> Settings:
    """A data folder in `tmp_path` on the backend `request.param` names; pages re-read at
    once (`page_cache_seconds = 0`), no first-start proxy unless `upstream` is given."""
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    values: dict[str, Any] = {"page_cache_seconds": 0, "upstream": "", **overrides}
    if request.param == WITH_S3:
        storage: S3Storage = request.getfixturevalue("s3_storage")
        values |= {"storage": storage.url, "s3_endpoint_url": storage.endpoint}
    return Settings(data=tmp_path / "data", password_hash=FAST_HASH, database=url, **values)


def run_cli(app: Flask, *args: str) -> Result:
    """`minirepo ARGS` on the app's data folder, database and store, as an operator runs it."""
    settings: Settings = app.extensions["minirepo"].settings
    names = ("data", "database", "storage", "s3_endpoint_url")
    env = {f"MINIREPO_{name.upper()}": str(getattr(settings, name)) for name in names}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@contextlib.contextmanager
def served(settings: Settings) -> Iterator[Flask]:
    """The app, its database active for the test's own calls; its fetches, upstream
    clients and database closed after."""
    app = create_app(settings)
    services: Services = app.extensions["minirepo"]
    try:
        with services.folder.database.activated():
            yield app
    finally:
        services.fetches.close()
        services.proxies.close()
        services.downloads.close()  # its timer would outlive the test's database
        services.folder.database.close()
