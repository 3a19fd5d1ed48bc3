"""Advisories and repository policies through the app as pip and uv call it (issue 19),
on SQLite and PostgreSQL: what is listed as yanked, what is refused with 403, what an
exception changes, and what `audit-packages` says."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import models
from minirepo.services import accounts, policy
from tests.conftest import basic
from tests.helpers.backends import BACKENDS, backend_settings, run_cli, served
from tests.helpers.distfactory import Dist, make_wheel, upload_form
from tests.helpers.osvdocs import record, write_folder
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.upstreamfake import FakeUpstream

JSON_V1 = {"Accept": "application/vnd.pypi.simple.v1+json"}
ROOT = basic("root", "root-password-1")
# demo 1.0: a critical advisory (fixed in 1.1); 1.1: a moderate one (fixed in 1.2); 1.2 clean.
CRITICAL = record("GHSA-crit-0000-0001", "demo", fixed="1.1", severity="CRITICAL")
MODERATE = record("GHSA-mode-0000-0002", "demo", introduced="1.1", fixed="1.2", severity="MODERATE")
VERSIONS = ("1.0", "1.1", "1.2")


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """`main` holding demo 1.0, 1.1 and 1.2, with the two advisories in force."""
    with served(backend_settings(request, tmp_path)) as flask_app:
        accounts.add_user("root", "root-password-1", method=FAST_HASH, admin=True)
        client = flask_app.test_client()
        (tmp_path / "dist").mkdir()
        for version in VERSIONS:
            form = upload_form(make_wheel(tmp_path / "dist", Dist("demo", version)))
            posted = client.post(
                "/main/", data=form, headers=ROOT, content_type="multipart/form-data"
            )
            assert posted.status_code == 200, posted.data
        folder = write_folder(tmp_path / "osv", [CRITICAL, MODERATE])
        assert run_cli(flask_app, "advisories", "update", "--from", str(folder)).exit_code == 0
        yield flask_app


def wheel_name(version: str) -> str:
    return f"demo-{version}-py3-none-any.whl"


def listed(client: FlaskClient) -> dict[str, object]:
    page = client.get("/main/simple/demo/", headers=JSON_V1)
    assert page.status_code == 200
    return {entry["filename"]: entry["yanked"] for entry in page.json["files"]}  # type: ignore[index]


def file_status(client: FlaskClient, version: str, suffix: str = "") -> int:
    with client.get(f"/main/files/demo/{wheel_name(version)}{suffix}") as answer:
        return answer.status_code


# Policy x (blocked, warned, excepted, clean): 1.0 is critical, 1.1 moderate and excepted
# when the row says so, 1.2 clean. The statuses of the three files.
MATRIX = [
    ("none", False, (200, 200, 200)),
    ("warn", False, (200, 200, 200)),
    ("malicious", False, (200, 200, 200)),
    ("critical", False, (403, 200, 200)),
    ("high", False, (403, 200, 200)),
    ("medium", False, (403, 403, 200)),
    ("all", False, (403, 403, 200)),
    ("medium", True, (403, 200, 200)),
    ("all", True, (403, 200, 200)),
]


def test_each_level_blocks_what_it_names(app: Flask) -> None:
    """An unenforced policy fails here: the page, the file and its .metadata agree. One
    app for every row (a row is a `repo set` and maybe an exception): each row's own
    app would cost the suite a minute."""
    client = app.test_client()
    for level, excepted, statuses in MATRIX:
        assert run_cli(app, "repo", "set", "main", "--block", level).exit_code == 0
        change = (
            ("allow", "--reason", "not reachable in our use") if excepted else ("revoke-allow",)
        )
        run_cli(app, "advisories", change[0], "main", "demo", "--id", MODERATE["id"], *change[1:])
        yanked = listed(client)
        for version, status in zip(VERSIONS, statuses, strict=True):
            assert file_status(client, version) == status, (level, excepted, version)
            assert file_status(client, version, ".metadata") == status, (level, version)
            assert bool(yanked[wheel_name(version)]) == (status == 403), (level, version)


def test_a_blocked_file_is_yanked_with_the_reason_and_refused_with_it(app: Flask) -> None:
    assert run_cli(app, "repo", "set", "main", "--block", "critical").exit_code == 0
    client = app.test_client()
    reason = "blocked by minirepo policy: GHSA-crit-0000-0001 (critical); fixed in 1.1"
    assert listed(client)[wheel_name("1.0")] == reason
    html = client.get("/main/simple/demo/").data.decode()
    assert f'data-yanked="{reason}"' in html
    for suffix in ("", ".metadata", ".provenance"):
        with client.get(f"/main/files/demo/{wheel_name('1.0')}{suffix}") as answer:
            assert answer.status == f"403 {reason}"
            assert answer.data.decode() == reason + "\n"


def test_the_etag_changes_with_the_advisories(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    before = client.get("/main/simple/demo/", headers=JSON_V1).headers["ETag"]
    newer = record("GHSA-late-0000-0003", "demo", fixed="1.2", severity="LOW")
    folder = write_folder(tmp_path / "more", [newer])
    result = run_cli(app, "advisories", "update", "--from", str(folder / f"{newer['id']}.json"))
    assert result.exit_code == 0, result.output
    after = client.get("/main/simple/demo/", headers=JSON_V1).headers["ETag"]
    assert after != before


def test_an_expired_exception_blocks_again_without_a_write(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(app, "repo", "set", "main", "--block", "critical").exit_code == 0
    allowed = run_cli(
        app, "advisories", "allow", "main", "demo", "--id", CRITICAL["id"],
        "--reason", "pinned by a vendor", "--expires", "1d",
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    client = app.test_client()
    assert file_status(client, "1.0") == 200
    assert listed(client)[wheel_name("1.0")] is False
    later = models.utcnow() + datetime.timedelta(days=2)
    monkeypatch.setattr(policy, "now", lambda: later)
    assert file_status(client, "1.0") == 403
    assert listed(client)[wheel_name("1.0")] != False  # noqa: E712 - yanked has a reason


def test_audit_packages_fails_on_high_until_excepted(app: Flask) -> None:
    audit = run_cli(app, "audit-packages", "--format", "json", "--fail-on", "high")
    assert audit.exit_code == 1
    rows = json.loads(audit.stdout)
    assert [(row["version"], row["id"], row["severity"]) for row in rows] == [
        ("1.0", CRITICAL["id"], "critical"),
        ("1.1", MODERATE["id"], "medium"),
    ]
    allowed = run_cli(
        app, "advisories", "allow", "main", "demo", "--id", CRITICAL["id"], "--reason", "ok",
    )  # fmt: skip
    assert allowed.exit_code == 0
    audit = run_cli(app, "audit-packages", "--format", "json", "--fail-on", "high")
    assert audit.exit_code == 0, audit.output
    actions = {row["id"]: (row["action"], row["exception"]) for row in json.loads(audit.stdout)}
    assert actions[CRITICAL["id"]] == ("excepted", "ok")
    revoked = run_cli(app, "advisories", "revoke-allow", "main", "demo", "--id", CRITICAL["id"])
    assert revoked.exit_code == 0
    assert run_cli(app, "audit-packages", "--fail-on", "high").exit_code == 1
    events = [row.action for row in models.Event.select().order_by(models.Event.id)]
    assert "advisory allow" in events
    assert "advisory revoke-allow" in events


def test_the_osv_query_api_answers_as_osv_does(app: Flask) -> None:
    client = app.test_client()
    asked = {"package": {"name": "Demo", "ecosystem": "PyPI"}, "version": "1.0"}
    answer = client.post("/-/osv/v1/query", json=asked)
    assert answer.status_code == 200, answer.data
    vulns = answer.json["vulns"]  # type: ignore[index]
    assert [vuln["id"] for vuln in vulns] == [CRITICAL["id"]]
    assert vulns[0]["affected"][0]["package"] == {"ecosystem": "PyPI", "name": "demo"}
    batch = client.post(
        "/-/osv/v1/querybatch",
        json={"queries": [asked, {**asked, "version": "1.1"}, {**asked, "version": "1.2"}]},
    )
    ids = [[vuln["id"] for vuln in result["vulns"]] for result in batch.json["results"]]  # type: ignore[index]
    assert ids == [[CRITICAL["id"]], [MODERATE["id"]], []]
    other = client.post(
        "/-/osv/v1/query", json={**asked, "package": {"name": "demo", "ecosystem": "npm"}}
    )
    assert other.json == {"vulns": []}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (json.dumps({"commit": "abc"}).encode(), 400),
        (json.dumps({"package": {}}).encode(), 400),
        (b"{" + b" " * (1024 * 1024) + b"}", 413),
    ],
)
def test_the_osv_query_api_refuses_what_it_cannot_answer(
    app: Flask, body: bytes, status: int
) -> None:
    answer = app.test_client().post("/-/osv/v1/query", data=body, content_type="application/json")
    assert answer.status_code == status
    assert answer.data.strip()


def test_the_osv_query_api_needs_the_default_repositorys_read_right(app: Flask) -> None:
    assert run_cli(app, "repo", "set", "main", "--read", "authenticated").exit_code == 0
    asked = {"package": {"name": "demo"}, "version": "1.0"}
    client = app.test_client()
    assert client.post("/-/osv/v1/query", json=asked).status_code == 401
    assert client.post("/-/osv/v1/query", json=asked, headers=ROOT).status_code == 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_proxy_never_fetches_a_malicious_file(
    backend: str, tmp_path: Path, upstream: FakeUpstream, request: pytest.FixtureRequest
) -> None:
    """The proxy's default level (malicious): listed as yanked, 403 for the file and its
    metadata, and not one request for either goes upstream; the group blocks it too."""
    request.param = backend  # backend_settings reads the backend from request.param
    settings = backend_settings(request, tmp_path, upstream=upstream.url)
    with served(settings) as flask_app:
        folder = tmp_path / "up"
        folder.mkdir()
        for version in ("0.1", "0.2"):
            path = make_wheel(folder, Dist("evilpkg", version))
            upstream.add_file("evilpkg", path.name, path.read_bytes(), metadata=b"Name: evilpkg\n")
        malicious = record("MAL-2026-1", "evilpkg", last_affected="0.1")
        osv_dir = write_folder(tmp_path / "osv", [malicious])
        assert run_cli(flask_app, "advisories", "update", "--from", str(osv_dir)).exit_code == 0
        client = flask_app.test_client()
        for repo in ("pypi-proxy", "all"):
            page = client.get(f"/{repo}/simple/evilpkg/", headers=JSON_V1)
            yanked = {entry["filename"]: entry["yanked"] for entry in page.json["files"]}  # type: ignore[index]
            assert yanked == {
                "evilpkg-0.1-py3-none-any.whl": "blocked by minirepo policy: MAL-2026-1 "
                "(malicious); no fixed version yet",
                "evilpkg-0.2-py3-none-any.whl": False,
            }
            for suffix in ("", ".metadata"):
                url = f"/{repo}/files/evilpkg/evilpkg-0.1-py3-none-any.whl{suffix}"
                with client.get(url) as answer:
                    assert answer.status_code == 403, url
        assert upstream.count("/files/") == 0
        with client.get("/pypi-proxy/files/evilpkg/evilpkg-0.2-py3-none-any.whl") as answer:
            assert answer.status_code == 200
        assert upstream.count("/files/") == 1


def test_the_json_api_lists_the_releases_vulnerabilities(app: Flask) -> None:
    client = app.test_client()
    answer = client.get("/main/pypi/demo/1.0/json")
    assert answer.status_code == 200
    vulns = answer.json["vulnerabilities"]  # type: ignore[index]
    assert [(v["id"], v["fixed_in"], v["source"]) for v in vulns] == [
        (CRITICAL["id"], ["1.1"], "osv")
    ]
    assert client.get("/main/pypi/demo/1.2/json").json["vulnerabilities"] == []  # type: ignore[index]


def test_the_project_page_lists_the_findings_and_what_the_policy_does(app: Flask) -> None:
    assert run_cli(app, "repo", "set", "main", "--block", "critical").exit_code == 0
    page = app.test_client().get("/main/project/demo/1.0/").data.decode()
    assert "Known vulnerabilities of 1.0" in page
    assert f"<strong>{CRITICAL['id']}</strong> (critical, blocked)" in page
    clean = app.test_client().get("/main/project/demo/1.2/").data.decode()
    assert "Known vulnerabilities" not in clean


def test_warn_serves_and_counts_the_downloads_of_what_advisories_name(app: Flask) -> None:
    """`main` is hosted, so `warn` by default: every file is served, and the downloads of
    those an advisory names are counted by action and severity (blocked ones too)."""
    client = app.test_client()
    assert file_status(client, "1.0") == 200
    assert file_status(client, "1.1") == 200
    assert file_status(client, "1.2") == 200
    assert run_cli(app, "repo", "set", "main", "--block", "critical").exit_code == 0
    assert file_status(client, "1.0") == 403
    metrics = client.get("/-/metrics", headers=ROOT).data.decode()
    counted = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("minirepo_advised_downloads_total{")
    }
    assert counted == {
        'minirepo_advised_downloads_total{action="warned",severity="critical"}': 1.0,
        'minirepo_advised_downloads_total{action="warned",severity="medium"}': 1.0,
        'minirepo_advised_downloads_total{action="blocked",severity="critical"}': 1.0,
    }
