"""The upload form of a repository page: the upload API's checks and publish, for a login
session with its CSRF token only."""

from __future__ import annotations

import html
import io
from pathlib import Path

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from minirepo.services import accounts, repos
from tests.conftest import token_auth
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.webui import login

BROWSER = {"Accept": "text/html"}
PASSWORD = "alice-password-1"


def log_in(client: FlaskClient, name: str, *grants: tuple[str, str]) -> str:
    """A new account `name` with `grants`, logged in; returns the session's CSRF token."""
    accounts.add_user(name, PASSWORD, method=FAST_HASH)
    for repo, role in grants:
        repos.grant(name, repo, role)
    return login(client, name, PASSWORD)


def send(
    client: FlaskClient,
    path: Path | None,
    csrf: str | None,
    url: str = "/main/-/upload",
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> TestResponse:
    data: dict[str, object] = {} if csrf is None else {"csrf_token": csrf}
    if path is not None:
        data["content"] = (io.BytesIO(content or path.read_bytes()), path.name)
    return client.post(
        url, data=data, headers=headers or BROWSER, content_type="multipart/form-data"
    )


def reason(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_upload_through_the_form(client: FlaskClient, tmp_path: Path) -> None:
    csrf = log_in(client, "alice")
    assert 'action="/main/-/upload"' in client.get("/main/", headers=BROWSER).get_data(True)
    wheel = make_wheel(tmp_path, Dist("web-pkg", "1.0"))
    response = send(client, wheel, csrf)
    assert response.status_code == 303
    assert response.headers["Location"] == "/main/project/web-pkg/"
    simple = client.get("/main/simple/web-pkg/").get_data(as_text=True)
    assert wheel.name in simple
    with client.session_transaction() as session:
        assert session["_flashes"] == [("info", f"Uploaded {wheel.name} to main.")]
    # the same bytes again are fine, other bytes under the name are not
    assert send(client, wheel, csrf).status_code == 303
    (tmp_path / "other").mkdir()
    other = make_wheel(tmp_path / "other", Dist("web-pkg", "1.0", description="Changed."))
    response = send(client, other, csrf)
    assert response.status_code == 409
    assert "File already exists" in reason(response)


def test_a_group_stores_in_its_upload_target(client: FlaskClient, tmp_path: Path) -> None:
    csrf = log_in(client, "alice")
    wheel = make_wheel(tmp_path, Dist("grouped", "1.0"))
    response = send(client, wheel, csrf, url="/all/-/upload")
    assert response.headers["Location"] == "/main/project/grouped/"
    assert wheel.name in client.get("/main/simple/grouped/").get_data(as_text=True)


def test_invalid_files_are_refused_with_the_reason(client: FlaskClient, tmp_path: Path) -> None:
    csrf = log_in(client, "alice")
    junk = tmp_path / "junk_pkg-1.0-py3-none-any.whl"
    junk.write_bytes(b"not a zip")
    response = send(client, junk, csrf)
    assert response.status_code == 400
    assert "Invalid" in reason(response)
    assert 'role="alert"' in response.get_data(as_text=True)
    text = tmp_path / "notes.txt"
    text.write_bytes(b"hello")
    response = send(client, text, csrf)
    assert response.status_code == 400
    assert "only .whl and .tar.gz accepted" in reason(response)
    response = send(client, None, csrf)
    assert response.status_code == 400
    assert "Choose a file" in reason(response)
    # a wheel whose metadata names another project
    other = make_wheel(tmp_path, Dist("other-name", "1.0"), filename="web_pkg-1.0-py3-none-any.whl")
    response = send(client, other, csrf)
    assert response.status_code == 400
    assert "does not match" in reason(response)


def test_no_rights(client: FlaskClient, tmp_path: Path) -> None:
    repos.create("team", read="authenticated")
    repos.update("main", default_role="none")
    csrf = log_in(client, "bob", ("team", "reader"))
    wheel = make_wheel(tmp_path, Dist("web-pkg", "1.0"))
    assert 'action="/main/-/upload"' not in client.get("/main/", headers=BROWSER).get_data(True)
    assert send(client, wheel, csrf).status_code == 403
    assert send(client, wheel, csrf, url="/team/-/upload").status_code == 403
    repos.create("hidden", read="authenticated")
    assert send(client, wheel, csrf, url="/hidden/-/upload").status_code == 404
    assert send(client, wheel, csrf, url="/pypi-proxy/-/upload").status_code == 405


def test_api_tokens_and_missing_csrf_are_refused(
    client: FlaskClient, admin: str, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, Dist("web-pkg", "1.0"))
    response = send(client, wheel, None, headers={**BROWSER, **token_auth(admin)})
    assert response.status_code == 403
    assert "login session" in reason(response)
    response = send(client, wheel, None)
    assert response.status_code in (303, 401)  # anonymous
    csrf = log_in(client, "alice")
    response = send(client, wheel, csrf, headers={**BROWSER, **token_auth(admin)})
    assert response.status_code == 403
    assert wheel.name not in client.get("/main/simple/").get_data(as_text=True)
    assert client.get("/main/simple/web-pkg/").status_code == 404


def test_a_browser_without_the_csrf_token_gets_a_403_page(
    client: FlaskClient, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, Dist("web-pkg", "1.0"))
    log_in(client, "alice")
    assert send(client, wheel, None).status_code == 403
    assert send(client, wheel, "wrong").status_code == 403


def test_a_client_without_the_csrf_token_gets_a_403(client: FlaskClient, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, Dist("web-pkg", "1.0"))
    log_in(client, "alice")
    for csrf in (None, "wrong"):
        response = send(client, wheel, csrf, headers={"Accept": "*/*"})
        assert response.status_code == 403
        assert "CSRF token" in response.get_data(as_text=True)
    assert client.get("/main/simple/web-pkg/").status_code == 404
