"""Read tokens in the URL path (`/-/t/<token>/<repo>/simple/`), for CI and Docker builds
where Basic auth is awkward: real pip and uv install through it, links keep the prefix,
only read tokens count there, and the token never reaches the server's log."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.helpers.clients import build_chain, installed, run, twine_upload
from tests.helpers.serverproc import Server, client_env, running_server

UV = find_uv_bin()


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    """A private repository `team` holding a two-project chain; a read token scoped to it
    and an upload token."""
    folder = tmp_path_factory.mktemp("path-tokens")
    with running_server(folder / "server") as server:
        server.cli("repo", "create", "team", "--read", "authenticated")
        files, _ = build_chain(folder, "ent")
        env = client_env(folder / "uploader")
        url = f"{server.url}/team/"
        result = twine_upload(server, env, files, "__token__", server.admin_token, url)
        assert result.returncode == 0, result.stdout + result.stderr
        server.add_user("ci", "ci-password-12")
        server.cli("grant", "ci", "team", "reader")
        read = server.create_token("ci", "--permission", "read", "--repo", "team")
        upload = server.create_token("ci", "--permission", "upload")
        yield server, read, upload


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("client", ["pip", "uv"])
def test_install_through_the_entitlement_url(
    team: tuple[Server, str, str], tmp_path: Path, client: str
) -> None:
    server, read, _ = team
    url = f"{server.url}/-/t/{read}/team/simple/"
    target = tmp_path / "target"
    env = client_env(tmp_path / "home")
    if client == "pip":
        cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target)]
        cmd += ["--index-url", url, "ent-app"]
    else:
        cmd = [UV, "pip", "install", "--no-cache", "--target", str(target)]
        cmd += ["--python", sys.executable, "--index-url", url, "ent-app"]
    result = run(cmd, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"ent_app", "ent_lib"} <= installed(target)
    assert read not in server.log.read_text()


def test_only_read_tokens_work_in_the_path(team: tuple[Server, str, str]) -> None:
    server, read, upload = team
    assert status_of(f"{server.url}/-/t/{read}/team/simple/") == 200
    assert status_of(f"{server.url}/-/t/{read}/team/simple/ent-app/") == 200
    assert status_of(f"{server.url}/-/t/{upload}/team/simple/") == 401
    assert status_of(f"{server.url}/-/t/mr-notarealtoken123/team/simple/") == 401
    # Scoped to team: the default repository is public anyway, any other private one is not.
    assert status_of(f"{server.url}/team/simple/") == 401
