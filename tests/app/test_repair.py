"""Damaged and missing files (issue 16): withdrawn from the pages so pip and uv take
another file, put back by an upload of the identical bytes or `fsck --repair-from`.

Each test runs on SQLite and PostgreSQL, through the app as pip, uv and twine call it,
and through the CLI as an operator runs it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import models
from minirepo.config import Settings
from minirepo.services import accounts, repos
from minirepo.services.container import Services
from minirepo.storage import blob_key
from tests.conftest import basic
from tests.helpers.backends import BACKENDS, backend_settings, run_cli, served
from tests.helpers.distfactory import (
    Dist,
    escaped,
    make_sdist,
    make_wheel,
    upload_form,
    wheel_members,
)
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.upstreamfake import FakeUpstream

PASSWORD = "a-password-1"
ALICE = basic("alice", PASSWORD)
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
DEMO = Dist("demo", "1.0")
REMEDY = "re-upload the identical file, or run minirepo fsck --repair-from BACKUP"


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """`main` (alice uploads) and the private `team`, which alice may upload to as well."""
    with served(backend_settings(request, tmp_path)) as flask_app:
        accounts.add_user("alice", PASSWORD, method=FAST_HASH)
        repos.create("team", read="authenticated")
        repos.grant("alice", "team", "uploader")
        yield flask_app


def data(app: Flask) -> Path:
    settings: Settings = app.extensions["minirepo"].settings
    return settings.data


def upload(client: FlaskClient, path: Path, url: str = "/main/") -> int:
    form = upload_form(path)
    answer = client.post(url, data=form, headers=ALICE, content_type="multipart/form-data")
    return answer.status_code


def listed(client: FlaskClient, repo: str = "main", project: str = "demo") -> list[str]:
    """The filenames the JSON page lists; the HTML page must list the same."""
    answer = client.get(f"/{repo}/simple/{project}/", headers={**JSON, **ALICE})
    assert answer.status_code == 200, answer.status
    names = [entry["filename"] for entry in answer.json["files"]]  # type: ignore[index]
    html = client.get(f"/{repo}/simple/{project}/", headers=ALICE).get_data(as_text=True)
    assert sorted(name for name in names if f">{name}</a>" in html) == sorted(names)
    return sorted(names)


def blob(app: Flask, path: Path) -> Path:
    key = blob_key(hashlib.sha256(path.read_bytes()).hexdigest(), path.name)
    return data(app) / "files" / key


def flip(path: Path) -> None:
    """Same size, other bytes: only the sha256 can tell."""
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


def download(client: FlaskClient, path: str) -> tuple[int, str, bytes]:
    with client.get(path, headers=ALICE) as answer:
        return answer.status_code, answer.status, answer.get_data()


def events(action: str) -> list[tuple[str, str, str]]:
    query = models.Event.select().where(models.Event.action == action).order_by(models.Event.id)
    return [(row.actor, row.repository, row.filename) for row in query]


@pytest.fixture
def demo(app: Flask, tmp_path: Path) -> tuple[Path, Path]:
    """demo 1.0 uploaded to main as a wheel and an sdist; returns (wheel, sdist)."""
    folder = tmp_path / "dists"
    folder.mkdir()
    wheel, sdist = make_wheel(folder, DEMO), make_sdist(folder, DEMO)
    client = app.test_client()
    assert upload(client, wheel) == 200
    assert upload(client, sdist) == 200
    assert listed(client) == sorted([wheel.name, sdist.name])
    return wheel, sdist


def test_a_damaged_wheel_is_withdrawn_until_its_identical_upload(
    app: Flask, demo: tuple[Path, Path]
) -> None:
    wheel, sdist = demo
    client = app.test_client()
    flip(blob(app, wheel))
    status, reason, body = download(client, f"/main/files/demo/{wheel.name}")
    assert status == 500
    assert "damaged" in reason
    assert body != wheel.read_bytes()
    # the pages drop it at once (pip then takes the sdist); the bytes wait in quarantine
    assert listed(client) == [sdist.name]
    assert [p.name.endswith(wheel.name) for p in (data(app) / "quarantine").iterdir()] == [True]
    assert events("withdraw") == [("server", "main", wheel.name)]
    # asked again at the same generation: still refused, not withdrawn (or written) again
    assert download(client, f"/main/files/demo/{wheel.name}")[0] == 500
    assert len(events("withdraw")) == 1

    assert upload(client, wheel) == 200
    assert listed(client) == sorted([wheel.name, sdist.name])
    assert download(client, f"/main/files/demo/{wheel.name}")[::2] == (200, wheel.read_bytes())
    assert events("repair") == [("alice", "main", wheel.name)]


def test_a_copy_damaged_unnoticed_is_replaced_by_its_identical_upload(
    app: Flask, demo: tuple[Path, Path]
) -> None:
    """A twine retry of the same bytes used to answer 200 and keep the damaged copy."""
    wheel, _ = demo
    stored = blob(app, wheel)
    stored.write_bytes(wheel.read_bytes()[:-10])
    assert upload(app.test_client(), wheel) == 200
    assert stored.read_bytes() == wheel.read_bytes()
    assert download(app.test_client(), f"/main/files/demo/{wheel.name}")[0] == 200


def test_the_identical_upload_of_a_sound_file_changes_nothing(
    app: Flask, demo: tuple[Path, Path]
) -> None:
    wheel, _ = demo
    generation = repos.get("main").generation
    assert upload(app.test_client(), wheel) == 200
    assert repos.get("main").generation == generation
    assert events("repair") == []


def test_a_blob_shared_by_two_repositories_goes_and_comes_back_in_both(
    app: Flask, demo: tuple[Path, Path]
) -> None:
    wheel, sdist = demo
    client = app.test_client()
    assert upload(client, wheel, "/team/") == 200
    blob(app, wheel).unlink()  # lost by other means: withdrawn alike
    assert download(client, f"/team/files/demo/{wheel.name}")[:2] == (
        500,
        f"500 Stored file {wheel.name} is missing on the server",
    )
    assert listed(client, "team") == []
    assert listed(client, "main") == [sdist.name]
    assert upload(client, wheel, "/team/") == 200
    assert listed(client, "team") == [wheel.name]
    assert listed(client, "main") == sorted([wheel.name, sdist.name])
    assert sorted(repo for _, repo, _ in events("repair")) == ["main", "team"]


def test_fsck_withdraws_and_names_the_remedy(app: Flask, demo: tuple[Path, Path]) -> None:
    wheel, sdist = demo
    client = app.test_client()
    flip(blob(app, wheel))
    result = run_cli(app, "fsck")
    assert result.exit_code == 1
    assert f"hash: {blob(app, wheel).relative_to(data(app) / 'files')}" in result.output
    assert f"withdrawn from the pages of main until repaired: {REMEDY}" in result.output
    assert "1 problem(s) left of 1 found" in result.output
    assert listed(client) == [sdist.name]
    assert events("withdraw") == [("fsck", "main", wheel.name)]
    # the next fsck still names it (missing now), until the identical upload
    assert run_cli(app, "fsck").exit_code == 1
    assert upload(client, wheel) == 200
    result = run_cli(app, "fsck")
    assert result.exit_code == 0, result.output
    assert "No problems found." in result.output


def test_fsck_repair_from_a_backup_puts_back_only_sound_copies(
    app: Flask, demo: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel, sdist = demo
    client = app.test_client()
    backup = tmp_path / "backup"
    shutil.copytree(data(app) / "files", backup / "files")
    flip(blob(app, wheel))
    blob(app, sdist).unlink()
    flip(backup / blob(app, sdist).relative_to(data(app)))  # the backup's sdist is bad too
    result = run_cli(app, "fsck", "--repair-from", str(backup))
    assert result.exit_code == 1
    assert f"repaired from {backup / blob(app, wheel).relative_to(data(app))}" in result.output
    assert f"({backup} holds no sound copy): {REMEDY}" in result.output
    assert listed(client) == [wheel.name]
    assert download(client, f"/main/files/demo/{wheel.name}")[::2] == (200, wheel.read_bytes())
    assert events("repair") == [("fsck", "main", wheel.name)]
    # a copy of files/ itself will do as well
    shutil.copy(sdist, backup / "files" / blob(app, sdist).relative_to(data(app) / "files"))
    result = run_cli(app, "fsck", "--repair-from", str(backup / "files"))
    assert result.exit_code == 0, result.output
    assert listed(client) == sorted([wheel.name, sdist.name])


def test_fsck_names_orphans_and_their_remedy(app: Flask, demo: tuple[Path, Path]) -> None:
    stray = data(app) / "files" / blob_key("0" * 64, "stray-1.0.tar.gz")
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"no row names me")
    os.utime(stray, (time.time() - 7200, time.time() - 7200))  # no upload about to commit
    result = run_cli(app, "fsck", "--no-checksum")
    assert result.exit_code == 1
    assert "orphan: " in result.output
    assert "the next minirepo serve moves it to quarantine/" in result.output


@pytest.fixture(params=BACKENDS)
def proxied(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Flask, FakeUpstream]]:
    with (
        FakeUpstream() as upstream,
        served(backend_settings(request, tmp_path, upstream=upstream.url)) as flask_app,
    ):
        repos.update("pypi-proxy", options={"min_free_disk": 0})
        yield flask_app, upstream


def test_a_proxys_damaged_file_is_dropped_and_fetched_again(
    proxied: tuple[Flask, FakeUpstream], tmp_path: Path
) -> None:
    app, upstream = proxied
    dist = Dist("requests", "2.0")
    wheel = make_wheel(tmp_path, dist)
    metadata = wheel_members(dist)[f"{escaped(dist.name)}-{dist.version}.dist-info/METADATA"]
    upstream.add_file(dist.name, wheel.name, wheel.read_bytes(), metadata=metadata)
    client = app.test_client()
    url = f"/pypi-proxy/files/requests/{wheel.name}"
    services: Services = app.extensions["minirepo"]
    with client.get(url) as answer:
        assert answer.status_code == 200
        answer.get_data()
    assert services.fetches.wait_idle(10)
    flip(blob(app, wheel))
    with client.get(url) as answer:
        assert answer.status_code == 500
    assert events("withdraw") == [("server", "pypi-proxy", wheel.name)]
    with client.get(url) as answer:
        assert answer.status_code == 200
        assert answer.get_data() == wheel.read_bytes()
    assert services.fetches.wait_idle(10)
    assert blob(app, wheel).read_bytes() == wheel.read_bytes()
