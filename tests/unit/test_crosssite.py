"""The cross-site rule (`minirepo.crosssite`): a table of requests for the pure function,
then the same rule through the app, where it must run before authentication and before the
body is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.crosssite import cross_site_refusal, environ_refusal
from minirepo.services.container import Services
from tests.conftest import post_upload, snapshot, token_auth
from tests.helpers.distfactory import upload_form

HOST = "127.0.0.1:8080"
OWN = "http://127.0.0.1:8080"
PUBLIC = "https://pkgs.example.org/pypi/"


def refusal(
    method: str = "POST",
    origin: str | None = None,
    fetch_site: str | None = None,
    host: str | None = HOST,
    scheme: str = "http",
    public_url: str = "",
) -> str | None:
    return cross_site_refusal(
        method,
        origin=origin,
        fetch_site=fetch_site,
        host=host,
        scheme=scheme,
        public_url=public_url,
    )


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "public_url"),
    [
        (OWN, HOST, "http", ""),
        ("HTTP://127.0.0.1:8080", HOST, "http", ""),  # scheme and host compare case-blind
        ("http://box.lan", "box.lan", "http", ""),
        ("http://box.lan", "box.lan:80", "http", ""),  # the default port, written or not
        ("http://box.lan:80", "box.lan", "http", ""),
        ("https://box.lan", "box.lan", "https", ""),
        ("http://BOX.lan:9000", "box.LAN:9000", "http", ""),
        ("http://[::1]:8080", "[::1]:8080", "http", ""),
        ("http://[fe80::1]", "[FE80::1]", "http", ""),
        ("https://pkgs.example.org", "127.0.0.1:8080", "http", PUBLIC),  # behind a proxy
        ("https://pkgs.example.org:443", "127.0.0.1:8080", "http", PUBLIC),
        ("https://pkgs.example.org:8443", HOST, "http", "https://pkgs.example.org:8443/"),
        (OWN, HOST, "http", PUBLIC),  # the LAN address reached, next to the public URL
    ],
)
def test_own_origin_is_allowed(origin: str, host: str, scheme: str, public_url: str) -> None:
    assert refusal(origin=origin, host=host, scheme=scheme, public_url=public_url) is None


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "public_url"),
    [
        ("http://evil.example", HOST, "http", ""),
        ("http://127.0.0.2:8080", HOST, "http", ""),  # another address
        ("http://127.0.0.1:8081", HOST, "http", ""),  # another port: the same site only
        ("https://127.0.0.1:8080", HOST, "http", ""),  # another scheme
        ("http://127.0.0.1:8080", HOST, "https", ""),
        ("http://127.0.0.1", HOST, "http", ""),
        ("null", HOST, "http", ""),  # a sandboxed frame, a local file, a redirect
        ("", HOST, "http", ""),
        ("http://[::1]:8081", "[::1]:8080", "http", ""),
        ("http://[::2]:8080", "[::1]:8080", "http", ""),
        ("http://127.0.0.1:8080/", HOST, "http", ""),  # not an origin: it has a path
        ("http://user@127.0.0.1:8080", HOST, "http", ""),
        ("http://127.0.0.1:8080 http://evil.example", HOST, "http", ""),
        ("http://127.0.0.1:99999", "127.0.0.1:99999", "http", ""),  # no such port
        ("http://[::1", "[::1", "http", ""),
        (OWN, None, "http", ""),  # no Host: nothing to be the same origin as
        (OWN, "127.0.0.1:8080/x", "http", ""),
        # With a public URL: its origin or the address reached, nothing else.
        ("http://pkgs.example.org", HOST, "http", PUBLIC),
        ("https://pkgs.example.org:8443", HOST, "http", PUBLIC),
        ("https://example.org", HOST, "http", PUBLIC),
    ],
)
def test_foreign_origin_is_refused(
    origin: str, host: str | None, scheme: str, public_url: str
) -> None:
    reason = refusal(origin=origin, host=host, scheme=scheme, public_url=public_url)
    assert reason is not None
    assert reason.startswith("Cross-site request refused (Origin ")
    assert reason.endswith("use twine/uv or the minirepo web UI")


def test_reason_names_both_origins() -> None:
    """An operator whose public_url does not match the address people use learns why."""
    assert refusal(origin="http://127.0.0.1:9", public_url=PUBLIC) == (
        "Cross-site request refused (Origin http://127.0.0.1:9, this index is "
        "https://pkgs.example.org): a page on another site may not change this index; "
        "use twine/uv or the minirepo web UI"
    )
    reason = refusal(origin="http://evil.example", host="[::1]:8080")
    assert reason is not None
    assert "(Origin http://evil.example, this index is http://[::1]:8080)" in reason
    reason = refusal(origin="x" * 5000)
    assert reason is not None
    assert len(reason) < 400  # the advice fits in the status line


@pytest.mark.parametrize("fetch_site", ["same-origin", "none", None, "SAME-ORIGIN"])
def test_fetch_site_of_the_index_or_the_user_is_allowed(fetch_site: str | None) -> None:
    """`none`: the user typed the URL or used a bookmark, no page asked for it."""
    assert refusal(fetch_site=fetch_site) is None
    assert refusal(origin=OWN, fetch_site=fetch_site) is None


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site", "Cross-Site", " same-site "])
def test_fetch_site_of_another_page_is_refused(fetch_site: str) -> None:
    """Even with an Origin that matches: the browser knows better where the page was."""
    for origin in (None, OWN):
        reason = refusal(origin=origin, fetch_site=fetch_site)
        assert reason is not None
        assert reason.startswith(
            f"Cross-site request refused (Sec-Fetch-Site: {fetch_site.strip().lower()})"
        )


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_safe_methods_are_never_refused(method: str) -> None:
    """A link or an image on another site may read what the browser may read anyway."""
    assert refusal(method, origin="null", fetch_site="cross-site", host=None) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PROPFIND", "get", "QUERY"])
def test_every_other_method_is_checked(method: str) -> None:
    """Methods not known today are checked too: refusing is the safe default."""
    assert refusal(method, origin="http://evil.example") is not None
    assert refusal(method, fetch_site="cross-site") is not None
    assert refusal(method) is None  # a client: neither header
    assert refusal(method, origin=OWN, fetch_site="same-origin") is None


# --- through the app ------------------------------------------------------------------------

FOREIGN = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}


def test_foreign_upload_is_refused_before_authentication(
    client: FlaskClient, settings: Settings, wheel: Path
) -> None:
    """403, not 401: a browser must not be asked for credentials it would then send; and
    no file part is spooled, since the body is never parsed."""
    before = snapshot(settings)
    response = client.post(
        "/",
        data=upload_form(wheel),
        headers=FOREIGN,
        content_type="multipart/form-data",
    )
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers
    assert response.text.startswith("Cross-site request refused (Origin http://evil.example")
    assert snapshot(settings) == before


def test_check_runs_before_every_other_hook(tmp_path: Path) -> None:
    """Hooks registered after it (the app's own, or a later one that authenticates) run
    only for requests it let through."""
    app = create_app(Settings(data=tmp_path / "data"))
    services: Services = app.extensions["minirepo"]
    seen: list[str] = []
    app.before_request(lambda: seen.append("later hook"))
    try:
        response = app.test_client().post("/", headers={"Origin": "null"})
        assert response.status_code == 403
        assert seen == []
    finally:
        services.folder.database.close()


def test_environ_refusal_reads_the_wsgi_names() -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "HTTP_HOST": "box.lan:8080",
        "wsgi.url_scheme": "http",
        "HTTP_ORIGIN": "http://box.lan:8080",
    }
    assert environ_refusal(environ, "") is None
    assert environ_refusal({**environ, "HTTP_SEC_FETCH_SITE": "cross-site"}, "") is not None
    assert environ_refusal({**environ, "wsgi.url_scheme": "https"}, "") is not None
    assert environ_refusal({**environ, "HTTP_ORIGIN": "http://box.lan:9"}, PUBLIC) is not None


def test_foreign_upload_with_credentials_stores_nothing(
    client: FlaskClient, settings: Settings, admin: str, wheel: Path
) -> None:
    before = snapshot(settings)
    response = client.post(
        "/",
        data=upload_form(wheel),
        headers={**token_auth(admin), **FOREIGN},
        content_type="multipart/form-data",
    )
    assert response.status_code == 403
    assert snapshot(settings) == before
    assert client.get("/simple/demo-pkg/").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/-/api/tokens"),
        ("DELETE", "/-/api/tokens/mr-nothing"),
        ("PATCH", "/-/api/users/admin"),
        ("PUT", "/-/api/repos/main/grants/admin"),
        ("POST", "/-/api/session"),
        ("POST", "/no/such/page"),  # before routing too: no 404 or 405 gives anything away
    ],
)
def test_every_change_is_refused_from_another_site(
    client: FlaskClient, admin: str, method: str, path: str
) -> None:
    response = client.open(
        path, method=method, json={}, headers={**token_auth(admin), "Sec-Fetch-Site": "same-site"}
    )
    assert response.status_code == 403
    assert "Sec-Fetch-Site: same-site" in response.status
    if path.startswith("/-/api/"):
        assert response.json is not None
        assert response.json["error"].startswith("Cross-site request refused")


def test_upload_from_the_own_origin_or_a_client_works(
    client: FlaskClient, admin: str, wheel: Path
) -> None:
    response = post_upload(client, admin, wheel)  # twine and friends: neither header
    assert response.status_code == 200, response.status
    response = client.post(
        "/",
        data=upload_form(wheel),
        headers={
            **token_auth(admin),
            "Origin": "http://localhost",
            "Sec-Fetch-Site": "same-origin",
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.status  # the test client's Host: localhost


def test_public_url_is_the_own_origin(tmp_path: Path, wheel: Path) -> None:
    settings = Settings(data=tmp_path / "data", public_url=PUBLIC)
    app = create_app(settings)
    services: Services = app.extensions["minirepo"]
    try:
        client = app.test_client()
        form = {"data": upload_form(wheel), "content_type": "multipart/form-data"}
        refused = client.post("/", headers={"Origin": "http://evil.example"}, **form)
        assert refused.status_code == 403
        assert "this index is https://pkgs.example.org" in refused.status
        form = {"data": upload_form(wheel), "content_type": "multipart/form-data"}
        passed = client.post("/", headers={"Origin": "https://pkgs.example.org"}, **form)
        assert passed.status_code == 401  # on to authentication: the origin was accepted
    finally:
        services.folder.database.close()
