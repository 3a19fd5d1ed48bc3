"""The rules every page and form of the web UI keeps (issue 17): the session cookie's
flags, the page headers, the login form's own CSRF token and lockout, `next` staying on
this site, and issue 10's origin check on every form."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from minirepo.services import accounts
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.webui import csrf_of, login

PASSWORD = "a-password-1"
PAGES = ("/", "/main/", "/-/login", "/-/search?q=x", "/main/project/nothing/", "/no-such-repo/")


@pytest.fixture
def alice(app: Flask) -> str:
    accounts.add_user("alice", PASSWORD, method=FAST_HASH)
    return "alice"


@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_headers(client: FlaskClient, path: str) -> None:
    response = client.get(path, headers={"Accept": "text/html"})
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def log_in_to(client: FlaskClient, user: str, target: str) -> TestResponse:
    """The login form posted with `next` set, as the page after a redirect sends it."""
    form = client.get("/-/login", query_string={"next": target})
    data = {"user": user, "password": PASSWORD, "csrf_token": csrf_of(form.text), "next": target}
    return client.post("/-/login", data=data)


@pytest.mark.parametrize(("base", "secure"), [("http://box:8080", False), ("https://box", True)])
def test_the_session_cookie(client: FlaskClient, alice: str, base: str, secure: bool) -> None:
    form = client.get("/-/login", base_url=base)
    response = client.post(
        "/-/login",
        base_url=base,
        data={"user": alice, "password": PASSWORD, "csrf_token": csrf_of(form.text)},
    )
    assert response.status_code == 303
    cookie = next(v for v in response.headers.getlist("Set-Cookie") if "minirepo_session=" in v)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


@pytest.mark.parametrize("loaded", [True, False], ids=["form-loaded", "no-session-yet"])
def test_the_login_form_needs_its_csrf_token(client: FlaskClient, alice: str, loaded: bool) -> None:
    """Also without any session: an empty token must not match the empty one it lacks."""
    if loaded:
        client.get("/-/login")
    response = client.post("/-/login", data={"user": alice, "password": PASSWORD})
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert client.get("/-/tokens").status_code == 303  # still not logged in


def test_next_keeps_the_mount_prefix(client: FlaskClient) -> None:
    """Behind a path prefix (a proxy's, or a path token's) the way back includes it."""
    response = client.get("/-/tokens", base_url="http://localhost/pypi")
    assert response.status_code == 303
    assert response.headers["Location"] == "/pypi/-/login?next=/pypi/-/tokens"


def test_a_wrong_password_keeps_the_form_and_locks_out(
    app: Flask, client: FlaskClient, alice: str
) -> None:
    limit = app.extensions["minirepo"].settings.login_failure_limit
    statuses = []
    for _ in range(limit + 1):
        token = csrf_of(client.get("/-/login").text)
        response = client.post(
            "/-/login", data={"user": alice, "password": "wrong-1", "csrf_token": token}
        )
        statuses.append(response.status_code)
        assert 'name="user"' in response.text
    assert statuses[0] == 200
    assert statuses[-1] == 429


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:x"]
)
def test_next_stays_on_this_site(client: FlaskClient, alice: str, target: str) -> None:
    response = log_in_to(client, alice, target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_a_private_page_sends_a_browser_to_log_in_and_back(client: FlaskClient, alice: str) -> None:
    response = client.get("/-/tokens")
    assert response.status_code == 303
    assert response.headers["Location"] == "/-/login?next=/-/tokens"
    assert log_in_to(client, alice, "/-/tokens").headers["Location"] == "/-/tokens"


@pytest.mark.parametrize(
    "path", ["/-/login", "/-/logout", "/-/tokens", "/main/-/token", "/main/-/upload"]
)
def test_a_form_posted_from_another_site_is_refused(
    client: FlaskClient, alice: str, path: str
) -> None:
    csrf = login(client, alice, PASSWORD)
    response = client.post(
        path, data={"csrf_token": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert "Cross-site request refused" in response.text
