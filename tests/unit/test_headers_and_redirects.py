"""Headers every answer carries, and redirects that never name a host (issue 14, 9 and 10a).

A shared cache keys on the URL, not on `Host:`: a redirect built from a forged `Host:`
would send every later user of that cache elsewhere, so Location is a path on this server.
`X-Content-Type-Options: nosniff` keeps browsers from running a 404 body (it echoes the
path) or a `.metadata` file (uploader text) as HTML, whichever layer answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request, request_started
from flask.testing import FlaskClient

from minirepo.services import accounts, repos
from tests.conftest import post_upload, token_auth

EVIL = {"Host": "evil.example"}
WHEEL = "demo_pkg-1.0-py3-none-any.whl"


@pytest.fixture
def read_token(app: Flask, admin: str) -> str:
    """A read token of the admin (path tokens take only read tokens)."""
    return accounts.create_token("root", permission="read").secret


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/simple", "/simple/"),
        ("/main/simple", "/main/simple/"),
        ("/other/simple", "/other/simple/"),
        ("/+simple/demo-pkg", "/+simple/demo-pkg/"),
        ("/main/+simple/Demo.Pkg", "/main/+simple/Demo.Pkg/"),
        ("/main", "/main/"),
        ("/simple?format=json&x=%2F", "/simple/?format=json&x=%2F"),
        ("/main//simple//", "/main/simple/"),
    ],
)
def test_trailing_slash_redirect_is_a_path_on_this_server(
    client: FlaskClient, path: str, location: str
) -> None:
    response = client.get(path, headers=EVIL)
    assert response.status_code == 308
    assert response.headers["Location"] == location
    assert "evil.example" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("//evil.example/simple", "/evil.example/simple/"),
        ("/\\evil.example/simple", "/%5Cevil.example/simple/"),
    ],
)
def test_redirect_never_names_another_host(client: FlaskClient, path: str, location: str) -> None:
    """Browsers read `//host/x` and `/\\host/x` in a Location as another host."""
    response = client.get("/", environ_overrides={"PATH_INFO": path})
    assert response.status_code == 308
    assert response.headers["Location"] == location


def test_redirect_under_a_path_token_keeps_the_token_prefix(
    client: FlaskClient, read_token: str
) -> None:
    """The client's URL holds the token; a Location without it would be anonymous."""
    repos.create("private", read="authenticated")
    prefix = f"/-/t/{read_token}"
    response = client.get(f"{prefix}/private/simple?x=1", headers=EVIL)
    assert response.status_code == 308
    assert response.headers["Location"] == f"{prefix}/private/simple/?x=1"
    assert client.get(response.headers["Location"]).status_code == 200
    assert client.get("/private/simple/?x=1").status_code == 401


@pytest.fixture
def tokens(client: FlaskClient, admin: str, read_token: str, wheel: Path) -> dict[str, str]:
    """A published wheel, a private repository, and the tokens the cases use by name."""
    assert post_upload(client, admin, wheel).status_code == 200
    repos.create("private", read="authenticated")
    return {"admin": admin, "read": read_token}


@contextlib.contextmanager
def flask_dispatches(app: Flask) -> Iterator[list[str]]:
    """The paths Flask itself answered meanwhile (the fast path answers without it)."""
    seen: list[str] = []

    def note(sender: Flask, **_: Any) -> None:
        seen.append(request.path)

    with request_started.connected_to(note, app):
        yield seen


JSON_V1 = "application/vnd.pypi.simple.v1+json"
UPLOAD = {":action": "file_upload"}  # no file part: refused with a reason

# (case, method, path, headers, whose token, status)
CASES = [
    ("simple index", "GET", "/simple/", {}, None, 200),
    ("simple index json", "GET", "/simple/", {"Accept": JSON_V1}, None, 200),
    ("project page", "GET", "/simple/demo-pkg/", {}, None, 200),
    ("normalizing redirect", "GET", "/simple/Demo_Pkg/", {}, None, 301),
    ("slash redirect", "GET", "/simple", {}, None, 308),
    ("file download", "GET", f"/files/demo-pkg/{WHEEL}", {}, None, 200),
    ("file range", "GET", f"/files/demo-pkg/{WHEEL}", {"Range": "bytes=0-9"}, None, 206),
    ("416", "GET", f"/files/demo-pkg/{WHEEL}", {"Range": "bytes=99999999-"}, None, 416),
    ("metadata", "GET", f"/files/demo-pkg/{WHEEL}.metadata", {}, None, 200),
    ("404 echoing the path", "GET", "/simple/no-such-<b>/", {}, None, 404),
    ("404 of routing", "GET", "/a/b/c/d", {}, None, 404),
    ("401 json api", "GET", "/-/api/whoami", {}, None, 401),
    ("401 private repository", "GET", "/private/simple/", {}, None, 401),
    ("403 upload with a read token", "POST", "/", {}, "read", 403),
    ("json api", "GET", "/-/api/whoami", {}, "admin", 200),
    ("health", "GET", "/-/health", {}, None, 200),
    ("web page", "GET", "/", {}, None, 200),
    ("405", "DELETE", "/-/health", {}, None, 405),
    ("upload error", "POST", "/", {}, "admin", 400),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "who", "status"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_every_answer_says_nosniff(
    client: FlaskClient,
    tokens: dict[str, str],
    method: str,
    path: str,
    headers: dict[str, str],
    who: str | None,
    status: int,
) -> None:
    if who is not None:
        headers = {**headers, **token_auth(tokens[who])}
    data = UPLOAD if method == "POST" else None
    with client.open(path, method=method, headers=headers, data=data) as response:
        assert response.status_code == status, response.status
        assert response.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/simple/", {}),
        ("/simple/demo-pkg/", {"Accept": JSON_V1}),
        ("/main/simple/demo-pkg/", {"Accept-Encoding": "gzip"}),
    ],
)
def test_pages_of_the_fast_path_say_nosniff(
    app: Flask, client: FlaskClient, tokens: dict[str, str], path: str, headers: dict[str, str]
) -> None:
    first = client.get(path, headers=headers)  # Flask renders it and fills the cache
    with flask_dispatches(app) as seen:
        again = client.get(path, headers=headers)
        revalidated = client.get(path, headers={**headers, "If-None-Match": first.headers["ETag"]})
        head = client.head(path, headers=headers)
    assert seen == [], "the fast path did not answer these"
    assert (again.status_code, revalidated.status_code, head.status_code) == (200, 304, 200)
    for response in (first, again, revalidated, head):
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
