"""The same repository life on both backends: SQLite (embedded) and PostgreSQL.

Each test runs once per backend; on PostgreSQL the database is a fresh one from the
throwaway server in tests/helpers/postgres.py, and the blobs stay in the data folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import migrations, models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.services import accounts, audit, projects, repos
from minirepo.services.container import Services
from tests.conftest import basic, token_auth
from tests.helpers.distfactory import Dist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH

PASSWORD = "a-password-1"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data=tmp_path / "data", password_hash=FAST_HASH, database=url)
    app = create_app(settings)
    services: Services = app.extensions["minirepo"]
    with services.folder.database.activated():
        for name in ("alice", "bob"):
            accounts.add_user(name, PASSWORD, method=FAST_HASH)
        yield app
    services.folder.database.close()


def _upload(
    client: FlaskClient, tmp_path: Path, dist: Dist, headers: dict[str, str], url: str = "/"
) -> int:
    folder = tmp_path / "dists"
    folder.mkdir(exist_ok=True)
    form = upload_form(make_wheel(folder, dist))
    return client.post(
        url, data=form, headers=headers, content_type="multipart/form-data"
    ).status_code


def test_schema_is_current(backend_app: Flask) -> None:
    services: Services = backend_app.extensions["minirepo"]
    assert migrations.version_of(services.folder.database) == migrations.LATEST


def test_owner_maintainer_and_private_repository(backend_app: Flask, tmp_path: Path) -> None:
    client = backend_app.test_client()
    alice, bob = basic("alice", PASSWORD), basic("bob", PASSWORD)
    assert _upload(client, tmp_path, Dist("shared", "1.0"), alice) == 200
    assert _upload(client, tmp_path, Dist("shared", "1.1"), bob) == 403
    projects.add_maintainer("main", "shared", "bob")
    assert _upload(client, tmp_path, Dist("shared", "1.2"), bob) == 200

    repos.create("team", read="authenticated")
    assert client.get("/team/simple/").status_code == 401
    assert client.get("/team/simple/", headers=alice).status_code == 404
    assert client.get("/nosuch/simple/", headers=alice).data == client.get(
        "/team/simple/", headers=alice
    ).data.replace(b"team", b"nosuch")
    repos.grant("alice", "team", "uploader")
    assert client.get("/team/simple/", headers=alice).status_code == 200
    assert _upload(client, tmp_path, Dist("teampkg", "1.0"), alice, "/team/") == 200
    repos.revoke("alice", "team")
    assert client.get("/team/simple/", headers=alice).status_code == 404


def test_yank_delete_and_audit(backend_app: Flask, tmp_path: Path) -> None:
    client = backend_app.test_client()
    alice = basic("alice", PASSWORD)
    assert _upload(client, tmp_path, Dist("gone", "1.0"), alice) == 200
    assert _upload(client, tmp_path, Dist("gone", "2.0"), alice) == 200
    projects.set_yanked("main", "gone", "1.0", yanked=True, reason="broken")
    page = client.get("/simple/gone/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    yanked = {entry["filename"]: entry["yanked"] for entry in page.get_json()["files"]}
    assert yanked == {"gone-1.0-py3-none-any.whl": "broken", "gone-2.0-py3-none-any.whl": False}
    assert projects.delete("main", "gone", "2.0") == ["gone-2.0-py3-none-any.whl"]
    assert b"gone-2.0" not in client.get("/simple/gone/").data
    # The name stays burned, and the project keeps its owner.
    assert _upload(client, tmp_path, Dist("gone", "2.0"), alice) == 400
    assert models.Tombstone.select().count() == 1
    actions = [entry.action for entry in audit.entries("main")]
    assert actions[:4] == ["delete", "yank", "upload", "upload"]


def test_project_scoped_token_sees_only_its_projects(backend_app: Flask, tmp_path: Path) -> None:
    client = backend_app.test_client()
    alice = basic("alice", PASSWORD)
    for name in ("one", "two"):
        assert _upload(client, tmp_path, Dist(name, "1.0"), alice) == 200
    repos.update("main", read="authenticated")
    services: Services = backend_app.extensions["minirepo"]
    services.index.forget_repo("main")  # what another process sees after page_cache_seconds
    scoped = accounts.create_token("alice", permission="read", projects=("one",)).secret
    listing = client.get("/simple/", headers=token_auth(scoped)).data
    assert b"one" in listing
    assert b"two" not in listing
    assert client.get("/simple/two/", headers=token_auth(scoped)).status_code == 403


def test_overwrite_allow_replaces_for_the_owner_only(backend_app: Flask, tmp_path: Path) -> None:
    client = backend_app.test_client()
    alice, bob = basic("alice", PASSWORD), basic("bob", PASSWORD)
    repos.create("scratch", overwrite="allow", default_role="uploader")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    old = make_wheel(first, Dist("nightly", "1.0", description="build 1"))
    new = make_wheel(second, Dist("nightly", "1.0", description="build 2"))

    def post(path: Path, headers: dict[str, str]) -> int:
        form = upload_form(path)
        response = client.post(
            "/scratch/", data=form, headers=headers, content_type="multipart/form-data"
        )
        return response.status_code

    assert post(old, alice) == 200
    assert post(new, bob) == 403  # not the owner: no replacing
    assert post(new, alice) == 200
    page = client.get("/scratch/simple/nightly/").data.decode()
    assert hashlib.sha256(new.read_bytes()).hexdigest() in page
    assert hashlib.sha256(old.read_bytes()).hexdigest() not in page
    with client.get(f"/scratch/files/nightly/{new.name}") as download:
        assert download.data == new.read_bytes()
        assert "no-cache" in download.headers["Cache-Control"]
        assert "immutable" not in download.headers["Cache-Control"]
    actions = [(e.action, e.actor) for e in audit.entries("scratch")][:3]
    assert actions == [("upload", "alice"), ("replace", "alice"), ("upload", "alice")]
    assert models.Tombstone.get().reason == "replaced"
