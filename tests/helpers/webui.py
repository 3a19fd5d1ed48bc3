"""Logging a Flask test client into the web UI the way a browser does, and reading the
CSRF token its forms carry."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms (the session's: every form has the same one)."""
    found = _CSRF_RE.search(html)
    assert found is not None, "no csrf_token field on the page"
    return found.group(1)


def login(client: FlaskClient, user: str, password: str, base_url: str = "http://localhost") -> str:
    """Log a client that is not logged in yet in through /-/login (GET for the form's
    token, then POST); returns the new session's CSRF token, which every form post of this
    client must send as `csrf_token`. The session cookie is for `base_url`'s host, so later
    requests of the session pass the same `base_url`."""
    form = client.get("/-/login", base_url=base_url)
    response = client.post(
        "/-/login",
        data={"user": user, "password": password, "csrf_token": csrf_of(form.text), "next": "/"},
        base_url=base_url,
    )
    assert response.status_code == 303, response.text
    with client.session_transaction(base_url=base_url) as session:
        return str(session["csrf"])
