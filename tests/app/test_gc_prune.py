"""`minirepo gc` and `minirepo prune` (issue 16): deleted files' space comes back after a
grace, counted by key across repositories; retention deletes as a person would.

Each test runs on SQLite and PostgreSQL, through the CLI as an operator runs it.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import models
from minirepo.services import accounts, gc, projects, repos, retention
from minirepo.services.container import Services
from minirepo.services.housekeeping import Housekeeping
from minirepo.services.retention_rule import Rule
from minirepo.storage import blob_key
from tests.conftest import basic
from tests.helpers.backends import BACKENDS, WITH_S3, backend_settings, run_cli, served
from tests.helpers.distfactory import Dist, make_sdist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH

PASSWORD = "a-password-1"
ALICE = basic("alice", PASSWORD)
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(params=[*BACKENDS, WITH_S3])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """`main` and `team`, both open to alice's uploads."""
    with served(backend_settings(request, tmp_path)) as flask_app:
        accounts.add_user("alice", PASSWORD, method=FAST_HASH)
        repos.create("team")
        repos.grant("alice", "team", "uploader")
        yield flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def upload(client: FlaskClient, path: Path, repo: str = "main") -> int:
    answer = client.post(
        f"/{repo}/", data=upload_form(path), headers=ALICE, content_type="multipart/form-data"
    )
    return answer.status_code


def wheel(tmp_path: Path, name: str, version: str) -> Path:
    folder = tmp_path / "dists"
    folder.mkdir(exist_ok=True)
    return make_wheel(folder, Dist(name, version))


def stored(app: Flask, key: str) -> bool:
    """Whether the app's store (files/ or the bucket) holds `key`."""
    return app.extensions["minirepo"].folder.store.info(key) is not None


def key_of(path: Path) -> str:
    return blob_key(hashlib.sha256(path.read_bytes()).hexdigest(), path.name)


def age_tombstones(days: float, filename: str | None = None) -> None:
    when = models.utcnow() - datetime.timedelta(days=days)
    query = models.Tombstone.update(deleted_at=when)
    if filename is not None:
        query = query.where(models.Tombstone.filename == filename)
    query.execute()


def versions(client: FlaskClient, project: str, repo: str = "main") -> list[str]:
    answer = client.get(f"/{repo}/simple/{project}/", headers={**JSON, **ALICE})
    assert answer.status_code == 200, answer.status
    return list(answer.json["versions"])  # type: ignore[index]


# --- gc -----------------------------------------------------------------------------------


def test_gc_frees_deleted_files_after_the_grace(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    old, young = wheel(tmp_path, "old", "1.0"), wheel(tmp_path, "young", "1.0")
    for path in (old, young):
        assert upload(client, path) == 200
    projects.delete("main", "old")
    projects.delete("main", "young")
    age_tombstones(8, old.name)

    result = run_cli(app, "gc")
    assert result.exit_code == 0, result.output
    assert f"freed {key_of(old)} (" in result.output
    assert "Freed 1 file(s)" in result.output
    assert not stored(app, key_of(old))
    assert stored(app, key_of(young))
    # the record of the delete stays, without its blob; the name stays burned
    tombstone = models.Tombstone.get(models.Tombstone.filename == old.name)
    assert (tombstone.storage_key, tombstone.reason) == ("", "deleted")
    assert upload(client, old) == 400

    result = run_cli(app, "gc", "--grace", "0")
    assert "Freed 1 file(s)" in result.output
    assert not stored(app, key_of(young))
    assert run_cli(app, "gc", "--grace", "0").output.strip() == "Freed 0 file(s), 0 B."
    assert run_cli(app, "fsck").exit_code == 0


def test_gc_keeps_a_blob_another_repository_still_serves(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    shared = wheel(tmp_path, "shared", "1.0")
    assert upload(client, shared) == 200
    assert upload(client, shared, "team") == 200
    projects.delete("main", "shared")
    age_tombstones(30)
    assert "Freed 0 file(s)" in run_cli(app, "gc").output
    with client.get(f"/team/files/shared/{shared.name}", headers=ALICE) as answer:
        assert answer.status_code == 200


def test_gc_keeps_a_blob_a_younger_tombstone_still_names(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    shared = wheel(tmp_path, "shared", "1.0")
    assert upload(client, shared) == 200
    assert upload(client, shared, "team") == 200
    projects.delete("main", "shared")
    age_tombstones(30)
    projects.delete("team", "shared")  # today: its grace has just begun
    assert "Freed 0 file(s)" in run_cli(app, "gc").output
    assert stored(app, key_of(shared))


def test_gc_frees_a_deleted_repositorys_files(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    path = wheel(tmp_path, "teamtool", "1.0")
    assert upload(client, path, "team") == 200
    repos.delete("team", force=True)
    age_tombstones(8)
    result = run_cli(app, "gc", "--dry-run")
    assert f"would free {key_of(path)}" in result.output
    assert stored(app, key_of(path))
    assert "Freed 1 file(s)" in run_cli(app, "gc").output
    assert not stored(app, key_of(path))


def test_gc_leaves_a_blob_uploaded_again_while_it_runs(
    app: Flask, client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes uploaded between gc's choice and its delete keep their blob."""
    path = wheel(tmp_path, "again", "1.0")
    assert upload(client, path) == 200
    projects.delete("main", "again")
    age_tombstones(8)
    real = gc._kept

    def upload_meanwhile(key: str, cutoff: datetime.datetime) -> bool:
        assert upload(client, path, "team") == 200
        return real(key, cutoff)

    monkeypatch.setattr(gc, "_kept", upload_meanwhile)
    services: Services = app.extensions["minirepo"]
    assert gc.collect(services.folder.store, services.settings.data / "tmp", 7 * 86400) == []
    with client.get(f"/team/files/again/{path.name}", headers=ALICE) as answer:
        assert (answer.status_code, answer.get_data()) == (200, path.read_bytes())


def test_gc_refuses_a_bad_grace(app: Flask) -> None:
    result = run_cli(app, "gc", "--grace", "-1d")
    assert result.exit_code == 1
    assert "--grace: '-1d' is not a duration" in result.output


# --- prune --------------------------------------------------------------------------------


def upload_versions(client: FlaskClient, tmp_path: Path, *numbers: str) -> None:
    for number in numbers:
        assert upload(client, wheel(tmp_path, "ci-tool", number)) == 200


def test_prune_keeps_the_newest_releases_and_buries_the_rest(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    upload_versions(client, tmp_path, "1.0", "1.1", "2.0.dev1", "2.0")
    sdist = make_sdist(tmp_path / "dists", Dist("ci-tool", "1.0"))
    assert upload(client, sdist) == 200
    generation = repos.get("main").generation
    result = run_cli(app, "prune", "main", "--keep", "2")
    assert result.exit_code == 0, result.output
    assert f"pruned ci-tool 1.0: ci_tool-1.0-py3-none-any.whl, {sdist.name}\n" in result.output
    assert "Pruned 3 file(s) of 2 release(s) in main" in result.output
    assert versions(client, "ci-tool") == ["2.0.dev1", "2.0"]
    assert repos.get("main").generation == generation + 1
    reasons = {row.filename: row.reason for row in models.Tombstone.select()}
    assert reasons == dict.fromkeys(
        [sdist.name, "ci_tool-1.0-py3-none-any.whl", "ci_tool-1.1-py3-none-any.whl"], "pruned"
    )
    audited = models.Event.select().where(models.Event.action == "prune")
    assert {(row.actor, row.filename, row.detail) for row in audited} == {
        ("cli", sdist.name, "1.0: keep 2"),
        ("cli", "ci_tool-1.0-py3-none-any.whl", "1.0: keep 2"),
        ("cli", "ci_tool-1.1-py3-none-any.whl", "1.1: keep 2"),
    }
    assert upload(client, wheel(tmp_path, "ci-tool", "1.1")) == 400  # the name stays burned
    assert models.Release.select().count() == 2


def test_prune_dev_only_leaves_final_releases_alone(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    upload_versions(client, tmp_path, "1.0", "2.0.dev1", "2.0.dev2", "2.0.dev3")
    result = run_cli(app, "prune", "main", "--keep", "1", "--dev-only")
    assert result.exit_code == 0, result.output
    assert versions(client, "ci-tool") == ["1.0", "2.0.dev3"]


def test_prune_older_than_spares_young_releases_and_the_kept_ones(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    upload_versions(client, tmp_path, "1.0", "1.1", "1.2")
    long_ago = models.utcnow() - datetime.timedelta(days=40)
    models.File.update(upload_time=long_ago).where(
        models.File.filename != "ci_tool-1.2-py3-none-any.whl"
    ).execute()
    result = run_cli(app, "prune", "main", "--older-than", "30d", "--keep", "1")
    assert result.exit_code == 0, result.output
    assert versions(client, "ci-tool") == ["1.2"]
    result = run_cli(app, "prune", "main", "--older-than", "30")  # a number is days
    assert "Pruned 0 file(s) of 0 release(s)" in result.output
    assert versions(client, "ci-tool") == ["1.2"]


def test_prune_dry_run_changes_nothing(app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    upload_versions(client, tmp_path, "1.0", "2.0")
    result = run_cli(app, "prune", "main", "--keep", "1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would prune ci-tool 1.0: ci_tool-1.0-py3-none-any.whl" in result.output
    assert "Would prune 1 file(s) of 1 release(s) in main." in result.output
    assert versions(client, "ci-tool") == ["1.0", "2.0"]
    assert models.Tombstone.select().count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["main"], "Say what to prune: --keep N, --older-than AGE, or both"),
        (["nowhere", "--keep", "1"], "No repository named 'nowhere'"),
        (["main", "--older-than", "soon"], "--older-than: 'soon' is not a duration"),
    ],
)
def test_prune_refusals(app: Flask, args: list[str], message: str) -> None:
    result = run_cli(app, "prune", *args)
    assert result.exit_code == 1
    assert message in result.output


def test_prune_refuses_groups(app: Flask) -> None:
    repos.create("all", kind="group", members=["main", "team"])
    result = run_cli(app, "prune", "all", "--keep", "1")
    assert result.exit_code == 1
    assert "all is a group: only hosted repositories are pruned" in result.output


# --- a repository's own retention rule ----------------------------------------------------


def retention_events() -> set[tuple[str, str]]:
    audited = models.Event.select().where(models.Event.action == "prune")
    return {(row.actor, row.filename) for row in audited}


def test_a_repositorys_rule_is_applied_once_a_day(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    upload_versions(client, tmp_path, "1.0", "1.1", "2.0")
    result = run_cli(app, "repo", "set", "main", "--keep", "1")
    assert result.exit_code == 0, result.output
    assert "Retention of main: keep 1." in result.output
    assert "today it would prune 2 file(s) of 2 release(s)" in result.output
    assert versions(client, "ci-tool") == ["1.0", "1.1", "2.0"]  # the server prunes, later
    listed = run_cli(app, "repo", "list").output.splitlines()
    assert listed[0].endswith("\tmembers\tretention\tblock")
    assert next(line for line in listed if line.startswith("main\t")).endswith("\tkeep 1\twarn")

    assert [release.version for release in retention.apply_due()["main"]] == ["1.1", "1.0"]
    assert versions(client, "ci-tool") == ["2.0"]
    assert retention_events() == {
        ("retention", "ci_tool-1.0-py3-none-any.whl"),
        ("retention", "ci_tool-1.1-py3-none-any.whl"),
    }
    assert upload(client, wheel(tmp_path, "ci-tool", "3.0")) == 200
    assert retention.apply_due() == {}  # not again the same day
    assert versions(client, "ci-tool") == ["2.0", "3.0"]
    a_day_ago = models.utcnow() - retention.PERIOD - datetime.timedelta(minutes=1)
    models.Repository.update(retention_applied_at=a_day_ago).execute()
    assert [release.version for release in retention.apply_due()["main"]] == ["2.0"]
    assert versions(client, "ci-tool") == ["3.0"]


def test_repo_set_changes_fields_of_the_rule_and_removes_it(app: Flask) -> None:
    def rule() -> Rule:
        return Rule.from_json(repos.get("main").retention)

    assert run_cli(app, "repo", "set", "main", "--keep", "2").exit_code == 0
    models.Repository.update(retention_applied_at=models.utcnow()).execute()
    assert run_cli(app, "repo", "set", "main", "--older-than", "30", "--dev-only").exit_code == 0
    assert rule() == Rule(keep=2, older_than=30 * 86400.0, dev_only=True)
    assert repos.get("main").retention_applied_at is None  # a changed rule runs at once
    assert run_cli(app, "repo", "set", "main", "--all-releases").exit_code == 0
    assert rule() == Rule(keep=2, older_than=30 * 86400.0)
    result = run_cli(app, "repo", "set", "main", "--no-retention")
    assert "main has no retention rule: nothing is pruned by itself." in result.output
    assert repos.get("main").retention == ""
    assert retention.apply_due() == {}
    details = [
        row.detail
        for row in models.Event.select().where(models.Event.action == "repo set")
        if "retention" in row.detail
    ]
    assert details[0].endswith(
        "-> read=anonymous overwrite=never default-role=uploader retention=keep 2 "
        "block=warn attestations=auto"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["main", "--dev-only"], "Say what to prune: --keep N, --older-than AGE, or both"),
        (["main", "--no-retention", "--keep", "1"], "--no-retention removes the rule"),
        (["main", "--older-than", "soon"], "--older-than: 'soon' is not a duration"),
        (["all", "--keep", "1"], "all is a group: retention rules are for hosted repositories"),
    ],
)
def test_repo_set_refuses_a_rule_it_cannot_keep(app: Flask, args: list[str], message: str) -> None:
    repos.create("all", kind="group", members=["main", "team"])
    result = run_cli(app, "repo", "set", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert {row.retention for row in models.Repository.select()} == {""}


def test_housekeeping_applies_rules_and_survives_a_failure(
    app: Flask,
    client: FlaskClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upload_versions(client, tmp_path, "1.0", "2.0")
    repos.update("main", retention={"keep": 1})
    services: Services = app.extensions["minirepo"]
    housekeeping = Housekeeping(services.folder.database)
    housekeeping.run_once()
    assert versions(client, "ci-tool") == ["2.0"]

    def broken() -> None:
        raise RuntimeError("the disk is gone")

    monkeypatch.setattr(retention, "apply_due", broken)
    housekeeping.run_once()
    assert "housekeeping failed; trying again in 3600 s" in caplog.text
