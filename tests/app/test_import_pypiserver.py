"""`minirepo import pypiserver` on each backend: the command, what the app then serves,
and the first login of an imported account replacing its htpasswd hash with ours."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from flask import Flask

from minirepo import credentials, models
from minirepo.services import accounts
from tests.conftest import basic
from tests.helpers.backends import BACKENDS, WITH_S3, backend_settings, run_cli, served
from tests.helpers.distfactory import Dist, make_sdist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH

ALICE_PASSWORD = "alice-password-1"  # {SHA}
BOB_PASSWORD = "bob-password-1"  # bcrypt
DAVE_PASSWORD = "dave-password-1"  # an account made here, not imported
MTIME = datetime.datetime(2022, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)


@pytest.fixture(params=[*BACKENDS, WITH_S3])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with served(backend_settings(request, tmp_path)) as app:
        yield app


@pytest.fixture
def pypiserver_dir(tmp_path: Path) -> Path:
    """A pypiserver packages folder: files at the top and in a subfolder, a hidden
    folder, a text file and a legacy .zip sdist pypiserver would serve."""
    root = tmp_path / "packages"
    (root / "team").mkdir(parents=True)
    (root / ".cache").mkdir()
    make_wheel(root, Dist("demo-pkg", "1.0"))
    make_sdist(root, Dist("demo-pkg", "1.0"))
    make_wheel(root / "team", Dist("team-tool", "2.0"))
    make_wheel(root / ".cache", Dist("hidden", "1.0"))
    (root / "index.txt").write_text("notes")
    (root / "legacy-0.1.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    for path in root.rglob("*"):
        os.utime(path, (MTIME.timestamp(), MTIME.timestamp()))
    return root


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    sha = base64.b64encode(
        hashlib.sha1(ALICE_PASSWORD.encode(), usedforsecurity=False).digest()
    ).decode()
    hashed = bcrypt.hashpw(BOB_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    path = tmp_path / "htpasswd"
    path.write_text(
        f"alice:{{SHA}}{sha}\nbob:$2y${hashed[4:]}\ncarol:$apr1$Vd5Y2R1S$a8eXbGm3s0YVbc1r2.n9f/\n"
    )
    return path


def password_hash(name: str) -> str:
    return str(models.User.get(models.User.name == name).password_hash)


def upload_as(app: Flask, tmp_path: Path, user: str, password: str, dist: Dist) -> int:
    folder = tmp_path / "uploads"
    folder.mkdir(exist_ok=True)
    answer = app.test_client().post(
        "/main/",
        data=upload_form(make_wheel(folder, dist)),
        headers=basic(user, password),
        content_type="multipart/form-data",
    )
    return answer.status_code


def test_import_serves_the_files_and_lists_who_needs_a_password(
    app: Flask, pypiserver_dir: Path, htpasswd: Path
) -> None:
    result = run_cli(app, "import", "pypiserver", str(pypiserver_dir), "--htpasswd", str(htpasswd))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Imported 3 file(s) into main; 0 already there; 1 refused; 1 other file(s)" in out
    assert "refused legacy-0.1.zip: Invalid filename 'legacy-0.1.zip'" in out
    assert "Users: 3 created, 0 already here (left as they are), 0 refused." in out
    assert "These users need a password (minirepo user passwd NAME):\n  carol: an MD5-apr1" in out
    assert (
        "Note: 3 account(s) from the htpasswd file may upload to main and maintain the 2 "
        "project(s) imported now, as on pypiserver"
    ) in out
    assert "hidden" not in out

    client = app.test_client()
    page = client.get("/main/simple/team-tool/").get_data(as_text=True)
    assert "team_tool-2.0-py3-none-any.whl" in page
    page = client.get(
        "/main/simple/demo-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    times = {f["filename"]: f["upload-time"] for f in page.get_json()["files"]}
    assert set(times.values()) == {"2022-05-06T07:08:09.000000Z"}, times
    assert password_hash("carol") == credentials.NO_PASSWORD

    again = run_cli(app, "import", "pypiserver", str(pypiserver_dir), "--htpasswd", str(htpasswd))
    assert "Imported 0 file(s) into main; 3 already there; 1 refused" in again.output
    assert "Users: 0 created, 3 already here" in again.output


def test_first_login_replaces_the_imported_hash(
    app: Flask, pypiserver_dir: Path, htpasswd: Path, tmp_path: Path
) -> None:
    run_cli(app, "import", "pypiserver", str(pypiserver_dir), "--htpasswd", str(htpasswd))
    imported = password_hash("alice")
    assert imported.startswith("{SHA}")
    assert upload_as(app, tmp_path, "alice", "wrong-password", Dist("alice-pkg", "1.0")) == 401
    assert password_hash("alice") == imported

    assert upload_as(app, tmp_path, "alice", ALICE_PASSWORD, Dist("alice-pkg", "1.0")) == 200
    assert upload_as(app, tmp_path, "bob", BOB_PASSWORD, Dist("bob-pkg", "1.0")) == 200
    for name, password in (("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)):
        stored = password_hash(name)
        assert stored.startswith("pbkdf2:"), name
        assert credentials.verify_password(stored, password)
    assert upload_as(app, tmp_path, "alice", ALICE_PASSWORD, Dist("alice-pkg", "1.1")) == 200
    assert upload_as(app, tmp_path, "carol", "anything-at-all", Dist("carol-pkg", "1.0")) == 401


def test_import_into_a_new_repository_and_not_into_a_proxy(
    app: Flask, pypiserver_dir: Path
) -> None:
    result = run_cli(app, "import", "pypiserver", str(pypiserver_dir), "--repo", "old-index")
    assert "Imported 3 file(s) into old-index" in result.output
    assert models.Repository.get(models.Repository.name == "old-index").kind == "hosted"
    run_cli(app, "repo", "create", "mirror", "--kind", "proxy", "--upstream", "https://x.test/")
    result = run_cli(app, "import", "pypiserver", str(pypiserver_dir), "--repo", "mirror")
    assert result.exit_code == 1
    assert "Repository 'mirror' is a proxy: import into a hosted repository" in result.output


def test_owner_takes_the_imported_projects(
    app: Flask, pypiserver_dir: Path, htpasswd: Path, tmp_path: Path
) -> None:
    args = ("import", "pypiserver", str(pypiserver_dir), "--htpasswd", str(htpasswd))
    result = run_cli(app, *args, "--owner", "nobody")
    assert result.exit_code == 1
    assert "No user named 'nobody'" in result.output
    assert not models.User.select().where(models.User.name == "alice").exists()

    assert run_cli(app, *args, "--owner", "alice").exit_code == 0
    project = models.Project.get(models.Project.normalized == "demo-pkg")
    assert project.owner.name == "alice"
    assert {row.uploader.name for row in models.File.select()} == {"alice"}
    assert upload_as(app, tmp_path, "alice", ALICE_PASSWORD, Dist("demo-pkg", "1.1")) == 200
    # pypiserver let every account upload anything: its accounts maintain what came in...
    maintainers = models.ProjectMaintainer.select().join(models.User)
    assert {(row.project.normalized, row.user.name) for row in maintainers} == {
        ("demo-pkg", "bob"),
        ("demo-pkg", "carol"),
        ("team-tool", "bob"),
        ("team-tool", "carol"),
    }
    assert upload_as(app, tmp_path, "bob", BOB_PASSWORD, Dist("demo-pkg", "1.2")) == 200
    # ...and an account made here does not
    accounts.add_user("dave", DAVE_PASSWORD, method=FAST_HASH)
    assert upload_as(app, tmp_path, "dave", DAVE_PASSWORD, Dist("demo-pkg", "1.3")) == 403
