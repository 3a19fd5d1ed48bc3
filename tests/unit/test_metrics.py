"""`/-/metrics` (a Prometheus registry per app, who may read it, what it counts) and
`/-/health` (when the server works, when it is only degraded), through the app.

Every request goes through the app's whole WSGI stack (the test client calls
`app.wsgi_app`), so the fast path, the access log's observer and Flask's teardown all run
as under waitress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peewee
import prometheus_client
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import TestResponse

from minirepo import models
from minirepo.config import Settings
from minirepo.services import accounts, health, repos
from minirepo.services.container import Services
from minirepo.services.fetches import FetchFailed
from tests.conftest import basic, post_upload, token_auth
from tests.helpers.backends import served
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.upstreamfake import FakeUpstream

MiB = 1024**2
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def closed(response: TestResponse) -> TestResponse:
    """Read and closed, as waitress does: an answer is counted after its last byte."""
    response.get_data()
    response.close()
    return response


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client: FlaskClient, headers: dict[str, str] | None = None) -> Samples:
    answer = closed(client.get("/-/metrics", headers=headers))
    assert answer.status_code == 200, answer.status
    return samples(answer.get_data(as_text=True))


@contextlib.contextmanager
def app_with(tmp_path: Path, **overrides: Any) -> Iterator[Flask]:
    """An app of its own (no first-start proxy unless `upstream` is given)."""
    values: dict[str, Any] = {"upstream": "", **overrides}
    settings = Settings(data=tmp_path / "data", password_hash=FAST_HASH, **values)
    with served(settings) as app:
        yield app


def admin_token() -> str:
    accounts.add_user("root", "root-password-1", method=FAST_HASH, admin=True)
    return accounts.create_token("root", permission="admin").secret


# -- the registry and its counters ---------------------------------------------------------


def test_each_app_counts_in_its_own_registry(tmp_path: Path) -> None:
    """Two apps in one process: no name registered twice, no count in the other's."""
    with app_with(tmp_path / "one", metrics="open") as one:
        first = one.test_client()
        for _ in range(3):
            assert closed(first.get("/simple/")).status_code == 200
        with app_with(tmp_path / "two", metrics="open") as two:
            counted_one = scrape(first)
            counted_two = scrape(two.test_client())
    assert value(counted_one, "minirepo_http_requests_total", kind="page", code="200") == 3
    assert value(counted_two, "minirepo_http_requests_total", kind="page", code="200") == 0
    assert prometheus_client.REGISTRY.get_sample_value("minirepo_uploads_total") is None


def test_pages_files_and_uploads_are_counted(client: FlaskClient, admin: str, wheel: Path) -> None:
    assert closed(post_upload(client, admin, wheel)).status_code == 200
    first = closed(client.get("/simple/demo-pkg/"))  # rendered by Flask: a miss
    again = closed(client.get("/simple/demo-pkg/"))  # from the fast path's cache: a hit
    assert first.status_code == again.status_code == 200
    assert closed(client.get(f"/files/demo-pkg/{wheel.name}")).status_code == 200
    assert closed(client.get("/simple/no-such-project/")).status_code == 404
    found = scrape(client, token_auth(admin))
    assert value(found, "minirepo_uploads_total") == 1
    assert value(found, "minirepo_http_requests_total", kind="upload", code="200") == 1
    assert value(found, "minirepo_http_requests_total", kind="page", code="200") == 2
    assert value(found, "minirepo_http_requests_total", kind="page", code="404") == 1
    assert value(found, "minirepo_http_requests_total", kind="file", code="200") == 1
    assert value(found, "minirepo_page_cache_requests_total", result="hit") == 1
    assert value(found, "minirepo_page_cache_requests_total", result="miss") == 1
    page_bytes = len(first.get_data()) + len(again.get_data())
    assert value(found, "minirepo_http_response_bytes_total", kind="page") >= page_bytes
    assert value(found, "minirepo_http_response_bytes_total", kind="file") == wheel.stat().st_size
    assert value(found, "minirepo_disk_free_bytes") > 0
    assert value(found, "minirepo_spool_bytes") == 0
    # The scrape is counted once its answer is sent: the next one sees it.
    later = scrape(client, token_auth(admin))
    assert value(later, "minirepo_http_requests_total", kind="other", code="200") == 1


def test_refused_credentials_count_as_auth_failures_a_challenge_does_not(
    client: FlaskClient, admin: str, wheel: Path
) -> None:
    assert closed(post_upload(client, "mr-" + "x" * 43, wheel)).status_code == 401
    wrong = basic("root", "not-the-password")
    assert closed(client.get("/-/api/whoami", headers=wrong)).status_code == 401
    assert closed(client.post("/", data={})).status_code == 401  # no credentials: a challenge
    found = scrape(client, token_auth(admin))
    assert value(found, "minirepo_auth_failures_total") == 2
    assert value(found, "minirepo_http_requests_total", kind="upload", code="401") == 2


def test_a_lockout_counts_as_an_auth_failure(tmp_path: Path) -> None:
    with app_with(tmp_path, login_failure_limit=1, metrics="open") as app:
        client = app.test_client()
        accounts.add_user("bob", "bob-password-1", method=FAST_HASH)
        wrong = basic("bob", "wrong")
        assert closed(client.get("/-/api/whoami", headers=wrong)).status_code == 401
        assert closed(client.get("/-/api/whoami", headers=wrong)).status_code == 429
        assert value(scrape(client), "minirepo_auth_failures_total") == 2


def test_a_busy_database_wait_is_counted(tmp_path: Path, wheel: Path) -> None:
    """Another writer holds the lock past busy_timeout: 503, and the wait is counted."""
    with app_with(tmp_path, busy_timeout=0.2, metrics="open") as app:
        client = app.test_client()
        token = admin_token()
        services: Services = app.extensions["minirepo"]
        held, done = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with services.folder.database.write_transaction():
                held.set()
                done.wait(10)

        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        try:
            assert held.wait(10)
            assert closed(post_upload(client, token, wheel)).status_code == 503
        finally:
            done.set()
            holder.join(10)
        found = scrape(client)
    assert value(found, "minirepo_database_busy_wait_seconds_count") == 1
    assert value(found, "minirepo_database_busy_wait_seconds_sum") >= 0.2


def test_upstream_fetches_are_counted_started_and_how_they_ended(tmp_path: Path) -> None:
    with FakeUpstream() as upstream, app_with(tmp_path, upstream=upstream.url) as app:
        repos.update("pypi-proxy", options={"min_free_disk": 0})
        client = app.test_client()
        good = make_wheel(tmp_path, Dist("good", "1.0"))
        bad = make_wheel(tmp_path, Dist("bad", "1.0"))
        upstream.add_file("good", good.name, good.read_bytes())
        upstream.add_file("bad", bad.name, bad.read_bytes(), lie_sha256=True)
        services: Services = app.extensions["minirepo"]
        for project, path in (("good", good), ("bad", bad)):
            assert closed(client.get(f"/pypi-proxy/simple/{project}/")).status_code == 200
            with contextlib.suppress(FetchFailed):  # the liar's body breaks off
                closed(client.get(f"/pypi-proxy/files/{project}/{path.name}"))
            assert services.fetches.wait_idle(10)
        found = scrape(client, token_auth(admin_token()))
    assert value(found, "minirepo_upstream_fetches_total", event="started") == 2
    assert value(found, "minirepo_upstream_fetches_total", event="verified") == 1
    assert value(found, "minirepo_upstream_fetches_total", event="failed") == 1


# -- who may read them ---------------------------------------------------------------------


def test_metrics_need_an_admin_by_default(client: FlaskClient, admin: str) -> None:
    anonymous = client.get("/-/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    accounts.add_user("bob", "bob-password-1", method=FAST_HASH)
    assert client.get("/-/metrics", headers=basic("bob", "bob-password-1")).status_code == 403
    answer = client.get("/-/metrics", headers=token_auth(admin))
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain")
    assert answer.headers["Cache-Control"] == "no-store"
    assert "# TYPE minirepo_http_requests_total counter" in answer.get_data(as_text=True)


def test_open_metrics_answer_anyone(tmp_path: Path) -> None:
    with app_with(tmp_path, metrics="open") as app:
        assert app.test_client().get("/-/metrics").status_code == 200


def test_a_scraper_asking_for_openmetrics_gets_it(tmp_path: Path) -> None:
    with app_with(tmp_path, metrics="open") as app:
        answer = app.test_client().get(
            "/-/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert answer.content_type.startswith("application/openmetrics-text")
    assert answer.get_data(as_text=True).endswith("# EOF\n")


def test_metrics_off_is_404_even_for_an_admin(tmp_path: Path) -> None:
    with app_with(tmp_path, metrics="off") as app:
        answer = app.test_client().get("/-/metrics", headers=token_auth(admin_token()))
    assert answer.status_code == 404
    assert "setting metrics" in answer.status


# -- /-/health -----------------------------------------------------------------------------


def health_of(client: FlaskClient) -> tuple[int, dict[str, Any]]:
    answer = client.get("/-/health")
    assert answer.headers["Cache-Control"] == "no-store"
    return answer.status_code, answer.json  # type: ignore[return-value]


def test_health_reports_each_check(client: FlaskClient, settings: Settings) -> None:
    status, report = health_of(client)
    assert status == 200
    assert report["status"] == "ok"
    assert report["problems"] == []
    assert report["database"] == report["data_folder"] == "ok"
    assert report["disk_free"] > 0
    assert report["disk_floor"] == 1024**3  # the first start's proxy: min_free_disk
    assert report["spool_in_use"] == 0
    assert report["spool_limit"] == settings.spool_limit
    assert report["upstreams"] == {"pypi-proxy": {"status": "unknown"}}


def test_the_disk_floor_is_the_smallest_proxy_floor_and_never_below_100_mib(
    client: FlaskClient,
) -> None:
    repos.create("other-proxy", kind="proxy", upstream="http://127.0.0.1:1/simple/")
    repos.update("other-proxy", options={"min_free_disk": 3 * 1024**3})
    assert health_of(client)[1]["disk_floor"] == 1024**3
    repos.update("pypi-proxy", options={"min_free_disk": 0})
    assert health_of(client)[1]["disk_floor"] == health.DISK_FLOOR


def test_low_disk_is_degraded_not_down(
    client: FlaskClient, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage

    def nearly_full(path: Path | str) -> Any:
        return real(path)._replace(free=50 * MiB)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    status, report = health_of(client)
    assert status == 200
    assert report["status"] == "degraded"
    assert report["disk_free"] == 50 * MiB
    assert "disk free" in report["problems"][0]
    assert value(scrape(client, token_auth(admin)), "minirepo_disk_free_bytes") == 50 * MiB


def test_a_failing_upstream_is_degraded_not_down(client: FlaskClient, app: Flask) -> None:
    proxy = models.Repository.get(name="pypi-proxy")
    services: Services = app.extensions["minirepo"]
    reason = f"upstream {proxy.upstream}: answered 503"
    services.proxies.upstreams.failed(proxy.id, proxy.upstream, reason, timeout=False, whole=True)
    status, report = health_of(client)
    assert status == 200
    assert report["status"] == "degraded"
    assert report["upstreams"]["pypi-proxy"]["last_error"] == reason
    assert report["problems"] == ["upstream of pypi-proxy is failing"]


def test_a_database_that_does_not_answer_is_503_and_its_reason_stays_in_the_log(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(query: object) -> list[tuple[Any, ...]]:
        raise peewee.OperationalError("could not connect to db.internal:5432 as minirepo")

    monkeypatch.setattr(health, "rows", refuse)
    answer = client.get("/-/health")
    assert answer.status_code == 503
    report = answer.json
    assert report is not None
    assert report["status"] == "error"
    assert report["database"] == "error"
    assert report["problems"] == ["the database does not answer"]
    assert "db.internal" not in answer.get_data(as_text=True)
    assert "db.internal" in caplog.text


def test_a_data_folder_that_takes_no_files_is_503(client: FlaskClient, settings: Settings) -> None:
    tmp = settings.data / "tmp"
    tmp.rename(settings.data / "tmp-away")  # as a lost mount or a wrong owner looks
    try:
        status, report = health_of(client)
    finally:
        (settings.data / "tmp-away").rename(tmp)
    assert status == 503
    assert report["status"] == "error"
    assert report["data_folder"] == "error"
    assert report["database"] == "ok"


def test_the_report_says_every_problem_at_once() -> None:
    found = health.Health(
        database=True,
        folder=False,
        disk_free=0,
        disk_floor=health.DISK_FLOOR,
        spool_in_use=0,
        spool_limit=1,
        upstreams={"p": {"status": "degraded"}},
    )
    assert not found.works
    assert found.report()["status"] == "error"
    assert len(found.problems) == 3
    assert dataclasses.replace(found, folder=True).report()["status"] == "degraded"
