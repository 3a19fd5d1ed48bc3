"""The home page and the repository pages: what each viewer may see, the setup panel's
snippets (the URL the browser used, credentials), a token made from the panel, and the
404 page of an unknown repository."""

from __future__ import annotations

import html
import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from minirepo import models
from minirepo.services import accounts, repos
from tests.conftest import basic, post_upload, token_auth
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import FAST_HASH, TOKEN_RE
from tests.helpers.webui import login

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
LAN = "http://192.168.1.20:8080"
PASSWORD = "alice-password-1"
SNIPPET = re.compile(r'<pre id="(setup-[a-z-]+)"[^>]*>(.*?)</pre>', re.DOTALL)


def snippets(body: str) -> dict[str, str]:
    return {name: html.unescape(text) for name, text in SNIPPET.findall(body)}


def user(name: str, *grants: tuple[str, str]) -> None:
    accounts.add_user(name, PASSWORD, method=FAST_HASH)
    for repo, role in grants:
        repos.grant(name, repo, role)


def upload(client: FlaskClient, token: str, folder: Path, dist: Dist, url: str = "/main/") -> None:
    folder.mkdir(exist_ok=True)
    response = post_upload(client, token, make_wheel(folder, dist), url)
    assert response.status_code == 200, response.status


def page(client: FlaskClient, path: str, status: int = 200, **kwargs: object) -> str:
    response = client.get(path, headers=BROWSER, **kwargs)
    assert response.status_code == status, (path, response.status)
    return response.get_data(as_text=True)


# --- the home page ----------------------------------------------------------------


def test_home_lists_only_readable_repositories_and_uploads(
    client: FlaskClient, admin: str, tmp_path: Path
) -> None:
    repos.create("secret", read="authenticated", description="Hidden things")
    repos.grant("root", "secret", "owner")
    upload(client, admin, tmp_path / "d", Dist("open-tool", "1.0"))
    upload(client, admin, tmp_path / "d", Dist("hidden-tool", "2.0"), "/secret/")
    user("alice", ("secret", "reader"))

    body = page(client, "/")
    assert 'href="/main/"' in body
    assert "open-tool" in body
    assert "secret" not in body
    assert "hidden-tool" not in body.lower().replace("_", "-")
    assert "Hidden things" not in body

    login(client, "alice", PASSWORD)
    body = page(client, "/")
    assert 'href="/secret/"' in body
    assert "Hidden things" in body
    assert 'href="/secret/project/hidden-tool/"' in body


def test_home_install_line_is_the_group_all(client: FlaskClient) -> None:
    found = snippets(page(client, "/", base_url=LAN).replace('id="home-', 'id="'))
    assert found["setup-pip-command"] == (
        f"pip install --index-url {LAN}/all/simple/ --trusted-host 192.168.1.20:8080 PACKAGE"
    )
    assert found["setup-uv-pip"] == f"uv pip install --index-url {LAN}/all/simple/ PACKAGE"


def test_home_of_a_private_server_asks_to_log_in(app: Flask, admin: str) -> None:
    repos.update("main", read="authenticated")
    client = app.test_client()
    response = client.get("/", headers=BROWSER)
    assert response.status_code == 303
    assert response.headers["Location"] == "/-/login?next=/"
    response = client.get("/")  # not a browser: the challenge pip and uv answer
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="minirepo"'
    assert client.get("/", headers={**BROWSER, **token_auth(admin)}).status_code == 200


# --- the repository page ------------------------------------------------------------


def test_projects_are_paginated_with_latest_version_and_summary(
    client: FlaskClient, admin: str, tmp_path: Path
) -> None:
    upload(client, admin, tmp_path / "d", Dist("aaa-first", "1.0", summary="Old one"))
    upload(client, admin, tmp_path / "d", Dist("aaa-first", "1.10", summary="Newest one"))
    upload(client, admin, tmp_path / "d", Dist("aaa-first", "1.9", summary="Middle one"))
    main = models.Repository.get(models.Repository.name == "main")
    for number in range(54):
        models.Project.create(
            repository=main, name=f"Bulk_{number:02}", normalized=f"bulk-{number:02}"
        )

    first = page(client, "/main/")
    assert first.count('href="/main/project/') == 50
    assert 'href="/main/project/aaa-first/"' in first
    row = re.search(r'aaa-first/">aaa-first</a></td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>', first)
    assert row is not None
    assert row.groups() == ("1.10", "Newest one")
    assert 'href="/main/?page=2"' in first
    assert "Page 1 of 2" in first
    second = page(client, "/main/?page=2")
    assert second.count('href="/main/project/') == 5
    assert 'href="/main/project/bulk-53/"' in second
    assert 'href="/main/?page=1"' in second
    assert 'href="/main/project/bulk-53/"' in page(client, "/main/?page=99")  # the last page
    assert "Page 1 of 2" in page(client, "/main/?page=x")


def test_every_snippet_uses_the_browser_url_and_the_repository(client: FlaskClient) -> None:
    found = snippets(page(client, "/main/", base_url=LAN))
    assert {
        "setup-pip-command",
        "setup-pip-conf",
        "setup-pip-requirements",
        "setup-uv-pyproject",
        "setup-uv-publish",
        "setup-poetry-source",
        "setup-poetry-publish",
        "setup-pdm-source",
        "setup-pdm-publish",
        "setup-twine-pypirc",
        "setup-hatch-publish",
        "setup-keyring-set",
    } <= set(found)
    for text in found.values():
        urls = re.findall(r"https?://[^\s\"']+", text)
        for url in urls:
            assert url.startswith(f"{LAN}/main/") or url.startswith("http://__token__@"), url
    assert f"--index-url {LAN}/main/simple/" in found["setup-pip-requirements"]
    assert "explicit = true" in found["setup-uv-pyproject"]
    assert (
        f"poetry source add --priority=explicit minirepo {LAN}/main/simple/"
        in found["setup-poetry-source"]
    )
    assert f"pdm publish -r {LAN}/main/ -u __token__ -P <token>" == found["setup-pdm-publish"]
    assert f"hatch publish -r {LAN}/main/ -u __token__ -a <token>" == found["setup-hatch-publish"]
    assert f"repository = {LAN}/main/" in found["setup-twine-pypirc"]
    assert f"uv publish --publish-url {LAN}/main/ " in found["setup-uv-publish"]
    https = snippets(page(client, "/main/", base_url="https://pypi.lab.example"))
    assert all("trusted-host" not in text and "verify_ssl" not in text for text in https.values())
    assert "https://pypi.lab.example/main/simple/" in https["setup-pip-command"]


def test_trusted_host_on_plain_http_for_an_account(client: FlaskClient) -> None:
    user("alice")
    login(client, "alice", PASSWORD, LAN)
    found = snippets(page(client, "/main/", base_url=LAN))
    assert "--trusted-host 192.168.1.20:8080" in found["setup-pip-command"]
    assert "trusted-host = 192.168.1.20:8080" in found["setup-pip-conf"]
    assert "--trusted-host 192.168.1.20:8080" in found["setup-pip-requirements"]
    assert "verify_ssl = false" in found["setup-pdm-source"]


def test_trusted_host_on_plain_http_for_anonymous_visitors(client: FlaskClient) -> None:
    found = snippets(page(client, "/main/", base_url=LAN))
    assert "--trusted-host 192.168.1.20:8080" in found["setup-pip-command"]


def test_a_group_without_upload_target_and_a_proxy_show_install_only(
    client: FlaskClient,
) -> None:
    repos.update("all", upload_to="")
    for path in ("/all/", "/pypi-proxy/"):
        found = snippets(page(client, path, base_url=LAN))
        assert "setup-pip-command" in found
        assert not any("publish" in name or "twine" in name for name in found), path
    found = snippets(page(client, "/all/", base_url=LAN))
    assert f"{LAN}/all/simple/" in found["setup-pip-command"]


def test_anonymous_visitors_see_placeholders_and_a_login_link(client: FlaskClient) -> None:
    body = page(client, "/main/")
    assert 'href="/-/login?next=/main/"' in body
    assert "log in to create a token" in body
    assert 'action="/main/-/token"' not in body
    assert 'action="/main/-/upload"' not in body
    # a public repository installs without credentials; publishing takes a token
    found = snippets(body)
    assert "__token__" not in found["setup-pip-command"]
    assert "<token>" in found["setup-uv-publish"]


def test_hostile_descriptions_and_summaries_are_escaped(
    client: FlaskClient, admin: str, tmp_path: Path
) -> None:
    attack = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    repos.update("main", description=attack)
    upload(client, admin, tmp_path / "d", Dist("evil-pkg", "1.0", summary=attack))
    for path in ("/", "/main/"):
        body = page(client, path)
        assert "<script>alert" not in body
        assert "<img src=x" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_the_repository_url_still_redirects_pip(
    client: FlaskClient, admin: str, tmp_path: Path
) -> None:
    upload(client, admin, tmp_path / "d", Dist("demo-pkg", "1.0"))
    simple = {"Accept": "application/vnd.pypi.simple.v1+json"}
    response = client.get("/main/demo-pkg/", headers=simple)
    assert (response.status_code, response.headers["Location"]) == (301, "../simple/demo-pkg/")
    response = client.get("/demo-pkg/", headers=simple)
    assert (response.status_code, response.headers["Location"]) == (301, "../simple/demo-pkg/")


# --- the 404 page ---------------------------------------------------------------------


def test_unknown_repository_suggests_the_nearest_readable_names(
    client: FlaskClient, admin: str
) -> None:
    repos.create("team-tools", read="authenticated")
    user("alice")
    response = client.get("/mian/", headers=BROWSER)
    assert response.status_code == 303  # anonymous: log in first, as for a private one
    assert response.headers["Location"] == "/-/login?next=/mian/"
    assert client.get("/mian/").status_code == 401  # pip and uv: the challenge
    login(client, "alice", PASSWORD)
    body = page(client, "/mian/", 404)
    assert '<a href="/main/">main</a>' in body
    body = page(client, "/team-tols/", 404)
    assert "team-tools" not in body  # alice may not read it: neither named nor suggested
    hidden = page(client, "/team-tools/", 404)  # as if missing: only the name asked for
    assert 'href="/team-tools/"' not in hidden
    with client.session_transaction() as session:
        session.clear()
    assert client.get("/team-tools/", headers={**BROWSER, **token_auth(admin)}).status_code == 200


# --- a token from the setup panel -----------------------------------------------------


def test_token_from_the_panel_is_shown_once_and_works(client: FlaskClient) -> None:
    repos.create("team", read="authenticated")
    user("alice", ("team", "uploader"))
    csrf = login(client, "alice", PASSWORD, LAN)
    body = page(client, "/team/", base_url=LAN)
    assert 'action="/team/-/token"' in body
    assert '<option value="upload">' in body
    form = {"csrf_token": csrf, "description": "laptop", "permission": "read", "expires_days": "30"}

    response = client.post("/team/-/token", data=form, base_url=LAN)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    secrets = set(TOKEN_RE.findall(body))
    assert len(secrets) == 1
    secret = secrets.pop()
    found = snippets(body)
    assert f"http://__token__:{secret}@192.168.1.20:8080/team/simple/" in found["setup-pip-command"]
    assert f"password = {secret}" in found["setup-twine-pypirc"]
    assert f"poetry config http-basic.minirepo __token__ {secret}" in found["setup-poetry-auth"]
    assert "<token>" not in "".join(found.values())
    assert secret not in page(client, "/team/", base_url=LAN)  # once

    # the token works for pip's Basic auth, read only and in its scope
    with client.session_transaction(base_url=LAN) as session:
        session.clear()
    pip = basic("__token__", secret)
    assert client.get("/team/simple/", headers=pip, base_url=LAN).status_code == 200
    assert client.get("/team/simple/", base_url=LAN).status_code == 401
    listed = accounts.list_tokens("alice")
    assert [(item.permission, item.repositories, item.description) for item in listed] == [
        ("read", ["team"], "laptop")
    ]
    assert listed[0].expires is not None


def test_token_form_needs_a_session_and_its_csrf_token(client: FlaskClient, admin: str) -> None:
    user("alice", ("main", "uploader"))
    form = {"permission": "read", "expires_days": "30"}
    # anonymous
    response = client.post("/main/-/token", data=form, headers=BROWSER)
    assert response.status_code in (303, 401)
    # an API token on a web form
    response = client.post("/main/-/token", data=form, headers={**BROWSER, **token_auth(admin)})
    assert response.status_code == 403
    csrf = login(client, "alice", PASSWORD)
    assert client.post("/main/-/token", data=form).status_code == 403  # no CSRF token
    bad = {**form, "csrf_token": "wrong"}
    assert client.post("/main/-/token", data=bad).status_code == 403
    both = {**form, "csrf_token": csrf}
    assert client.post("/main/-/token", data=both, headers=token_auth(admin)).status_code == 403
    assert accounts.list_tokens("alice") == []


def test_token_form_refuses_what_the_service_refuses(client: FlaskClient) -> None:
    user("bob")  # may read main (public), not upload there
    repos.update("main", default_role="none")
    csrf = login(client, "bob", PASSWORD)
    body = page(client, "/main/")
    assert '<option value="upload">' not in body
    form = {"csrf_token": csrf, "permission": "upload", "expires_days": "30"}
    response = client.post("/main/-/token", data=form)
    assert response.status_code == 403
    assert "may not upload to main" in html.unescape(response.get_data(as_text=True))
    form = {"csrf_token": csrf, "permission": "read", "expires_days": "0"}
    assert client.post("/main/-/token", data=form).status_code == 400
    form = {"csrf_token": csrf, "permission": "admin", "expires_days": "3"}
    assert client.post("/main/-/token", data=form).status_code == 400
    assert accounts.list_tokens("bob") == []


def test_token_for_a_group_covers_its_members_and_upload_target(client: FlaskClient) -> None:
    user("alice")
    csrf = login(client, "alice", PASSWORD)
    form = {"csrf_token": csrf, "permission": "upload", "expires_days": "7"}
    assert client.post("/all/-/token", data=form).status_code == 200
    (made,) = accounts.list_tokens("alice")
    assert made.repositories == ["all", "main", "pypi-proxy"]


def test_a_public_group_does_not_name_its_private_member(client: FlaskClient, admin: str) -> None:
    """The group `all` is public; a private repository among its members stays unnamed on
    the home page for those who may not read it."""
    repos.create("vault", read="authenticated")
    repos.create("open-all", kind="group", members=("main", "vault"))
    anonymous = page(client, "/")
    assert "open-all" in anonymous
    assert "vault" not in anonymous
    with_token = client.get("/", headers={**BROWSER, **token_auth(admin)})
    assert "vault" in with_token.get_data(as_text=True)


def test_a_project_scoped_token_lists_only_its_projects(
    client: FlaskClient, admin: str, tmp_path: Path
) -> None:
    """As the simple root page does: its other projects are not its caller's to see."""
    repos.create("lab", read="authenticated")
    for name in ("lab-one", "lab-two"):
        upload(client, admin, tmp_path / "d", Dist(name, "1.0"), "/lab/")
    user("carol", ("lab", "reader"))
    scoped = accounts.create_token("carol", permission="read", projects=("lab-one",)).secret
    body = client.get("/lab/", headers={**BROWSER, **token_auth(scoped)}).get_data(as_text=True)
    assert "lab-one" in body
    assert "lab-two" not in body
