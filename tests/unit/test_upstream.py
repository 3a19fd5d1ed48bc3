"""The upstream client against real loopback servers: pages, files, every failure kind,
redirects, credentials, TLS and proxies. No test reaches past 127.0.0.1."""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import minirepo
from minirepo.upstream import FileResponse, Upstream, UpstreamConfig, UpstreamError
from minirepo.upstream_pages import parse_page
from tests.helpers.upstreamfake import FakeProxy, FakeUpstream, TLSFiles, make_tls

JSON_V1 = "application/vnd.pypi.simple.v1+json"
ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
WHEEL = "demo-1.0-py3-none-any.whl"
SDIST = "demo-1.0.tar.gz"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD")

Connect = Callable[..., Upstream]


@pytest.fixture(autouse=True)
def _clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own proxy settings must not route these loopback requests."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Upstream clients with test-sized timeouts, closed after the test."""
    clients: list[Upstream] = []

    def make(url: str, **options: Any) -> Upstream:
        settings = {"connect_timeout": 2.0, "read_timeout": 5.0, **options}
        clients.append(Upstream(UpstreamConfig(url=url, **settings)))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def failure(call: Callable[[], object]) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        call()
    return caught.value


def download(upstream: Upstream, url: str, size: int = 65536) -> list[bytes]:
    answer = upstream.open_file(url)
    try:
        return list(answer.iter_chunks(size))
    finally:
        answer.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- pages ---------------------------------------------------------------------------------


def test_json_page(fake: FakeUpstream, connect: Connect) -> None:
    metadata = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
    url = fake.add_file("Demo", WHEEL, b"wheel", requires_python=">=3.9", metadata=metadata)
    answer = connect(fake.url).project_page("demo")
    assert (answer.status, answer.content_type, answer.url) == (200, JSON_V1, f"{fake.url}demo/")
    assert answer.etag.startswith('"')
    page = parse_page(answer.body, answer.content_type, answer.url, "demo")
    (file,) = page.files
    assert (page.name, file.url, file.sha256) == ("Demo", url, hashlib.sha256(b"wheel").hexdigest())
    assert (file.requires_python, file.size) == (">=3.9", 5)
    assert file.metadata_sha256 == hashlib.sha256(metadata).hexdigest()
    method, path, headers = fake.requests[-1]
    assert (method, path) == ("GET", "/simple/demo/")
    assert headers["accept"] == ACCEPT
    assert headers["accept-encoding"] == "gzip"
    assert headers["user-agent"] == f"minirepo/{minirepo.__version__} (proxy)"
    assert "if-none-match" not in headers
    assert "authorization" not in headers


def test_html_page(fake: FakeUpstream, connect: Connect) -> None:
    fake.add_file("demo", SDIST, b"sdist", requires_python=">=3.8", yanked="old & broken")
    fake.add_file("demo", WHEEL, b"wheel", lie_sha256=True)
    fake.page_html_only = True
    answer = connect(fake.url).project_page("demo")
    assert (answer.status, answer.content_type) == (200, "text/html")
    sdist, wheel = parse_page(answer.body, answer.content_type, answer.url, "demo").files
    assert (sdist.filename, sdist.requires_python) == (SDIST, ">=3.8")
    assert (sdist.yanked, sdist.yanked_reason) == (True, "old & broken")
    assert sdist.sha256 == hashlib.sha256(b"sdist").hexdigest()
    assert wheel.sha256 not in ("", hashlib.sha256(b"wheel").hexdigest())


def test_gzip_page_is_decoded_and_capped_decoded(fake: FakeUpstream, connect: Connect) -> None:
    for minor in range(50):
        fake.add_file("demo", f"demo-1.{minor}.tar.gz", b"x")
    fake.gzip_pages = True
    answer = connect(fake.url).project_page("demo")
    assert len(parse_page(answer.body, answer.content_type, answer.url, "demo").files) == 50
    assert len(gzip.compress(answer.body)) < len(answer.body) // 4
    cap = len(answer.body) - 1  # the compressed body is far below it
    error = failure(lambda: connect(fake.url, page_max_bytes=cap).project_page("demo"))
    assert error.kind == "invalid"


def test_not_modified(fake: FakeUpstream, connect: Connect) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    upstream = connect(fake.url)
    first = upstream.project_page("demo")
    again = upstream.project_page("demo", etag=first.etag)
    assert (again.status, again.body, again.etag) == (304, b"", first.etag)
    assert fake.requests[-1][2]["if-none-match"] == first.etag
    fake.add_file("demo", WHEEL, b"wheel")
    changed = upstream.project_page("demo", etag=first.etag)
    assert changed.status == 200
    assert changed.etag != first.etag


@pytest.mark.parametrize("status", [404, 410])
def test_missing_project(fake: FakeUpstream, connect: Connect, status: int) -> None:
    fake.set_status("demo", status)
    answer = connect(fake.url).project_page("demo")
    assert (answer.status, answer.body) == (status, b"")


def test_unknown_project_is_404(fake: FakeUpstream, connect: Connect) -> None:
    assert connect(fake.url).project_page("nothing").status == 404


@pytest.mark.parametrize(
    ("status", "words"),
    [(503, "503 Service Unavailable"), (500, "500 Internal Server Error"), (403, "403 Forbidden")],
)
def test_unexpected_status(fake: FakeUpstream, connect: Connect, status: int, words: str) -> None:
    fake.set_status("demo", status)
    error = failure(lambda: connect(fake.url).project_page("demo"))
    assert (error.kind, error.status) == ("status", status)
    assert str(error) == f"upstream {fake.url}demo/ answered {words}"
    assert error.message == str(error)


def test_down_upstream_answers_503(fake: FakeUpstream, connect: Connect) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    fake.down = True
    assert failure(lambda: connect(fake.url).project_page("demo")).status == 503


def test_refused_connection_then_restored(fake: FakeUpstream, connect: Connect) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    upstream = connect(fake.url)
    assert upstream.project_page("demo").status == 200  # a kept-alive connection too
    fake.refuse_connections()
    error = failure(lambda: upstream.project_page("demo"))
    assert error.kind == "connect"
    assert str(error) == f"upstream {fake.url}demo/ unreachable: connection refused"
    fake.restore()
    assert upstream.project_page("demo").status == 200


def test_slow_answer_times_out(fake: FakeUpstream, connect: Connect) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    fake.delay = 3.0
    started = time.monotonic()
    error = failure(lambda: connect(fake.url, read_timeout=0.3).project_page("demo"))
    assert error.kind == "timeout"
    assert time.monotonic() - started < 2.0


def test_page_deadline_bounds_a_slow_answer(fake: FakeUpstream, connect: Connect) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    fake.delay = 3.0
    started = time.monotonic()
    error = failure(lambda: connect(fake.url, page_deadline=0.3).project_page("demo"))
    assert error.kind == "timeout"
    assert time.monotonic() - started < 2.0


def test_page_deadline_bounds_a_trickled_body(fake: FakeUpstream, connect: Connect) -> None:
    for minor in range(20):
        fake.add_file("demo", f"demo-1.{minor}.tar.gz", b"x")
    fake.chunk_size, fake.trickle = 200, 0.1  # 40+ chunks: 4 s in all
    started = time.monotonic()
    error = failure(lambda: connect(fake.url, page_deadline=0.5).project_page("demo"))
    assert error.kind == "timeout"
    assert "took over 0.5s" in str(error)
    assert time.monotonic() - started < 2.0


def test_page_over_the_cap(fake: FakeUpstream, connect: Connect) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    error = failure(lambda: connect(fake.url, page_max_bytes=100).project_page("demo"))
    assert error.kind == "invalid"
    assert "page larger than 100 bytes" in str(error)


def test_many_threads_share_one_client(fake: FakeUpstream, connect: Connect) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    upstream = connect(fake.url)
    statuses: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(5):
            status = upstream.project_page("demo").status
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 40


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_three_redirects_are_followed(fake: FakeUpstream, connect: Connect, status: int) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    fake.redirect("/simple/demo/", "/r/1", status)
    fake.redirect("/r/1", "2", status)  # relative: /r/2
    fake.redirect("/r/2", f"{fake.url}Demo/", status)
    answer = connect(fake.url).project_page("demo")
    assert (answer.status, answer.url) == (200, f"{fake.url}Demo/")
    assert [path for _, path, _ in fake.requests] == [
        "/simple/demo/",
        "/r/1",
        "/r/2",
        "/simple/Demo/",
    ]


def test_a_fourth_redirect_is_refused(fake: FakeUpstream, connect: Connect) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    for source, target in [("/simple/demo/", "/r/1"), ("/r/1", "/r/2"), ("/r/2", "/r/3")]:
        fake.redirect(source, target)
    fake.redirect("/r/3", "/simple/Demo/")
    error = failure(lambda: connect(fake.url).project_page("demo"))
    assert error.kind == "invalid"
    assert "more than 3 redirects" in str(error)
    assert fake.count("/simple/Demo/") == 0


def test_redirect_without_location(fake: FakeUpstream, connect: Connect) -> None:
    fake.redirect("/simple/demo/", "")
    assert failure(lambda: connect(fake.url).project_page("demo")).kind == "invalid"


def test_https_to_http_redirect_is_refused(
    fake: FakeUpstream, connect: Connect, tls: TLSFiles
) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    with FakeUpstream(tls=tls) as secure:
        secure.redirect("/simple/demo/", f"{fake.url}demo/")
        upstream = connect(secure.url, ca_bundle=str(tls.ca))
        error = failure(lambda: upstream.project_page("demo"))
    assert error.kind == "invalid"
    assert "not https" in str(error)
    assert fake.requests == []


# -- credentials ---------------------------------------------------------------------------


def test_basic_auth_goes_to_the_upstream_origin_only(fake: FakeUpstream, connect: Connect) -> None:
    password = "s3cret-\u20ac"  # not latin-1: sent as UTF-8
    own = fake.add_file("demo", SDIST, b"sdist")
    with FakeUpstream() as other:
        foreign = other.add_file("moved", "moved-1.0.tar.gz", b"moved")
        fake.redirect("/simple/moved/", f"{other.url}moved/")
        upstream = connect(fake.url, user="alice", password=password)
        assert upstream.project_page("demo").status == 200
        assert upstream.project_page("moved").status == 200
        assert download(upstream, own) == [b"sdist"]
        assert download(upstream, foreign) == [b"moved"]
        other_headers = [headers for _, _, headers in other.requests]
    assert [headers.get("authorization") for _, _, headers in fake.requests] == [
        basic("alice", password)
    ] * 3
    assert len(other_headers) == 2
    assert all("authorization" not in headers for headers in other_headers)


def test_messages_never_carry_credentials(fake: FakeUpstream, connect: Connect) -> None:
    upstream = connect(fake.url, user="alice", password="hunter2")
    fake.refuse_connections()
    error = failure(lambda: upstream.project_page("demo"))
    assert "hunter2" not in str(error)
    with_userinfo = fake.base.replace("://", "://bob:hunter2@") + "files/x.tar.gz"
    assert "hunter2" not in str(failure(lambda: upstream.open_file(with_userinfo)))


# -- TLS -----------------------------------------------------------------------------------


def test_tls_with_the_ca_bundle(connect: Connect, tls: TLSFiles) -> None:
    with FakeUpstream(tls=tls) as secure:
        url = secure.add_file("demo", SDIST, b"sdist")
        upstream = connect(secure.url, ca_bundle=str(tls.ca))
        assert upstream.project_page("demo").status == 200
        assert download(upstream, url) == [b"sdist"]


def test_tls_is_verified_against_the_system_store(connect: Connect, tls: TLSFiles) -> None:
    with FakeUpstream(tls=tls) as secure:
        secure.add_file("demo", SDIST, b"sdist")
        error = failure(lambda: connect(secure.url).project_page("demo"))
    assert error.kind == "connect"
    assert "TLS failed" in str(error)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)


def test_a_missing_ca_bundle_fails_to_connect(
    connect: Connect, tls: TLSFiles, tmp_path: Path
) -> None:
    with FakeUpstream(tls=tls) as secure:
        upstream = connect(secure.url, ca_bundle=str(tmp_path / "missing.pem"))
        assert failure(lambda: upstream.project_page("demo")).kind == "connect"


# -- proxies -------------------------------------------------------------------------------


def test_http_proxy_from_the_environment(
    fake: FakeUpstream, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    with FakeProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        assert connect(fake.url).project_page("demo").status == 200
    assert [line for line, _ in proxy.requests] == [f"GET {fake.url}demo/ HTTP/1.1"]
    assert fake.count("/simple/demo/") == 1


def test_no_proxy_bypasses_the_environment_proxy(
    fake: FakeUpstream, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    with FakeProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.1")
        assert connect(fake.url).project_page("demo").status == 200
    assert proxy.requests == []
    assert fake.count("/simple/demo/") == 1


def test_https_proxy_tunnels_https_only(
    fake: FakeUpstream, connect: Connect, tls: TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    with FakeUpstream(tls=tls) as secure, FakeProxy() as proxy:
        secure.add_file("demo", SDIST, b"sdist")
        monkeypatch.setenv("https_proxy", proxy.url)
        assert connect(secure.url, ca_bundle=str(tls.ca)).project_page("demo").status == 200
        assert connect(fake.url).project_page("demo").status == 200  # http: not proxied
    ((line, _),) = proxy.requests
    assert line.startswith(f"CONNECT 127.0.0.1:{secure.port} HTTP/")
    assert fake.count("/simple/demo/") == 1


def test_configured_proxy_wins_over_no_proxy_and_gets_its_credentials(
    fake: FakeUpstream, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_file("demo", SDIST, b"sdist")
    monkeypatch.setenv("NO_PROXY", "*")
    with FakeProxy() as proxy:
        configured = proxy.url.replace("http://", "bob:p%40ss@")  # no scheme: http
        assert connect(fake.url, proxy=configured).project_page("demo").status == 200
    ((line, headers),) = proxy.requests
    assert line == f"GET {fake.url}demo/ HTTP/1.1"
    assert headers["proxy-authorization"] == basic("bob", "p@ss")
    assert "proxy-authorization" not in fake.requests[0][2]


def test_unreachable_proxy(fake: FakeUpstream, connect: Connect) -> None:
    proxy = f"http://carol:hunter2@127.0.0.1:{closed_port()}"
    error = failure(lambda: connect(fake.url, proxy=proxy).project_page("demo"))
    assert error.kind == "connect"
    assert str(error) == f"upstream {fake.url}demo/ unreachable: proxy failed: connection refused"


def test_unsupported_proxy_scheme(fake: FakeUpstream, connect: Connect) -> None:
    error = failure(lambda: connect(fake.url, proxy="socks5://127.0.0.1:1").project_page("x"))
    assert error.kind == "connect"
    assert "socks5" in str(error)


# -- files ---------------------------------------------------------------------------------


def test_file_chunks_are_byte_exact(fake: FakeUpstream, connect: Connect) -> None:
    content = os.urandom(200_000)
    url = fake.add_file("demo", SDIST, content)
    upstream = connect(fake.url)
    answer = upstream.open_file(url)
    try:
        assert (answer.status, answer.length, answer.url) == (200, len(content), url)
        chunks = list(answer.iter_chunks(65536))
    finally:
        answer.close()
    assert b"".join(chunks) == content
    assert max(len(chunk) for chunk in chunks) <= 65536
    headers = fake.requests[-1][2]
    assert headers["accept-encoding"] == "identity"
    assert "accept" not in headers


def test_gzip_content_encoding_is_not_decoded(fake: FakeUpstream, connect: Connect) -> None:
    content = gzip.compress(b"an sdist " * 1000)
    url = fake.add_file("demo", SDIST, content)
    fake.file_encoding = "gzip"
    assert b"".join(download(connect(fake.url), url)) == content


def test_core_metadata_file(fake: FakeUpstream, connect: Connect) -> None:
    url = fake.add_file("demo", WHEEL, b"wheel", metadata=b"Metadata-Version: 2.1\n")
    assert download(connect(fake.url), url + ".metadata") == [b"Metadata-Version: 2.1\n"]


def test_missing_file(fake: FakeUpstream, connect: Connect) -> None:
    error = failure(lambda: connect(fake.url).open_file(f"{fake.base}files/{SDIST}"))
    assert (error.kind, error.status) == ("status", 404)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.tar.gz", "/relative"])
def test_only_http_urls_are_opened(fake: FakeUpstream, connect: Connect, url: str) -> None:
    assert failure(lambda: connect(fake.url).open_file(url)).kind == "invalid"


def test_connection_dropped_mid_body(fake: FakeUpstream, connect: Connect) -> None:
    url = fake.add_file("demo", SDIST, os.urandom(100_000))
    fake.cut_files_at = 1000
    error = failure(lambda: download(connect(fake.url), url))
    assert error.kind == "truncated"
    assert "ended early" in str(error)


def test_stalled_body_times_out(fake: FakeUpstream, connect: Connect) -> None:
    url = fake.add_file("demo", SDIST, os.urandom(10_000))
    fake.chunk_size, fake.trickle = 1000, 3.0
    started = time.monotonic()
    error = failure(lambda: download(connect(fake.url, read_timeout=0.3), url, size=500))
    assert error.kind == "timeout"
    assert time.monotonic() - started < 2.0


def test_a_file_closed_early_frees_its_connection(fake: FakeUpstream, connect: Connect) -> None:
    url = fake.add_file("demo", SDIST, os.urandom(500_000))
    upstream = connect(fake.url)
    answer: FileResponse = upstream.open_file(url)
    first = next(answer.iter_chunks(1000))
    answer.close()
    assert len(first) == 1000
    assert len(b"".join(download(upstream, url))) == 500_000
