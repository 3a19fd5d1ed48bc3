"""The JSON API under /-/api/: the CLI's actions over HTTP, under the same rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo.services import accounts
from tests.conftest import basic, token_auth
from tests.helpers.distfactory import Dist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH

PASSWORD = "a-password-1"


@pytest.fixture
def people(app: Flask) -> dict[str, dict[str, str]]:
    accounts.add_user("root", PASSWORD, method=FAST_HASH, admin=True)
    for name in ("alice", "bob"):
        accounts.add_user(name, PASSWORD, method=FAST_HASH)
    return {name: basic(name, PASSWORD) for name in ("root", "alice", "bob")}


def call(
    client: FlaskClient, method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    response = client.open(url, method=method, headers=headers, json=body)
    assert response.headers["Cache-Control"] == "no-store"
    return response.status_code, response.get_json()


def upload(client: FlaskClient, tmp_path: Path, dist: Dist, headers: dict[str, str]) -> int:
    folder = tmp_path / "dists"
    folder.mkdir(exist_ok=True)
    form = upload_form(make_wheel(folder, dist))
    return client.post(
        "/", data=form, headers=headers, content_type="multipart/form-data"
    ).status_code


def test_anonymous_gets_401_in_json(client: FlaskClient, people: dict) -> None:
    response = client.get("/-/api/whoami")
    assert response.status_code == 401
    assert response.get_json() == {"error": "Authentication required"}
    assert "Basic" in response.headers["WWW-Authenticate"]


def test_admin_manages_repositories_users_and_grants(client: FlaskClient, people: dict) -> None:
    root, alice = people["root"], people["alice"]
    assert call(client, "POST", "/-/api/repos", alice, {"name": "team"})[0] == 403
    status, body = call(
        client, "POST", "/-/api/repos", root, {"name": "team", "read": "authenticated"}
    )
    assert (status, body["read"], body["default_role"]) == (201, "authenticated", "none")
    assert call(client, "POST", "/-/api/repos", root, {"name": "simple"})[0] == 400
    assert client.get("/team/simple/", headers=alice).status_code == 404
    assert call(client, "PUT", "/-/api/repos/team/grants/alice", root, {"role": "reader"})[0] == 200
    assert client.get("/team/simple/", headers=alice).status_code == 200
    assert call(client, "GET", "/-/api/repos/team/grants", root)[1] == {
        "grants": [{"user": "alice", "role": "reader"}]
    }
    # A reader may not grant; an owner of the repository may.
    assert call(client, "PUT", "/-/api/repos/team/grants/bob", alice, {"role": "reader"})[0] == 403
    call(client, "PUT", "/-/api/repos/team/grants/alice", root, {"role": "owner"})
    assert call(client, "PUT", "/-/api/repos/team/grants/bob", alice, {"role": "reader"})[0] == 200
    status, body = call(
        client, "POST", "/-/api/users", root, {"name": "carol", "password": PASSWORD}
    )
    assert status == 201
    assert call(client, "PATCH", "/-/api/users/carol", root, {"disabled": True})[0] == 200
    assert client.get("/-/api/whoami", headers=basic("carol", PASSWORD)).status_code == 401
    assert call(client, "DELETE", "/-/api/repos/team", root)[0] == 200
    assert client.get("/team/simple/", headers=root).status_code == 404


def test_changes_need_a_json_body(client: FlaskClient, people: dict) -> None:
    response = client.post("/-/api/repos", data={"name": "team"}, headers=people["root"])
    assert response.status_code == 400
    assert "application/json" in response.get_json()["error"]


def test_owner_yanks_and_deletes_others_may_not(
    client: FlaskClient, people: dict, tmp_path: Path
) -> None:
    alice, bob = people["alice"], people["bob"]
    assert upload(client, tmp_path, Dist("alicepkg", "1.0"), alice) == 200
    url = "/-/api/repos/main/projects/alicepkg"
    status, body = call(client, "POST", f"{url}/versions/1.0/yank", bob, {"reason": "x"})
    assert status == 403
    assert body["error"].startswith("project alicepkg in main belongs to alice")
    assert call(client, "POST", f"{url}/versions/1.0/yank", alice, {"reason": "broken"})[0] == 200
    page = client.get("/simple/alicepkg/").data
    assert b'data-yanked="broken"' in page
    assert call(client, "PUT", f"{url}/maintainers/bob", alice)[0] == 200
    assert upload(client, tmp_path, Dist("alicepkg", "2.0"), bob) == 200
    # A maintainer uploads; yanking and deleting stay with the owner.
    assert call(client, "DELETE", f"{url}/versions/2.0", bob)[0] == 403
    status, body = call(client, "DELETE", f"{url}/versions/2.0", alice)
    assert (status, body) == (200, {"deleted": ["alicepkg-2.0-py3-none-any.whl"]})
    assert b"alicepkg-2.0" not in client.get("/simple/alicepkg/").data
    assert call(client, "GET", url, bob)[1]["owner"] == "alice"


def test_tokens_over_http_are_never_wider_than_the_caller(
    client: FlaskClient, people: dict
) -> None:
    alice = people["alice"]
    status, body = call(
        client, "POST", "/-/api/tokens", alice, {"permission": "admin", "projects": ["one"]}
    )
    assert status == 201
    scoped_admin = token_auth(body["token"])
    # With that token: a token for project one only, never project two, never for bob.
    status, body = call(client, "POST", "/-/api/tokens", scoped_admin, {"permission": "read"})
    assert status == 201
    assert call(client, "GET", "/-/api/whoami", token_auth(body["token"]))[1]["token"][
        "projects"
    ] == ["one"]
    status, body = call(client, "POST", "/-/api/tokens", scoped_admin, {"projects": ["two"]})
    assert status == 403
    assert "can't be wider" in body["error"]
    assert call(client, "POST", "/-/api/tokens", alice, {"user": "bob"})[0] == 403
    upload_token = token_auth(accounts.create_token("alice", permission="upload").secret)
    status, body = call(client, "POST", "/-/api/tokens", upload_token, {})
    assert status == 403
    assert "may not manage tokens" in body["error"]
    tokens = call(client, "GET", "/-/api/tokens", alice)[1]["tokens"]
    assert {token["user"] for token in tokens} == {"alice"}
    assert "token" not in tokens[0]  # never the secret
    status, body = call(client, "DELETE", f"/-/api/tokens/{tokens[0]['id']}", people["bob"])
    assert status == 400  # bob can't see alice's token: no such token for him
    assert call(client, "DELETE", f"/-/api/tokens/{tokens[0]['id']}", alice)[0] == 200


def test_audit_is_for_admins_and_repository_owners(client: FlaskClient, people: dict) -> None:
    root, alice = people["root"], people["alice"]
    assert call(client, "GET", "/-/api/audit", alice)[0] == 403
    status, body = call(client, "GET", "/-/api/audit", root)
    assert status == 200
    assert {"user add"} <= {event["action"] for event in body["events"]}
    assert call(client, "GET", "/-/api/audit?repo=main", alice)[0] == 403


def test_a_session_needs_its_csrf_token_for_changes(client: FlaskClient, people: dict) -> None:
    assert (
        call(client, "POST", "/-/api/session", {}, {"user": "alice", "password": "wrong-1"})[0]
        == 401
    )
    response = client.post("/-/api/session", json={"user": "alice", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    csrf = response.get_json()["csrf"]
    assert call(client, "GET", "/-/api/whoami", {})[1]["user"] == "alice"
    status, body = call(client, "POST", "/-/api/tokens", {}, {"permission": "read"})
    assert status == 403
    assert "CSRF" in body["error"]
    status, body = call(client, "POST", "/-/api/tokens", {"X-CSRF-Token": csrf}, {})
    assert status == 201
    assert body["user"] == "alice"
    # A new password ends every session made with the old one.
    accounts.set_password("alice", "another-password-1", method=FAST_HASH)
    assert call(client, "GET", "/-/api/whoami", {})[0] == 401


def test_logout_ends_the_session(client: FlaskClient, people: dict) -> None:
    csrf = client.post("/-/api/session", json={"user": "bob", "password": PASSWORD}).get_json()[
        "csrf"
    ]
    assert call(client, "GET", "/-/api/session", {})[1]["user"] == "bob"
    assert call(client, "DELETE", "/-/api/session", {})[0] == 403  # no CSRF token
    assert call(client, "DELETE", "/-/api/session", {"X-CSRF-Token": csrf})[0] == 200
    assert call(client, "GET", "/-/api/whoami", {})[0] == 401


def test_the_upload_api_never_takes_a_session_cookie(
    client: FlaskClient, people: dict, tmp_path: Path
) -> None:
    """Issue 17: a logged-in browser publishes through the upload form, not the API."""
    login = client.post("/-/api/session", json={"user": "alice", "password": PASSWORD})
    headers = {"X-CSRF-Token": login.get_json()["csrf"]}
    assert upload(client, tmp_path, Dist("sessioned", "1.0"), headers) == 401
