"""The data folder as real processes see it: one serve per folder, commands that refuse an
empty place, a private setting that survives a restart, lockout per (user, address), and
answers that do not tell a missing repository from a private one."""

from __future__ import annotations

import base64
import http.client
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers.serverproc import Server, base_env, free_port, running_server

TIMEOUT = 30
REALM = 'Basic realm="minirepo"'


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get_from(
    server: Server, path: str, source: str, auth: tuple[str, str] | None = None
) -> tuple[int, str]:
    """GET `path` over a socket bound to `source` (requests cannot choose its address)."""
    parts = urlsplit(server.url)
    assert parts.hostname
    assert parts.port
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=TIMEOUT, source_address=(source, 0)
    )
    try:
        headers = {"Authorization": basic(*auth)} if auth else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, response.reason
    finally:
        conn.close()


def test_second_serve_on_the_same_folder_exits_naming_the_first(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv") as srv:
        port = str(free_port())
        second = subprocess.run(
            [sys.executable, "-m", "minirepo", "serve", "--host", "127.0.0.1", "--port", port],
            capture_output=True,
            text=True,
            env=srv.env,
            timeout=60,
        )
        assert second.returncode == 1, (second.stdout, second.stderr)
        assert f"pid {srv.proc.pid}" in second.stderr, second.stderr
        assert srv.proc.poll() is None
        health = requests.get(f"{srv.url}/-/health", timeout=TIMEOUT)
        assert health.status_code == 200
        assert requests.get(f"{srv.url}/simple/", timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize("place", ["missing", "empty"])
def test_commands_refuse_a_place_with_no_data_folder(tmp_path: Path, place: str) -> None:
    data = tmp_path / "data"
    if place == "empty":
        data.mkdir()
    env = base_env({"MINIREPO_DATA": str(data), "HOME": str(tmp_path / "home")})
    result = subprocess.run(
        [sys.executable, "-m", "minirepo", "user", "add", "bob", "--password-stdin"],
        input="bob-password-123\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "No minirepo data folder at" in result.stderr
    if place == "empty":
        assert list(data.iterdir()) == []
    else:
        assert not data.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] * (place == "empty")


def test_private_read_survives_a_restart_without_the_setting(tmp_path: Path) -> None:
    """Fail closed: the setting made the default repository private in the database;
    forgetting it on the next start must not make it public again."""
    base = tmp_path / "srv"
    with running_server(base, {"MINIREPO_READ": "authenticated"}) as srv:
        response = requests.get(f"{srv.url}/simple/", timeout=TIMEOUT)
        assert response.status_code == 401
    with running_server(base) as srv:
        assert "MINIREPO_READ" not in srv.env
        response = requests.get(f"{srv.url}/simple/", timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == REALM
        token = ("__token__", srv.admin_token)
        admin = requests.get(f"{srv.url}/simple/", auth=token, timeout=TIMEOUT)
        assert admin.status_code == 200


def test_lockout_is_per_user_and_address(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", {"MINIREPO_READ": "authenticated"}) as srv:
        srv.add_user("alice", "alice-password-1")
        good, bad = ("alice", "alice-password-1"), ("alice", "wrong-password-1")
        assert get_from(srv, "/simple/", "127.0.0.1", good)[0] == 200
        for _ in range(10):  # the default limit
            assert get_from(srv, "/simple/", "127.0.0.1", bad)[0] == 401
        assert get_from(srv, "/simple/", "127.0.0.1", good)[0] == 429
        # Nobody can lock a colleague out from another machine.
        assert get_from(srv, "/simple/", "127.0.0.2", good)[0] == 200
        assert get_from(srv, "/simple/", "127.0.0.1", good)[0] == 429
        srv.cli("user", "unlock", "alice")
        assert get_from(srv, "/simple/", "127.0.0.1", good)[0] == 200


def test_missing_and_private_repositories_answer_alike(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv") as srv:
        srv.cli("repo", "create", "secret", "--read", "authenticated")
        srv.add_user("carol", "carol-password-1")
        anonymous: dict[str, str] = {}
        for name in ("nosuch", "secret"):
            response = requests.get(f"{srv.url}/{name}/simple/", timeout=TIMEOUT)
            assert response.status_code == 401, name
            assert response.headers["WWW-Authenticate"] == REALM
            anonymous[name] = response.text
        assert anonymous["nosuch"] == anonymous["secret"]
        answers: dict[str, requests.Response] = {}
        for name in ("nosuch", "secret"):
            response = requests.get(
                f"{srv.url}/{name}/simple/", auth=("carol", "carol-password-1"), timeout=TIMEOUT
            )
            assert response.status_code == 404, (name, response.reason)
            answers[name] = response
        # The body names the repository asked for, and nothing else tells them apart.
        assert answers["secret"].text == answers["nosuch"].text.replace("nosuch", "secret")
        assert answers["secret"].reason == answers["nosuch"].reason.replace("nosuch", "secret")
        assert "No repository named 'secret'" in answers["secret"].text
        # The admin sees the private repository: it really is there.
        admin = requests.get(
            f"{srv.url}/secret/simple/", auth=("__token__", srv.admin_token), timeout=TIMEOUT
        )
        assert admin.status_code == 200
