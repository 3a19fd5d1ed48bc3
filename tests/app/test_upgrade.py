"""Data folders made by earlier releases upgrade in place at the first `serve`.

Each fixture under tests/fixtures/datafolders/ was made by a real server of that release;
it is copied to a temp folder, opened as `minirepo serve` opens it, and checked: nothing
lost, ownership and token scopes carried over, and the new rules in force.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import migrations, models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.errors import UserError
from minirepo.services import accounts, datafolder, integrity
from minirepo.services.container import Services
from tests.conftest import basic, token_auth
from tests.helpers.distfactory import Dist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH

FIXTURES = Path(__file__).parent.parent / "fixtures" / "datafolders"


def copy_fixture(name: str, target: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    data = target / "data"
    shutil.copytree(FIXTURES / name, data, ignore=shutil.ignore_patterns("SECRETS.json"))
    (data / "secret").chmod(0o600)
    os.chmod(data / "minirepo.sqlite3", 0o600)
    for folder in ("tmp", "quarantine"):
        (data / folder).mkdir(exist_ok=True)
    return data, json.loads((FIXTURES / name / "SECRETS.json").read_text())


@pytest.fixture
def old_folder(tmp_path: Path) -> tuple[Settings, dict[str, dict[str, str]]]:
    data, secrets = copy_fixture("0.1.0", tmp_path)
    return Settings(data=data, password_hash=FAST_HASH), secrets


@pytest.fixture
def upgraded(old_folder: tuple[Settings, dict[str, dict[str, str]]]) -> Iterator[Flask]:
    settings, _ = old_folder
    app = create_app(settings)  # what `serve` does: opens for serving, upgrading first
    services: Services = app.extensions["minirepo"]
    with services.folder.database.activated():
        yield app
    services.folder.database.close()


def test_other_commands_refuse_the_old_schema(old_folder: tuple[Settings, dict]) -> None:
    settings, _ = old_folder
    with pytest.raises(UserError, match=r"made by an older minirepo .*run minirepo serve once"):
        datafolder.open_data(settings)


def test_upgrade_copies_the_database_aside_first(upgraded: Flask, tmp_path: Path) -> None:
    copies = list((tmp_path / "data" / "backups").glob("minirepo-schema1-*.sqlite3"))
    assert len(copies) == 1
    assert copies[0].stat().st_mode & 0o077 == 0
    assert models.SchemaVersion.get().version == migrations.LATEST


def test_upgrade_keeps_every_file_and_page(upgraded: Flask) -> None:
    client = upgraded.test_client()
    page = client.get("/simple/alicepkg/")
    assert page.status_code == 200
    for name in (
        "alicepkg-1.0-py3-none-any.whl",
        "alicepkg-1.0.tar.gz",
        "alicepkg-3.0-py3-none-any.whl",
    ):
        assert name.encode() in page.data
    assert client.get("/simple/bob-pkg/").status_code == 200
    services: Services = upgraded.extensions["minirepo"]
    assert integrity.fsck(services.folder.store) == []


def test_first_uploader_owns_each_project(upgraded: Flask) -> None:
    owners = {
        project.normalized: project.owner.name
        for project in models.Project.select().join(
            models.User, on=models.Project.owner == models.User.id
        )
    }
    # bob uploaded alicepkg 3.0 into alice's project under 0.1.0: alice still owns it.
    assert owners == {"alicepkg": "alice", "bob-pkg": "bob"}
    main = models.Repository.get(models.Repository.name == "main")
    assert (main.default_role, main.kind, main.overwrite, main.read) == (
        "uploader",
        "hosted",
        "never",
        "anonymous",
    )


def test_token_scopes_become_rows(upgraded: Flask, old_folder: tuple[Settings, dict]) -> None:
    _, secrets = old_folder
    tokens = {token.prefix: token for token in accounts.list_tokens()}
    scoped = tokens[secrets["tokens"]["alice_project"][:11]]
    assert scoped.projects == ["alice-extra", "alicepkg"]
    assert scoped.repositories == []
    read = tokens[secrets["tokens"]["bob_read_main"][:11]]
    assert (read.repositories, read.permission, read.state) == (["main"], "read", "active")
    assert tokens[secrets["tokens"]["bob_revoked"][:11]].state == "revoked"


def _upload(client: FlaskClient, tmp_path: Path, dist: Dist, headers: dict[str, str]) -> int:
    folder = tmp_path / "new-dists"
    folder.mkdir(exist_ok=True)
    form = upload_form(make_wheel(folder, dist))
    response = client.post("/", data=form, headers=headers, content_type="multipart/form-data")
    return response.status_code


def test_new_rules_hold_after_the_upgrade(
    upgraded: Flask, old_folder: tuple[Settings, dict], tmp_path: Path
) -> None:
    _, secrets = old_folder
    client = upgraded.test_client()
    alice = token_auth(secrets["tokens"]["alice_upload"])
    bob = basic("bob", secrets["passwords"]["bob"])
    assert _upload(client, tmp_path, Dist("alicepkg", "4.0"), alice) == 200
    # 0.1.0 let bob publish into alice's project; now he needs to be a maintainer.
    assert _upload(client, tmp_path, Dist("alicepkg", "4.1"), bob) == 403
    # main keeps 0.1.0's model: any account may create a new project there.
    assert _upload(client, tmp_path, Dist("bob-new", "1.0"), bob) == 200
    read_only = token_auth(secrets["tokens"]["bob_read_main"])
    assert _upload(client, tmp_path, Dist("bob-other", "1.0"), read_only) == 403


def test_a_newer_schema_is_refused(upgraded: Flask, old_folder: tuple[Settings, dict]) -> None:
    settings, _ = old_folder
    models.SchemaVersion.update(version=migrations.LATEST + 1).execute()
    with pytest.raises(UserError, match="made by a newer minirepo"):
        datafolder.open_data(settings)
