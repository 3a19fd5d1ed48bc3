"""An app on each backend: the tests that must hold on SQLite and PostgreSQL alike take
`request.param` from `BACKENDS` and build their app here, so its settings and its teardown
are written once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.services.container import Services
from tests.helpers.serverproc import FAST_HASH

BACKENDS = ["sqlite", "postgresql"]


def backend_settings(request: pytest.FixtureRequest, tmp_path: Path, **overrides: Any) -> Settings:
    """A data folder in `tmp_path` on the backend `request.param` names; pages re-read at
    once (`page_cache_seconds = 0`), no first-start proxy unless `upstream` is given."""
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    values: dict[str, Any] = {"page_cache_seconds": 0, "upstream": "", **overrides}
    return Settings(data=tmp_path / "data", password_hash=FAST_HASH, database=url, **values)


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
