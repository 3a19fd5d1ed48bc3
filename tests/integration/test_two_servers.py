"""Two `minirepo serve` processes (two boxes, as far as they can tell) on one PostgreSQL
database and one S3 bucket: the same answers as one server, whichever a request reaches."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.rawhttp import connect, send_partial_upload
from tests.helpers.serverproc import Server, running_server
from tests.helpers.stacks import STACKS, Stack, stored_blobs

PAGE_CACHE_SECONDS = 1.0
RACERS = 16


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with contextlib.ExitStack() as held:
        yield Stack(STACKS[1], request, held)


@pytest.fixture(scope="module")
def shared_env(stack: Stack) -> dict[str, str]:
    """One database, one bucket prefix and one signing key for both servers."""
    return {
        **stack.env(),
        "MINIREPO_SECRET_KEY": secrets.token_urlsafe(32),
        "MINIREPO_PAGE_CACHE_SECONDS": str(PAGE_CACHE_SECONDS),
    }


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, shared_env: dict[str, str]
) -> Iterator[tuple[Server, Server, str]]:
    """Box A (its first start made the admin) and box B, each with its own data folder;
    and the admin's token, printed by A."""
    base = tmp_path_factory.mktemp("boxes")
    with running_server(base / "a", shared_env) as first:
        token = first.admin_token
        with running_server(base / "b", shared_env) as second:
            yield first, second, token


def test_racing_uploads_of_one_filename_across_boxes(
    pair: tuple[Server, Server, str], tmp_path: Path
) -> None:
    """16 uploads of one filename, two contents, split between the boxes: one row, every
    upload of the winning bytes 200, every other 409, as on one SQLite server."""
    first, second, token = pair
    variants = []
    for number in range(2):
        folder = tmp_path / str(number)
        folder.mkdir()
        variants.append(make_wheel(folder, Dist("race-boxes", "1.0", description=f"v{number}")))
    plan = [(first if i % 2 else second, variants[(i // 2) % 2]) for i in range(RACERS)]
    barrier = threading.Barrier(RACERS)

    def one(job: tuple[Server, Path]) -> int:
        server, path = job
        barrier.wait(timeout=30)
        return server.upload(path, token).status_code

    with concurrent.futures.ThreadPoolExecutor(RACERS) as pool:
        statuses = list(pool.map(one, plan))
    winners = {path for (_, path), status in zip(plan, statuses, strict=True) if status == 200}
    assert len(winners) == 1, statuses
    (winner,) = winners
    expected = [200 if path == winner else 409 for _, path in plan]
    assert statuses == expected
    digest = hashlib.sha256(winner.read_bytes()).hexdigest()
    for server in (first, second):
        page = requests.get(f"{server.url}/simple/race-boxes/", timeout=30).text
        assert page.count(winner.name + "</a>") == 1
        served = requests.get(f"{server.url}/files/race-boxes/{winner.name}", timeout=30)
        assert hashlib.sha256(served.content).hexdigest() == digest
    assert any(digest in key for key in stored_blobs(first, winner.name))


def test_a_token_revoked_through_one_box_is_refused_by_the_other_at_once(
    pair: tuple[Server, Server, str],
) -> None:
    first, second, token = pair
    admin = ("__token__", token)
    made = requests.post(
        f"{first.url}/-/api/tokens", json={"permission": "read"}, auth=admin, timeout=30
    )
    assert made.status_code == 201, made.text
    reader = ("__token__", made.json()["token"])
    for server in (first, second):
        assert requests.get(f"{server.url}/simple/", auth=reader, timeout=30).status_code == 200
    revoked = requests.delete(
        f"{first.url}/-/api/tokens/{made.json()['prefix']}", auth=admin, timeout=30
    )
    assert revoked.status_code == 200, revoked.text
    for server in (second, first):
        assert requests.get(f"{server.url}/simple/", auth=reader, timeout=30).status_code == 401


def test_a_page_changed_through_one_box_is_fresh_on_the_other(
    pair: tuple[Server, Server, str], tmp_path: Path
) -> None:
    first, second, token = pair
    url = f"{second.url}/simple/fresh-boxes/"
    assert first.upload(make_wheel(tmp_path, Dist("fresh-boxes", "1.0")), token).status_code == 200
    assert requests.get(url, timeout=30).status_code == 200  # B has the page cached now
    wheel = make_wheel(tmp_path, Dist("fresh-boxes", "1.1"))
    assert first.upload(wheel, token).status_code == 200
    uploaded = time.monotonic()
    limit = PAGE_CACHE_SECONDS + 1.0  # the cache's age, the counter's, and slack
    while wheel.name not in requests.get(url, timeout=30).text:
        assert time.monotonic() - uploaded < limit, "box B still serves the old page"
        time.sleep(0.05)  # a page poll, bounded by `limit`


def test_kill_9_of_one_box_mid_upload_loses_nothing_acknowledged(
    tmp_path: Path, shared_env: dict[str, str], pair: tuple[Server, Server, str]
) -> None:
    _, second, token = pair
    with running_server(tmp_path / "c", shared_env) as doomed:
        acknowledged = [make_wheel(tmp_path, Dist("acked-boxes", f"1.{i}")) for i in range(3)]
        for number, path in enumerate(acknowledged):
            box = doomed if number % 2 == 0 else second
            assert box.upload(path, token).status_code == 200
        with connect(doomed) as sock:
            send_partial_upload(sock)
            doomed.proc.kill()
            doomed.proc.wait(timeout=30)
    for path in acknowledged:
        served = requests.get(f"{second.url}/files/acked-boxes/{path.name}", timeout=30)
        assert served.content == path.read_bytes()
    assert second.cli("fsck", "--no-checksum").returncode == 0
