"""SECURITY.md §6 on a real `minirepo serve`: the cases that need raw sockets or real clients.

docs/security-cases.md maps every case to its tests; tests/unit/test_security_cases.py has
the Flask-level rows. Here each refusal is checked on the wire (status line, reason, body)
and against the server's data folder: no row, no blob, no temp file, nothing else changed.
On both stacks (SQLite + files, PostgreSQL + S3), but for the SQLite file's own modes.
Loopback only; every wait is a bounded poll or a socket timeout, never a sleep.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.client
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.rawhttp import read_answer
from tests.helpers.serverproc import Server, running_server
from tests.helpers.stacks import Stack, bucket_keys, row_counts
from tests.unit.test_security_cases import PROXY_CLAIMS, folder_state

pytestmark = pytest.mark.stacks

StartServer = Callable[..., AbstractContextManager[Server]]
TABLES = ("project", "release", "file", "filemetadata", "usedfilename")
TIMEOUT = 30
REALM = 'Basic realm="minirepo"'


# --- the server's state, read from outside ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class State:
    rows: dict[str, int]
    paths: dict[str, str]
    objects: list[str]


def state(server: Server) -> State:
    """Row counts, every path below the data folder and every object in its bucket."""
    return State(row_counts(server, TABLES), folder_state(server.data), bucket_keys(server))


def outside_state(server: Server) -> dict[str, str]:
    """Everything next to the data folder (its parent), the server's own log excepted."""
    return {
        path: kind
        for path, kind in folder_state(server.data.parent).items()
        if path != server.log.name and not path.startswith(f"{server.data.name}/")
    }


def healthy(server: Server) -> bool:
    return requests.get(f"{server.url}/-/health", timeout=TIMEOUT).status_code == 200


def assert_reason(response: requests.Response, status: int, reason: str) -> None:
    assert response.status_code == status, (response.status_code, response.reason)
    assert reason in response.reason
    assert response.text == response.reason + "\n"


def basic_header(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


# --- raw HTTP ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    status_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def parse_answer(data: bytes) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(b":") for line in lines)]
    return Answer(int(status_line.split(b" ")[1]), status_line, headers, body)


def connect(server: Server) -> socket.socket:
    parts = urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)


def read_all(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Read until the server closes (or `limit` bytes arrived); a reset ends it too."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def exchange(server: Server, request: bytes) -> Answer:
    with connect(server) as sock:
        sock.sendall(request)
        return parse_answer(read_all(sock))


def upload_head(token: str, extra: bytes) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: " + basic_header("__token__", token) + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=BB\r\n" + extra + b"\r\n"
    )


FORM_START = (
    b'--BB\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
    b'--BB\r\nContent-Disposition: form-data; name="protocol_version"\r\n\r\n1\r\n'
    b'--BB\r\nContent-Disposition: form-data; name="content"; '
    b'filename="big-1.0-py3-none-any.whl"\r\nContent-Type: application/octet-stream\r\n\r\n'
)


# --- case 1: path-like filenames, sent by curl ------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(
    "filename", ["../../x.whl", "..\\x.whl", "/abs.whl", "a/b-1.0.tar.gz", "../../../tmp/x.whl"]
)
def test_case01_path_filenames_from_curl(server: Server, tmp_path: Path, filename: str) -> None:
    wheel = make_wheel(tmp_path, Dist("curl-path", "1.0"))
    before, around = state(server), outside_state(server)
    cmd = ["curl", "-sS", "--max-time", str(TIMEOUT), "-o", "-", "-w", "\n%{http_code}"]
    cmd += ["-u", f"__token__:{server.admin_token}", "-F", ":action=file_upload"]
    cmd += ["-F", "protocol_version=1", "-F", "name=curl-path", "-F", "version=1.0"]
    cmd += ["-F", f"content=@{wheel};filename={filename}", f"{server.url}/"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT * 2, cwd=tmp_path)
    body, _, code = result.stdout.rpartition("\n")
    assert code == "400", result.stdout + result.stderr
    assert "path or control characters" in body
    assert state(server) == before
    assert outside_state(server) == around
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]


# --- case 6: local versions, round-tripped through pip ---------------------------------------


def test_case06_local_version_installs_with_pip(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    """Decision: `1.0+local` is accepted; pip finds, downloads and installs it."""
    wheel = make_wheel(tmp_path, Dist("local-ver", "1.0+local"))
    assert server.upload(wheel).status_code == 200
    target = tmp_path / "target"
    cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps"]
    cmd += ["--target", str(target), "--index-url", f"{server.url}/simple/"]
    cmd += ["--trusted-host", "127.0.0.1", "local-ver==1.0+local"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "local_ver-1.0+local.dist-info").is_dir()


# --- case 9: a digest that does not match ---------------------------------------------------


@pytest.mark.parametrize("field", ["sha256_digest", "md5_digest", "blake2_256_digest"])
def test_case09_digest_mismatch_over_http(server: Server, tmp_path: Path, field: str) -> None:
    wheel = make_wheel(tmp_path, Dist("digest-pkg", "1.0"))
    before = state(server)
    wrong = "0" * (32 if field == "md5_digest" else 64)
    response = server.upload(wheel, **{field: wrong})
    assert_reason(response, 400, f"The {field} supplied does not match the uploaded file")
    assert state(server) == before


# --- case 10: a body that stops short of its Content-Length ---------------------------------


def deleted_open_files(pid: int) -> int:
    """How many files the process holds open that are already unlinked (spooled bodies)."""
    count = 0
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(entry).endswith(" (deleted)")
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_case10_stalled_body_leaves_nothing(server: Server) -> None:
    """600 kB of a declared 5 MB, then silence, then a reset: no trace, server serving.

    waitress calls the app only once the whole body is in, so minirepo never sees this
    request; its spool (waitress's own unlinked temp file) is released with the socket.
    The channel_timeout path (waitress checks it every 30 s) is not waited for here.
    """
    before = state(server)
    spooled = deleted_open_files(server.proc.pid)
    body = FORM_START + b"\0" * 600_000
    with connect(server) as sock:
        sock.sendall(upload_head(server.admin_token, b"Content-Length: 5000000\r\n") + body)
        # Over 512 KiB, waitress spools the body to an unlinked temp file: wait for it.
        for _ in range(200):
            if deleted_open_files(server.proc.pid) > spooled:
                break
            assert healthy(server)  # served while the stalled upload holds its connection
        assert deleted_open_files(server.proc.pid) == spooled + 1
        assert state(server) == before
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # SO_LINGER 0: close() sends a reset, as a client that crashed would.
    for _ in range(200):
        if deleted_open_files(server.proc.pid) <= spooled:
            break
        healthy(server)  # each request is a loop turn for waitress: no sleep needed
    assert deleted_open_files(server.proc.pid) <= spooled
    assert healthy(server)
    assert state(server) == before


# --- case 12: a huge declared body --------------------------------------------------------------


def test_case12_declared_2gib_is_refused_before_the_body(server: Server) -> None:
    before = state(server)
    started = time.monotonic()
    head = upload_head(server.admin_token, b"Content-Length: 2147483648\r\n")
    with connect(server) as sock:
        sock.sendall(head)  # and not one byte of the body
        answer = parse_answer(read_answer(sock))
    assert answer.status == 413, answer.status_line
    assert time.monotonic() - started < 10
    assert healthy(server)
    assert state(server) == before


# --- case 13: chunked bodies that grow past each limit ----------------------------------------


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Server]:
    """max_upload_size 1 MiB: Flask's MAX_CONTENT_LENGTH is then 6 MiB, waitress's cap 9 MiB."""
    folder = tmp_path_factory.mktemp("small")
    env = {**stack.env(), "MINIREPO_MAX_UPLOAD_SIZE": str(1024**2)}
    with running_server(folder, env) as srv:
        yield srv


def send_chunked(sock: socket.socket, head: bytes, pieces: list[bytes]) -> bytes:
    """Send a chunked body; the server may answer (and hang up) before it is all sent."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(head)
        for piece in pieces:
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
    return read_all(sock)


@pytest.mark.parametrize(
    ("mib", "reason"),
    [
        (3, b"413 File too large: the limit is 1048576 bytes"),  # minirepo's spool
        (7, b"413 Request body too large for this server"),  # Flask's MAX_CONTENT_LENGTH
        (12, b"413 Request Entity Too Large"),  # waitress's max_request_body_size
    ],
    ids=["over-max-upload-size", "over-max-content-length", "over-waitress-limit"],
)
def test_case13_chunked_upload_growing_past_a_limit(
    small_server: Server, mib: int, reason: bytes
) -> None:
    before = state(small_server)
    head = upload_head(small_server.admin_token, b"Transfer-Encoding: chunked\r\n")
    head = head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    pieces = [FORM_START] + [b"x" * 65536] * (mib * 16) + [b"\r\n--BB--\r\n"]
    with connect(small_server) as sock:
        answer = parse_answer(send_chunked(sock, head, pieces))
    assert answer.status_line.startswith(b"HTTP/1.1 " + reason), answer.status_line
    assert healthy(small_server)
    assert state(small_server) == before
    assert list((small_server.data / "tmp").iterdir()) == []


# --- case 31: a token scoped to one project ----------------------------------------------------


def test_case31_scoped_token_cannot_upload_elsewhere(server: Server, tmp_path: Path) -> None:
    server.add_user("scoped-user", "scoped-password-1")
    token = server.create_token("scoped-user", "--project", "allowed-pkg")
    before = state(server)
    other = make_wheel(tmp_path, Dist("other-pkg", "1.0"))
    response = server.upload(other, token)
    assert_reason(response, 403, f"token {token[:11]} is scoped to project allowed-pkg")
    assert token not in response.text
    assert state(server) == before
    allowed = make_wheel(tmp_path, Dist("allowed-pkg", "1.0"))
    response = server.upload(allowed, token)
    assert response.status_code == 200


# --- case 36: CR/LF and //host in paths and queries, over a raw socket ------------------------


INJECTIONS = [
    "/simple/Foo%0d%0aSet-Cookie:x=1/",
    "/simple/%0d%0aX-Injected:y/",
    "/simple/Foo%0d%0aSet-Cookie:x=1",
    "/simple/inj-pkg%0d%0aSet-Cookie:x=1",
    "/simple/Inj.Pkg/?x=%0d%0aSet-Cookie:x=1",
    "/simple/Inj.Pkg?next=%0d%0aLocation:http://evil.example/",
    "/main/Inj.Pkg%0d%0aSet-Cookie:x=1/",
    "/files/inj-pkg/inj_pkg-1.0-py3-none-any.whl%0d%0aX-Injected:y",
    "/%0d%0aSet-Cookie:x=1/simple/inj-pkg/",
    "//evil.example/simple/inj-pkg/",
    "//evil.example/simple/Inj.Pkg/",
    "//evil.example/simple/inj-pkg",
    "///evil.example/simple/",
    "/simple//evil.example/",
    "/simple/Inj.Pkg/?next=//evil.example/",
    "/\\evil.example/simple/",
]


@pytest.fixture(scope="module")
def injection_target(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Server:
    """`Inj.Pkg`, so that normalizing redirects are really answered for these paths."""
    wheel = make_wheel(tmp_path_factory.mktemp("inj"), Dist("Inj.Pkg", "1.0"))
    assert server.upload(wheel).status_code == 200
    return server


@pytest.mark.parametrize("accept", ["*/*", "application/vnd.pypi.simple.v1+json"])
@pytest.mark.parametrize("path", INJECTIONS)
def test_case36_no_header_injection_or_off_host_redirect(
    injection_target: Server, path: str, accept: str
) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = exchange(injection_target, request)
    assert answer.status < 500, answer.status_line
    names = {name.lower() for name, _ in answer.headers}
    assert b"set-cookie" not in names
    assert b"x-injected" not in names
    assert answer.header(b"Location") is None or answer.status in (301, 308)
    location = answer.header(b"Location")
    if location is not None:
        # Relative, or werkzeug's absolute form of a merged `//`: on this host either way.
        target = urlsplit(urljoin(f"http://127.0.0.1{path}", location.decode("latin-1")))
        assert target.netloc == "127.0.0.1", location
        assert not location.startswith((b"//", b"\\", b"/\\")), location
        assert b"\r" not in location
        assert b"\n" not in location


def test_case36_raw_control_characters_in_the_request_line(server: Server) -> None:
    """Not percent-encoded: a bare CR or LF is refused by waitress, a NUL is a plain 404."""
    targets = {
        b"/simple/a\rSet-Cookie:x=1/": 400,
        b"/simple/a\nSet-Cookie: x=1/": 400,
        b"/simple/a\x00b/": 404,
    }
    for target, status in targets.items():
        request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer = exchange(server, request)
        assert answer.status == status, (target, answer.status_line)
        assert answer.header(b"Set-Cookie") is None
    assert healthy(server)


# --- case 38: HEAD answers as GET does, without the body -------------------------------------


@pytest.fixture(scope="module")
def head_target(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Server, str]:
    wheel = make_wheel(tmp_path_factory.mktemp("head"), Dist("head-pkg", "1.0"))
    assert server.upload(wheel).status_code == 200
    return server, wheel.name


def call(
    server: Server, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


@pytest.mark.parametrize("accept", ["text/html", "application/vnd.pypi.simple.v1+json"])
@pytest.mark.parametrize(
    "path",
    ["/simple/", "/simple/head-pkg/", "/main/simple/head-pkg/", "FILE", "FILE.metadata"],
)
def test_case38_head_matches_get_on_the_wire(
    head_target: tuple[Server, str], path: str, accept: str
) -> None:
    server, filename = head_target
    path = path.replace("FILE", f"/files/head-pkg/{filename}")
    headers = {"Accept": accept, "Accept-Encoding": "identity"}
    for _ in range(2):  # the first answer renders the page, the second is the cached fast path
        status, got_headers, body = call(server, "GET", path, headers)
        head_status, head_headers, head_body = call(server, "HEAD", path, headers)
        assert status == head_status == 200
        assert head_body == b""
        got_headers.pop("date", None)
        head_headers.pop("date", None)
        assert head_headers == got_headers
        assert int(head_headers["content-length"]) == len(body)


# --- case 39: Range on the wire --------------------------------------------------------------


@pytest.fixture(scope="module")
def range_target(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Server, bytes]:
    dist = Dist("range-pkg", "1.0", payload="DATA = " + repr(os.urandom(4096).hex()) + "\n")
    wheel = make_wheel(tmp_path_factory.mktemp("range"), dist)
    assert server.upload(wheel).status_code == 200
    return server, wheel.read_bytes()


RANGES = [
    ("bytes=0-0", 206, slice(0, 1)),
    ("bytes=-100", 206, slice(-100, None)),
    ("bytes=100-", 206, slice(100, None)),
    ("bytes=10-19", 206, slice(10, 20)),
    ("bytes=999999999-", 416, None),
    ("bytes=0-0,5-9", 200, slice(None)),  # several ranges: the whole file (decision)
    ("bytes=abc", 200, slice(None)),
    ("items=0-1", 200, slice(None)),
]


@pytest.mark.parametrize(("header", "status", "part"), RANGES, ids=[r[0] for r in RANGES])
def test_case39_range_on_the_wire(
    range_target: tuple[Server, bytes], header: str, status: int, part: slice | None
) -> None:
    server, data = range_target
    url = "/files/range-pkg/range_pkg-1.0-py3-none-any.whl"
    got_status, headers, body = call(server, "GET", url, {"Range": header})
    assert got_status == status
    if part is None:
        assert headers["content-range"] == f"bytes */{len(data)}"
        assert data[:64] not in body
        return
    expected = data[part]
    assert body == expected
    assert headers["content-length"] == str(len(expected))
    if status == 206:
        first = part.start % len(data) if part.start is not None else 0
        last = first + len(expected) - 1
        assert headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
    else:
        assert "content-range" not in headers


def test_case39_if_range(range_target: tuple[Server, bytes]) -> None:
    server, data = range_target
    url = "/files/range-pkg/range_pkg-1.0-py3-none-any.whl"
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    status, _, body = call(server, "GET", url, {"Range": "bytes=0-9", "If-Range": etag})
    assert (status, body) == (206, data[:10])
    stale = {"Range": "bytes=0-9", "If-Range": '"0123"'}
    status, headers, body = call(server, "GET", url, stale)
    assert (status, body) == (200, data)
    assert "content-range" not in headers


# --- extra cases: proxy headers, logs, file modes --------------------------------------------


def test_extra_proxy_headers_grant_nothing_on_the_wire(
    start_server: StartServer, tmp_path: Path
) -> None:
    """A20: waitress trusts no proxy; minirepo never treats a claimed address as local,
    neither for reading nor to escape the login failure limit."""
    with start_server(read="authenticated", login_failure_limit="3") as srv:
        srv.add_user("reader", "reader-password-1")
        srv.add_user("bystander", "bystander-password-1")
        claims = {**PROXY_CLAIMS}
        for url in ("/simple/", "/main/", "/simple/anything/"):
            response = requests.get(srv.url + url, headers=claims, timeout=TIMEOUT)
            assert response.status_code == 401, url
            assert response.headers["WWW-Authenticate"] == REALM

        def login(user: str, password: str, claimed: str) -> int:
            return requests.get(
                f"{srv.url}/simple/",
                headers={**claims, "X-Forwarded-For": claimed, "Forwarded": f"for={claimed}"},
                auth=(user, password),
                timeout=TIMEOUT,
            ).status_code

        # Per (account, address): three failures, each claiming another address, still
        # count against the one real address.
        for attempt in range(3):
            assert login("reader", "wrong-password", f"10.1.2.{attempt}") == 401
        assert login("reader", "reader-password-1", "10.200.0.1") == 429
        # Per address (3x the limit): failures for other accounts, each claiming another
        # address, lock the real address for everyone, whatever it claims.
        assert login("bystander", "bystander-password-1", "10.200.0.2") == 200
        for attempt in range(3, 9):
            assert login(f"user{attempt}", "wrong-password", f"10.1.3.{attempt}") == 401
        assert login("bystander", "bystander-password-1", "10.200.0.3") == 429


def test_extra_server_log_holds_no_secret(start_server: StartServer, tmp_path: Path) -> None:
    """A17: the real server's output (log and all) never holds a password, a token or an
    Authorization header, whatever happened. (The first-start banner prints the admin's
    first token once, by design; that token is not used here.)"""
    password, wrong = "logged-user-password-1", "logged-wrong-password-1"
    with start_server(login_failure_limit="3") as srv:
        srv.add_user("logged", password)
        token = srv.create_token("logged")
        fake = "mr-" + "Q" * 43
        wheel = make_wheel(tmp_path, Dist("log-pkg", "1.0"))
        other = tmp_path / "other"
        other.mkdir()
        changed = make_wheel(other, Dist("log-pkg", "1.0", description="other bytes"))
        assert srv.upload(wheel, auth=("logged", password)).status_code == 200
        assert srv.upload(wheel, auth=("__token__", token)).status_code == 200
        assert srv.upload(changed, auth=("__token__", token)).status_code == 409
        assert srv.upload(changed, auth=("__token__", fake)).status_code == 401
        for _ in range(4):
            assert srv.upload(changed, auth=("logged", wrong)).status_code in (401, 429)
        head = b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: " + basic_header("logged", wrong)
        exchange(srv, head + b"\r\nContent-Length: -1\r\nConnection: close\r\n\r\n")
        assert healthy(srv)
        log = srv.log.read_text(errors="replace")
        assert "stored log-pkg-1.0" in log or "stored log_pkg-1.0" in log
    for secret in (password, wrong, token, fake):
        assert secret not in log
        assert base64.b64encode(f"logged:{secret}".encode()).decode()[:16] not in log
    assert "Authorization" not in log
    assert "Basic " not in log
    # We really read the server's log, lockout warning included (checked last, so that a
    # missing warning does not hide a leak found above).
    assert "locked out" in log


def test_extra_files_are_private_even_with_umask_000(tmp_path: Path) -> None:
    """A18: the DB (and -wal/-shm), the secret, blobs: 0600; folders 0700, even when the
    server was started with a umask that would let everyone read."""
    with running_server(tmp_path / "srv", preexec_fn=lambda: os.umask(0)) as srv:
        wheel = make_wheel(tmp_path, Dist("mode-pkg", "1.0"))
        assert srv.upload(wheel).status_code == 200
        data = srv.data
        for name in ("minirepo.sqlite3", "minirepo.sqlite3-wal", "minirepo.sqlite3-shm", "secret"):
            assert (data / name).stat().st_mode & 0o777 == 0o600, name
        assert data.stat().st_mode & 0o777 == 0o700
        for path in data.rglob("*"):
            assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
