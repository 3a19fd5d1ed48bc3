"""The project page: versions, files, install line, hostile metadata, permissions, the
yank/unyank/delete forms with their confirm step, and a group's origins."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo.config import Settings
from minirepo.services import accounts, projects, repos
from minirepo.services.container import Services
from tests.conftest import basic
from tests.helpers.backends import served
from tests.helpers.distfactory import Dist, make_wheel, upload_form, wheel_members
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.upstreamfake import FakeUpstream
from tests.helpers.webui import login

PASSWORD = "a-password-1"
SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def upload(app: Flask, folder: Path, dist: Dist, repo: str = "main", user: str = "alice") -> None:
    """Through a client of its own: the upload API refuses a session cookie."""
    folder.mkdir(exist_ok=True)
    answer = app.test_client().post(
        f"/{repo}/",
        data=upload_form(make_wheel(folder, dist)),
        headers=basic(user, PASSWORD),
        content_type="multipart/form-data",
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture
def world(app: Flask, tmp_path: Path) -> Path:
    """alice owns `demo` (1.0, 2.0) in main and `secret-pkg` in the private `team`; bob
    is another account, root an admin."""
    for name in ("alice", "bob"):
        accounts.add_user(name, PASSWORD, method=FAST_HASH)
    accounts.add_user("root", PASSWORD, method=FAST_HASH, admin=True)
    repos.create("team", read="authenticated")
    repos.grant("alice", "team", "uploader")
    folder = tmp_path / "dists"
    headers = (
        "Keywords: demo,sample",
        "Project-URL: Source, https://example.org/demo",
        "Author: Alice Example",
        "License: MIT",
    )
    upload(app, folder, Dist("demo", "1.0", requires_python=">=3.8", extra_headers=headers))
    upload(app, folder, Dist("demo", "2.0", requires_dist=("requests>=2",), extra_headers=headers))
    upload(app, folder, Dist("secret-pkg", "1.0"), repo="team")
    return folder


def test_a_project_page_shows_versions_files_and_the_install_line(
    client: FlaskClient, world: Path
) -> None:
    for _ in range(2):  # the second answer comes from the page cache
        page = client.get("/main/project/demo/")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        text = page.text
        assert "pip install --index-url http://localhost/main/simple/" in text
        assert "demo==2.0" in text
        assert "demo-2.0-py3-none-any.whl" in text
        assert "demo-1.0-py3-none-any.whl" not in text  # only the shown version's files
        assert re.search(r"sha256 [0-9a-f]{64}", text)
        assert re.search(r"\d+(\.\d+)? (B|KiB)<", text)
        assert 'href="https://example.org/demo"' in text
        assert "requests&gt;=2" in text
        assert "Alice Example" in text
        assert "MIT" in text
        assert '<svg class="chart"' in text
        assert "Hello from a test package." in text  # the README
        assert "Yank" not in text  # no buttons for anonymous visitors
    older = client.get("/main/project/demo/1.0/").text
    assert "demo-1.0-py3-none-any.whl" in older
    assert "&gt;=3.8" in older
    assert client.get("/project/demo/").status_code == 200  # the default repository
    moved = client.get("/main/project/Demo/")
    assert (moved.status_code, moved.headers["Location"]) == (301, "/main/project/demo/")
    assert client.get("/main/project/demo/9.9/").status_code == 404


def test_a_plain_http_install_line_trusts_the_host(client: FlaskClient, world: Path) -> None:
    login(client, "bob", PASSWORD)
    text = client.get("/main/project/demo/").text
    assert "/main/simple/ --trusted-host localhost demo==2.0" in text


def test_a_private_install_line_says_where_the_token_goes(client: FlaskClient, world: Path) -> None:
    """As the setup panel's line does: without credentials pip gets a 401 there."""
    login(client, "alice", PASSWORD)
    text = html.unescape(client.get("/team/project/secret-pkg/").text)
    assert "--index-url http://__token__:<token>@localhost/team/simple/" in text


def test_yanked_versions_are_marked_with_their_reason(client: FlaskClient, world: Path) -> None:
    projects.set_yanked("main", "demo", "2.0", yanked=True, reason="<b>broken</b> build")
    page = client.get("/main/project/demo/").text
    assert "demo==1.0" in page  # the newest version not yanked is shown by default
    assert "&lt;b&gt;broken&lt;/b&gt; build" in page
    yanked = client.get("/main/project/demo/2.0/").text
    assert 'class="tag yanked"' in yanked
    assert "This version is yanked: &lt;b&gt;broken&lt;/b&gt; build" in yanked


def test_hostile_metadata_never_reaches_the_page_unescaped(
    app: Flask, client: FlaskClient, world: Path
) -> None:
    hostile = Dist(
        "evil",
        "1.0",
        summary="<script>alert(1)</script>",
        description="<script>alert('readme')</script>",
        extra_headers=(
            'Author: Robert "Bobby" O\'Tables',
            "Home-page: vbscript:msgbox(1)",
            'Keywords: "><img src=x onerror=alert(1)>,fine',
            "Project-URL: BadPlain, javascript:alert(1)",
            "Project-URL: BadSpaced,  JaVaScRiPt:alert(2)",
            "Project-URL: BadTabbed, java\tscript:alert(3)",
            "Project-URL: BadData, data:text/html,<script>alert(4)</script>",
            "Project-URL: BadFile, file:///etc/passwd",
            "Project-URL: Good, https://example.org/ok",
            "Project-URL: Mail, mailto:alice@example.org",
        ),
    )
    upload(app, world, hostile)
    response = client.get("/main/project/evil/")
    assert response.status_code == 200
    text = response.text
    lowered = text.lower()
    assert "<script>alert" not in lowered
    assert "<img src=x" not in lowered
    for scheme in ("javascript:", "vbscript:", "data:text", "file:"):
        assert scheme not in lowered
    assert "Bad" not in text  # every link with an unsafe scheme is dropped, label and all
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Robert &#34;Bobby&#34; O&#39;Tables" in text
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    assert 'href="https://example.org/ok"' in text
    assert 'href="mailto:alice@example.org"' in text


def test_a_private_project_is_hidden_from_those_who_may_not_read_it(
    client: FlaskClient, world: Path
) -> None:
    anonymous = client.get("/team/project/secret-pkg/")
    assert anonymous.status_code == 303
    assert anonymous.headers["Location"] == "/-/login?next=/team/project/secret-pkg/"

    login(client, "bob", PASSWORD)
    refused = client.get("/team/project/secret-pkg/")
    assert refused.status_code == 404
    assert "secret-pkg" not in refused.text.replace("/team/project/secret-pkg/", "")
    typo = client.get("/main/project/secret-pkh/")
    assert typo.status_code == 404
    assert "secret-pkg" not in typo.text


def test_a_missing_project_suggests_near_names_the_viewer_may_read(
    client: FlaskClient, world: Path
) -> None:
    page = client.get("/main/project/demmo/")
    assert page.status_code == 404
    assert 'href="/main/project/demo/"' in page.text
    assert "secret-pkg" not in client.get("/main/project/secret-pkh/").text
    login(client, "alice", PASSWORD)
    assert 'href="/team/project/secret-pkg/"' in client.get("/main/project/secret-pkh/").text


def test_owners_yank_unyank_and_delete_through_the_forms(client: FlaskClient, world: Path) -> None:
    csrf = login(client, "alice", PASSWORD)
    page = client.get("/main/project/demo/").text
    assert 'action="/main/project/demo/2.0/yank"' in page
    url = "/main/project/demo/1.0/yank"
    assert client.post(url, data={"confirm": "yes"}).status_code == 403  # no CSRF token
    assert client.post(url, data={"confirm": "yes", "csrf_token": "wrong"}).status_code == 403

    confirm = client.post(url, data={"csrf_token": csrf})
    assert confirm.status_code == 200
    assert 'name="confirm" value="yes"' in confirm.text
    assert 'name="reason"' in confirm.text
    assert not _yanked(client)  # nothing happened yet

    done = client.post(url, data={"csrf_token": csrf, "confirm": "yes", "reason": "bad build"})
    assert (done.status_code, done.headers["Location"]) == (303, "/main/project/demo/1.0/")
    shown = client.get("/main/project/demo/1.0/").text
    assert "Yanked demo 1.0." in shown
    assert "bad build" in shown
    assert _yanked(client) == {"demo-1.0-py3-none-any.whl": "bad build"}

    unyank = "/main/project/demo/1.0/unyank"
    assert client.post(unyank, data={"csrf_token": csrf}).status_code == 200
    assert client.post(unyank, data={"csrf_token": csrf, "confirm": "yes"}).status_code == 303
    assert not _yanked(client)

    delete = "/main/project/demo/1.0/delete"
    assert "is deleted" in client.post(delete, data={"csrf_token": csrf}).text
    gone = client.post(delete, data={"csrf_token": csrf, "confirm": "yes"})
    assert (gone.status_code, gone.headers["Location"]) == (303, "/main/project/demo/")
    assert "Deleted demo 1.0" in client.get("/main/project/demo/").text
    assert client.get("/main/project/demo/1.0/").status_code == 404


def _yanked(client: FlaskClient) -> dict[str, str]:
    files = client.get("/main/simple/demo/", headers=SIMPLE_JSON).json["files"]  # type: ignore[index]
    return {f["filename"]: f["yanked"] for f in files if f.get("yanked")}


def test_others_see_no_buttons_and_are_refused(client: FlaskClient, world: Path) -> None:
    csrf = login(client, "bob", PASSWORD)
    assert "Yank" not in client.get("/main/project/demo/").text
    refused = client.post(
        "/main/project/demo/1.0/yank", data={"csrf_token": csrf, "confirm": "yes"}
    )
    assert refused.status_code == 403
    assert not _yanked(client)
    token = accounts.create_token("alice", permission="admin").secret
    with_token = client.post(
        "/main/project/demo/1.0/yank",
        data={"csrf_token": csrf, "confirm": "yes"},
        headers=basic("__token__", token),
    )
    assert with_token.status_code == 403
    assert (
        client.post("/main/project/demo/1.0/frobnicate", data={"csrf_token": csrf}).status_code
        == 404
    )


def test_admins_manage_any_project(client: FlaskClient, world: Path) -> None:
    login(client, "root", PASSWORD)
    assert 'action="/main/project/demo/2.0/delete"' in client.get("/main/project/demo/").text


def test_a_group_page_says_which_member_each_file_comes_from(
    app: Flask, client: FlaskClient, world: Path
) -> None:
    repos.create("extra")
    repos.create("both", kind="group", members=["main", "extra"])
    accounts.add_user("carol", PASSWORD, method=FAST_HASH)
    repos.grant("carol", "extra", "uploader")
    upload(app, world, Dist("only-extra", "1.0"), repo="extra", user="carol")
    page = client.get("/both/project/only-extra/")
    assert page.status_code == 200
    assert re.search(r"<td>extra</td>", page.text)
    assert "Yank" not in page.text
    assert client.get("/both/project/secret-pkg/").status_code == 404


def test_a_proxy_page_names_its_upstream_and_what_it_keeps(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    settings = Settings(data=tmp_path / "data", password_hash=FAST_HASH, upstream=upstream.url)
    for version in ("1.0", "2.0"):
        dist = Dist("remote-pkg", version)
        path = make_wheel(tmp_path, dist)
        metadata = wheel_members(dist)[f"remote_pkg-{version}.dist-info/METADATA"]
        upstream.add_file(dist.name, path.name, path.read_bytes(), metadata=metadata)
    with served(settings) as app:
        client = app.test_client()
        kept = client.get("/pypi-proxy/files/remote-pkg/remote_pkg-2.0-py3-none-any.whl")
        assert kept.status_code == 200
        services: Services = app.extensions["minirepo"]
        assert services.fetches.wait_idle(10)
        page = client.get("/pypi-proxy/project/remote-pkg/")
        assert page.status_code == 200
        assert "a proxy of 127.0.0.1" in page.text
        assert re.search(r"remote_pkg-2.0-py3-none-any.whl.*?<td>yes</td>", page.text, re.S)
        older = client.get("/pypi-proxy/project/remote-pkg/1.0/").text
        assert re.search(r"remote_pkg-1.0-py3-none-any.whl.*?<td>no</td>", older, re.S)
        grouped = client.get("/all/project/remote-pkg/").text
        assert "<td>pypi-proxy (127.0.0.1)</td>" in grouped
