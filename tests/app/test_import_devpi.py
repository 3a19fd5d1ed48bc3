"""`minirepo import devpi` on each backend, from hand-made exports in devpi's format: what
each index, ACL, base and account becomes, the summary, a rerun, and the refusals made
before anything is written."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from minirepo import credentials, models
from minirepo.services import groups, repos
from tests.helpers.backends import BACKENDS, WITH_S3, backend_settings, run_cli, served
from tests.helpers.devpirig import ARGON2_HASH, add_dist, mirror, stage, write_export
from tests.helpers.distfactory import Dist

UTC = datetime.timezone.utc
FIRST = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = datetime.datetime(2025, 6, 7, 8, 9, 10, tzinfo=UTC)


@pytest.fixture(params=[*BACKENDS, WITH_S3])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with served(backend_settings(request, tmp_path)) as app:
        yield app


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    """alice/dev (alice, bob and an LDAP group upload), alice/priv (a plugin's read
    restriction), alice/stable (bases alice/dev and the root/pypi mirror)."""
    folder = tmp_path / "export"
    dev = [
        add_dist(folder, "alice/dev", Dist("app", "1.0"), "alice", FIRST),
        add_dist(folder, "alice/dev", Dist("app", "1.1"), "bob", LATER),
    ]
    docs = dict(dev[0], type="doczip", relpath="alice/dev/app-1.0.doc.zip")
    secret = [add_dist(folder, "alice/priv", Dist("secret-tool", "0.1"), "alice", FIRST)]
    stable = [add_dist(folder, "alice/stable", Dist("app", "1.0"), "alice", LATER)]
    users = {
        "alice": {"pwhash": ARGON2_HASH},
        "bob": {"pwhash": "ab" * 32, "pwsalt": "c2FsdA=="},
        "carol": {},
        "root": {"pwhash": ARGON2_HASH},
    }
    return write_export(
        folder,
        users,
        {
            "alice/dev": stage([*dev, docs], acl_upload=["alice", "bob", ":ldapgroup"]),
            "alice/priv": stage(secret, acl_upload=["alice"], acl_read=["alice", "carol"]),
            "alice/stable": stage(stable, bases=["alice/dev", "root/pypi"], title="Releases"),
            "root/pypi": mirror(),
        },
    )


def grants_of(repo: str) -> set[tuple[str, str]]:
    return {(user, role) for _, user, role in repos.grants(repo)}


def test_indexes_acls_bases_and_accounts(app: Flask, export_dir: Path) -> None:
    upstream = "https://pypi.org/simple/"
    run_cli(app, "repo", "create", "pypi-proxy", "--kind", "proxy", "--upstream", upstream)
    result = run_cli(app, "import", "devpi", str(export_dir))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "alice/dev -> alice-dev (created): 2 imported, 0 already there, 0 refused; " in out
    assert "skipped 1 docs zip(s)" in out
    assert "roles: alice owner, bob uploader" in out
    assert "alice/dev's acl_upload names :ldapgroup, a devpi group: no grant made" in out
    assert "Not imported: mirror root/pypi (https://pypi.org/simple/); the proxy pypi-proxy" in out
    assert "Group alice-stable-all (created): alice/stable with its bases" in out
    assert "Imported 4 file(s) into 3 repositories; 0 already there; 0 refused; 1 other" in out
    assert "  alice: devpi's argon2 hash" in out
    assert "  bob: devpi's salted SHA-256 hash (devpi-server before 6)" in out
    assert "  carol: no password in devpi" in out
    assert "devpi's root is an ordinary account here" in out

    assert grants_of("alice-dev") == {("alice", "owner"), ("bob", "uploader")}
    assert grants_of("alice-priv") == {("alice", "owner"), ("carol", "reader")}
    priv = models.Repository.get(models.Repository.name == "alice-priv")
    assert (priv.kind, priv.read, priv.default_role) == ("hosted", "authenticated", "none")
    stable = models.Repository.get(models.Repository.name == "alice-stable")
    assert (stable.read, stable.description) == ("anonymous", "Releases")
    group = models.Repository.get(models.Repository.name == "alice-stable-all")
    assert groups.member_names(group.id) == ["alice-stable", "alice-dev", "pypi-proxy"]
    assert grants_of("alice-stable-all") == {("alice", "owner")}
    for name in ("alice", "bob", "carol", "root"):
        user = models.User.get(models.User.name == name)
        assert (user.password_hash, user.is_admin) == (credentials.NO_PASSWORD, False)

    # Each file keeps its devpi time and uploader; bob may upload to alice's project.
    files = {
        row.filename: row
        for row in models.File.select()
        .join(models.Repository)
        .where(models.Repository.name == "alice-dev")
    }
    assert files["app-1.0-py3-none-any.whl"].upload_time == FIRST.replace(tzinfo=None)
    assert files["app-1.1-py3-none-any.whl"].uploader.name == "bob"
    project = models.Project.get(models.Project.normalized == "app")
    assert project.owner.name == "alice"
    assert [m.user.name for m in project.maintainers] == ["bob"]

    again = run_cli(app, "import", "devpi", str(export_dir)).output
    assert "alice/dev -> alice-dev: 0 imported, 2 already there" in again
    assert "Group alice-stable-all (already there)" in again
    assert "Users: 0 created, 4 already here" in again


def test_without_groups_the_command_is_printed(app: Flask, export_dir: Path) -> None:
    result = run_cli(app, "import", "devpi", str(export_dir), "--no-groups")
    assert result.exit_code == 0, result.output
    assert (
        "Bases of alice/stable, as a group: minirepo repo create alice-stable-all --kind "
        "group --members alice-stable,alice-dev --upload-to alice-stable" in result.output
    )
    assert "To cache it here: minirepo repo create NAME --kind proxy" in result.output
    assert not models.Repository.select().where(models.Repository.kind == "group").exists()


def test_name_clashes_stop_the_import_before_it_starts(app: Flask, tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", {"a": {}}, {"a-b/c": stage(), "a/b-c": stage()})
    result = run_cli(app, "import", "devpi", str(export))
    assert result.exit_code == 1
    assert "devpi indexes a-b/c and a/b-c both map to 'a-b-c'; choose another with" in (
        result.output
    )
    assert not models.User.select().where(models.User.name == "a").exists()

    run_cli(app, "repo", "create", "taken", "--kind", "proxy", "--upstream", "https://x.test/")
    result = run_cli(app, "import", "devpi", str(export), "--rename", "a/b-c=taken")
    assert result.exit_code == 1
    assert "devpi index a/b-c maps to 'taken', already a proxy here" in result.output
    result = run_cli(app, "import", "devpi", str(export), "--rename", "a/b-c=simple")
    assert "Repository name 'simple' is reserved" in result.output

    result = run_cli(app, "import", "devpi", str(export), "--rename", "a/b-c=other")
    assert result.exit_code == 0, result.output
    assert "a/b-c -> other (created)" in result.output


def test_special_principals_become_the_default_role(app: Flask, tmp_path: Path) -> None:
    indexes = {
        "team/open": stage(acl_upload=[":ANONYMOUS:"]),
        "team/members": stage(acl_read=[":AUTHENTICATED:"]),
    }
    result = run_cli(app, "import", "devpi", str(write_export(tmp_path / "x", {}, indexes)))
    assert "team/open let anyone upload without logging in; here any account may" in (result.output)
    rows = {row.name: row for row in models.Repository.select()}
    assert (rows["team-open"].read, rows["team-open"].default_role) == ("anonymous", "uploader")
    assert (rows["team-members"].read, rows["team-members"].default_role) == (
        "authenticated",
        "reader",
    )
