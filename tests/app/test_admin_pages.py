"""The admin pages: admins only, every change through the CLI's services with its audit
line, refusals shown on the page with their reason, hostile text escaped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo.services import accounts, audit, repos
from tests.conftest import ADMIN_PASSWORD, basic, post_upload
from tests.helpers.backends import BACKENDS, backend_settings, served
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.webui import csrf_of, login

PASSWORD = "a-password-1"
PAGES = (
    "/-/admin/",
    "/-/admin/users",
    "/-/admin/repos",
    "/-/admin/repos/main",
    "/-/admin/repos/team/delete",
    "/-/admin/grants",
    "/-/admin/audit",
)
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """On SQLite and PostgreSQL: the audit filters are SQL."""
    with served(backend_settings(request, tmp_path)) as flask_app:
        yield flask_app


@pytest.fixture
def people(app: Flask, admin: str) -> None:
    """root (admin, see conftest), alice (no admin); the empty repository `team`."""
    accounts.add_user("alice", PASSWORD, method=FAST_HASH)
    repos.create("team", description=HOSTILE)


@pytest.fixture
def csrf(client: FlaskClient, people: None) -> str:
    return login(client, "root", ADMIN_PASSWORD)


def post(client: FlaskClient, url: str, csrf: str, **fields: str) -> tuple[int, str, str]:
    response = client.post(url, data={"csrf_token": csrf, **fields})
    return response.status_code, response.headers.get("Location", ""), response.text


@pytest.mark.parametrize("url", PAGES)
def test_each_page_is_for_admins_only(client: FlaskClient, people: None, url: str) -> None:
    response = client.get(url)
    assert (response.status_code, response.headers["Location"]) == (303, f"/-/login?next={url}")
    as_alice = client.application.test_client()
    login(as_alice, "alice", PASSWORD)
    refused = as_alice.get(url)
    assert refused.status_code == 403
    assert "alice is not an admin" in refused.text
    login(client, "root", ADMIN_PASSWORD)
    page = client.get(url)
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    assert "<script>alert(1)" not in page.text


def test_a_basic_password_reads_but_may_not_change(client: FlaskClient, people: None) -> None:
    assert client.get("/-/admin/users", headers=basic("root", ADMIN_PASSWORD)).status_code == 200
    response = client.post(
        "/-/admin/users", data={"name": "carol"}, headers=basic("root", ADMIN_PASSWORD)
    )
    assert response.status_code == 403
    assert [user.name for user in accounts.list_users()] == ["alice", "root"]


def test_posts_need_the_csrf_token(client: FlaskClient, csrf: str) -> None:
    assert post(client, "/-/admin/users", "", name="carol")[0] == 403
    assert post(client, "/-/admin/repos", "nope", name="other")[0] == 403
    assert [user.name for user in accounts.list_users()] == ["alice", "root"]


def test_a_non_admin_may_not_post(client: FlaskClient, people: None) -> None:
    csrf = login(client, "alice", PASSWORD)
    status, _, text = post(client, "/-/admin/repos", csrf, name="mine")
    assert (status, "alice is not an admin" in text) == (403, True)
    assert "mine" not in [item.info.name for item in repos.summaries()]


def test_admin_manages_users(client: FlaskClient, csrf: str) -> None:
    status, location, _ = post(client, "/-/admin/users", csrf, name="carol", password=PASSWORD)
    assert (status, location) == (303, "/-/admin/users")
    page = client.get("/-/admin/users").text
    assert "User carol created." in page
    assert post(client, "/-/admin/users/carol/disable", csrf)[0] == 303
    assert client.get("/-/api/whoami", headers=basic("carol", PASSWORD)).status_code == 401
    assert post(client, "/-/admin/users/carol/enable", csrf)[0] == 303
    assert post(client, "/-/admin/users/carol/unlock", csrf)[0] == 303
    assert post(client, "/-/admin/users/carol/password", csrf, password="another-pw-2")[0] == 303
    assert client.get("/-/api/whoami", headers=basic("carol", "another-pw-2")).status_code == 200
    # Refusals stay on the page with the reason and the form as it was.
    status, _, text = post(client, "/-/admin/users", csrf, name="carol", password=PASSWORD)
    assert (status, "User &#39;carol&#39; already exists" in text) == (400, True)
    status, _, text = post(client, "/-/admin/users", csrf, name="dave", password="short")
    assert (status, "Password too short" in text, 'value="dave"' in text) == (400, True, True)
    status, _, text = post(client, "/-/admin/users/nobody/unlock", csrf)
    assert (status, "No user named &#39;nobody&#39;" in text) == (400, True)
    actions = [(e.actor, e.action, e.detail) for e in audit.entries(actor="root", action="user")]
    assert actions == [
        ("root", "user passwd", "carol"),
        ("root", "user unlock", "carol"),
        ("root", "user enable", "carol"),
        ("root", "user disable", "carol"),
        ("root", "user add", "carol"),
    ]


def test_admin_manages_repositories_and_grants(client: FlaskClient, csrf: str) -> None:
    status, location, _ = post(
        client, "/-/admin/repos", csrf, name="private", read="authenticated", description="Ours"
    )
    assert (status, location) == (303, "/-/admin/repos/private")
    page = client.get(location).text
    assert "Repository private created." in page
    assert '<option value="authenticated" selected>' in page
    status, _, text = post(client, "/-/admin/repos", csrf, name="private")
    assert (status, "Repository &#39;private&#39; already exists" in text) == (400, True)
    status, _, text = post(client, "/-/admin/repos", csrf, name="x", read="everyone")
    assert (status, "--read must be one of" in text) == (400, True)

    alice = basic("alice", PASSWORD)
    assert client.get("/private/simple/", headers=alice).status_code == 404
    assert (
        post(client, "/-/admin/repos/private/grants", csrf, user="alice", role="reader")[0] == 303
    )
    assert client.get("/private/simple/", headers=alice).status_code == 200
    assert "alice" in client.get("/-/admin/grants").text
    status, _, text = post(client, "/-/admin/repos/private/grants", csrf, user="zed", role="owner")
    assert (status, "No user named &#39;zed&#39;" in text) == (400, True)
    assert post(client, "/-/admin/repos/private/grants/alice/revoke", csrf)[0] == 303
    assert client.get("/private/simple/", headers=alice).status_code == 404

    status, _, _ = post(
        client,
        "/-/admin/repos/private",
        csrf,
        read="anonymous",
        overwrite="allow",
        default_role="uploader",
        description="Now public",
    )
    assert status == 303
    info = next(item for item in repos.summaries() if item.info.name == "private")
    assert (info.info.read, info.info.overwrite, info.info.default_role, info.description) == (
        "anonymous",
        "allow",
        "uploader",
        "Now public",
    )
    assert client.get("/private/simple/").status_code == 200
    assert client.get("/-/admin/repos/nosuch").status_code == 404


def test_deleting_a_repository_asks_first_and_refuses_a_full_one(
    client: FlaskClient, csrf: str, admin: str, wheel: Path
) -> None:
    assert post_upload(client, admin, wheel, url="/team/").status_code == 200
    confirm = client.get("/-/admin/repos/team/delete")
    assert 'name="force" value="yes" required' in confirm.text
    status, _, text = post(client, "/-/admin/repos/team/delete", csrf)
    assert (status, "holds 1 file(s)" in text) == (400, True)
    status, location, _ = post(client, "/-/admin/repos/team/delete", csrf, force="yes")
    assert (status, location) == (303, "/-/admin/repos")
    assert "team" not in [item.info.name for item in repos.summaries()]
    assert client.get("/team/simple/", headers=basic("root", ADMIN_PASSWORD)).status_code == 404
    # The default repository stays, whatever the form says.
    assert client.get("/-/admin/repos/main/delete").status_code == 400
    status, _, text = post(client, "/-/admin/repos/main/delete", csrf, force="yes")
    assert (status, "main is the default repository" in text) == (400, True)


def test_the_audit_log_lists_changes_and_filters_narrow_it(client: FlaskClient, csrf: str) -> None:
    post(client, "/-/admin/users", csrf, name="carol", password=PASSWORD)
    post(client, "/-/admin/repos", csrf, name="audited")
    post(client, "/-/admin/repos/audited/grants", csrf, user="carol", role="uploader")
    page = client.get("/-/admin/audit").text
    for text in ("user add", "repo create", "carol=uploader"):
        assert f"<td>{text}</td>" in page
    narrowed = client.get("/-/admin/audit?repository=audited").text
    assert "<td>carol=uploader</td>" in narrowed
    assert "<td>user add</td>" not in narrowed
    by_action = client.get("/-/admin/audit?action=grant&actor=root").text
    assert "<td>carol=uploader</td>" in by_action
    assert "<td>repo create</td>" not in by_action
    assert "No events match." in client.get("/-/admin/audit?actor=nobody").text
    assert "No events match." in client.get("/-/admin/audit?since=2999-01-01").text
    assert "<td>user add</td>" in client.get("/-/admin/audit?since=2000-01-01").text
    bad = client.get("/-/admin/audit?limit=0")
    assert (bad.status_code, "&#39;limit&#39; is 1 to 1000" in bad.text) == (400, True)
    assert client.get("/-/admin/audit?since=yesterday").status_code == 400


def test_the_audit_log_pages_keep_the_filters(client: FlaskClient, csrf: str) -> None:
    for name in ("one", "two", "three"):
        post(client, "/-/admin/repos", csrf, name=name)
    first = client.get("/-/admin/audit?action=repo+create&limit=2").text
    assert 'href="/-/admin/audit?action=repo+create&amp;limit=2&amp;page=2"' in first
    shown = [name for name in ("one", "two", "three") if f"<td>{name}</td>" in first]
    assert shown == ["two", "three"]
    second = client.get("/-/admin/audit?action=repo+create&limit=2&page=2").text
    shown = [name for name in ("one", "two", "three", "team") if f"<td>{name}</td>" in second]
    assert shown == ["one", "team"]
    assert 'rel="prev"' in second


def test_hostile_text_is_escaped_in_the_audit_log(client: FlaskClient, csrf: str) -> None:
    # A failed login records the name it was given: anyone can put text in the log.
    anonymous = client.application.test_client()
    form = anonymous.get("/-/login").text
    anonymous.post("/-/login", data={"user": HOSTILE, "password": "x", "csrf_token": csrf_of(form)})
    page = client.get("/-/admin/audit").text
    assert "login failed" in page
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;" in page
