"""Shared fixtures: settings on a temp folder, the app, its test client, the CLI runner."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from minirepo import config, models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.services import accounts
from minirepo.services.container import Services
from tests.helpers.distfactory import Dist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.upstreamfake import FakeUpstream

pytest_plugins = ["tests.helpers.postgres", "tests.helpers.seaweed"]

ADMIN_PASSWORD = "admin-password-1"


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In-process commands read no ./minirepo.toml or /etc/minirepo/minirepo.toml of the
    machine the tests run on (a Pi running the service has one, maybe unreadable)."""
    monkeypatch.setattr(config, "LOCAL_CONFIG", tmp_path / "no-local-minirepo.toml")
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "no-system-minirepo.toml")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data=tmp_path / "data", password_hash=FAST_HASH)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """The app, with its database active for the test's own calls (services, models)."""
    app = create_app(settings)
    services: Services = app.extensions["minirepo"]
    with services.folder.database.activated():
        yield app
    services.fetches.close()
    services.downloads.close()
    services.folder.database.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """A fake PyPI on a loopback port, for proxy repositories."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def admin(app: Flask) -> str:
    """An admin account with a password; returns its upload token."""
    accounts.add_user("root", ADMIN_PASSWORD, method=FAST_HASH, admin=True)
    return accounts.create_token("root", permission="admin").secret


def basic(user: str, password: str) -> dict[str, str]:
    value = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def token_auth(token: str) -> dict[str, str]:
    return basic("__token__", token)


def post_upload(
    client: FlaskClient, token: str, path: Path, url: str = "/", **overrides: Any
) -> TestResponse:
    return client.post(
        url,
        data=upload_form(path, **overrides),
        headers=token_auth(token),
        content_type="multipart/form-data",
    )


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What an upload may leave behind: rows, blobs and temp files."""

    rows: dict[str, int]
    files: frozenset[str]
    tmp: frozenset[str]


def snapshot(settings: Settings) -> Snapshot:
    rows = {
        model.__name__: model.select().count()
        for model in (
            models.Project,
            models.Release,
            models.File,
            models.FileMetadata,
            models.UsedFilename,
        )
    }
    data = settings.data
    files = frozenset(str(p.relative_to(data)) for p in (data / "files").rglob("*"))
    tmp = frozenset(str(p.relative_to(data)) for p in (data / "tmp").rglob("*"))
    return Snapshot(rows, files, tmp)


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    folder.mkdir()
    return make_wheel(folder, Dist("demo-pkg", "1.0", requires_python=">=3.8"))


@pytest.fixture
def dist_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "dists"
    folder.mkdir(exist_ok=True)
    return folder
