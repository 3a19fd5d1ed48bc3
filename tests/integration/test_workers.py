"""`minirepo serve --workers 2` (issue 18): both workers answer, a killed one comes back,
SIGTERM drains them all, and what was per process stays right across them.

A test tells the workers apart by the process tree: each connection it holds open is
traced (through /proc/net/tcp) to the worker whose descriptors hold the server's end.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import http.client
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.postgres import PostgresServer, fresh_database
from tests.helpers.rawhttp import connect, read_answer, twine_request, upload_bytes
from tests.helpers.serverproc import Server, running_server

WORKERS = ("--workers", "2")
TIMEOUT = 30.0
LIMIT = 20.0  # seconds any wait below may take


def poll(condition: Callable[[], object], what: str, timeout: float = LIMIT) -> object:
    """`condition()`'s first true value, asked every 50 ms; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        event.wait(0.05)


def workers_of(server: Server) -> set[int]:
    """The pids of the server's live workers (its children that are not zombies)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == server.proc.pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def two_workers(server: Server, old: set[int] = frozenset()) -> set[int]:  # type: ignore[assignment]
    """Wait until the server has two workers, none of them in `old`."""

    def ready() -> set[int] | None:
        pids = workers_of(server)
        return pids if len(pids) == 2 and not pids & old else None

    return poll(ready, "two workers")  # type: ignore[return-value]


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def owner(server: Server, client: socket.socket, pids: set[int]) -> int | None:
    """The worker holding the server's end of `client`'s connection."""
    port = f"{client.getsockname()[1]:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(f":{port}") and fields[9] != "0":
            for pid in pids:
                if fields[9] in socket_inodes(pid):
                    return pid
    return None


def pinned(server: Server, pids: set[int]) -> dict[int, http.client.HTTPConnection]:
    """A kept-alive connection answered by each worker (opened until each has one)."""
    parts = urlsplit(server.url)
    found: dict[int, http.client.HTTPConnection] = {}
    spare: list[http.client.HTTPConnection] = []
    for _ in range(200):
        if len(found) == len(pids):
            break
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
        assert ask(conn, "/-/health")[0] == 200
        pid = owner(server, conn.sock, pids)
        if pid is None or pid in found:
            spare.append(conn)
        else:
            found[pid] = conn
    for conn in spare:
        conn.close()
    assert len(found) == len(pids), f"answered only by {sorted(found)} of {sorted(pids)}"
    return found


def ask(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn.request("GET", path, headers=headers or {})
    answer = conn.getresponse()
    return answer.status, answer.read()


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = {"MINIREPO_LOGIN_FAILURE_LIMIT": "4"}
    with running_server(
        tmp_path_factory.mktemp("workers"), settings, serve_args=("--no-upstream", *WORKERS)
    ) as srv:
        yield srv


def test_every_worker_answers(server: Server) -> None:
    pids = two_workers(server)
    connections = pinned(server, pids)
    for conn in connections.values():
        assert ask(conn, "/simple/")[0] == 200
        conn.close()
    assert "2 workers" in server.log.read_text()


def test_a_killed_worker_is_started_again(server: Server) -> None:
    pids = two_workers(server)
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    after = two_workers(server, {victim})
    assert len(after & pids) == 1
    server.wait_for_log(f"(pid {victim}) killed by SIGKILL")
    for conn in pinned(server, after).values():
        assert ask(conn, "/simple/")[0] == 200
        conn.close()


def test_a_token_revoked_with_the_cli_is_refused_by_every_worker(server: Server) -> None:
    server.add_user("rita", "rita-password")
    token = server.create_token("rita")
    connections = pinned(server, two_workers(server))
    credentials = basic("__token__", token)
    for conn in connections.values():  # each worker has it in its cache now
        assert ask(conn, "/simple/", credentials)[0] == 200
    server.cli("token", "revoke", token)  # returns once the change counts everywhere
    for conn in connections.values():
        assert ask(conn, "/simple/", credentials)[0] == 401
        conn.close()


def test_failed_logins_are_bounded_across_workers(server: Server) -> None:
    """limit 4, 2 workers: each allows 2, so the server refuses the 5th at the latest."""
    server.add_user("lena", "lena-password")
    connections = pinned(server, two_workers(server))
    wrong = basic("lena", "wrong")
    statuses = [ask(conn, "/simple/", wrong)[0] for _ in range(4) for conn in connections.values()]
    assert statuses.count(401) == 4, statuses
    assert statuses[-2:] == [429, 429], statuses
    for conn in connections.values():
        conn.close()


def scrape(conn: http.client.HTTPConnection, token: str) -> dict[str, float]:
    status, body = ask(conn, "/-/metrics", basic("__token__", token))
    assert status == 200, body
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


PAGES = "minirepo_http_requests_total[('code', '200'), ('kind', 'page')]"


def test_metrics_are_summed_and_never_run_backwards(server: Server) -> None:
    token = server.admin_token
    pids = two_workers(server)
    connections = pinned(server, pids)
    for conn in connections.values():
        for _ in range(5):
            assert ask(conn, "/simple/")[0] == 200
    scrapes = [scrape(conn, token) for conn in connections.values()]
    # Both workers see the pages the other answered: one sum, whoever is scraped.
    assert scrapes[0][PAGES] == scrapes[1][PAGES] >= 10, scrapes
    assert "minirepo_disk_free_bytes[]" in scrapes[0]
    before = scrapes[1][PAGES]
    victim, survivor = list(connections)
    os.kill(victim, signal.SIGKILL)
    connections[victim].close()
    after = pinned(server, two_workers(server, {victim}))
    for conn in after.values():
        assert scrape(conn, token)[PAGES] >= before
        conn.close()
    connections[survivor].close()


def test_sigterm_drains_every_worker_and_the_upload_in_flight_finishes(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, Dist("drained", "1.0", payload="DATA = 1\n" * 30_000))
    with running_server(tmp_path / "srv", serve_args=WORKERS) as server:
        pids = two_workers(server)
        head, body = upload_bytes(server, wheel)
        with connect(server) as sock:
            sock.sendall(head)
            reply = b""
            while b"\r\n\r\n" not in reply:  # the server read the head: the upload is in flight
                chunk = sock.recv(1024)
                assert chunk, reply
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 100 Continue"), reply
            sock.sendall(body[: len(body) // 2])
            server.proc.send_signal(signal.SIGTERM)
            poll(
                lambda: server.log.read_text().count("stopping on SIGUSR1") == 2,
                "both workers stopping",
            )
            assert server.proc.poll() is None  # the upload holds the stop
            sock.sendall(body[len(body) // 2 :])
            answer = read_answer(sock)
            assert answer.startswith(b"HTTP/1.1 200"), answer
        assert server.proc.wait(timeout=LIMIT) == 0, server.log_tail()
        assert not workers_of(server)
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def race_one_filename(server: Server, tmp_path: Path) -> None:
    """One filename, 8 uploads of the same bytes and 8 of other bytes, through 2 workers:
    no 503, one row; the winner's bytes answer 200, any other bytes 409."""
    same = make_wheel(tmp_path, Dist("raced", "1.0"))
    wheels = [same] * 8
    for i in range(8):
        folder = tmp_path / str(i)
        folder.mkdir()
        wheels.append(make_wheel(folder, Dist("raced", "1.0", description=f"variant {i}")))
    barrier = threading.Barrier(len(wheels))
    token = server.admin_token

    def one(path: Path) -> requests.Response:
        barrier.wait(timeout=TIMEOUT)
        return server.upload(path, token)

    with concurrent.futures.ThreadPoolExecutor(len(wheels)) as pool:
        statuses = [answer.status_code for answer in pool.map(one, wheels)]
    assert 503 not in statuses, statuses
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in wheels]
    winner = digests[statuses.index(200)]
    assert statuses == [200 if digest == winner else 409 for digest in digests]
    page = requests.get(f"{server.url}/simple/raced/", timeout=TIMEOUT).text
    assert page.count(same.name + "</a>") == 1
    served = requests.get(f"{server.url}/files/raced/{same.name}", timeout=TIMEOUT).content
    assert hashlib.sha256(served).hexdigest() == winner
    assert "database is locked" not in server.log_tail()


def test_sixteen_racing_uploads_give_one_process_answers(server: Server, tmp_path: Path) -> None:
    race_one_filename(server, tmp_path)


def test_sixteen_racing_uploads_on_postgresql(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with (
        fresh_database(postgres_server) as url,
        running_server(tmp_path / "srv", {"MINIREPO_DATABASE": url}, serve_args=WORKERS) as srv,
    ):
        two_workers(srv)
        race_one_filename(srv, tmp_path)


def test_a_page_changed_through_one_worker_is_fresh_in_the_other(
    server: Server, tmp_path: Path
) -> None:
    """Within page_cache_seconds (0.25 s): the other worker re-reads the generation."""
    first, second = pinned(server, two_workers(server)).values()
    assert ask(second, "/simple/fresh/")[0] == 404  # the other worker looked: none yet
    wheel = make_wheel(tmp_path, Dist("fresh", "1.0"))
    prepared = twine_request(server, wheel)
    first.request("POST", "/", prepared.body, dict(prepared.headers))
    answer = first.getresponse()
    assert answer.status == 200, answer.read()
    answer.read()
    uploaded = time.monotonic()
    poll(lambda: wheel.name.encode() in ask(second, "/simple/fresh/")[1], "the new file")
    assert time.monotonic() - uploaded < 1.0  # page_cache_seconds and a margin
    first.close()
    second.close()


def test_sixteen_uploads_at_once_no_503(server: Server, tmp_path: Path) -> None:
    wheels = [make_wheel(tmp_path, Dist(f"many-{i:02d}", "1.0")) for i in range(16)]
    token = server.admin_token
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = [
            answer.status_code for answer in pool.map(lambda w: server.upload(w, token), wheels)
        ]
    assert statuses == [200] * 16
