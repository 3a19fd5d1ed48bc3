"""Anonymous repository and project pages are rendered once per change and answered before
Flask, with the URL the browser used filled in per request (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo.views import webpage
from tests.conftest import basic, post_upload
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import FAST_HASH

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The templates Flask renders, in order."""
    seen: list[str] = []
    real = webpage.render_template

    def counting(template: str, **context: object) -> str:
        seen.append(template)
        return real(template, **context)

    monkeypatch.setattr(webpage, "render_template", counting)
    return seen


def get(client: FlaskClient, path: str, base: str, **headers: str) -> str:
    response = client.get(path, base_url=base, headers={**BROWSER, **headers})
    assert response.status_code == 200, response.status
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    return response.get_data(as_text=True)


def test_one_render_serves_every_address(
    client: FlaskClient, admin: str, wheel: Path, renders: list[str]
) -> None:
    assert post_upload(client, admin, wheel).status_code == 200
    first = get(client, "/main/", "http://192.168.1.20:8080")
    again = get(client, "/main/", "http://box.lan:8080")
    assert len(renders) == 1
    assert "http://192.168.1.20:8080/main/simple/" in first
    assert "http://box.lan:8080/main/simple/" in again
    assert "192.168.1.20" not in again
    project = wheel.name.split("-")[0].replace("_", "-")
    get(client, f"/main/project/{project}/", "http://a:8080")
    get(client, f"/main/project/{project}/", "http://b:8080")
    assert len(renders) == 2


def test_a_change_renders_again(
    client: FlaskClient, admin: str, wheel: Path, tmp_path: Path, renders: list[str]
) -> None:
    assert post_upload(client, admin, wheel).status_code == 200
    get(client, "/main/", "http://box:8080")
    (tmp_path / "more").mkdir()
    other = make_wheel(tmp_path / "more", Dist("another-one", "2.0"))
    assert post_upload(client, admin, other).status_code == 200
    assert "another-one" in get(client, "/main/", "http://box:8080")
    assert len(renders) == 2


def test_logged_in_and_private_views_are_never_kept(
    app: Flask, client: FlaskClient, admin: str, wheel: Path, renders: list[str]
) -> None:
    from minirepo.services import accounts

    accounts.add_user("alice", "a-password-1", method=FAST_HASH)
    assert post_upload(client, admin, wheel).status_code == 200
    for _ in range(2):
        body = get(client, "/main/", "http://box:8080", **basic("alice", "a-password-1"))
        assert "alice" in body
    assert len(renders) == 2
    anonymous = get(client, "/main/", "http://box:8080")
    assert "alice" not in anonymous


def test_the_simple_index_goes_past_untouched(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/simple/` has the shape of a repository page: the UI layer must not look it up
    (a refused lookup per request cost the root index a sixth of its rate)."""
    index = app.extensions["minirepo"].index
    asked: list[str | None] = []
    real = index.repo

    def repo(name: str | None) -> object:
        asked.append(name)
        return real(name)

    monkeypatch.setattr(index, "repo", repo)
    assert client.get("/simple/", headers=BROWSER).status_code == 200
    assert "simple" not in asked
