"""A repository with anonymous read turned off (`read = "authenticated"`), with real clients.

Credentials reach pip and uv from the URL or from `~/.netrc` (CLIENTS.md §4); everything
protected answers 401 with a Basic challenge, so clients know to send them.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.helpers.clients import build_chain, installed, run, twine_upload
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import Server, client_env, running_server

UV = find_uv_bin()
REALM = 'Basic realm="minirepo"'
READER_PASSWORD = "reader-password-1"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A private server holding `priv-app` 0.1 -> `priv_lib` >= 2, uploaded with twine."""
    folder = tmp_path_factory.mktemp("private")
    with running_server(folder / "server", {"MINIREPO_READ": "authenticated"}) as server:
        env = client_env(folder / "uploader")
        files, _ = build_chain(folder, "priv")
        result = twine_upload(server, env, files, "__token__", server.admin_token)
        assert result.returncode == 0, result.stdout + result.stderr
        server.add_user("reader", READER_PASSWORD)
        yield server


@pytest.fixture(scope="module")
def reader_token(private: Server) -> str:
    return private.create_token("reader", "--permission", "read")


def index_url(server: Server, token: str | None = None) -> str:
    if token is None:
        return f"{server.url}/simple/"
    host = server.url.removeprefix("http://")
    return f"http://__token__:{token}@{host}/simple/"


def pip_install(server: Server, env: dict[str, str], target: Path, url: str) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target)]
    cmd += ["--index-url", url, "--trusted-host", "127.0.0.1", "priv-app"]
    result = run(cmd, env)
    return result.returncode, result.stdout + result.stderr


def uv_install(env: dict[str, str], target: Path, url: str) -> tuple[int, str]:
    cmd = [UV, "pip", "install", "--target", str(target), "--python", sys.executable]
    result = run([*cmd, "--index-url", url, "priv-app"], env)
    return result.returncode, result.stdout + result.stderr


def write_netrc(home: Path, token: str) -> dict[str, str]:
    netrc = home / ".netrc"
    netrc.write_text(f"machine 127.0.0.1\nlogin __token__\npassword {token}\n")
    netrc.chmod(0o600)
    return {"NETRC": str(netrc)}


def assert_installed(target: Path) -> None:
    names = installed(target)
    assert {"priv_app", "priv_lib"} <= names, names
    assert "priv_lib-2.0.dist-info" in names


def test_anonymous_pip_install_fails(private: Server, env: dict[str, str], tmp_path: Path) -> None:
    code, output = pip_install(private, env, tmp_path / "t", index_url(private))
    assert code != 0
    assert "401" in output or "No matching distribution" in output, output
    assert not (tmp_path / "t").exists() or not installed(tmp_path / "t")


def test_pip_with_token_in_url(
    private: Server, env: dict[str, str], tmp_path: Path, reader_token: str
) -> None:
    code, output = pip_install(private, env, tmp_path / "t", index_url(private, reader_token))
    assert code == 0, output
    assert_installed(tmp_path / "t")


def test_pip_with_password_in_url(private: Server, env: dict[str, str], tmp_path: Path) -> None:
    url = index_url(private).replace("http://", f"http://reader:{READER_PASSWORD}@")
    code, output = pip_install(private, env, tmp_path / "t", url)
    assert code == 0, output
    assert_installed(tmp_path / "t")


def test_pip_with_netrc(
    private: Server, env: dict[str, str], tmp_path: Path, reader_token: str
) -> None:
    env = {**env, **write_netrc(Path(env["HOME"]), reader_token)}
    code, output = pip_install(private, env, tmp_path / "t", index_url(private))
    assert code == 0, output
    assert_installed(tmp_path / "t")


def test_pip_with_netrc_in_home(
    private: Server, env: dict[str, str], tmp_path: Path, reader_token: str
) -> None:
    write_netrc(Path(env["HOME"]), reader_token)
    env = {key: value for key, value in env.items() if key != "NETRC"}
    code, output = pip_install(private, env, tmp_path / "t", index_url(private))
    assert code == 0, output
    assert_installed(tmp_path / "t")


def test_uv_with_token_in_url(
    private: Server, env: dict[str, str], tmp_path: Path, reader_token: str
) -> None:
    code, output = uv_install(env, tmp_path / "t", index_url(private, reader_token))
    assert code == 0, output
    assert_installed(tmp_path / "t")


def test_uv_with_netrc(
    private: Server, env: dict[str, str], tmp_path: Path, reader_token: str
) -> None:
    """uv sends netrc credentials only after a 401, per URL: the challenge must be there."""
    env = {**env, **write_netrc(Path(env["HOME"]), reader_token)}
    code, output = uv_install(env, tmp_path / "t", index_url(private))
    assert code == 0, output
    assert_installed(tmp_path / "t")


def test_anonymous_uv_install_fails(private: Server, env: dict[str, str], tmp_path: Path) -> None:
    code, output = uv_install(env, tmp_path / "t", index_url(private))
    assert code != 0
    assert "401" in output, output


def test_revoked_token_fails_at_once(private: Server, env: dict[str, str], tmp_path: Path) -> None:
    reader_token = private.create_token("reader", "--permission", "read")
    assert http_get(f"{private.url}/simple/", reader_token)[0] == 200
    private.cli("token", "revoke", reader_token[:11])
    status, headers, _ = http_get(f"{private.url}/simple/", reader_token)
    assert status == 401
    assert headers["WWW-Authenticate"] == REALM
    code, output = pip_install(private, env, tmp_path / "t", index_url(private, reader_token))
    assert code != 0, output


def test_read_token_cannot_upload(
    private: Server, env: dict[str, str], tmp_path: Path, reader_token: str
) -> None:
    wheel = make_wheel(tmp_path, Dist("priv-other", "1.0"))
    result = twine_upload(private, env, [wheel], "__token__", reader_token)
    assert result.returncode != 0
    assert "403" in result.stdout + result.stderr


# --- raw HTTP -------------------------------------------------------------------------------


def http_get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, Message, bytes]:
    headers = {"Accept": "application/vnd.pypi.simple.v1+json"}
    if token is not None:
        value = base64.b64encode(f"__token__:{token}".encode()).decode()
        headers["Authorization"] = f"Basic {value}"
    request = urllib.request.Request(url, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def test_raw_anonymous_requests_get_401_with_challenge(private: Server, reader_token: str) -> None:
    status, _, body = http_get(f"{private.url}/simple/priv-app/", reader_token)
    assert status == 200
    page = json.loads(body)
    file_url = urllib.parse.urljoin(f"{private.url}/simple/priv-app/", page["files"][0]["url"])
    file_url = file_url.split("#", 1)[0]
    urls = [
        f"{private.url}/simple/",
        f"{private.url}/main/simple/",
        f"{private.url}/simple/priv-app/",
        f"{private.url}/simple/Priv_App/",
        file_url,
        file_url + ".metadata",
        f"{private.url}/",
        f"{private.url}/main/",
    ]
    for url in urls:
        assert http_get(url, reader_token)[0] in (200, 301), url
        for method in ("GET", "HEAD"):
            status, headers, body = http_get(url, method=method)
            assert status == 401, (method, url)
            assert headers["WWW-Authenticate"] == REALM, (method, url)
            assert b"priv" not in body, url  # nothing of the repository leaks
    # wrong credentials are a 401 too, never a 404 that would hide the problem
    status, headers, _ = http_get(file_url, "mr-" + "x" * 43)
    assert status == 401
    assert headers["WWW-Authenticate"] == REALM


def test_health_needs_no_credentials(private: Server) -> None:
    assert http_get(f"{private.url}/-/health")[0] == 200
