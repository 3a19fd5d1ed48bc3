"""Concurrent uploads and a locked database, against a real server (bounded loops only);
the races on both stacks (SQLite + files, PostgreSQL + S3)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import requests

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import Server
from tests.helpers.stacks import stored_blobs

TIME_LIMIT = 60.0


@pytest.mark.stacks
def test_twenty_concurrent_uploads_while_pages_are_read(server: Server, tmp_path: Path) -> None:
    token = server.admin_token
    wheels = [make_wheel(tmp_path, Dist(f"conc-{i:02d}", "1.0")) for i in range(20)]
    stop = threading.Event()
    page_statuses: list[int] = []

    def read_pages() -> None:
        deadline = time.monotonic() + TIME_LIMIT
        with requests.Session() as session:
            while not stop.is_set() and time.monotonic() < deadline and len(page_statuses) < 5000:
                page_statuses.append(session.get(f"{server.url}/simple/", timeout=30).status_code)

    reader = threading.Thread(target=read_pages)
    reader.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = [r.status_code for r in pool.map(lambda w: server.upload(w, token), wheels)]
    finally:
        stop.set()
        reader.join(timeout=TIME_LIMIT)
    assert statuses == [200] * 20
    assert page_statuses
    assert set(page_statuses) == {200}
    page = requests.get(f"{server.url}/simple/", timeout=30).text
    assert all(f"conc-{i:02d}" in page for i in range(20))
    assert "database is locked" not in server.log_tail()


def _race(server: Server, wheels: list[Path]) -> list[requests.Response]:
    barrier = threading.Barrier(len(wheels))
    token = server.admin_token

    def one(path: Path) -> requests.Response:
        barrier.wait(timeout=30)
        return server.upload(path, token)

    with concurrent.futures.ThreadPoolExecutor(len(wheels)) as pool:
        return list(pool.map(one, wheels))


@pytest.mark.stacks
def test_same_file_same_bytes_concurrently_gives_one_row(server: Server, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, Dist("race-same", "1.0"))
    responses = _race(server, [wheel] * 4)
    assert [r.status_code for r in responses] == [200] * 4
    page = requests.get(f"{server.url}/simple/race-same/", timeout=30).text
    assert page.count(wheel.name + "</a>") == 1


@pytest.mark.stacks
def test_same_filename_other_bytes_concurrently_one_wins(server: Server, tmp_path: Path) -> None:
    wheels = []
    for i in range(4):
        folder = tmp_path / str(i)
        folder.mkdir()
        wheels.append(make_wheel(folder, Dist("race-diff", "1.0", description=f"variant {i}")))
    responses = _race(server, wheels)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409]
    winner = wheels[[r.status_code for r in responses].index(200)]
    served = requests.get(f"{server.url}/files/race-diff/{winner.name}", timeout=30).content
    assert hashlib.sha256(served).digest() == hashlib.sha256(winner.read_bytes()).digest()
    assert len(stored_blobs(server, winner.name)) == 1


def test_locked_database_answers_503_with_retry_after(
    start_server: Callable[..., AbstractContextManager[Server]], tmp_path: Path
) -> None:
    with start_server(busy_timeout="0.3") as srv:
        wheel = make_wheel(tmp_path, Dist("locked-pkg", "1.0"))
        token = srv.admin_token
        holder = sqlite3.connect(srv.data / "minirepo.sqlite3", timeout=5, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            response = srv.upload(wheel, token)
            assert response.status_code == 503
            assert response.headers.get("Retry-After")
            assert "retry" in response.reason.lower()
            assert requests.get(f"{srv.url}/simple/", timeout=30).status_code == 200
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert list((srv.data / "tmp").iterdir()) == []
        assert not list((srv.data / "files").rglob(wheel.name))
        assert srv.upload(wheel, token).status_code == 200
