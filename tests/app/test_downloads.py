"""Download counts: counted per GET that sends a file, kept in memory, written in one
transaction at most once a minute (and at a stop), read back as stored plus pending."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import models
from minirepo.services.container import Services
from minirepo.services.downloads import DownloadCounter, today
from tests.conftest import post_upload
from tests.helpers.backends import BACKENDS, backend_settings, served
from tests.helpers.distfactory import Dist, make_wheel

URL = "/main/files/countme/countme-1.0-py3-none-any.whl"


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with served(backend_settings(request, tmp_path)) as app:
        yield app


@pytest.fixture
def file_id(app: Flask, admin: str, tmp_path: Path) -> int:
    wheel = make_wheel(tmp_path, Dist("countme", "1.0"))
    assert post_upload(app.test_client(), admin, wheel).status_code == 200
    return int(models.File.get().id)


def counter(app: Flask) -> DownloadCounter:
    services: Services = app.extensions["minirepo"]
    return services.downloads


def test_only_gets_that_send_the_file_count(app: Flask, file_id: int) -> None:
    client: FlaskClient = app.test_client()
    with client.get(URL) as whole:
        assert whole.status_code == 200
        etag = whole.headers["ETag"]
    for headers, status in (
        ({"Range": "bytes=0-9"}, 206),  # a download in ranges starts at byte 0: counted
        ({"Range": "bytes=10-"}, 206),  # its later ranges are not new downloads
        ({"If-None-Match": etag}, 304),
    ):
        with client.get(URL, headers=headers) as got:
            assert got.status_code == status
    with client.head(URL) as head:
        assert head.status_code == 200
    assert client.get(URL + ".metadata").status_code == 200
    assert counter(app).totals([file_id]) == {file_id: 2}
    assert counter(app).writes == 0  # nothing written yet: in memory only


def test_counts_survive_a_flush_in_one_write(app: Flask, file_id: int) -> None:
    downloads = counter(app)
    downloads.count(file_id)
    downloads.count(file_id)
    assert downloads.totals([file_id, 999]) == {file_id: 2, 999: 0}  # pending ones too
    epoch = downloads.epoch
    downloads.flush()
    downloads.flush()  # nothing pending: no write
    assert (downloads.writes, downloads.epoch) == (1, epoch + 1)
    assert [(row.day, row.count) for row in models.DownloadCount.select()] == [(today(), 2)]
    downloads.count(file_id)
    assert downloads.totals([file_id]) == {file_id: 3}
    downloads.close()  # a graceful stop writes the rest
    # Another process (a restart) reads what was written.
    services: Services = app.extensions["minirepo"]
    fresh = DownloadCounter(services.folder.database)
    assert fresh.totals([file_id]) == {file_id: 3}
    days = fresh.daily([file_id])
    assert len(days) == 30
    assert days[-1] == (today(), 3)
    assert days[0] == (today() - datetime.timedelta(days=29), 0)
    assert sum(count for _, count in days) == 3


def test_older_days_add_up_and_a_deleted_file_is_dropped(app: Flask, file_id: int) -> None:
    downloads = counter(app)
    yesterday = today() - datetime.timedelta(days=1)
    models.DownloadCount.create(file=file_id, day=yesterday, count=5)
    downloads.count(file_id)
    downloads.count(file_id)
    downloads.count(424242)  # a file deleted before the flush
    downloads.flush()
    assert downloads.daily([file_id], days=2) == [(yesterday, 5), (today(), 2)]
    assert downloads.totals([file_id]) == {file_id: 7}
    downloads.count(file_id)
    downloads.flush()  # the same day again: added to its row
    assert models.DownloadCount.get(day=today()).count == 3


def test_the_timer_writes_without_a_request(app: Flask, file_id: int) -> None:
    services: Services = app.extensions["minirepo"]
    downloads = DownloadCounter(services.folder.database, interval=0.05)
    downloads.count(file_id)
    deadline = time.monotonic() + 10
    while downloads.writes == 0:
        assert time.monotonic() < deadline, "the timer never flushed"
        time.sleep(0.02)
    downloads.close()
    assert models.DownloadCount.get().count == 1
