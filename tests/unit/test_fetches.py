"""A proxy's file miss (`services.fetches`): one upstream fetch, teed to every client.

The upstream is a fake this module controls: its body stops at a chosen offset until the
test lets it go on, so trickling, lying and failing are deterministic, and every wait in
here is bounded.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import socket
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from minirepo import dists, models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.errors import BadGateway, Busy, GatewayTimeout
from minirepo.services import fetches as fetches_module
from minirepo.services import repos
from minirepo.services.container import Services
from minirepo.services.fetches import CHUNK, Download, FetchBusy, Fetches, FetchFailed
from minirepo.services.repos import RepoInfo
from minirepo.services.upload import Checked, SpoolFile, Uploader
from minirepo.upstream import Upstream, UpstreamConfig, UpstreamError
from minirepo.upstream_pages import UpstreamFile
from tests.helpers.distfactory import Dist, wheel_members, write_zip
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.upstreamfake import FakeUpstream as FakeIndex

WAIT = 20.0  # the bound of every wait in here; a passing test waits far less
URL = "http://127.0.0.1:1/files/"


def upstream_error(kind: str, url: str, text: str) -> UpstreamError:
    """As the real client words it."""
    return UpstreamError(kind, f"upstream {url}{text}", 502 if kind == "status" else None)


class FakeResponse:
    def __init__(self, upstream: FakeUpstream, data: bytes, length: int | None) -> None:
        self.upstream = upstream
        self.data = data
        self.status = 200
        self.length = length
        self.closed = False

    def iter_chunks(self, size: int = 65536) -> Iterator[bytes]:
        position = 0
        while True:
            self.upstream.gate(position)
            if position >= len(self.data):
                return
            chunk = self.data[position : position + size]
            position += len(chunk)
            fail_at = self.upstream.body_error_at
            if fail_at is not None and position > fail_at:
                raise upstream_error("truncated", self.upstream.url, ": the answer ended early")
            yield chunk

    def close(self) -> None:
        self.closed = True


class FakeUpstream:
    """Serves `files` by URL; `hold_at`: the body waits before that offset (or before
    its end, when it is the length) until `release` is set."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.opens = 0
        self.lock = threading.Lock()
        self.hold_at: int | None = None
        self.release = threading.Event()
        self.reached = threading.Event()  # the body got to `hold_at`
        self.head_error: UpstreamError | None = None
        self.body_error_at: int | None = None
        self.lengths: dict[str, int | None] = {}
        self.responses: list[FakeResponse] = []
        self.url = ""

    def open_file(self, url: str) -> FakeResponse:
        with self.lock:
            self.opens += 1
        if self.head_error is not None:
            raise self.head_error
        data = self.files[url]
        self.url = url
        response = FakeResponse(self, data, self.lengths.get(url, len(data)))
        self.responses.append(response)
        return response

    def hold(self, offset: int) -> None:
        """Stop the next bodies before `offset` until `release` is set."""
        self.release = threading.Event()
        self.reached = threading.Event()
        self.hold_at = offset

    def gate(self, position: int) -> None:
        if self.hold_at is not None and position >= self.hold_at:
            self.reached.set()
            assert self.release.wait(WAIT), "the test never released the upstream"


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """SQLite, or PostgreSQL for a test parametrized with `app` indirectly."""
    backend = getattr(request, "param", "sqlite")
    url = "" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data=tmp_path / "data", password_hash=FAST_HASH, database=url)
    flask_app = create_app(settings)
    services: Services = flask_app.extensions["minirepo"]
    with services.folder.database.activated():
        yield flask_app
    services.folder.database.close()


BOTH_BACKENDS = pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def services(app: Flask) -> Services:
    found: Services = app.extensions["minirepo"]
    return found


@pytest.fixture
def proxy(app: Flask) -> RepoInfo:
    """The first start's `pypi-proxy` (made here if this build's first start makes none)."""
    row = models.Repository.get_or_none(models.Repository.name == "pypi-proxy")
    if row is None:
        row = models.Repository.create(
            name="pypi-proxy", kind="proxy", upstream="http://127.0.0.1:1/simple/"
        )
    assert row.kind == "proxy"
    return repos.info_of(row)


def make_fetches(services: Services, **changes: Any) -> Fetches:
    settings = dataclasses.replace(services.settings, **{"threads": 16, **changes})
    return Fetches(services.folder.database, services.folder.store, services.uploads, settings)


@pytest.fixture
def fetches(services: Services) -> Iterator[Fetches]:
    made = make_fetches(services)
    yield made
    made.close()
    assert made.wait_idle(WAIT)


def build_wheel(folder: Path, name: str = "demo-pkg", extra: int = 300_000) -> Path:
    """A valid wheel with `extra` incompressible bytes in it (several chunks)."""
    folder.mkdir(exist_ok=True)
    dist = Dist(name, "1.0")
    members = wheel_members(dist)
    members[f"{dist.module}/blob.bin"] = os.urandom(extra)
    return write_zip(folder / dist.wheel_name, members)


def entry(path: Path, *, sha256: str | None = None, size: int | None = -1) -> UpstreamFile:
    data = path.read_bytes()
    return UpstreamFile(
        filename=path.name,
        url=URL + path.name,
        sha256=hashlib.sha256(data).hexdigest() if sha256 is None else sha256,
        requires_python="",
        yanked=False,
        yanked_reason="",
        metadata_sha256=None,
        size=len(data) if size == -1 else size,
        upload_time=None,
    )


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return build_wheel(tmp_path / "dist")


@pytest.fixture
def upstream(wheel: Path) -> FakeUpstream:
    return FakeUpstream({URL + wheel.name: wheel.read_bytes()})


def in_thread(services: Services, work: Callable[[], Any]) -> threading.Thread:
    """Run `work` in a started thread with the app's database active, as waitress does."""
    database = services.folder.database

    def run() -> None:
        with database.activated():
            try:
                work()
            finally:
                database.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_all(download: Download | None) -> bytes:
    assert download is not None
    try:
        return b"".join(download)
    finally:
        download.close()


def tmp_files(services: Services) -> list[str]:
    return sorted(os.listdir(services.settings.data / "tmp"))


def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def stored(proxy: RepoInfo, filename: str) -> models.File | None:
    return models.File.get_or_none(
        (models.File.repository == proxy.id) & (models.File.filename == filename)
    )


# -- a miss ------------------------------------------------------------------------------


@BOTH_BACKENDS
def test_a_miss_streams_the_exact_bytes_and_publishes_the_file(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    data = wheel.read_bytes()
    download = fetches.download(proxy, upstream, entry(wheel), keep=True)
    assert download is not None
    assert download.size == len(data)
    assert read_all(download) == data
    assert fetches.wait_idle(WAIT)
    row = stored(proxy, wheel.name)
    assert row is not None
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert row.size == len(data)
    assert row.uploader is None
    assert models.FileMetadata.select().where(models.FileMetadata.file == row.id).exists()
    assert services.folder.store.sha256(row.storage_key) == row.sha256
    assert models.Event.get(models.Event.action == "upload").actor == "proxy:pypi-proxy"
    assert tmp_files(services) == []
    assert models.FetchJob.select().count() == 0
    assert fetches.tails == 0
    assert upstream.responses[0].closed
    # The next request finds the stored file: the caller serves it.
    assert fetches.download(proxy, upstream, entry(wheel), keep=True) is None
    assert upstream.opens == 1
    assert fetches.tails == 0


def test_the_content_length_is_the_upstreams_when_the_page_gives_no_size(
    proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    download = fetches.download(proxy, upstream, entry(wheel, size=None), keep=True)
    assert download is not None
    assert download.size == wheel.stat().st_size
    assert read_all(download) == wheel.read_bytes()
    upstream.lengths[URL + wheel.name] = None
    other = build_wheel(wheel.parent.parent / "other", "other-pkg")
    upstream.files[URL + other.name] = other.read_bytes()
    upstream.lengths[URL + other.name] = None
    download = fetches.download(proxy, upstream, entry(other, size=None), keep=True)
    assert download is not None
    assert download.size is None
    assert read_all(download) == other.read_bytes()
    assert fetches.wait_idle(WAIT)
    assert stored(proxy, other.name) is not None


def test_ten_concurrent_requests_make_one_upstream_fetch(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    upstream.hold(2 * CHUNK)
    file = entry(wheel)
    all_in = threading.Barrier(11, timeout=WAIT)
    bodies: list[bytes] = []

    def client() -> None:
        download = fetches.download(proxy, upstream, file, keep=True)
        all_in.wait()
        bodies.append(read_all(download))

    threads = [in_thread(services, client) for _ in range(10)]
    all_in.wait()  # every client holds a body: all of them joined the one job
    upstream.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert bodies == [wheel.read_bytes()] * 10
    assert upstream.opens == 1
    assert fetches.wait_idle(WAIT)
    assert models.File.select().count() == 1
    assert fetches.tails == 0


def test_the_last_chunk_is_withheld_until_the_file_is_verified(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    data = wheel.read_bytes()
    upstream.hold(len(data))  # every byte is written; the body has not ended yet
    received: list[int] = []
    body: list[bytes] = []

    def client() -> None:
        download = fetches.download(proxy, upstream, entry(wheel), keep=True)
        assert download is not None
        for chunk in download:
            body.append(chunk)
            received.append(sum(map(len, body)))

    thread = in_thread(services, client)
    assert upstream.reached.wait(WAIT)
    wait_until(lambda: bool(received) and received[-1] == len(data) - CHUNK)
    time.sleep(0.1)  # nothing more may come however long it waits
    assert received[-1] == len(data) - CHUNK
    upstream.release.set()
    thread.join(WAIT)
    assert b"".join(body) == data


# -- failures: no client ever holds a complete wrong file ----------------------------------


def failing_tails(
    services: Services, fetches: Fetches, proxy: RepoInfo, upstream: FakeUpstream, file: Any
) -> list[tuple[int, BaseException | None]]:
    """Three tails of a body held at its second chunk, then let go: what each received
    and raised."""
    upstream.hold(2 * CHUNK)
    all_in = threading.Barrier(4, timeout=WAIT)
    outcomes: list[tuple[int, BaseException | None]] = []

    def client() -> None:
        download = fetches.download(proxy, upstream, file, keep=True)
        assert download is not None
        all_in.wait()
        got = 0
        try:
            for chunk in download:
                got += len(chunk)
        except FetchFailed as exc:
            outcomes.append((got, exc))
        else:
            outcomes.append((got, None))

    threads = [in_thread(services, client) for _ in range(3)]
    all_in.wait()
    upstream.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert fetches.wait_idle(WAIT)
    return outcomes


def assert_nothing_kept(services: Services, fetches: Fetches) -> None:
    assert models.File.select().count() == 0
    assert models.FetchJob.select().count() == 0
    assert tmp_files(services) == []
    assert fetches.tails == 0


def test_a_lying_sha256_aborts_every_tail_before_the_end(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    size = wheel.stat().st_size
    outcomes = failing_tails(services, fetches, proxy, upstream, entry(wheel, sha256="ab" * 32))
    assert len(outcomes) == 3
    for got, exc in outcomes:
        assert isinstance(exc, FetchFailed)
        assert "sha256" in str(exc)
        assert got <= size - CHUNK
    assert_nothing_kept(services, fetches)
    # A request after the failure fetches again (and is refused again).
    upstream.hold(0)
    download = fetches.download(proxy, upstream, entry(wheel, sha256="ab" * 32), keep=True)
    upstream.release.set()
    with pytest.raises(FetchFailed):
        read_all(download)
    assert upstream.opens == 2


def test_a_body_longer_than_the_pages_size_aborts_every_tail(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    size = wheel.stat().st_size
    upstream.lengths[URL + wheel.name] = None  # no Content-Length to refuse it early
    outcomes = failing_tails(services, fetches, proxy, upstream, entry(wheel, size=size - 100))
    assert [type(exc) for _got, exc in outcomes] == [FetchFailed] * 3
    assert all(got <= size - 100 - CHUNK for got, _exc in outcomes)
    assert "longer" in str(outcomes[0][1])
    assert_nothing_kept(services, fetches)


def test_an_upstream_error_mid_body_aborts_every_tail(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    upstream.body_error_at = 3 * CHUNK
    outcomes = failing_tails(services, fetches, proxy, upstream, entry(wheel))
    assert [type(exc) for _got, exc in outcomes] == [FetchFailed] * 3
    assert str(outcomes[0][1]) == f"upstream {URL}{wheel.name}: the answer ended early"
    assert_nothing_kept(services, fetches)


def test_a_body_over_the_upload_limit_is_not_fetched(
    services: Services, proxy: RepoInfo, wheel: Path, upstream: FakeUpstream
) -> None:
    small = make_fetches(services, max_upload_size=100_000)
    try:
        with pytest.raises(BadGateway, match="more than this server accepts"):
            small.download(proxy, upstream, entry(wheel), keep=True)
        assert small.wait_idle(WAIT)  # until then, a request joins the failed job
        # No size anywhere: the limit stops the body itself.
        upstream.lengths[URL + wheel.name] = None
        upstream.hold(0)  # the head is in, no byte yet: the client has its Download
        download = small.download(proxy, upstream, entry(wheel, size=None), keep=True)
        upstream.release.set()
        with pytest.raises(FetchFailed, match="too large"):
            read_all(download)
        assert small.wait_idle(WAIT)
        assert_nothing_kept(services, small)
    finally:
        upstream.release.set()
        small.close()


@pytest.mark.parametrize(
    ("kind", "error"),
    [("connect", BadGateway), ("status", BadGateway), ("timeout", GatewayTimeout)],
)
def test_an_upstream_failure_before_any_byte_is_a_gateway_error(
    services: Services,
    proxy: RepoInfo,
    fetches: Fetches,
    wheel: Path,
    upstream: FakeUpstream,
    kind: str,
    error: type[BadGateway],
) -> None:
    upstream.head_error = upstream_error(kind, URL + wheel.name, " unreachable: connection refused")
    with pytest.raises(error) as raised:
        fetches.download(proxy, upstream, entry(wheel), keep=True)
    assert type(raised.value) is error
    assert raised.value.reason == f"upstream {URL}{wheel.name} unreachable: connection refused"
    assert fetches.wait_idle(WAIT)
    assert_nothing_kept(services, fetches)


def test_a_content_length_other_than_the_pages_size_is_refused_before_the_body(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    upstream.lengths[URL + wheel.name] = wheel.stat().st_size + 1
    with pytest.raises(BadGateway, match="page lists"):
        fetches.download(proxy, upstream, entry(wheel), keep=True)
    assert fetches.wait_idle(WAIT)
    assert_nothing_kept(services, fetches)


# -- clients leaving, the tail cap --------------------------------------------------------


def test_a_client_leaving_does_not_stop_the_fetch(
    services: Services, proxy: RepoInfo, fetches: Fetches, tmp_path: Path
) -> None:
    big = build_wheel(tmp_path / "big", extra=3 * 1024 * 1024)
    upstream = FakeUpstream({URL + big.name: big.read_bytes()})
    download = fetches.download(proxy, upstream, entry(big), keep=True)
    assert download is not None
    got = 0
    body = iter(download)
    while got < 1024 * 1024:
        got += len(next(body))
    download.close()
    assert fetches.tails == 0
    assert fetches.wait_idle(WAIT)
    row = stored(proxy, big.name)
    assert row is not None
    assert row.size == big.stat().st_size
    assert tmp_files(services) == []


def test_the_tail_cap_answers_busy_with_retry_after(
    services: Services, proxy: RepoInfo, wheel: Path, upstream: FakeUpstream
) -> None:
    capped = make_fetches(services, threads=3)  # one tail at a time
    try:
        upstream.hold(CHUNK)
        first = capped.download(proxy, upstream, entry(wheel), keep=True)
        assert first is not None
        with pytest.raises(Busy) as raised:
            capped.download(proxy, upstream, entry(wheel), keep=True)
        assert isinstance(raised.value, FetchBusy)
        assert raised.value.status == 503
        # When the file's own fetch should be done, at the rate it came so far: 1 to 60 s.
        assert 1 <= int(raised.value.headers["Retry-After"]) <= 60
        first.close()  # the slot is free again; the job goes on
        assert capped.tails == 0
        upstream.release.set()
        assert capped.wait_idle(WAIT)
        assert capped.download(proxy, upstream, entry(wheel), keep=True) is None
        assert upstream.opens == 1
    finally:
        upstream.release.set()
        capped.close()


def test_twenty_tails_of_a_large_file_hold_no_file_in_memory(
    services: Services, proxy: RepoInfo, tmp_path: Path
) -> None:
    data = bytes(50 * 1024 * 1024)
    name = "big_pkg-1.0-py3-none-any.whl"
    upstream = FakeUpstream({URL + name: data})
    upstream.hold(CHUNK)
    file = dataclasses.replace(
        entry(build_wheel(tmp_path / "w")),
        filename=name,
        url=URL + name,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    many = make_fetches(services, threads=32)
    all_in = threading.Barrier(21, timeout=WAIT)
    digests: list[str] = []

    def client() -> None:
        download = many.download(proxy, upstream, file, keep=False)
        assert download is not None
        all_in.wait()
        digest = hashlib.sha256()
        for chunk in download:
            digest.update(chunk)
        digests.append(digest.hexdigest())

    tracemalloc.start()
    try:
        threads = [in_thread(services, client) for _ in range(20)]
        all_in.wait()
        upstream.release.set()
        for thread in threads:
            thread.join(60)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        upstream.release.set()
        many.close()
    assert digests == [file.sha256] * 20
    assert peak < 6 * 1024 * 1024  # 20 tails of 64 KiB each, and what hashing holds
    assert tmp_files(services) == []


# -- what is not kept ---------------------------------------------------------------------


@pytest.mark.parametrize("why", ["no sha256 on the page", "keep=False"])
def test_a_file_not_kept_is_served_and_removed(
    services: Services,
    proxy: RepoInfo,
    fetches: Fetches,
    wheel: Path,
    upstream: FakeUpstream,
    why: str,
) -> None:
    file = entry(wheel, sha256="") if why == "no sha256 on the page" else entry(wheel)
    download = fetches.download(proxy, upstream, file, keep=why != "keep=False")
    assert read_all(download) == wheel.read_bytes()
    assert fetches.wait_idle(WAIT)
    assert_nothing_kept(services, fetches)


def test_a_file_whose_metadata_cannot_be_read_is_served_but_not_kept(
    services: Services, proxy: RepoInfo, fetches: Fetches, tmp_path: Path
) -> None:
    dist = Dist("broken-pkg", "1.0")
    members = wheel_members(dist, metadata=b"Metadata-Version: 2.1\nName: other-name\n")
    broken = write_zip(tmp_path / dist.wheel_name, members)
    upstream = FakeUpstream({URL + broken.name: broken.read_bytes()})
    assert read_all(fetches.download(proxy, upstream, entry(broken), keep=True)) == (
        broken.read_bytes()
    )
    assert fetches.wait_idle(WAIT)
    assert_nothing_kept(services, fetches)


# -- the one-fetch rule across processes --------------------------------------------------


def other_process_row(proxy: RepoInfo, filename: str, age: float = 0.0) -> None:
    started = models.utcnow() - datetime.timedelta(seconds=age)
    models.FetchJob.create(
        repository=proxy.id, filename=filename, owner="other-host:4242", started=started
    )


def publish_elsewhere(services: Services, proxy: RepoInfo, path: Path) -> None:
    """What the other process's job does at its end: the File row, then its row gone."""
    spool = SpoolFile(services.folder.store, services.settings.max_upload_size)
    try:
        spool.write(path.read_bytes())
        dist = dists.parse_filename(path.name)
        metadata = dists.read_core_metadata(spool.path, dist, services.settings.max_metadata_size)
        services.uploads.publish(
            proxy,
            Checked(dist, metadata, spool),
            Uploader(None, "proxy:pypi-proxy"),
            "",
            authorize=lambda project, replacing: None,
        )
    finally:
        spool.discard()


@BOTH_BACKENDS
def test_a_fetch_in_another_process_is_waited_for(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    other_process_row(proxy, wheel.name)
    publisher = threading.Event()

    def other_process() -> None:
        assert publisher.wait(WAIT)
        time.sleep(0.3)  # while the request polls
        publish_elsewhere(services, proxy, wheel)

    thread = in_thread(services, other_process)
    publisher.set()
    started = time.monotonic()
    assert fetches.download(proxy, upstream, entry(wheel), keep=True) is None
    assert time.monotonic() - started < WAIT
    thread.join(WAIT)
    assert upstream.opens == 0
    assert fetches.tails == 0
    assert tmp_files(services) == []
    # The other process's row is its own to remove.
    assert models.FetchJob.get().owner == "other-host:4242"


@BOTH_BACKENDS
def test_a_fetch_in_another_process_that_never_ends_is_busy(
    services: Services,
    proxy: RepoInfo,
    fetches: Fetches,
    wheel: Path,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fetches_module, "OTHER_PROCESS_WAIT", 0.5)
    other_process_row(proxy, wheel.name)
    with pytest.raises(FetchBusy, match="still fetching") as raised:
        fetches.download(proxy, upstream, entry(wheel), keep=True)
    assert raised.value.headers["Retry-After"] == "2"
    assert upstream.opens == 0
    assert fetches.tails == 0
    assert fetches.wait_idle(WAIT)
    assert tmp_files(services) == []


def test_a_fetch_in_another_process_that_failed_is_busy_at_once(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    other_process_row(proxy, wheel.name)

    def other_process_fails() -> None:
        time.sleep(0.3)
        models.FetchJob.delete().execute()

    thread = in_thread(services, other_process_fails)
    started = time.monotonic()
    with pytest.raises(FetchBusy, match="ended"):
        fetches.download(proxy, upstream, entry(wheel), keep=True)
    assert time.monotonic() - started < 5
    thread.join(WAIT)
    # The client's retry fetches it here.
    assert read_all(fetches.download(proxy, upstream, entry(wheel), keep=True)) == (
        wheel.read_bytes()
    )
    assert upstream.opens == 1


@BOTH_BACKENDS
def test_a_stale_fetch_row_is_taken_over(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    other_process_row(proxy, wheel.name, age=11 * 60)
    assert read_all(fetches.download(proxy, upstream, entry(wheel), keep=True)) == (
        wheel.read_bytes()
    )
    assert fetches.wait_idle(WAIT)
    assert stored(proxy, wheel.name) is not None
    assert models.FetchJob.select().count() == 0
    assert upstream.opens == 1


def test_a_fresh_row_of_a_dead_worker_of_this_box_is_taken_over_at_once(
    proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    """A worker killed mid-fetch (`serve --workers`): its pid is gone, so the next request
    fetches at once instead of waiting out STALE_JOB."""
    dead = subprocess.Popen(["true"])  # a pid that has exited, and been reaped
    dead.wait(timeout=WAIT)
    models.FetchJob.create(
        repository=proxy.id, filename=wheel.name, owner=f"{socket.gethostname()}:{dead.pid}"
    )
    assert read_all(fetches.download(proxy, upstream, entry(wheel), keep=True)) == (
        wheel.read_bytes()
    )
    assert fetches.wait_idle(WAIT)
    assert upstream.opens == 1
    assert models.FetchJob.select().count() == 0


def test_a_fresh_row_of_a_live_worker_of_this_box_is_waited_for(
    proxy: RepoInfo,
    fetches: Fetches,
    wheel: Path,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fetches_module, "OTHER_PROCESS_WAIT", 0.3)
    models.FetchJob.create(
        repository=proxy.id, filename=wheel.name, owner=f"{socket.gethostname()}:{os.getppid()}"
    )
    with pytest.raises(FetchBusy, match="still fetching"):
        fetches.download(proxy, upstream, entry(wheel), keep=True)
    assert upstream.opens == 0


def test_the_fetch_row_is_held_while_the_job_runs(
    proxy: RepoInfo, fetches: Fetches, wheel: Path, upstream: FakeUpstream
) -> None:
    upstream.hold(CHUNK)
    download = fetches.download(proxy, upstream, entry(wheel), keep=True)
    assert download is not None
    row = models.FetchJob.get()
    assert row.filename == wheel.name
    assert row.owner == fetches.owner
    assert row.owner.endswith(f":{os.getpid()}")
    upstream.release.set()
    assert read_all(download) == wheel.read_bytes()
    assert fetches.wait_idle(WAIT)
    assert models.FetchJob.select().count() == 0


def test_a_request_queued_behind_busy_fetch_workers_gets_busy_and_the_fetch_still_runs(
    services: Services,
    proxy: RepoInfo,
    wheel: Path,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fetches_module, "HEAD_WAIT", 0.3)
    one = make_fetches(services, fetch_workers=1)
    other = build_wheel(wheel.parent.parent / "other", "other-pkg")
    upstream.files[URL + other.name] = other.read_bytes()
    try:
        upstream.hold(CHUNK)
        first = one.download(proxy, upstream, entry(wheel), keep=True)
        with pytest.raises(FetchBusy, match="fetch worker"):
            one.download(proxy, upstream, entry(other), keep=True)
        assert one.tails == 1
        upstream.release.set()
        assert read_all(first) == wheel.read_bytes()
        assert one.wait_idle(WAIT)
        assert stored(proxy, other.name) is not None  # fetched once a worker was free
        assert upstream.opens == 2
    finally:
        upstream.release.set()
        one.close()


# -- through the real client, against a fake index on a socket -----------------------------


def test_through_the_real_upstream_client(
    services: Services, proxy: RepoInfo, fetches: Fetches, wheel: Path, tmp_path: Path
) -> None:
    liar = build_wheel(tmp_path / "liar", "liar-pkg")
    cut = build_wheel(tmp_path / "cut", "cut-pkg")
    with FakeIndex() as index:
        url = index.add_file("demo-pkg", wheel.name, wheel.read_bytes())
        liar_url = index.add_file("liar-pkg", liar.name, liar.read_bytes(), lie_sha256=True)
        client = Upstream(UpstreamConfig(index.url, read_timeout=5.0))
        try:
            file = dataclasses.replace(entry(wheel), url=url)
            assert read_all(fetches.download(proxy, client, file, keep=True)) == (
                wheel.read_bytes()
            )
            lying = dataclasses.replace(entry(liar, sha256="ab" * 32), url=liar_url)
            with pytest.raises((BadGateway, FetchFailed), match="sha256"):
                read_all(fetches.download(proxy, client, lying, keep=True))
            index.cut_files_at = 2 * CHUNK
            cut_url = index.add_file("cut-pkg", cut.name, cut.read_bytes())
            truncated = dataclasses.replace(entry(cut), url=cut_url)
            with pytest.raises((BadGateway, FetchFailed), match="ended"):
                read_all(fetches.download(proxy, client, truncated, keep=True))
            assert fetches.wait_idle(WAIT)
            index.refuse_connections()
            gone = dataclasses.replace(entry(cut), url=cut_url)
            with pytest.raises(BadGateway, match="connection refused"):
                fetches.download(proxy, client, gone, keep=True)
        finally:
            client.close()
    assert fetches.wait_idle(WAIT)
    assert [row.filename for row in models.File.select()] == [wheel.name]
    assert tmp_files(services) == []
    assert models.FetchJob.select().count() == 0
