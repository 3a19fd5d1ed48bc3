"""PyPI's JSON API (`/pypi/<project>/json`): PyPI's shape, read like the simple pages.

Each test runs on SQLite and PostgreSQL: `main` (public, anyone signed in uploads),
`team` (private: alice uploads), and the group `all` = main, team.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import models
from minirepo.config import Settings
from minirepo.services import projects, repos
from minirepo.services.container import Services
from tests.conftest import basic
from tests.helpers.backends import BACKENDS, backend_settings, served
from tests.helpers.distfactory import Dist, make_sdist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.teamgroup import PASSWORD, add_team_and_group
from tests.helpers.upstreamfake import FakeUpstream

ALICE = basic("alice", PASSWORD)
BOB = basic("bob", PASSWORD)
NOT_FOUND = {"message": "Not Found"}


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with served(backend_settings(request, tmp_path)) as flask_app:
        add_team_and_group()
        yield flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def upload(client: FlaskClient, path: Path, url: str = "/main/") -> None:
    """Upload as alice, who may upload to main and team."""
    answer = client.post(
        url, data=upload_form(path), headers=ALICE, content_type="multipart/form-data"
    )
    assert answer.status_code == 200, answer.status


def get(client: FlaskClient, path: str, who: dict[str, str] | None = None) -> tuple[int, Any]:
    answer = client.get(path, headers=who or {})
    assert answer.mimetype == "application/json", (answer.status, answer.data)
    return answer.status_code, json.loads(answer.data)


@pytest.fixture
def demo(client: FlaskClient, tmp_path: Path) -> None:
    """demo 1.0 (wheel and sdist), 2.0 and 3.0rc1 in main."""
    for version in ("1.0", "2.0", "3.0rc1"):
        dist = Dist("demo", version, requires_python=">=3.9", description=f"About {version}")
        upload(client, make_wheel(tmp_path, dist))
        if version == "1.0":
            upload(client, make_sdist(tmp_path, dist))


def test_the_project_document_has_pypis_shape(client: FlaskClient, demo: None) -> None:
    answer = client.get("/pypi/demo/json")
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-cache"
    body = answer.get_json()
    assert set(body) == {"info", "last_serial", "releases", "urls", "vulnerabilities"}
    assert body["vulnerabilities"] == []
    assert body["last_serial"] == models.Repository.get(models.Repository.name == "main").generation
    info = body["info"]
    assert (info["name"], info["version"], info["summary"]) == ("demo", "2.0", "A test package")
    assert info["description"] == "About 2.0\n"
    assert info["description_content_type"] == "text/plain"
    assert info["requires_python"] == ">=3.9"
    assert info["yanked"] is False
    assert info["project_url"] == "http://localhost/main/project/demo/"
    assert info["release_url"] == "http://localhost/main/project/demo/2.0/"
    assert sorted(body["releases"]) == ["1.0", "2.0", "3.0rc1"]
    files = body["releases"]["1.0"]
    assert sorted(item["packagetype"] for item in files) == ["bdist_wheel", "sdist"]
    wheel = next(item for item in files if item["packagetype"] == "bdist_wheel")
    row = models.File.get(models.File.filename == wheel["filename"])
    assert wheel["digests"] == {
        "sha256": row.sha256,
        "md5": row.md5,
        "blake2b_256": row.blake2b_256,
    }
    assert (wheel["size"], wheel["python_version"], wheel["yanked"]) == (row.size, "py3", False)
    assert wheel["upload_time_iso_8601"].endswith("Z")
    assert wheel["url"] == f"http://localhost/files/demo/{wheel['filename']}"
    with client.get(wheel["url"].removeprefix("http://localhost")) as download:
        assert download.status_code == 200
    assert [item["filename"] for item in body["urls"]] == ["demo-2.0-py3-none-any.whl"]
    again = client.get("/pypi/demo/json", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304


def test_a_version_document_has_no_releases(client: FlaskClient, demo: None) -> None:
    status, body = get(client, "/main/pypi/demo/1.0/json")
    assert status == 200
    assert "releases" not in body
    assert body["info"]["version"] == "1.0"
    assert body["info"]["description"] == "About 1.0\n"
    assert len(body["urls"]) == 2
    assert body["urls"][0]["url"].startswith("http://localhost/main/files/demo/")
    assert get(client, "/main/pypi/demo/1.0.0/json")[1]["info"]["version"] == "1.0"
    assert get(client, "/main/pypi/demo/9.9/json") == (404, NOT_FOUND)
    assert get(client, "/main/pypi/demo/not-a-version/json") == (404, NOT_FOUND)
    assert get(client, "/main/pypi/nothing/json") == (404, NOT_FOUND)


def test_yanked_releases_are_marked_and_not_latest(client: FlaskClient, demo: None) -> None:
    projects.set_yanked("main", "demo", "2.0", yanked=True, reason="broken build")
    body = get(client, "/pypi/demo/json")[1]
    assert body["info"]["version"] == "1.0"
    assert body["releases"]["2.0"][0]["yanked"] is True
    assert body["releases"]["2.0"][0]["yanked_reason"] == "broken build"
    info = get(client, "/pypi/demo/2.0/json")[1]["info"]
    assert (info["yanked"], info["yanked_reason"]) == (True, "broken build")
    projects.set_yanked("main", "demo", "1.0", yanked=True)
    assert get(client, "/pypi/demo/json")[1]["info"]["version"] == "3.0rc1"


def test_a_private_repository_refuses_like_its_simple_pages(
    client: FlaskClient, tmp_path: Path
) -> None:
    upload(client, make_wheel(tmp_path, Dist("secret", "1.0")), "/team/")
    answer = client.get("/team/pypi/secret/json")
    assert answer.status_code == 401
    assert "Basic" in answer.headers["WWW-Authenticate"]
    assert answer.get_json() == {"message": "Authentication required"}
    assert get(client, "/team/pypi/secret/json", BOB) == (404, NOT_FOUND)
    assert get(client, "/team/pypi/secret/1.0/json", BOB) == (404, NOT_FOUND)
    assert get(client, "/nosuch/pypi/secret/json")[0] == 401
    assert get(client, "/nosuch/pypi/secret/json", BOB) == (404, NOT_FOUND)
    answer = client.get("/team/pypi/secret/json", headers=ALICE)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-cache, private"


def test_a_group_answers_from_the_member_that_serves_the_name(
    client: FlaskClient, tmp_path: Path, demo: None
) -> None:
    upload(client, make_wheel(tmp_path, Dist("secret", "1.0")), "/team/")
    status, body = get(client, "/all/pypi/demo/json")
    assert status == 200
    assert body["urls"][0]["url"] == "http://localhost/all/files/demo/demo-2.0-py3-none-any.whl"
    assert body["info"]["project_url"] == "http://localhost/all/project/demo/"
    assert get(client, "/all/pypi/secret/json")[0] == 401
    assert get(client, "/all/pypi/secret/json", BOB) == (404, NOT_FOUND)
    status, body = get(client, "/all/pypi/secret/json", ALICE)
    assert (status, body["info"]["version"]) == (200, "1.0")


def test_other_spellings_redirect_to_the_normalized_url(
    client: FlaskClient, tmp_path: Path
) -> None:
    upload(client, make_wheel(tmp_path, Dist("Lab_Tool", "1.0")))
    answer = client.get("/pypi/Lab_Tool/json")
    assert (answer.status_code, answer.headers["Location"]) == (301, "../lab-tool/json")
    answer = client.get("/main/pypi/LAB.TOOL/1.0/json")
    assert (answer.status_code, answer.headers["Location"]) == (301, "../../lab-tool/1.0/json")
    assert get(client, "/pypi/lab-tool/json")[1]["info"]["name"] == "Lab_Tool"
    assert get(client, "/pypi/No_Such/json") == (404, NOT_FOUND)


def test_a_hostile_readme_stays_a_json_string(client: FlaskClient, tmp_path: Path) -> None:
    text = '</script><script>alert("x")</script>\u2028"quoted" \\ \x7f <!-- -->'
    upload(client, make_wheel(tmp_path, Dist("hostile", "1.0", description=text)))
    status, body = get(client, "/pypi/hostile/json")
    assert status == 200
    assert body["info"]["description"] == text + "\n"


def test_file_urls_keep_the_prefix_the_request_came_in_on(client: FlaskClient, demo: None) -> None:
    """A path token's `/-/t/<token>` prefix is SCRIPT_NAME by the time the view runs."""
    answer = client.get("/pypi/demo/json", environ_overrides={"SCRIPT_NAME": "/-/t/mr-abcdefgh"})
    body = answer.get_json()
    assert body["urls"][0]["url"] == (
        "http://localhost/-/t/mr-abcdefgh/files/demo/demo-2.0-py3-none-any.whl"
    )


def test_a_proxy_answers_from_the_files_it_has_stored(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """Not from the upstream's whole list: a name seen on its page but with no file
    fetched yet is not known here. (SQLite only: the proxy tests cover both backends.)"""
    settings = Settings(
        data=tmp_path / "data", password_hash=FAST_HASH, page_cache_seconds=0, upstream=upstream.url
    )
    with served(settings) as proxied:
        repos.update("pypi-proxy", options={"min_free_disk": 0, "connect_timeout": 1.0})
        client = proxied.test_client()
        path = make_wheel(tmp_path, Dist("requests", "2.0"))
        upstream.add_file("requests", path.name, path.read_bytes())
        assert client.get("/all/simple/requests/").status_code == 200
        assert get(client, "/all/pypi/requests/json") == (404, NOT_FOUND)
        url = "/all/files/requests/requests-2.0-py3-none-any.whl"
        with client.get(url) as download:
            assert download.status_code == 200
        services: Services = proxied.extensions["minirepo"]
        assert services.fetches.wait_idle(10)
        status, body = get(client, "/all/pypi/requests/json")
        assert (status, body["info"]["version"]) == (200, "2.0")
        assert body["urls"][0]["url"] == f"http://localhost{url}"
