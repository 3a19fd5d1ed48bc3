"""Issue 16 on a real `minirepo serve`: the access log an operator reads, and the answers
people can act on (405 on the index URL, a busy port, 409 wording).

The server writes a request's line once waitress is done with the answer, which may be
just after the client has read it: every check polls the log with a deadline.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.rawhttp import read_answer
from tests.helpers.serverproc import FAST_HASH, Server, base_env, running_server

PASSWORD = "alice-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("access")) as srv:
        srv.add_user("alice", PASSWORD)
        yield srv


def access_lines(server: Server) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if "minirepo.access" in line]


def wait_for_line(server: Server, *parts: str, timeout: float = 10) -> str:
    """The first access line holding every one of `parts`."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in access_lines(server) if all(part in line for part in parts)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no access line with {parts}:\n" + "\n".join(access_lines(server))
            )
        time.sleep(0.05)


def wheel(tmp_path: Path, name: str, payload: str = "") -> Path:
    folder = tmp_path / f"dist-{len(payload)}-{time.monotonic_ns()}"
    folder.mkdir()
    return make_wheel(folder, Dist(name, "1.0", payload=payload))


def post_file(server: Server, path: Path, url: str) -> requests.Response:
    """An upload without credentials."""
    with path.open("rb") as handle:
        return requests.post(f"{server.url}{url}", files={"content": handle}, timeout=30)


def raw_post(server: Server, head: bytes) -> bytes:
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=10) as sock:
        sock.sendall(head)
        return read_answer(sock)


def refused(server: Server, response: requests.Response, status: int) -> str:
    """The refusal's line: its status and the reason the client was given."""
    assert response.status_code == status, response.text
    return wait_for_line(server, f'" {status} ', f'"{response.reason}"')


def test_refused_uploads_leave_a_line_with_status_and_reason(
    server: Server, tmp_path: Path
) -> None:
    small = wheel(tmp_path, "refused-small")
    refused(server, post_file(server, small, "/"), 401)
    reader = server.create_token("alice", "--permission", "read")
    line = refused(server, server.upload(small, reader), 403)
    assert f"alice/{reader[:11]} " in line
    assert reader not in server.log.read_text()
    assert server.upload(wheel(tmp_path, "twice")).status_code == 200
    again = server.upload(wheel(tmp_path, "twice", payload="other = 1\n"))
    assert "upload a new version" in again.reason
    refused(server, again, 409)


def test_refusals_waitress_makes_from_the_head_are_logged(server: Server, tmp_path: Path) -> None:
    """A large body is judged from its head and refused before the app sees it."""
    big = wheel(tmp_path, "refused-big", payload=f"DATA = {os.urandom(200_000).hex()!r}\n")
    answer = post_file(server, big, "/main/")
    assert answer.status_code == 401
    wait_for_line(server, '"POST /main/" 401 ', '"Authentication required"')
    head = (
        b"POST /main/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: %d\r\n\r\n" % 10**12
    )
    raw = raw_post(server, head)
    assert raw.startswith(b"HTTP/1.1 413"), raw[:200]
    line = wait_for_line(server, '"POST /main/" 413 ')
    assert "Upload too large" in line


def test_path_token_lines_show_no_token(server: Server) -> None:
    token = server.create_token("alice", "--permission", "read")
    answer = requests.get(f"{server.url}/-/t/{token}/simple/?again={token}", timeout=10)
    assert answer.status_code == 200
    line = wait_for_line(server, '"GET /-/t/<redacted>/simple/?again=<redacted>" 200 ')
    assert f" alice/{token[:11]} " in line
    assert token not in server.log.read_text()


def test_callers_are_named_by_user_or_token_prefix(server: Server) -> None:
    by_password = requests.get(f"{server.url}/main/simple/", auth=("alice", PASSWORD), timeout=10)
    assert by_password.status_code == 200
    wait_for_line(server, ' alice "GET /main/simple/" 200 ')
    token = server.create_token("alice")
    by_token = requests.get(f"{server.url}/simple/?t", auth=("__token__", token), timeout=10)
    assert by_token.status_code == 200
    wait_for_line(server, f' alice/{token[:11]} "GET /simple/?t" 200 ')
    assert token not in server.log.read_text()
    assert PASSWORD not in server.log.read_text()


def test_downloads_are_logged_with_their_size(server: Server, tmp_path: Path) -> None:
    """Files go out through waitress's file wrapper, untouched by the log layer."""
    path = wheel(tmp_path, "downloaded", payload=f"DATA = {os.urandom(50_000).hex()!r}\n")
    assert server.upload(path).status_code == 200
    url = f"/files/downloaded/{path.name}"
    answer = requests.get(f"{server.url}{url}", timeout=10)
    assert answer.content == path.read_bytes()
    wait_for_line(server, f'"GET {url}" 200 {path.stat().st_size} ')


def test_fast_path_answers_are_logged(server: Server) -> None:
    for _ in range(3):  # the first renders the page, the others come from the fast path
        assert requests.get(f"{server.url}/simple/?fast", timeout=10).status_code == 200
    deadline = time.monotonic() + 10
    while len([line for line in access_lines(server) if '"GET /simple/?fast"' in line]) < 3:
        assert time.monotonic() < deadline, "\n".join(access_lines(server))
        time.sleep(0.05)


def test_upload_to_the_index_url_is_405_naming_the_upload_url(
    server: Server, tmp_path: Path
) -> None:
    for path, target in [("/simple/", "/"), ("/main/simple/", "/main/")]:
        response = server.upload(wheel(tmp_path, "index-url"), url=f"{server.url}{path}")
        assert response.status_code == 405
        assert response.reason == f"Uploads go to {server.url}{target}, not the /simple/ index URL"
        assert response.text.strip() == response.reason  # uv shows the body
        refused(server, response, 405)


def test_json_lines_and_no_sql_at_debug(tmp_path: Path) -> None:
    settings = {"MINIREPO_LOG_LEVEL": "debug"}
    with running_server(tmp_path, settings, serve_args=("--log-format", "json")) as srv:
        token = srv.admin_token
        assert requests.get(f"{srv.url}/-/t/{token}/simple/", timeout=10).status_code == 401
        assert requests.get(f"{srv.url}/simple/", auth=("admin", "nope"), timeout=10).ok is False
        deadline = time.monotonic() + 10
        while True:
            lines = [
                json.loads(line)
                for line in srv.log.read_text().splitlines()
                if line.startswith("{")
            ]
            access = [line for line in lines if line["logger"] == "minirepo.access"]
            if len(access) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        log = srv.log.read_text()
    by_path = {line["path"]: line for line in access}
    tokened = by_path["/-/t/<redacted>/simple/"]
    assert tokened["token"] == token[:11]
    assert (tokened["status"], tokened["method"]) == (401, "GET")
    assert "not a read token" in tokened["reason"]
    assert {"time", "level", "client", "user", "bytes", "duration_ms"} <= set(tokened)
    refused_login = next(line for line in access if line["user"] == "admin")
    assert refused_login["status"] == 401
    assert all("time" in line and "message" in line for line in lines)
    assert "SELECT " not in log.upper()  # peewee's queries stay out at debug
    assert token not in log.split("minirepo is serving")[1]


def test_a_port_taken_after_the_probe_gets_the_same_line(tmp_path: Path) -> None:
    """`serve` tries the port before the data folder (tests/unit/test_cli.py); if another
    process takes it in the moment between, waitress's own bind says the same."""
    skip_probe = (
        "from minirepo import server\nserver.check_address = lambda settings: None\n"
        "from minirepo.cli import main\nmain()"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                skip_probe,
                "serve",
                "--data",
                str(tmp_path),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env=base_env({"MINIREPO_PASSWORD_HASH": FAST_HASH, "MINIREPO_CONFIG": os.devnull}),
            timeout=60,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"minirepo: Address 127.0.0.1:{port} is already in use: "
        "stop the other server or pick another with --port"
    )
