"""SIGTERM (systemd's stop) lets the uploads in flight finish, and then `serve` exits 0
(issue 16). Before, the signal ended waitress's loop at once: an upload whose body was still
arriving was cut off, and the client saw a reset instead of its 200.

Each test speaks HTTP over a raw socket, so that it controls exactly how much of a body has
been sent when the signal arrives; `Expect: 100-continue` tells it when the server has read
the request's head (a request whose bytes still wait in the kernel is not in flight yet).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.proxyrig import JSON_V1
from tests.helpers.rawhttp import connect, read_answer, upload_bytes
from tests.helpers.serverproc import Server, running_server

# What a stop may take when nothing holds it, and a short grace (`stop_timeout`) that a
# request never finished runs out of: bounds of the tests, not targets.
PROMPT_EXIT = 10.0
SHORT_GRACE = 1
IN_FLIGHT = re.compile(r"(\d+) request\(s\) in flight")
CUT = re.compile(r"cut (\d+) request\(s\)")


@contextlib.contextmanager
def half_sent_upload(server: Server, wheel: Path) -> Iterator[tuple[socket.socket, bytes]]:
    """A connection that sent an upload's head (read by the server: it answered `100
    Continue`) and half its body; yields the socket and the rest of the body."""
    head, body = upload_bytes(server, wheel)
    with connect(server) as sock:
        sock.sendall(head)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(1024)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 100 Continue"), reply
        middle = len(body) // 2
        sock.sendall(body[:middle])
        yield sock, body[middle:]


def big_wheel(folder: Path, name: str) -> Path:
    """A wheel of some 400 KB: its body is spooled, not taken in one read."""
    return make_wheel(folder, Dist(name, "1.0", payload=f"DATA = {secrets.token_hex(300_000)!r}\n"))


def exit_status(server: Server, within: float = PROMPT_EXIT) -> int:
    return server.proc.wait(timeout=within)


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed `sock` (read to its end) within `PROMPT_EXIT` s."""
    sock.settimeout(PROMPT_EXIT)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def counted(pattern: re.Pattern[str], log: str) -> int:
    """The count the last stop line matching `pattern` gives. A request just answered may
    still be leaving its worker thread, so a count may be one more than the test's own."""
    counts = pattern.findall(log)
    assert counts, log
    return int(counts[-1])


def idle_keep_alive(server: Server) -> socket.socket:
    """A connection that has had its answer and stays open for the next request."""
    sock = connect(server)
    host = urlsplit(server.url).netloc.encode()
    sock.sendall(b"GET /-/health HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert read_answer(sock).startswith(b"HTTP/1.1 200"), "health"
    return sock


def test_sigterm_mid_upload_finishes_the_upload_then_exits(tmp_path: Path) -> None:
    base = tmp_path / "srv"
    wheel = big_wheel(tmp_path, "stopping")
    with running_server(base) as server:
        with idle_keep_alive(server) as idle, half_sent_upload(server, wheel) as (sock, rest):
            server.proc.send_signal(signal.SIGTERM)
            started = server.wait_for_log("stopping on SIGTERM")
            assert counted(IN_FLIGHT, started) >= 1, started
            with pytest.raises(ConnectionRefusedError):
                connect(server).close()  # no new connections
            assert closed_by_server(idle)  # while the upload still holds the stop
            assert server.proc.poll() is None
            sock.sendall(rest)
            answer = read_answer(sock)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            assert b"\r\nConnection: close\r\n" in answer
        assert exit_status(server) == 0, server.log_tail()
        assert "stopped: every request finished" in server.log_tail()
    with running_server(base) as again:
        page = requests.get(
            f"{again.url}/simple/stopping/", headers={"Accept": JSON_V1}, timeout=30
        )
        assert page.status_code == 200, page.text
        (entry,) = page.json()["files"]
        assert entry["filename"] == wheel.name
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert entry["hashes"]["sha256"] == digest
        served = requests.get(urljoin(page.url, entry["url"]), timeout=30)
        assert hashlib.sha256(served.content).hexdigest() == digest


def test_idle_keep_alive_does_not_hold_the_stop(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv") as server, idle_keep_alive(server) as idle:
        server.proc.send_signal(signal.SIGTERM)
        assert exit_status(server) == 0, server.log_tail()  # well within the 60 s grace
        assert "stopped: every request finished" in server.log_tail()
        assert closed_by_server(idle)


def test_request_past_the_grace_is_cut(tmp_path: Path) -> None:
    base = tmp_path / "srv"
    wheel = big_wheel(tmp_path, "never-finished")
    with running_server(base, {"MINIREPO_STOP_TIMEOUT": f"{SHORT_GRACE}s"}) as server:
        with half_sent_upload(server, wheel) as (sock, _rest):
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert exit_status(server, SHORT_GRACE + PROMPT_EXIT) == 0, server.log_tail()
            assert time.monotonic() - signalled >= SHORT_GRACE  # the grace was given
            assert closed_by_server(sock)
        assert counted(CUT, server.log_tail()) >= 1
    with running_server(base) as again:
        page = requests.get(f"{again.url}/simple/never-finished/", timeout=30)
        assert page.status_code == 404
        assert list((again.data / "tmp").iterdir()) == []


def test_second_signal_cuts_at_once(tmp_path: Path) -> None:
    wheel = big_wheel(tmp_path, "impatient")
    with running_server(tmp_path / "srv") as server:
        with half_sent_upload(server, wheel) as (sock, _rest):
            server.proc.send_signal(signal.SIGINT)  # Ctrl-C stops the same way
            server.wait_for_log("stopping on SIGINT")
            server.proc.send_signal(signal.SIGTERM)
            assert exit_status(server) == 0, server.log_tail()
            assert closed_by_server(sock)
        assert counted(CUT, server.log_tail()) >= 1
