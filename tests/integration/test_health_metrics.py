"""`/-/health` and `/-/metrics` on a real `minirepo serve`: what a probe and a Prometheus
scraper see after pip-like traffic, through waitress and every layer in front of Flask.

An answer is counted once waitress is done with it, which may be just after the client
has read it: every check of the counters scrapes again until a deadline.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import Server, running_server

TIMEOUT = 30
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("observe")) as srv:
        yield srv


def scrape(server: Server) -> Samples:
    answer = requests.get(
        f"{server.url}/-/metrics", auth=("__token__", server.admin_token), timeout=TIMEOUT
    )
    assert answer.status_code == 200, answer.reason
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(server: Server, done: Callable[[Samples], bool], timeout: float = 10) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        found = scrape(server)
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def health(server: Server) -> dict[str, object]:
    answer = requests.get(f"{server.url}/-/health", timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    report: dict[str, object] = answer.json()
    return report


def test_a_scrape_counts_pages_files_and_uploads(server: Server, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, Dist("observed", "1.0"))
    assert server.upload(wheel).status_code == 200
    for _ in range(3):
        page = requests.get(f"{server.url}/simple/observed/", timeout=TIMEOUT)
        assert page.status_code == 200
    for _ in range(2):
        file = requests.get(f"{server.url}/files/observed/{wheel.name}", timeout=TIMEOUT)
        assert file.content == wheel.read_bytes()
    bad = requests.get(f"{server.url}/simple/", auth=("__token__", "mr-" + "x" * 43), timeout=30)
    assert bad.status_code == 401

    def counted(found: Samples) -> bool:
        return value(found, "minirepo_auth_failures_total") >= 1

    found = scrape_until(server, counted)
    assert value(found, "minirepo_uploads_total") == 1
    assert value(found, "minirepo_http_requests_total", kind="upload", code="200") == 1
    assert value(found, "minirepo_http_requests_total", kind="page", code="200") == 3
    assert value(found, "minirepo_http_requests_total", kind="file", code="200") == 2
    assert value(found, "minirepo_http_requests_total", kind="page", code="401") == 1
    assert value(found, "minirepo_auth_failures_total") == 1
    # The first page was rendered by Flask; the others came from the fast path's cache.
    assert value(found, "minirepo_page_cache_requests_total", result="miss") == 1
    assert value(found, "minirepo_page_cache_requests_total", result="hit") == 2
    sent = value(found, "minirepo_http_response_bytes_total", kind="file")
    assert sent == 2 * wheel.stat().st_size
    sent_pages = value(found, "minirepo_http_response_bytes_total", kind="page")
    # As sent (gzip), the 401's reason too.
    assert sent_pages == 3 * int(page.headers["Content-Length"]) + len(bad.content)
    assert value(found, "minirepo_disk_free_bytes") > 0
    assert value(found, "minirepo_upstream_fetches_total", event="started") == 0


def test_metrics_refuse_an_anonymous_scraper(server: Server) -> None:
    answer = requests.get(f"{server.url}/-/metrics", timeout=TIMEOUT)
    assert answer.status_code == 401
    assert "minirepo_" not in answer.text


def test_health_reports_every_field(server: Server) -> None:
    report = health(server)
    assert report["status"] == "ok"
    assert report["database"] == report["data_folder"] == "ok"
    assert isinstance(report["disk_free"], int)
    assert report["disk_free"] > 0
    assert report["disk_floor"] == 1024**3
    assert report["spool_in_use"] == 0
    assert report["spool_limit"] == 2 * 1024**3
    assert report["upstreams"] == {"pypi-proxy": {"status": "unknown"}}
    assert report["problems"] == []
    assert isinstance(report["version"], str)


def test_an_upload_being_received_shows_in_the_spool(server: Server) -> None:
    """The budget waitress reserves a body from is the one health and metrics read."""
    size = 1024**2
    credentials = base64.b64encode(f"__token__:{server.admin_token}".encode())
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic " + credentials + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n"
        b"Content-Length: %d\r\n\r\n" % size
    )
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(head + b"--xyz\r\n")
        assert wait_until(lambda: health(server)["spool_in_use"] == size)
        found = scrape_until(server, lambda found: value(found, "minirepo_spool_bytes") == size)
        assert value(found, "minirepo_spool_bytes") == size
    assert wait_until(lambda: health(server)["spool_in_use"] == 0)


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
