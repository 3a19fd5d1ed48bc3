"""Data folders made by earlier releases upgrade in place at the first `serve`.

Each fixture under tests/fixtures/datafolders/ was made by a real server of that release;
it is copied to a temp folder, opened as `minirepo serve` opens it, and checked: nothing
lost, ownership and token scopes carried over, and the new rules in force. The folder of
the current schema is opened without a migration and must be served as it was made
(`test_schema2_*`, `test_schema3_*`, `test_schema4_*`); once a newer schema exists, those
same checks run after its upgrade.
A folder whose database was PostgreSQL holds the `pg_dump` of it (`dump.sql`), restored
into a fresh database of the throwaway server (tests/helpers/postgres.py) before opening.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import peewee
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from packaging.utils import canonicalize_name
from werkzeug.test import TestResponse

from minirepo import migrations, models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.db import rows
from minirepo.errors import UserError
from minirepo.services import (
    accounts,
    cache,
    datafolder,
    groups,
    instance,
    integrity,
    repos,
    retention,
)
from minirepo.services.container import Services
from minirepo.services.proxy_options import DAY, ProxyOptions, options_of
from minirepo.services.retention_rule import Rule
from minirepo.upstream import Upstream
from minirepo.upstream_pages import from_json
from tests.conftest import basic, token_auth
from tests.helpers.distfactory import Dist, make_sdist, make_wheel, upload_form
from tests.helpers.postgres import PostgresServer, fresh_database, restore_dump
from tests.helpers.serverproc import FAST_HASH

FIXTURES = Path(__file__).parent.parent / "fixtures" / "datafolders"


def copy_fixture(name: str, target: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    data = target / "data"
    ignore = shutil.ignore_patterns("SECRETS.json", "dump.sql")
    shutil.copytree(FIXTURES / name, data, ignore=ignore)
    (data / "secret").chmod(0o600)
    if (data / "minirepo.sqlite3").exists():  # else the folder's database was PostgreSQL
        os.chmod(data / "minirepo.sqlite3", 0o600)
    for folder in ("tmp", "quarantine"):
        (data / folder).mkdir(exist_ok=True)
    return data, json.loads((FIXTURES / name / "SECRETS.json").read_text())


def open_fixture(
    name: str, target: Path, request: pytest.FixtureRequest
) -> tuple[Settings, dict[str, dict[str, str]]]:
    """The folder copied into `target`, its `dump.sql` (if any) restored into a fresh
    PostgreSQL database: the settings `serve` would run on, and the folder's secrets."""
    data, secrets = copy_fixture(name, target)
    database = ""
    if (dump := FIXTURES / name / "dump.sql").exists():
        database = request.getfixturevalue("postgres_url")
        restore_dump(database, dump)
    return Settings(data=data, database=database, password_hash=FAST_HASH), secrets


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


# Every folder here, with the schema it was made at. A new schema adds its folder (one per
# database backend); the tests below then open each older one with the new code, which
# upgrades it.
FOLDERS = {
    "0.1.0": 1,
    "0.2.0.dev0": 2,
    "0.2.0.dev0-postgres": 2,
    "0.3.0.dev0": 3,
    "0.3.0.dev0-postgres": 3,
    "0.4.0.dev0": 4,
    "0.4.0.dev0-postgres": 4,
    "0.5.0.dev0": 5,
    "0.5.0.dev0-postgres": 5,
    "0.6.0.dev0": 6,
    "0.6.0.dev0-postgres": 6,
    "0.7.0.dev0": 7,
    "0.7.0.dev0-postgres": 7,
}
JSON_V1 = {"Accept": "application/vnd.pypi.simple.v1+json"}


def stored_rows(settings: Settings, query: str) -> list[tuple[Any, ...]]:
    """The rows `query` reads from the folder's database, without minirepo."""
    if settings.database:
        with psycopg.connect(settings.database) as pg:
            return pg.execute(query).fetchall()
    with contextlib.closing(sqlite3.connect(settings.database_path)) as db:
        return db.execute(query).fetchall()


def stored_schema(settings: Settings) -> int:
    """The version the folder's database says it is at, read without minirepo."""
    tables_query = (
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        if settings.database
        else "SELECT name FROM sqlite_master"
    )
    if ("schemaversion",) not in stored_rows(settings, tables_query):
        return 1  # 0.1.0 stored no version
    return int(stored_rows(settings, "SELECT version FROM schemaversion")[0][0])


def stored_files(settings: Settings) -> list[tuple[str, str, str, str, bool | str]]:
    """(repository, project, filename, sha256, yanked as PEP 691 says it) of every file,
    read from the folder as it was made, before this code touches it."""
    query = """
        SELECT r.name, p.normalized, f.filename, f.sha256, f.yanked, f.yanked_reason
        FROM file f JOIN release rl ON f.release_id = rl.id
        JOIN project p ON rl.project_id = p.id JOIN repository r ON f.repository_id = r.id
        ORDER BY f.id"""
    return [
        (repo, project, filename, sha256, (reason or True) if yanked else False)
        for repo, project, filename, sha256, yanked, reason in stored_rows(settings, query)
    ]


@pytest.mark.parametrize(("name", "schema"), FOLDERS.items())
def test_each_folder_is_served_at_the_latest_schema(
    name: str, schema: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings, _ = open_fixture(name, tmp_path, request)
    assert stored_schema(settings) == schema
    if schema == migrations.LATEST:
        datafolder.open_data(settings).database.close()  # every command: nothing to migrate
    else:
        with pytest.raises(UserError, match="made by an older minirepo"):
            datafolder.open_data(settings)
    create_app(settings).extensions["minirepo"].folder.database.close()
    assert stored_schema(settings) == migrations.LATEST
    assert settings.database_path.exists() == (not settings.database)
    # SQLite is copied aside first; PostgreSQL upgrades in one transaction, no copy.
    copies = list((settings.data / "backups").glob(f"minirepo-schema{schema}-*"))
    upgraded_sqlite = schema < migrations.LATEST and not settings.database
    assert len(copies) == (1 if upgraded_sqlite else 0)


@pytest.mark.parametrize("name", FOLDERS)
def test_each_folder_serves_every_file_it_held(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings, secrets = open_fixture(name, tmp_path, request)
    made = stored_files(settings)
    app = create_app(settings)
    services: Services = app.extensions["minirepo"]
    client = app.test_client()
    admin = token_auth(secrets["tokens"]["admin"])
    try:
        with services.folder.database.activated():
            assert integrity.fsck(services.folder.store) == []
        for repo, project, filename, sha256, yanked in made:
            page_url = f"/{repo}/simple/{project}/"
            page = client.get(page_url, headers={**admin, **JSON_V1})
            assert page.status_code == 200, (page_url, page.data)
            listed = {entry["filename"]: entry for entry in page.json["files"]}
            assert listed[filename]["hashes"] == {"sha256": sha256}
            assert listed[filename]["yanked"] == yanked
            with client.get(urljoin(page_url, listed[filename]["url"]), headers=admin) as got:
                assert got.status_code == 200, filename
                assert hashlib.sha256(got.data).hexdigest() == sha256
    finally:
        services.folder.database.close()


@pytest.mark.parametrize("name", FOLDERS)
def test_schema7_the_first_start_stores_the_secrets_fingerprint(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The upgrade adds the instance table; the start after it stores the fingerprint of
    the folder's `secret` file, which every later start (or box) is compared with."""
    settings, _ = open_fixture(name, tmp_path, request)
    create_app(settings).extensions["minirepo"].folder.database.close()
    secret = (settings.data / "secret").read_bytes()
    stored = stored_rows(settings, "SELECT name, value FROM instance")
    assert stored == [(models.SECRET_FINGERPRINT, instance.fingerprint(secret))]


# What must still hold in the folders 0.2.0.dev0 (schema 2) and 0.3.0.dev0 (schema 3)
# made (how: the fixtures' README), on SQLite and, made by the same scripts, on PostgreSQL.
# The schema-3 script is the schema-2 one with groups added after it, so the `schema2`
# checks run on all four folders (`SCHEMA3_ADDED_*`: what it added where a check lists
# everything) and the `schema3` ones on its two. The app opens each folder as `serve`
# does, so once a newer schema exists these same checks run after its upgrade, unchanged.

SCHEMA2 = {"sqlite": "0.2.0.dev0", "postgresql": "0.2.0.dev0-postgres"}
SCHEMA3 = {"sqlite": "0.3.0.dev0", "postgresql": "0.3.0.dev0-postgres"}

# (group, project, member, since, actor) of each recorded origin
OriginRow = tuple[str, str, str, datetime.datetime, str]


def stored_origins(settings: Settings) -> list[OriginRow]:
    """The groups' recorded origins, read from the folder as it was made (schema 3)."""
    query = """
        SELECT g.name, o.normalized, m.name, o.since, o.actor FROM projectorigin o
        JOIN repository g ON o.group_id = g.id JOIN repository m ON o.member_id = m.id"""
    return sorted(
        (group, project, member, _as_datetime(since), actor)
        for group, project, member, since, actor in stored_rows(settings, query)
    )


def _as_datetime(value: datetime.datetime | str) -> datetime.datetime:
    """PostgreSQL gives a datetime; SQLite the text peewee stored."""
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)


@dataclasses.dataclass
class Served:
    client: FlaskClient
    secrets: dict[str, dict[str, str]]
    dists: Path
    made_at: int  # the schema the folder was made at
    origins: list[OriginRow]  # as made, read before the app opened the folder
    instance: list[tuple[Any, ...]]  # (name, value) of its instance rows as made (schema 7)

    def password(self, user: str) -> dict[str, str]:
        return basic(user, self.secrets["passwords"][user])

    def token(self, name: str) -> dict[str, str]:
        return token_auth(self.secrets["tokens"][name])

    def get(self, url: str, auth: dict[str, str] | None = None, **headers: str) -> TestResponse:
        return self.client.get(url, headers={**(auth or {}), **headers})

    def api(self, url: str, auth: dict[str, str]) -> Any:
        response = self.get(f"/-/api/{url}", auth)
        assert response.status_code == 200, (url, response.data)
        return response.json

    def versions(self, url: str, auth: dict[str, str] | None = None) -> list[str]:
        response = self.get(url, auth, **JSON_V1)
        assert response.status_code == 200, (url, response.data)
        return list(response.json["versions"])  # type: ignore[index]

    def post(
        self, repo: str, dist: Dist, auth: dict[str, str], *, sdist: bool = False
    ) -> TestResponse:
        self.dists.mkdir(exist_ok=True)
        path = (make_sdist if sdist else make_wheel)(self.dists, dist)
        form = upload_form(path)
        return self.client.post(
            f"/{repo}/", data=form, headers=auth, content_type="multipart/form-data"
        )

    def upload(self, repo: str, dist: Dist, auth: dict[str, str], *, sdist: bool = False) -> int:
        return self.post(repo, dist, auth, sdist=sdist).status_code

    def found(self, query: str, auth: dict[str, str] | None = None) -> set[tuple[str, str, str]]:
        """(repository, project, version) of each hit of the search API."""
        answer = self.get(f"/-/search?q={query}&format=json", auth).json
        return {(hit["repository"], hit["name"], hit["version"]) for hit in answer["results"]}  # type: ignore[index]


def serve(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    settings, secrets = open_fixture(name, tmp_path, request)
    made_at = FOLDERS[name]
    origins = stored_origins(settings) if made_at >= 3 else []
    made = stored_rows(settings, "SELECT name, value FROM instance") if made_at >= 7 else []
    app = create_app(settings)  # as `serve` opens it
    services: Services = app.extensions["minirepo"]
    with services.folder.database.activated():
        yield Served(app.test_client(), secrets, tmp_path / "new-dists", made_at, origins, made)
    services.folder.database.close()


@pytest.fixture(params=[*SCHEMA2.values(), *SCHEMA3.values()])
def schema2(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """Each folder the schema-2 script made, or the schema-3 script that extends it."""
    yield from serve(request.param, tmp_path, request)


@pytest.fixture(params=list(SCHEMA2.values()), ids=list(SCHEMA2))
def made_at_schema2(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """Each folder the schema-2 script made."""
    yield from serve(request.param, tmp_path, request)


@pytest.fixture(params=list(SCHEMA3.values()), ids=list(SCHEMA3))
def schema3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """Each folder the schema-3 script made."""
    yield from serve(request.param, tmp_path, request)


def test_schema2_passwords_work_or_fail_as_made(schema2: Served) -> None:
    for user in ("alice", "bob", "carol", "erin"):  # erin: locked out, then unlocked
        answer = schema2.api("whoami", schema2.password(user))
        assert (answer["user"], answer["admin"], answer["token"]) == (user, user == "carol", None)
    refused = [
        schema2.password("dave"),  # disabled
        basic("alice", schema2.secrets["stale_passwords"]["alice"]),  # changed
        basic("admin", "any-password-1"),  # the first admin logs in with tokens only
    ]
    for auth in refused:
        assert schema2.get("/-/api/whoami", auth).status_code == 401
    erin = models.User.get(models.User.name == "erin")
    assert erin.unlocked_at is not None
    assert not erin.disabled
    assert models.User.get(models.User.name == "dave").disabled


# name: (user, permission, repositories, projects) as made; the other tokens fail.
SCHEMA2_LIVE_TOKENS = {
    "admin": ("admin", "admin", [], []),
    "alice_upload": ("alice", "upload", [], []),
    "alice_project": ("alice", "upload", [], ["alice-extra", "alicepkg"]),
    "alice_team": ("alice", "upload", ["team"], []),
    "alice_admin": ("alice", "admin", [], []),
    "bob_read_main": ("bob", "read", ["main"], []),
    "bob_read_team": ("bob", "read", ["team"], []),
    "bob_main_team": ("bob", "upload", ["main", "team"], []),
    "bob_scratchy": ("bob", "upload", ["scratch"], ["scratchy"]),
    "carol_admin": ("carol", "admin", [], []),
    "erin_read": ("erin", "read", [], []),
}
# revoked by prefix, by the whole token, by deleting its only repository; expired; and
# the token of a disabled account.
SCHEMA2_DEAD_TOKENS = {
    "bob_revoked": "revoked",
    "carol_revoked": "revoked",
    "alice_attic": "revoked",
    "alice_expired": "expired",
    "dave_upload": "active",
}


def assert_live_tokens(
    served: Served, live: dict[str, tuple[str, str, list[str], list[str]]]
) -> None:
    """Each token answers `whoami` as its user, with the scope it was made with."""
    for name, (user, permission, repositories, projects) in live.items():
        answer = served.api("whoami", served.token(name))
        assert answer["user"] == user, name
        scope = answer["token"]
        got = (scope["permission"], scope["repositories"], scope["projects"])
        assert got == (permission, repositories, projects), name


def test_schema2_tokens_work_or_fail_as_made(schema2: Served) -> None:
    assert set(SCHEMA2_LIVE_TOKENS) | set(SCHEMA2_DEAD_TOKENS) == set(schema2.secrets["tokens"])
    assert_live_tokens(schema2, SCHEMA2_LIVE_TOKENS)
    for name in SCHEMA2_DEAD_TOKENS:
        assert schema2.get("/-/api/whoami", schema2.token(name)).status_code == 401, name
    states = {token.prefix: token for token in accounts.list_tokens()}
    for name, state in SCHEMA2_DEAD_TOKENS.items():
        assert states[schema2.secrets["tokens"][name][:11]].state == state, name
    expiring = states[schema2.secrets["tokens"]["bob_read_main"][:11]]
    assert expiring.state == "active"
    assert expiring.expires is not None


# The repositories the schema-3 script added: kind, read, overwrite, default role.
SCHEMA3_ADDED_REPOS = {
    "lab": ("hosted", "anonymous", "never", "uploader"),
    "all": ("group", "anonymous", "never", "none"),
    "internal": ("group", "authenticated", "never", "reader"),
}


def test_schema2_repositories_keep_their_settings_and_grants(schema2: Served) -> None:
    admin = schema2.token("admin")
    listed = {repo["name"]: repo for repo in schema2.api("repos", admin)["repositories"]}
    settings = {
        name: (repo["kind"], repo["read"], repo["overwrite"], repo["default_role"])
        for name, repo in listed.items()
    }
    assert settings == {
        "main": ("hosted", "anonymous", "never", "uploader"),
        "team": ("hosted", "authenticated", "never", "none"),
        "scratch": ("hosted", "anonymous", "allow", "uploader"),
        "staging": ("hosted", "authenticated", "never", "reader"),
        **(SCHEMA3_ADDED_REPOS if schema2.made_at >= 3 else {}),
    }
    assert (listed["team"]["description"], listed["scratch"]["description"]) == (
        "Team only",
        "Try things out",
    )
    grants = {
        repo: {
            grant["user"]: grant["role"]
            for grant in schema2.api(f"repos/{repo}/grants", admin)["grants"]
        }
        for repo in settings
    }
    assert grants == {
        "main": {},
        "team": {"alice": "owner", "bob": "uploader", "carol": "reader", "erin": "reader"},
        "scratch": {},
        "staging": {"alice": "uploader"},  # bob's grant there was revoked
        **{name: {} for name in (SCHEMA3_ADDED_REPOS if schema2.made_at >= 3 else {})},
    }


def test_schema2_private_repositories_stay_private(schema2: Served) -> None:
    accounts.add_user("frank", "frank-password-1", method=FAST_HASH)  # no grant anywhere
    frank = basic("frank", "frank-password-1")
    for url in ("/team/simple/", "/team/simple/teamlib/", "/staging/simple/stagepkg/"):
        assert schema2.get(url).status_code == 401, url
    download = "/team/files/teamlib/teamlib-1.1-py3-none-any.whl"
    assert schema2.get(download).status_code == 401
    for url in ("/simple/", "/scratch/simple/scratchy/"):
        assert schema2.get(url).status_code == 200, url
    team = [
        (schema2.token("bob_read_team"), 200),
        (schema2.token("alice_team"), 200),
        (schema2.password("erin"), 200),  # reader
        (schema2.password("carol"), 200),
        (schema2.token("bob_read_main"), 404),  # scoped to main
        (frank, 404),  # team's default role is none
        (schema2.token("dave_upload"), 401),
    ]
    for auth, status in team:
        assert schema2.get("/team/simple/teamlib/", auth).status_code == status, auth
    with schema2.get(download, schema2.password("erin")) as got:
        assert got.status_code == 200
    for auth in (frank, schema2.password("bob")):  # staging's default role is reader
        assert schema2.get("/staging/simple/stagepkg/", auth).status_code == 200
    assert schema2.get("/attic/simple/", schema2.password("carol")).status_code == 404


def test_schema2_owners_and_maintainers_hold(schema2: Served) -> None:
    admin = schema2.token("admin")
    people = {}
    for repo, project in (
        ("main", "alicepkg"),
        ("main", "bob-pkg"),
        ("main", "davetool"),
        ("team", "teamlib"),
        ("team", "bobteam"),
        ("staging", "stagepkg"),
        ("scratch", "scratchy"),
    ):
        shown = schema2.api(f"repos/{repo}/projects/{project}", admin)
        people[f"{repo}/{project}"] = (shown["owner"], shown["maintainers"])
    assert people == {
        "main/alicepkg": ("alice", ["bob"]),
        "main/bob-pkg": ("bob", []),
        "main/davetool": ("carol", []),  # set-owner from dave, once disabled; erin removed
        "team/teamlib": ("alice", ["bob"]),
        "team/bobteam": ("bob", []),
        "staging/stagepkg": ("alice", []),
        "scratch/scratchy": ("bob", []),
    }


def test_schema2_uploads_are_allowed_or_refused_as_made(schema2: Served) -> None:
    accounts.add_user("frank", "frank-password-1", method=FAST_HASH)  # no grant anywhere
    frank = basic("frank", "frank-password-1")
    s = schema2
    cases = [
        # main: any account creates a project; others' projects need their owner's consent
        ("main", Dist("alicepkg", "3.0"), s.password("alice"), 200),
        ("main", Dist("alicepkg", "3.1"), s.password("bob"), 200),  # maintainer
        ("main", Dist("alicepkg", "3.2"), s.password("erin"), 403),
        ("main", Dist("alicepkg", "3.3"), s.token("alice_project"), 200),
        ("main", Dist("other-pkg", "1.0"), s.token("alice_project"), 403),  # project scope
        ("main", Dist("bob-pkg", "0.2"), s.password("alice"), 403),
        ("main", Dist("davetool", "1.1"), s.password("erin"), 403),  # maintainer removed
        ("main", Dist("davetool", "1.2"), s.token("dave_upload"), 401),  # disabled
        ("main", Dist("frank-pkg", "1.0"), frank, 200),
        ("main", Dist("bob-read", "1.0"), s.token("bob_read_main"), 403),  # read-only
        ("main", Dist("alice-team", "1.0"), s.token("alice_team"), 403),  # repository scope
        ("main", Dist("expired", "1.0"), s.token("alice_expired"), 401),
        ("main", Dist("revoked", "1.0"), s.token("bob_revoked"), 401),
        # team: uploader and owner grants, a maintainer, a reader
        ("team", Dist("teamlib", "1.2"), s.token("bob_main_team"), 200),
        ("team", Dist("bobteam2", "0.1"), s.password("bob"), 200),
        ("team", Dist("alice-new", "0.1"), s.token("alice_team"), 200),
        ("team", Dist("erin-pkg", "0.1"), s.password("erin"), 403),  # reader
        ("team", Dist("frank-pkg", "0.1"), frank, 404),  # may not know team exists
        # staging: alice's grant kept, bob's revoked
        ("staging", Dist("stagepkg", "1.1"), s.password("alice"), 200),
        ("staging", Dist("bob-stage", "1.0"), s.password("bob"), 403),
        # scratch: any account creates; the project stays bob's; bob's token is scoped
        ("scratch", Dist("scratchy", "0.4"), s.token("bob_scratchy"), 200),
        ("scratch", Dist("scratchy", "0.5"), s.password("alice"), 403),
        ("scratch", Dist("other", "0.1"), s.token("bob_scratchy"), 403),
        ("scratch", Dist("frank-tool", "0.1"), frank, 200),
    ]
    got = [
        (repo, dist.name, dist.version, s.upload(repo, dist, auth)) for repo, dist, auth, _ in cases
    ]
    assert got == [(repo, dist.name, dist.version, status) for repo, dist, _, status in cases]


SCHEMA2_FILES = {
    "main": {
        "alicepkg": [
            "alicepkg-1.0-py3-none-any.whl",
            "alicepkg-1.0.tar.gz",
            "alicepkg-2.0-py3-none-any.whl",
            "alicepkg-2.1-py3-none-any.whl",
        ],
        "Bob_Pkg": ["bob_pkg-0.1-py3-none-any.whl"],
        "davetool": ["davetool-1.0-py3-none-any.whl"],
    },
    "team": {
        "bobteam": ["bobteam-0.1-py3-none-any.whl"],
        "teamlib": ["teamlib-1.0-py3-none-any.whl", "teamlib-1.1-py3-none-any.whl"],
    },
    "staging": {"stagepkg": ["stagepkg-1.0-py3-none-any.whl"]},
    "scratch": {"scratchy": ["scratchy-0.1-py3-none-any.whl"]},
}


# What the schema-3 script added where a schema-2 check lists everything: files, from
# uploads to members and through `all`.
SCHEMA3_ADDED_FILES = {
    "main": {
        "grouped": ["grouped-1.0-py3-none-any.whl", "grouped-1.1-py3-none-any.whl"],
        "shared-tool": ["shared_tool-2.0-py3-none-any.whl"],
        "internal-tool": ["internal_tool-9.0-py3-none-any.whl"],
    },
    "team": {
        "internal-tool": ["internal_tool-1.0-py3-none-any.whl"],
        "shared-tool": ["shared_tool-1.0-py3-none-any.whl"],
    },
    "lab": {"labtool": ["labtool-1.0-py3-none-any.whl"]},
}


def files_as_made(served: Served) -> dict[str, dict[str, list[str]]]:
    """repository: {project: filenames} of the hosted repositories the folder's script made."""
    added = SCHEMA3_ADDED_FILES if served.made_at >= 3 else {}
    return {
        repo: {**SCHEMA2_FILES.get(repo, {}), **added.get(repo, {})}
        for repo in {**SCHEMA2_FILES, **added}
    }


def test_schema2_simple_pages_list_the_files(schema2: Served) -> None:
    admin = schema2.token("admin")
    for repo, projects in files_as_made(schema2).items():
        root = schema2.get(f"/{repo}/simple/", admin, **JSON_V1).json
        assert sorted(project["name"] for project in root["projects"]) == sorted(projects)
        for name, filenames in projects.items():
            url = f"/{repo}/simple/{canonicalize_name(name)}/"
            page = schema2.get(url, admin, **JSON_V1).json
            assert [entry["filename"] for entry in page["files"]] == filenames, url
            html = schema2.get(url, admin).data.decode()
            assert all(f">{filename}</a>" in html for filename in filenames), url
    assert schema2.get("/simple/", **JSON_V1).json == schema2.get("/main/simple/", **JSON_V1).json


def test_schema2_yanks_show_in_the_simple_pages(schema2: Served) -> None:
    alicepkg = schema2.get("/simple/alicepkg/", **JSON_V1).json
    assert {entry["filename"]: entry["yanked"] for entry in alicepkg["files"]} == {
        "alicepkg-1.0-py3-none-any.whl": "broken on Python 3.13",
        "alicepkg-1.0.tar.gz": "broken on Python 3.13",
        "alicepkg-2.0-py3-none-any.whl": False,
        "alicepkg-2.1-py3-none-any.whl": False,
    }
    html = schema2.get("/simple/alicepkg/").data
    assert html.count(b'data-yanked="broken on Python 3.13"') == 2
    teamlib = schema2.get("/team/simple/teamlib/", schema2.password("erin"), **JSON_V1).json
    assert {entry["filename"]: entry["yanked"] for entry in teamlib["files"]} == {
        "teamlib-1.0-py3-none-any.whl": "use 1.1",  # yanked through the API
        "teamlib-1.1-py3-none-any.whl": False,
    }
    bob_pkg = schema2.get("/simple/bob-pkg/", **JSON_V1).json  # yanked, then unyanked
    assert [entry["yanked"] for entry in bob_pkg["files"]] == [False]


def test_schema2_deleted_and_replaced_files_stay_gone(schema2: Served) -> None:
    alice = schema2.password("alice")
    listed = schema2.get("/simple/alicepkg/", **JSON_V1).json
    assert "alicepkg-2.0.tar.gz" not in {entry["filename"] for entry in listed["files"]}
    assert schema2.get("/files/alicepkg/alicepkg-2.0.tar.gz").status_code == 404
    # Its name stays burned in main; in scratch (overwrite allow) names are reusable.
    assert schema2.upload("main", Dist("alicepkg", "2.0"), alice, sdist=True) == 400
    scratchy = schema2.get("/scratch/simple/scratchy/", **JSON_V1).json
    assert [(entry["filename"], entry["hashes"]["sha256"][:8]) for entry in scratchy["files"]] == [
        ("scratchy-0.1-py3-none-any.whl", "41fbf8bd")  # the replacement; 0.2 deleted
    ]
    assert schema2.upload("scratch", Dist("scratchy", "0.2"), schema2.password("bob")) == 200
    buried = {
        (row.repository, row.filename, row.reason, row.actor) for row in models.Tombstone.select()
    }
    assert buried == {
        ("main", "alicepkg-2.0.tar.gz", "deleted", "cli"),
        ("scratch", "scratchy-0.1-py3-none-any.whl", "replaced", "bob"),
        ("scratch", "scratchy-0.2-py3-none-any.whl", "deleted", "bob"),
        ("attic", "attic_pkg-1.0-py3-none-any.whl", "repository deleted", "cli"),
    }


def test_schema2_audit_log_is_kept(schema2: Served) -> None:
    events = schema2.api("audit?limit=1000", schema2.token("admin"))["events"]
    assert {event["action"] for event in events} >= {
        "user add",
        "user passwd",
        "user disable",
        "user unlock",
        "login failed",
        "repo create",
        "repo set",
        "repo delete",
        "grant",
        "revoke",
        "token create",
        "token revoke",
        "upload",
        "replace",
        "delete",
        "yank",
        "unyank",
        "maintainer add",
        "maintainer remove",
        "owner set",
    }
    assert events[-1] == {
        "time": events[-1]["time"],
        "actor": "first start",
        "action": "user add",
        "repository": "",
        "project": "",
        "filename": "",
        "remote_addr": "",
        "detail": "admin (admin)",
    }
    yanks = [
        (e["actor"], e["repository"], e["project"], e["detail"])
        for e in events
        if e["action"] == "yank"
    ]
    assert yanks == [
        ("alice", "team", "teamlib", "1.0 use 1.1"),
        ("cli", "main", "bob-pkg", "0.1"),
        ("cli", "main", "alicepkg", "1.0 broken on Python 3.13"),
    ]
    team_only = schema2.api("audit?repo=team", schema2.password("alice"))["events"]
    assert {event["repository"] for event in team_only} == {"team"}


def test_schema3_adds_no_proxy_or_group_to_an_existing_folder(made_at_schema2: Served) -> None:
    """Upgraded folders keep their hosted repositories only (README, Upgrading): the new
    columns hold their defaults and the new tables are empty."""
    rows = models.Repository.select().order_by(models.Repository.name)
    assert {row.kind for row in rows} == {"hosted"}
    assert {(row.upstream, row.proxy_options, row.upload_to_id) for row in rows} == {
        ("", "{}", None)
    }
    for table in (models.GroupMember, models.ProjectOrigin, models.TrackedProject):
        assert table.select().count() == 0, table.__name__


# What must still hold in the folder 0.3.0.dev0 made (schema 3; how: the fixtures' README):
# group repositories of hosted members, their upload targets and recorded origins.

# group: (members in the order they are asked, upload target, description)
SCHEMA3_GROUPS = {
    "all": (["main", "team"], "main", "One URL for all"),  # lab removed with `repo set`
    "internal": (["team", "main"], None, ""),  # old, between them, deleted
}
# (group, project): (member, actor) as recorded; actor "": by first use
SCHEMA3_ORIGINS = {
    ("all", "alicepkg"): ("main", ""),
    ("all", "grouped"): ("main", ""),  # uploaded through all
    ("all", "internal-tool"): ("team", ""),  # main had it only later
    ("all", "shared-tool"): ("team", "cli"),  # first main; then `minirepo origin set`
    ("all", "teamlib"): ("team", ""),
    ("internal", "bob-pkg"): ("main", ""),  # by a download through the group
    ("internal", "shared-tool"): ("team", ""),
}


def test_schema3_groups_keep_their_members_and_upload_targets(schema3: Served) -> None:
    made = {
        item.info.name: (list(item.members), item.info.upload_to, item.description)
        for item in repos.summaries()
        if item.info.is_group
    }
    assert made == SCHEMA3_GROUPS
    # A group lists its members' names, only those the caller may read; lab's are gone.
    public = ["alicepkg", "Bob_Pkg", "davetool", "grouped", "internal-tool", "shared-tool"]
    private = sorted([*public, "bobteam", "teamlib"], key=canonicalize_name)
    names = {"": public, "alice": private}  # alice reads team too
    for user, listed in names.items():
        auth = schema3.password(user) if user else {}
        root = schema3.get("/all/simple/", auth, **JSON_V1).json
        assert [project["name"] for project in root["projects"]] == listed, user
    assert schema3.get("/all/simple/labtool/").status_code == 404
    assert schema3.versions("/lab/simple/labtool/") == ["1.0"]
    # internal is private, any account reads it; team then main
    assert schema3.get("/internal/simple/").status_code == 401
    assert schema3.versions("/internal/simple/shared-tool/", schema3.password("erin")) == ["1.0"]


def test_schema3_uploads_through_a_group_land_in_its_target(schema3: Served) -> None:
    alice, bob = schema3.password("alice"), schema3.password("bob")
    assert schema3.upload("all", Dist("grouped", "2.0"), alice) == 200
    assert schema3.upload("all", Dist("grouped", "2.1"), bob) == 403  # alice's, in main
    assert schema3.upload("all", Dist("bob-grouped", "1.0"), bob) == 200  # main's rules
    assert schema3.versions("/main/simple/grouped/") == ["1.0", "1.1", "2.0"]
    assert schema3.versions("/all/simple/grouped/") == ["1.0", "1.1", "2.0"]
    assert schema3.versions("/main/simple/bob-grouped/") == ["1.0"]
    for repo in ("team", "lab"):
        page = schema3.get(f"/{repo}/simple/grouped/", schema3.token("admin"))
        assert page.status_code == 404, repo
    refused = schema3.post("internal", Dist("nowhere", "1.0"), alice)
    assert (refused.status_code, refused.headers["Allow"]) == (405, "GET, HEAD")
    assert schema3.get("/internal/simple/nowhere/", schema3.token("admin")).status_code == 404


def test_schema3_origins_are_kept(schema3: Served) -> None:
    made = {
        (group, project): (member, actor) for group, project, member, _, actor in schema3.origins
    }
    assert made == SCHEMA3_ORIGINS
    kept = sorted(
        (group, origin.project, origin.member, origin.since, origin.actor)
        for group in SCHEMA3_GROUPS
        for origin in groups.origins(repos.get(group))
    )
    assert kept == schema3.origins  # who and since, to the microsecond
    # The one set by `origin set` is the latest, recorded with its audit event.
    since = {(group, project): when for group, project, _, when, _ in schema3.origins}
    moved = since.pop(("all", "shared-tool"))
    assert max(since.values()) < moved
    events = schema3.api("audit?limit=1000", schema3.token("admin"))["events"]
    (event,) = [event for event in events if event["action"] == "origin set"]
    logged = datetime.datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((logged - moved).total_seconds()) < 2
    # A name never asked for through a group is recorded at its first use from now on.
    assert schema3.versions("/all/simple/davetool/") == ["1.0"]
    (new,) = groups.origins(repos.get("all"), "davetool")
    assert (new.member, new.actor) == ("main", "")
    assert new.since > moved


def test_schema3_each_name_is_served_from_its_recorded_member(schema3: Served) -> None:
    admin = schema3.token("admin")
    for (group, project), (member, _) in SCHEMA3_ORIGINS.items():
        url = f"/{group}/simple/{project}/"
        through = schema3.get(url, admin, **JSON_V1).json["files"]
        direct = schema3.get(f"/{member}/simple/{project}/", admin, **JSON_V1).json["files"]
        assert [(f["filename"], f["hashes"]) for f in through] == [
            (f["filename"], f["hashes"]) for f in direct
        ], url
        for entry in through:
            with schema3.get(urljoin(url, entry["url"]), admin) as got:
                assert got.status_code == 200, entry["url"]
                assert hashlib.sha256(got.data).hexdigest() == entry["hashes"]["sha256"]
    # Where both members have the name, the recorded one answers: not the first member,
    # not the highest version.
    alice = schema3.password("alice")
    assert schema3.versions("/main/simple/shared-tool/") == ["2.0"]
    assert schema3.versions("/all/simple/shared-tool/", alice) == ["1.0"]  # set to team
    assert schema3.versions("/main/simple/internal-tool/") == ["9.0"]
    assert schema3.versions("/all/simple/internal-tool/", alice) == ["1.0"]
    # A caller who may not read the recorded member is refused there, never sent on.
    accounts.add_user("frank", "frank-password-1", method=FAST_HASH)  # no grant anywhere
    frank = basic("frank", "frank-password-1")
    for project in ("shared-tool", "internal-tool", "teamlib"):
        assert schema3.get(f"/all/simple/{project}/").status_code == 401, project
        assert schema3.get(f"/all/simple/{project}/", frank).status_code == 404, project
    download = "/all/files/internal-tool/internal_tool-9.0-py3-none-any.whl"
    assert schema3.get(download, frank).status_code == 404


def test_schema3_group_changes_are_audited(schema3: Served) -> None:
    events = schema3.api("audit?limit=1000", schema3.token("admin"))["events"]
    actions = ("repo create", "repo set", "repo delete", "origin set")
    changes = [
        (e["actor"], e["action"], e["repository"], e["project"], e["detail"])
        for e in reversed(events)
        if e["action"] in actions and e["repository"] in {"lab", "all", "old", "internal"}
    ]
    settings = "read=anonymous overwrite=never default-role=none"
    assert changes == [
        ("cli", "repo create", "lab", "", "read=anonymous overwrite=never default-role=uploader"),
        ("cli", "repo create", "all", "", f"{settings} members=main,lab,team upload-to=main"),
        ("cli", "repo create", "old", "", settings),
        (
            "cli",
            "repo create",
            "internal",
            "",
            "read=authenticated overwrite=never default-role=reader members=team,old,main "
            "upload-to=-",
        ),
        ("cli", "origin set", "all", "shared-tool", "team"),
        (
            "cli",
            "repo set",
            "all",
            "",
            f"{settings} members=main,lab,team upload-to=main -> "
            f"{settings} members=main,team upload-to=main",
        ),
        ("cli", "repo delete", "old", "", "0 file(s)"),
    ]
    uploads = {
        (e["actor"], e["repository"], e["filename"]) for e in events if e["project"] == "grouped"
    }
    assert uploads == {  # through all, stored and audited in main
        ("alice", "main", "grouped-1.0-py3-none-any.whl"),
        ("alice", "main", "grouped-1.1-py3-none-any.whl"),
    }


# What must still hold in the folders 0.4.0.dev0 (schema 4) made, on SQLite and PostgreSQL
# (how: the fixtures' README): the first start's proxy and group, a second proxy, a group
# of hosted members, recorded origins, a tracked name, and the proxies' cache (pages,
# metadata, kept files and their last use). The upstreams were throwaway fake indexes,
# long gone: both proxies were set offline, and the `schema4` fixture fails any request
# to an upstream, so everything here is served from what the folder holds.

SCHEMA4 = {"sqlite": "0.4.0.dev0", "postgresql": "0.4.0.dev0-postgres"}


@pytest.fixture(params=list(SCHEMA4.values()), ids=list(SCHEMA4))
def schema4(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    """Each folder the schema-4 script made, its upstreams unreachable by construction."""

    def no_upstream(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a proxy asked its upstream: {args[1:]}")

    for method in ("project_page", "open_file"):
        monkeypatch.setattr(Upstream, method, no_upstream)
    yield from serve(request.param, tmp_path, request)


# name: (kind, read, overwrite, default role, description)
SCHEMA4_REPOS = {
    "main": ("hosted", "anonymous", "never", "uploader", ""),
    "team": ("hosted", "authenticated", "never", "none", "Team only"),
    "pypi-proxy": ("proxy", "anonymous", "never", "none", "PyPI, cached"),  # first start's
    "vendor": ("proxy", "anonymous", "never", "none", "A vendor's index"),  # repo create
    "all": ("group", "anonymous", "never", "reader", ""),  # first start's, team added
    "internal": ("group", "authenticated", "never", "reader", "Hosted only"),
}
SCHEMA4_PROXY_OPTIONS = {
    "pypi-proxy": ProxyOptions(
        page_ttl=3600.0,
        stale_max=90 * DAY,
        cache_max=1024**3,
        min_free_disk=100 * 1024**2,
        connect_timeout=3.0,
        read_timeout=20.0,
        offline=True,
        upstream_user="mirror",
        upstream_password_env="MINIREPO_FIXTURE_UPSTREAM_PASSWORD",
    ),
    "vendor": ProxyOptions(page_ttl=300.0, offline=True),
}
# group: (members in the order they are asked, upload target, description)
SCHEMA4_GROUPS = {
    "all": (["main", "team", "pypi-proxy"], "main", ""),
    "internal": (["team", "main"], "team", "Hosted only"),
}
# (group, project): (member, actor) as recorded; actor "": by first use
SCHEMA4_ORIGINS = {
    ("all", "alicepkg"): ("main", ""),
    ("all", "grouped"): ("main", ""),  # uploaded through all
    ("all", "moved"): ("pypi-proxy", "cli"),  # first main; then `minirepo origin set`
    ("all", "pubtool"): ("pypi-proxy", ""),
    ("all", "shadowed"): ("team", ""),  # the upstream has it too, with a higher version
    ("all", "teamlib"): ("team", ""),
    ("internal", "alicepkg"): ("main", ""),
    ("internal", "teamlib"): ("team", ""),
}
# repository: {project: filenames}, hosted and kept by a proxy
SCHEMA4_FILES = {
    "main": {
        "alicepkg": ["alicepkg-1.0-py3-none-any.whl", "alicepkg-1.0.tar.gz"],
        "forked": ["forked-1.0.post1-py3-none-any.whl"],  # a fork of the public forked
        "grouped": ["grouped-1.0-py3-none-any.whl"],
        "moved": ["moved-1.0-py3-none-any.whl"],
    },
    "team": {
        "shadowed": ["shadowed-1.0-py3-none-any.whl"],
        "teamlib": ["teamlib-1.0-py3-none-any.whl", "teamlib-1.1-py3-none-any.whl"],
    },
    "pypi-proxy": {
        "forked": ["forked-1.0-py3-none-any.whl"],
        "pubtool": ["pubtool-1.0-py3-none-any.whl", "pubtool-1.1-py3-none-any.whl"],
    },
}
# (proxy, project): the filenames its cached upstream page lists; None: gone upstream
SCHEMA4_CACHED_PAGES = {
    ("pypi-proxy", "forked"): ["forked-1.0-py3-none-any.whl"],
    ("pypi-proxy", "gonepkg"): None,
    ("pypi-proxy", "moved"): ["moved-2.0-py3-none-any.whl"],
    ("pypi-proxy", "pubtool"): [
        "pubtool-1.0-py3-none-any.whl",
        "pubtool-1.1-py3-none-any.whl",
        "pubtool-2.0-py3-none-any.whl",
    ],
    ("vendor", "vtool"): ["vtool-1.0-py3-none-any.whl"],
}
# (proxy, filename) of the PEP 658 metadata a proxy fetched (pubtool 2.0: never its file)
SCHEMA4_CACHED_METADATA = {
    ("pypi-proxy", "pubtool-1.0-py3-none-any.whl"),
    ("pypi-proxy", "pubtool-2.0-py3-none-any.whl"),
}


def _cached_pages() -> dict[tuple[str, str], models.CachedPage]:
    query = models.CachedPage.select(models.CachedPage, models.Repository.name).join(
        models.Repository
    )
    return {(row.repository.name, row.normalized): row for row in query}


def test_schema4_repositories_and_proxy_options_are_kept(schema4: Served) -> None:
    made = {
        item.info.name: (
            item.info.kind,
            item.info.read,
            item.info.overwrite,
            item.info.default_role,
            item.description,
        )
        for item in repos.summaries()
    }
    assert made == SCHEMA4_REPOS
    for name, options in SCHEMA4_PROXY_OPTIONS.items():
        row = repos.get(name)
        assert options_of(row.proxy_options) == options, name
        assert row.upstream.startswith("http://127.0.0.1:"), row.upstream
        assert row.upstream.endswith("/simple/"), row.upstream
    listed = schema4.api("repos", schema4.token("admin"))["repositories"]
    assert {repo["name"]: repo["kind"] for repo in listed} == {
        name: kind for name, (kind, *_) in SCHEMA4_REPOS.items()
    }
    stored: dict[str, dict[str, list[str]]] = {}
    for file in (
        models.File.select()
        .join(models.Release)
        .join(models.Project)
        .order_by(models.File.filename)
    ):
        project = stored.setdefault(file.repository.name, {})
        project.setdefault(file.release.project.normalized, []).append(file.filename)
    assert stored == SCHEMA4_FILES
    grants = {
        (grant.user.name, grant.repository.name, grant.role)
        for grant in models.Grant.select().join(models.User).switch(models.Grant)
    }
    assert grants == {("alice", "team", "owner"), ("bob", "team", "uploader")}


def test_schema4_cache_rows_are_kept(schema4: Served) -> None:
    pages_made = _cached_pages()
    listed = {
        key: (
            [entry.filename for entry in from_json(row.page_json).files] if row.page_json else None
        )
        for key, row in pages_made.items()
    }
    assert listed == SCHEMA4_CACHED_PAGES
    for key, row in pages_made.items():
        assert row.gone == (SCHEMA4_CACHED_PAGES[key] is None), key
        assert (row.fetched_at is not None, row.error, row.error_at) == (True, "", None), key
        assert bool(row.etag) == (not row.gone), key
    # The metadata a proxy fetched, checked against its page when fetched: still so.
    metadata_sha256 = {
        entry.filename: entry.metadata_sha256
        for row in pages_made.values()
        if row.page_json
        for entry in from_json(row.page_json).files
    }
    fetched = list(
        models.CachedMetadata.select(models.CachedMetadata, models.Repository.name).join(
            models.Repository
        )
    )
    assert {(item.repository.name, item.filename) for item in fetched} == SCHEMA4_CACHED_METADATA
    for item in fetched:
        assert item.normalized == "pubtool"
        digest = hashlib.sha256(bytes(item.content)).hexdigest()
        assert digest == metadata_sha256[item.filename], item.filename
    # The files a proxy kept, least recently used first: pubtool 1.0 was used again, and
    # that use written when keeping pubtool 1.1 evicted past cache-max; the others never.
    kept = cache.listing(repos.info_of(repos.get("pypi-proxy")))
    assert [item.filename for item in kept] == [
        "pubtool-1.0-py3-none-any.whl",
        "pubtool-1.1-py3-none-any.whl",
        "forked-1.0-py3-none-any.whl",
    ]
    assert not any(item.gone for item in kept)
    used = [(f.filename, f.last_used, f.upload_time) for f in models.File.select() if f.last_used]
    assert [filename for filename, _, _ in used] == ["pubtool-1.0-py3-none-any.whl"]
    _, last_used, stored_at = used[0]
    assert last_used > stored_at
    # Each kept file is the one its cached page lists.
    page_sha256 = {
        entry.filename: entry.sha256
        for row in pages_made.values()
        if row.page_json
        for entry in from_json(row.page_json).files
    }
    proxy_files = (
        models.File.select().join(models.Repository).where(models.Repository.kind == "proxy")
    )
    assert {f.filename: f.sha256 for f in proxy_files} == {
        name: page_sha256[name] for names in SCHEMA4_FILES["pypi-proxy"].values() for name in names
    }
    assert models.FetchJob.select().count() == 0


def test_schema4_cached_pages_and_files_are_served_offline(schema4: Served) -> None:
    for url in ("/pypi-proxy/simple/pubtool/", "/all/simple/pubtool/"):
        page = schema4.get(url, **JSON_V1).json
        # Offline, a page lists only what the proxy holds: not 2.0, never fetched.
        assert [entry["filename"] for entry in page["files"]] == SCHEMA4_FILES["pypi-proxy"][
            "pubtool"
        ], url
        assert page["versions"] == ["1.0", "1.1"], url
        html = schema4.get(url).data.decode()
        assert all(f">{entry['filename']}</a>" in html for entry in page["files"]), url
        for entry in page["files"]:
            with schema4.get(urljoin(url, entry["url"])) as got:
                assert got.status_code == 200, entry["url"]
                assert hashlib.sha256(got.data).hexdigest() == entry["hashes"]["sha256"]
            metadata = schema4.get(urljoin(url, entry["url"]) + ".metadata")
            assert metadata.status_code == 200, entry["url"]
            assert hashlib.sha256(metadata.data).hexdigest() == entry["core-metadata"]["sha256"]
    # pubtool 2.0: its metadata was fetched, its file never: the one served, not the other
    base = "/pypi-proxy/files/pubtool/pubtool-2.0-py3-none-any.whl"
    metadata = schema4.get(f"{base}.metadata")
    assert metadata.status_code == 200
    assert b"Version: 2.0\n" in metadata.data
    assert b"Requires-Dist: shadowed>=5\n" in metadata.data
    assert schema4.get(base).status_code == 404
    # Names the proxies never cached, or cached as gone: 404, no upstream asked.
    for url in (
        "/pypi-proxy/simple/gonepkg/",
        "/pypi-proxy/simple/never-asked/",
        "/all/simple/never-asked/",
        "/vendor/simple/never-asked/",
    ):
        assert schema4.get(url).status_code == 404, url
    # vendor's page was cached, none of its files fetched: listed, with no file offline.
    assert schema4.get("/vendor/simple/vtool/", **JSON_V1).json["files"] == []
    assert schema4.get("/vendor/files/vtool/vtool-1.0-py3-none-any.whl").status_code == 404
    # Every proxy file is immutable (its repository allows no overwrite).
    with schema4.get("/pypi-proxy/files/pubtool/pubtool-1.1-py3-none-any.whl") as got:
        assert got.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_schema4_groups_origins_and_tracked_name_hold(schema4: Served) -> None:
    made = {
        item.info.name: (list(item.members), item.info.upload_to, item.description)
        for item in repos.summaries()
        if item.info.is_group
    }
    assert made == SCHEMA4_GROUPS
    as_made = {(g, p): (member, actor) for g, p, member, _, actor in schema4.origins}
    assert as_made == SCHEMA4_ORIGINS
    kept = sorted(
        (group, origin.project, origin.member, origin.since, origin.actor)
        for group in SCHEMA4_GROUPS
        for origin in groups.origins(repos.get(group))
    )
    assert kept == schema4.origins  # who and since, to the microsecond
    since = {project: when for group, project, _, when, _ in schema4.origins if group == "all"}
    assert max(since.values()) == since["moved"]  # set last in all, by `origin set`
    # Each name from its recorded member: team's shadowed, never the upstream's 5.0; moved
    # from the proxy, which holds none of its files (offline: listed empty).
    bob = schema4.password("bob")
    assert schema4.versions("/all/simple/shadowed/", bob) == ["1.0"]
    assert schema4.get("/all/simple/shadowed/").status_code == 401  # team is private
    assert schema4.versions("/all/simple/moved/") == []
    assert schema4.versions("/main/simple/moved/") == ["1.0"]
    assert schema4.versions("/all/simple/alicepkg/") == ["1.0"]
    assert schema4.versions("/internal/simple/teamlib/", bob) == ["1.0", "1.1"]
    assert schema4.get("/internal/simple/teamlib/").status_code == 401
    # The tracked name: main's fork and the proxy's kept file on one page (PEP 708 tracks)
    assert groups.tracked(repos.get("all")) == ["forked"]
    upstream = repos.get("pypi-proxy").upstream
    url = "/all/simple/forked/"
    page = schema4.get(url, **JSON_V1).json
    assert page["meta"]["tracks"] == [f"{upstream}forked/"]
    assert page["versions"] == ["1.0", "1.0.post1"]
    for entry in page["files"]:
        with schema4.get(urljoin(url, entry["url"])) as got:
            assert got.status_code == 200, entry["url"]
            assert hashlib.sha256(got.data).hexdigest() == entry["hashes"]["sha256"]
    assert schema4.versions("/main/simple/forked/") == ["1.0.post1"]
    # Uploads through the groups land in their targets; a name all serves from the proxy
    # stays locked in main (origin lock); proxies take no uploads.
    alice = schema4.password("alice")
    assert schema4.upload("internal", Dist("teamlib", "1.2"), alice) == 200
    assert schema4.versions("/team/simple/teamlib/", alice) == ["1.0", "1.1", "1.2"]
    assert schema4.upload("all", Dist("grouped", "1.1"), alice) == 403  # bob's, in main
    assert schema4.upload("all", Dist("alicepkg", "1.1"), alice) == 200
    assert schema4.versions("/main/simple/alicepkg/") == ["1.0", "1.1"]
    assert schema4.upload("main", Dist("moved", "1.1"), schema4.password("bob")) == 403
    assert schema4.upload("main", Dist("pubtool", "9.0"), alice) == 403
    assert schema4.upload("pypi-proxy", Dist("nope", "1.0"), schema4.token("admin")) == 405


# name: (user, permission, repositories, projects) as made; the other tokens fail.
SCHEMA4_LIVE_TOKENS: dict[str, tuple[str, str, list[str], list[str]]] = {
    "admin": ("admin", "admin", [], []),
    "alice_upload": ("alice", "upload", [], []),
    "alice_team": ("alice", "upload", ["team"], []),
    "bob_read_all": ("bob", "read", ["all"], []),
    "bob_main": ("bob", "upload", ["main"], []),  # expires in 100 years
    "carol_admin": ("carol", "admin", [], []),
}


def test_schema4_tokens_and_passwords_work_as_made(schema4: Served) -> None:
    assert set(SCHEMA4_LIVE_TOKENS) | {"bob_revoked"} == set(schema4.secrets["tokens"])
    assert_live_tokens(schema4, SCHEMA4_LIVE_TOKENS)
    assert schema4.get("/-/api/whoami", schema4.token("bob_revoked")).status_code == 401
    states = {token.prefix: token for token in accounts.list_tokens()}
    assert states[schema4.secrets["tokens"]["bob_revoked"][:11]].state == "revoked"
    expiring = states[schema4.secrets["tokens"]["bob_main"][:11]]
    assert (expiring.state, expiring.expires is not None) == ("active", True)
    for user in ("alice", "bob", "carol"):
        answer = schema4.api("whoami", schema4.password(user))
        assert (answer["user"], answer["admin"]) == (user, user == "carol")
    assert schema4.get("/-/api/whoami", basic("admin", "any-password-1")).status_code == 401
    # Scoped to the group all: what all serves from main and the proxy; team's names
    # neither there nor through all.
    read_all = schema4.token("bob_read_all")
    assert schema4.versions("/all/simple/pubtool/", read_all) == ["1.0", "1.1"]
    assert schema4.get("/all/simple/teamlib/", read_all).status_code == 404
    assert schema4.get("/team/simple/teamlib/", read_all).status_code == 404
    assert schema4.upload("all", Dist("bob-new", "1.0"), read_all) == 403  # read-only
    assert schema4.upload("main", Dist("bob-new", "1.0"), schema4.token("bob_main")) == 200
    # scoped to main: team (private) is not there for it, though bob uploads there
    assert schema4.upload("team", Dist("bob-new", "1.0"), schema4.token("bob_main")) == 404
    assert schema4.upload("team", Dist("teamlib", "2.0"), schema4.token("alice_team")) == 200


def test_schema5_adds_no_retention_rule_and_takes_one(schema4: Served) -> None:
    """Schema 5 gives repositories retention rules: the upgrade sets none, so the first
    daily run prunes nothing; a rule set afterwards runs as on a new folder."""
    stored = {
        row.name: (row.retention, row.retention_applied_at) for row in models.Repository.select()
    }
    assert stored == dict.fromkeys(SCHEMA4_REPOS, ("", None))
    assert retention.apply_due() == {}
    assert models.Tombstone.select().where(models.Tombstone.reason == "pruned").count() == 0
    repos.update("team", retention={"keep": 1})
    pruned = retention.apply_due()["team"]
    assert [(release.project, release.version) for release in pruned] == [("teamlib", "1.0")]
    assert schema4.versions("/team/simple/teamlib/", schema4.password("alice")) == ["1.1"]


# What must still hold in the folders 0.5.0.dev0 (schema 5) made, on SQLite and PostgreSQL
# (how: the fixtures' README): the schema-4 script's folder plus retention rules, a release
# pruned by hand, and summaries and keywords the search index is filled from. The
# schema-6 script is the schema-5 one with the web UI's rows added after it, and the
# schema-7 script is the schema-6 one with the same data, so the `schema5` checks run on
# their folders too.

SCHEMA5 = {"sqlite": "0.5.0.dev0", "postgresql": "0.5.0.dev0-postgres"}
SCHEMA6 = {"sqlite": "0.6.0.dev0", "postgresql": "0.6.0.dev0-postgres"}
SCHEMA7 = {"sqlite": "0.7.0.dev0", "postgresql": "0.7.0.dev0-postgres"}


@pytest.fixture(params=[*SCHEMA5.values(), *SCHEMA6.values(), *SCHEMA7.values()])
def schema5(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """Each folder the schema-5 script made, or the schema-6 and -7 scripts that extend it."""
    yield from serve(request.param, tmp_path, request)


def test_schema5_retention_rules_and_pruned_release_are_kept(schema5: Served) -> None:
    rules = {row.name: row.retention for row in models.Repository.select() if row.retention}
    assert {name: Rule.from_json(text) for name, text in rules.items()} == {
        "nightly": Rule(keep=2, older_than=30 * DAY, dev_only=True),
        "team": Rule(keep=5),
    }
    pruned = models.Tombstone.select().where(models.Tombstone.reason == "pruned")
    assert [(t.repository, t.project, t.filename) for t in pruned] == [
        ("nightly", "nightlypkg", "nightlypkg-1.0.dev1-py3-none-any.whl")
    ]
    assert schema5.versions("/nightly/simple/nightlypkg/") == ["1.0.dev2", "1.0.dev3", "1.0"]
    assert retention.apply_due() == {"nightly": [], "team": []}  # nothing old enough
    assert schema5.upload("nightly", Dist("nightlypkg", "1.0.dev1"), schema5.password("bob")) == 400


def test_schema6_search_finds_what_the_folder_held(schema5: Served) -> None:
    """The upgrade to schema 6 fills the search index (SQLite) from the projects there;
    team's stay hidden from those who may not read team."""
    found = schema5.found
    assert found("http client") == {("main", "alicepkg", "1.0")}  # keywords and summary
    assert found("nightly") == {("nightly", "nightlypkg", "1.0")}
    assert found("invoices") == found("invoices", schema5.token("bob_main")) == set()  # main only
    alice = schema5.password("alice")
    assert found("invoices", alice) == {("team", "teamlib", "1.1")}
    assert found("pubtool") == {("pypi-proxy", "pubtool", "1.1")}  # a proxy's kept files
    assert schema5.upload("main", Dist("searchable-new", "1.0", summary="Fresh"), alice) == 200
    assert found("fresh") == {("main", "searchable-new", "1.0")}


# What must still hold in the folders 0.6.0.dev0 (schema 6) made (how: the fixtures'
# README): the web UI's rows, i.e. the daily download counts the server wrote at its
# graceful stop and the READMEs rendered at a project page's first view. The schema-7
# script made the same rows, so the `schema6` checks run on its folders too.

# filename: downloads counted, all on the day the script ran
SCHEMA6_DOWNLOADS = {
    "alicepkg-1.0-py3-none-any.whl": 3,
    "alicepkg-1.0.tar.gz": 1,
    "teamlib-1.1-py3-none-any.whl": 1,
    "pubtool-1.0-py3-none-any.whl": 1,  # through the proxy, its second download
    "forked-1.0.post1-py3-none-any.whl": 1,  # main's, through all
}


@pytest.fixture(params=[*SCHEMA6.values(), *SCHEMA7.values()])
def schema6(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """Each folder the schema-6 script made, or the schema-7 script that repeats it."""
    yield from serve(request.param, tmp_path, request)


def test_schema6_download_counts_survive(schema6: Served) -> None:
    query = models.DownloadCount.select(
        models.File.filename, models.DownloadCount.day, models.DownloadCount.count
    ).join(models.File)
    stored = {filename: (day, count) for filename, day, count in rows(query.tuples())}
    assert {filename: count for filename, (_, count) in stored.items()} == SCHEMA6_DOWNLOADS
    assert len({day for day, _ in stored.values()}) == 1
    services: Services = schema6.client.application.extensions["minirepo"]
    files = {row.filename: row.id for row in models.File.select()}
    counted = services.downloads.totals(files.values())
    assert {name: counted[files[name]] for name in SCHEMA6_DOWNLOADS} == SCHEMA6_DOWNLOADS
    # A new download counts on top of what the folder held.
    with schema6.get("/main/files/alicepkg/alicepkg-1.0-py3-none-any.whl") as got:
        assert got.status_code == 200
    wheel = files["alicepkg-1.0-py3-none-any.whl"]
    assert services.downloads.totals([wheel]) == {wheel: 4}
    services.downloads.flush()
    total = peewee.fn.SUM(models.DownloadCount.count)
    kept = models.DownloadCount.select(total).where(models.DownloadCount.file == wheel)
    assert kept.scalar() == 4


def test_schema6_rendered_readmes_survive(schema6: Served) -> None:
    query = (
        models.ReadmeHtml.select(models.ReadmeHtml, models.Project.normalized, models.Release)
        .join(models.Release)
        .join(models.Project)
    )
    made = {(row.release.project.normalized, row.release.version): row for row in query}
    assert sorted(made) == [("alicepkg", "1.0"), ("teamlib", "1.1")]
    assert "<strong>HTTP</strong>" in made["alicepkg", "1.0"].html
    page = schema6.get("/main/project/alicepkg/")
    assert page.status_code == 200
    assert b"<strong>HTTP</strong>" in page.data
    page = schema6.get("/team/project/teamlib/", schema6.password("alice"))
    assert page.status_code == 200
    assert b"Hello from a test package." in page.data
    # Served from the rows as stored: the same renderer, so nothing was rendered again.
    again = {row.id: (row.html, row.renderer) for row in models.ReadmeHtml.select()}
    assert again == {row.id: (row.html, row.renderer) for row in made.values()}


# What must still hold in the folders 0.7.0.dev0 (schema 7) made (how: the fixtures'
# README): the schema-6 script's rows, plus what schema 7 writes by itself: the instance
# row with the fingerprint of the folder's secret (stored by the first start) and, on
# PostgreSQL too, the search index its triggers keep.


@pytest.fixture(params=list(SCHEMA7.values()), ids=list(SCHEMA7))
def schema7(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """Each folder the schema-7 script made."""
    yield from serve(request.param, tmp_path, request)


def test_schema7_the_secrets_fingerprint_survives(schema7: Served) -> None:
    """The start compares the folder's secret with the stored fingerprint: the same
    secret, so the row stays as made (a changed one would be stored anew or refused)."""
    folder = schema7.client.application.extensions["minirepo"].folder
    mine = instance.fingerprint((folder.settings.data / "secret").read_bytes())
    assert schema7.instance == [(models.SECRET_FINGERPRINT, mine)]
    kept = models.Instance.select(models.Instance.name, models.Instance.value)
    assert rows(kept.tuples()) == schema7.instance


def test_schema7_search_answers_from_the_index_as_made(schema7: Served) -> None:
    """The index was filled by the triggers while the script ran (on PostgreSQL too, where
    schema 6 had none): one row per project with a release, and it answers."""
    folder = schema7.client.application.extensions["minirepo"].folder
    key = "project_id" if folder.settings.database else "rowid"
    indexed = stored_rows(folder.settings, f"SELECT {key} FROM project_search")  # noqa: S608
    released = stored_rows(folder.settings, "SELECT DISTINCT project_id FROM release")
    assert sorted(indexed) == sorted(released)
    assert schema7.found("alice") == {("main", "alicepkg", "1.0")}
    assert schema7.found("invoices", schema7.password("alice")) == {("team", "teamlib", "1.1")}


# The PostgreSQL schema an upgrade leaves, as the catalog describes it: columns, their
# types, nullability and defaults; constraints; indexes.
PG_SCHEMA_QUERIES = (
    """SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
              column_default
       FROM information_schema.columns WHERE table_schema = 'public'""",
    """SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid)
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    # The search index's functions and triggers (schema 7)
    """SELECT proname, pg_get_functiondef(oid) FROM pg_proc
       WHERE pronamespace = 'public'::regnamespace""",
    "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal",
)


@pytest.mark.parametrize(
    "name",
    [
        SCHEMA2["postgresql"],
        SCHEMA3["postgresql"],
        SCHEMA4["postgresql"],
        SCHEMA5["postgresql"],
        SCHEMA6["postgresql"],
        SCHEMA7["postgresql"],
    ],
)
def test_an_upgraded_postgres_database_is_a_fresh_one(
    name: str, postgres_server: PostgresServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    upgraded, _ = open_fixture(name, tmp_path / "old", request)
    with fresh_database(postgres_server) as url:
        fresh = Settings(data=tmp_path / "new", database=url, password_hash=FAST_HASH)
        for settings in (upgraded, fresh):
            create_app(settings).extensions["minirepo"].folder.database.close()
        for query in PG_SCHEMA_QUERIES:
            got, want = (stored_rows(each, query) for each in (upgraded, fresh))
            assert sorted(got, key=repr) == sorted(want, key=repr), query


def test_a_postgres_upgrade_copies_the_tables_aside_first(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SQLite's copy in backups/ has a PostgreSQL counterpart: a schema of the same database
    holding every table as it was before the upgrade."""
    settings, _ = open_fixture(SCHEMA6["postgresql"], tmp_path, request)
    before = stored_rows(settings, "SELECT count(*) FROM file")
    create_app(settings).extensions["minirepo"].folder.database.close()
    (schema,) = stored_rows(
        settings,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'minirepo\\_schema6\\_%'",
    )
    copied = f'"{schema[0]}"'
    assert stored_rows(settings, f"SELECT count(*) FROM {copied}.file") == before  # noqa: S608
    assert stored_rows(settings, f"SELECT version FROM {copied}.schemaversion") == [(6,)]  # noqa: S608


def test_schema7_refuses_accounts_whose_names_differ_only_in_case(tmp_path: Path) -> None:
    """Two servers racing on one database could make "alice" and "Alice" before schema 7
    decided it with a unique index: the upgrade names them instead of failing on it."""
    data, _ = copy_fixture(SCHEMA6["sqlite"], tmp_path)
    with contextlib.closing(sqlite3.connect(data / "minirepo.sqlite3")) as db, db:
        db.execute(
            "INSERT INTO user (name, password_hash, is_admin, disabled, created) "
            "SELECT 'ALICE', password_hash, 0, 0, created FROM user WHERE name = 'alice'"
        )
    settings = Settings(data=data, password_hash=FAST_HASH)
    with pytest.raises(UserError, match=r"differ only in case \(alice\).*rename all but one"):
        create_app(settings)
    assert stored_schema(settings) == 6  # nothing changed
