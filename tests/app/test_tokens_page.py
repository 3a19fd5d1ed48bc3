"""The "my tokens" page: a token made in the browser works for pip, its secret is shown
once, revoking it works without JavaScript, and forms take a login session only."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo.services import accounts, audit, repos
from tests.conftest import basic, token_auth
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.webui import csrf_of, login

PASSWORD = "a-password-1"
SECRET_RE = re.compile(r'<pre id="token"[^>]*>(mr-[^<]+)</pre>')


@pytest.fixture
def alice(app: Flask) -> str:
    """alice, a reader of the private repository `team`; bob may not read it."""
    accounts.add_user("alice", PASSWORD, method=FAST_HASH)
    accounts.add_user("bob", PASSWORD, method=FAST_HASH)
    repos.create("team", read="authenticated")
    repos.grant("alice", "team", "reader")
    return "alice"


def create(client: FlaskClient, csrf: str, **fields: object) -> tuple[int, str]:
    data = {"csrf_token": csrf, "permission": "read", "days": "30", **fields}
    response = client.post("/-/tokens", data=data)
    return response.status_code, response.text


def test_anonymous_is_sent_to_log_in(client: FlaskClient) -> None:
    response = client.get("/-/tokens")
    assert response.status_code == 303
    assert response.headers["Location"] == "/-/login?next=/-/tokens"


def test_a_token_is_shown_once_works_for_pip_and_is_revoked(
    client: FlaskClient, alice: str
) -> None:
    csrf = login(client, alice, PASSWORD)
    page = client.get("/-/tokens").text
    # Only the repositories alice may use are offered.
    assert '<option value="team">' in page
    assert client.get("/team/simple/").status_code == 200  # her session reads it

    response = client.post(
        "/-/tokens",
        data={"csrf_token": csrf, "permission": "read", "repositories": "team", "days": "30"},
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    found = SECRET_RE.search(response.text)
    assert found is not None
    secret = found.group(1)

    listing = client.get("/-/tokens").text
    assert secret not in listing
    [token] = accounts.list_tokens("alice")
    assert token.prefix in listing
    assert (token.permission, token.repositories, token.state) == ("read", ["team"], "active")
    assert token.expires is not None
    assert secret not in response.headers.get("Set-Cookie", "")

    anonymous = client.application.test_client()
    assert anonymous.get("/team/simple/").status_code == 401
    assert anonymous.get("/team/simple/", headers=token_auth(secret)).status_code == 200
    assert [(e.actor, e.action) for e in audit.entries(limit=1)] == [("alice", "token create")]

    confirm = client.get(f"/-/tokens/{token.id}/revoke")
    assert confirm.status_code == 200
    assert f'action="/-/tokens/{token.id}/revoke"' in confirm.text
    response = client.post(f"/-/tokens/{token.id}/revoke", data={"csrf_token": csrf})
    assert (response.status_code, response.headers["Location"]) == (303, "/-/tokens")
    assert "revoked" in client.get("/-/tokens").text
    assert anonymous.get("/team/simple/", headers=token_auth(secret)).status_code == 401
    assert [(e.actor, e.action) for e in audit.entries(limit=1)] == [("alice", "token revoke")]


def test_refusals_are_shown_on_the_form_with_their_status(client: FlaskClient, alice: str) -> None:
    csrf = login(client, "bob", PASSWORD)
    # bob may not read `team`: it is not offered, and naming it anyway is refused as missing.
    assert '<option value="team">' not in client.get("/-/tokens").text
    status, text = create(client, csrf, repositories="team", description="keep me")
    assert status == 404
    assert "No repository named &#39;team&#39;" in text
    assert 'value="keep me"' in text
    status, text = create(client, csrf, days="100000")
    assert status == 400
    assert "between 1 second and 36500 days" in text
    status, text = create(client, csrf, permission="root")
    assert (status, "Unknown permission &#39;root&#39;" in text) == (400, True)
    status, text = create(client, csrf, projects="ok-name, not/a/name")
    assert (status, "Invalid project name" in text) == (400, True)
    assert accounts.list_tokens("bob") == []
    # Another account's token is not bob's to see or revoke.
    other = accounts.create_token("alice")
    assert client.get(f"/-/tokens/{_id_of(other)}/revoke").status_code == 404
    response = client.post(f"/-/tokens/{_id_of(other)}/revoke", data={"csrf_token": csrf})
    assert response.status_code == 404
    assert accounts.list_tokens("alice")[0].state == "active"


def _id_of(new: accounts.NewToken) -> int:
    return next(t.id for t in accounts.list_tokens() if t.prefix == new.prefix)


def test_a_scoped_token_to_projects_and_without_expiry(client: FlaskClient, alice: str) -> None:
    csrf = login(client, alice, PASSWORD)
    status, _ = create(client, csrf, projects="Some_Pkg other", days="", permission="upload")
    assert status == 200
    [token] = accounts.list_tokens("alice")
    assert (token.projects, token.expires, token.permission) == (
        ["other", "some-pkg"],
        None,
        "upload",
    )
    assert "project some-pkg" in client.get("/-/tokens").text


def test_forms_need_the_csrf_token_and_refuse_credentials(client: FlaskClient, alice: str) -> None:
    csrf = login(client, alice, PASSWORD)
    assert create(client, "")[0] == 403
    assert create(client, "wrong")[0] == 403
    response = client.post(
        "/-/tokens",
        data={"csrf_token": csrf, "permission": "read"},
        headers=basic("alice", PASSWORD),
    )
    assert response.status_code == 403
    assert "login session" in response.text
    assert accounts.list_tokens("alice") == []


def test_credentials_may_read_the_page_but_not_post(client: FlaskClient, alice: str) -> None:
    secret = accounts.create_token("alice", permission="read").secret
    page = client.get("/-/tokens", headers=token_auth(secret))
    assert page.status_code == 200
    assert secret[:11] in page.text  # its public prefix
    response = client.post(
        "/-/tokens", data={"csrf_token": csrf_of(page.text)}, headers=token_auth(secret)
    )
    assert response.status_code == 403


def test_a_hostile_description_is_escaped(client: FlaskClient, alice: str) -> None:
    csrf = login(client, alice, PASSWORD)
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    assert create(client, csrf, description=hostile)[0] == 200
    page = client.get("/-/tokens").text
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
