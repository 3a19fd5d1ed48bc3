"""Serving stored files and `.metadata`: headers, HEAD, Range, 304, lookups, damage."""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path
from urllib.parse import urljoin

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.http import parse_date
from werkzeug.test import TestResponse

from minirepo import models
from minirepo.config import Settings
from tests.conftest import token_auth
from tests.helpers.distfactory import Dist, make_wheel
from tests.unit.test_simple_pages import (
    PUBLIC_DISTS,
    SDIST_09,
    SDIST_10,
    WHEEL_10,
    WHEEL_20,
    Template,
    Uploaded,
    build_template,
    copied_settings,
    upload_ok,
)

ALL_FILES = (WHEEL_10, SDIST_10, SDIST_09, WHEEL_20)
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return build_template(tmp_path_factory.mktemp("files"), "anonymous", PUBLIC_DISTS)


@pytest.fixture
def settings(tmp_path: Path, template: Template) -> Settings:
    return copied_settings(tmp_path, template)


@pytest.fixture
def uploaded(app: Flask, template: Template) -> Uploaded:
    return template.uploaded


def url_of(filename: str, prefix: str = "") -> str:
    return f"{prefix}/files/demo-pkg/{filename}"


def blob_path(settings: Settings, filename: str) -> Path:
    row = models.File.get(models.File.filename == filename)
    return settings.data / "files" / row.storage_key


def get(client: FlaskClient, url: str, **headers: str) -> tuple[TestResponse, bytes]:
    """GET and read the whole body, closing the response (and its file handle)."""
    with client.get(url, headers=headers) as response:
        return response, response.get_data()


def head(client: FlaskClient, url: str, **headers: str) -> tuple[TestResponse, bytes]:
    with client.head(url, headers=headers) as response:
        return response, response.get_data()


def headers_without_date(response: TestResponse) -> dict[str, str]:
    return {key: value for key, value in response.headers.items() if key != "Date"}


# --- whole files ---------------------------------------------------------------------


@pytest.mark.parametrize("filename", ALL_FILES)
@pytest.mark.parametrize("prefix", ["", "/main"])
def test_get_file(
    client: FlaskClient, uploaded: Uploaded, settings: Settings, filename: str, prefix: str
) -> None:
    data = uploaded.data(filename)
    response, body = get(client, url_of(filename, prefix), **{"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert body == data
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "Content-Encoding" not in response.headers  # files are never compressed
    assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    cache_control = response.headers["Cache-Control"]
    assert "immutable" in cache_control
    assert "public" in cache_control
    uploaded_at = models.File.get(models.File.filename == filename).upload_time
    last_modified = parse_date(response.headers["Last-Modified"])
    assert last_modified == uploaded_at.replace(microsecond=0, tzinfo=datetime.timezone.utc)


def test_yanked_file_is_still_served(client: FlaskClient, uploaded: Uploaded) -> None:
    """A yanked file stays installable when pinned (PEP 592)."""
    response, body = get(client, url_of(WHEEL_20))
    assert response.status_code == 200
    assert body == uploaded.data(WHEEL_20)


@pytest.mark.parametrize("filename", [WHEEL_10, SDIST_10])
def test_head_file(client: FlaskClient, uploaded: Uploaded, filename: str) -> None:
    url = url_of(filename)
    got, _ = get(client, url)
    response, body = head(client, url)
    assert response.status_code == 200
    assert body == b""
    assert headers_without_date(response) == headers_without_date(got)
    assert response.headers["Content-Length"] == str(len(uploaded.data(filename)))
    assert response.headers["Accept-Ranges"] == "bytes"


# --- Range ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=-100", -100, None),
        ("bytes=100-", 100, None),
        ("bytes=10-19", 10, 20),
        ("bytes=0-", 0, None),
        ("bytes=100-99999999", 100, None),
        ("bytes=-99999999", 0, None),
    ],
)
def test_range(
    client: FlaskClient, uploaded: Uploaded, header: str, start: int, end: int | None
) -> None:
    data = uploaded.data(WHEEL_10)
    size = len(data)
    expected = data[start:end]
    first = start % size if start < 0 else start
    response, body = get(client, url_of(WHEEL_10), Range=header)
    assert response.status_code == 206
    assert body == expected
    assert response.headers["Content-Length"] == str(len(expected))
    assert response.headers["Content-Range"] == (
        f"bytes {first}-{first + len(expected) - 1}/{size}"
    )
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    head_response, head_body = head(client, url_of(WHEEL_10), Range=header)
    assert head_response.status_code == 206
    assert head_body == b""
    assert head_response.headers["Content-Range"] == response.headers["Content-Range"]
    assert head_response.headers["Content-Length"] == str(len(expected))


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=999999999-999999999"])
def test_unsatisfiable_range(client: FlaskClient, uploaded: Uploaded, header: str) -> None:
    data = uploaded.data(WHEEL_10)
    response, body = get(client, url_of(WHEEL_10), Range=header)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"
    assert data not in body
    assert not body.startswith(b"PK")


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-0,5-9",  # several ranges
        "bytes=0-1,999999999-",
        "bytes=abc",  # bad syntax
        "bytes=5-1",  # last before first
        "items=0-1",  # unknown unit
        "",
        "bytes=",
        "bytes=--1",
        "bytes=0-0" * 1000,
    ],
)
def test_range_we_do_not_serve_gives_the_whole_file(
    client: FlaskClient, uploaded: Uploaded, header: str
) -> None:
    """Documented choice: a Range we do not serve is ignored (RFC 9110 14.2), never a 500.

    werkzeug on its own answers these with 416, which for a satisfiable multi-range
    request is wrong; one whole-file 200 is what every client can use.
    """
    data = uploaded.data(WHEEL_10)
    response, body = get(client, url_of(WHEEL_10), Range=header)
    assert response.status_code == 200
    assert body == data
    assert "Content-Range" not in response.headers


def test_if_range(client: FlaskClient, uploaded: Uploaded) -> None:
    data = uploaded.data(WHEEL_10)
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    fresh, body = get(client, url_of(WHEEL_10), Range="bytes=0-9", **{"If-Range": etag})
    assert fresh.status_code == 206
    assert body == data[:10]
    stale, body = get(client, url_of(WHEEL_10), Range="bytes=0-9", **{"If-Range": '"old"'})
    assert stale.status_code == 200
    assert body == data


# --- conditional requests ------------------------------------------------------------


def test_if_none_match(client: FlaskClient, uploaded: Uploaded) -> None:
    data = uploaded.data(WHEEL_10)
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    for condition in (etag, f'"other", {etag}', "*", f"W/{etag}"):
        response, body = get(client, url_of(WHEEL_10), **{"If-None-Match": condition})
        assert response.status_code == 304, condition
        assert body == b""
        assert response.headers["ETag"] == etag
    response, body = get(client, url_of(WHEEL_10), **{"If-None-Match": '"other"'})
    assert response.status_code == 200
    assert body == data
    response, body = head(client, url_of(WHEEL_10), **{"If-None-Match": etag})
    assert response.status_code == 304
    assert body == b""


def test_if_modified_since(client: FlaskClient, uploaded: Uploaded) -> None:
    response, _ = get(client, url_of(WHEEL_10))
    last_modified = response.headers["Last-Modified"]
    again, body = get(client, url_of(WHEEL_10), **{"If-Modified-Since": last_modified})
    assert again.status_code == 304
    assert body == b""
    old, body = get(
        client, url_of(WHEEL_10), **{"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert old.status_code == 200
    assert body == uploaded.data(WHEEL_10)


# --- .metadata -----------------------------------------------------------------------


def advertised(client: FlaskClient) -> dict[str, object]:
    page = client.get("/simple/demo-pkg/", headers=JSON).get_json()
    return {entry["filename"]: entry["core-metadata"] for entry in page["files"]}


@pytest.mark.parametrize("filename", [WHEEL_10, SDIST_10, WHEEL_20])
@pytest.mark.parametrize("prefix", ["", "/main"])
def test_metadata(client: FlaskClient, uploaded: Uploaded, filename: str, prefix: str) -> None:
    expected = uploaded.metadata[filename]
    digest = hashlib.sha256(expected).hexdigest()
    assert advertised(client)[filename] == {"sha256": digest}
    url = url_of(filename, prefix) + ".metadata"
    response, body = get(client, url, **{"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert body == expected
    assert hashlib.sha256(body).hexdigest() == digest
    assert response.headers["Content-Length"] == str(len(expected))
    assert response.headers["ETag"] == f'"{digest}"'
    assert "immutable" in response.headers["Cache-Control"]
    head_response, head_body = head(client, url)
    assert head_response.status_code == 200
    assert head_body == b""
    assert headers_without_date(head_response) == headers_without_date(response)
    not_modified, body = get(client, url, **{"If-None-Match": f'"{digest}"'})
    assert not_modified.status_code == 304
    assert body == b""
    ranged, body = get(client, url, Range="bytes=0-16")
    assert ranged.status_code == 206
    assert body == expected[:17]
    refused, _ = get(client, url, Range="bytes=999999999-")
    assert refused.status_code == 416
    assert refused.headers["Content-Range"] == f"bytes */{len(expected)}"


def test_metadata_not_advertised_is_404(client: FlaskClient, uploaded: Uploaded) -> None:
    """An sdist with Metadata-Version 2.1 has no trustworthy metadata: none is served."""
    assert advertised(client)[SDIST_09] is False
    response, _ = get(client, url_of(SDIST_09) + ".metadata")
    assert response.status_code == 404


def test_quoted_file_url_round_trips(
    client: FlaskClient, uploaded: Uploaded, dist_folder: Path
) -> None:
    """A local version puts `+` in the filename: the page quotes it, the server unquotes it."""
    wheel = make_wheel(dist_folder, Dist("demo-pkg", "3.0+local"))
    upload_ok(client, uploaded.token, wheel)
    page = client.get("/simple/demo-pkg/", headers=JSON).get_json()
    entry = next(item for item in page["files"] if item["filename"] == wheel.name)
    assert entry["url"] == "../../files/demo-pkg/demo_pkg-3.0%2Blocal-py3-none-any.whl"
    for url in (urljoin("/simple/demo-pkg/", entry["url"]), url_of(wheel.name)):
        response, body = get(client, url)
        assert response.status_code == 200
        assert body == wheel.read_bytes()
        response, body = get(client, url + ".metadata")
        assert response.status_code == 200
        assert hashlib.sha256(body).hexdigest() == entry["core-metadata"]["sha256"]


# --- lookups that must fail ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/files/demo-pkg/demo_pkg-9.9-py3-none-any.whl",
        "/files/demo-pkg/demo_pkg-9.9-py3-none-any.whl.metadata",
        "/files/demo-pkg/.metadata",
        "/files/demo-pkg/x",
        f"/files/foo-bar/{WHEEL_10}",  # a file of another project
        f"/files/foo-bar/{WHEEL_10}.metadata",
        f"/files/no-such/{WHEEL_10}",
        f"/files/Demo_Pkg/{WHEEL_10}",  # not the normalized name
        f"/files/demo_pkg/{WHEEL_10}",
        f"/files/demo-pkg/{WHEEL_10.upper()}",
        f"/files/demo-pkg/{WHEEL_10}/",
        f"/files/demo-pkg/{WHEEL_10}.asc",
        f"/files/{WHEEL_10}",
        f"/other/files/demo-pkg/{WHEEL_10}",  # no such repository
        f"/simple/files/demo-pkg/{WHEEL_10}",  # reserved name
        f"/files/demo-pkg/{WHEEL_10}%00",
        f"/files/demo-pkg/{WHEEL_10}%0d%0a",
        "/files/demo-pkg/%ff%fe.whl",
        "/files/" + "a" * 300 + f"/{WHEEL_10}",
    ],
)
def test_not_found(client: FlaskClient, uploaded: Uploaded, url: str) -> None:
    if url.startswith("/other/"):  # a missing repository: 401 anonymous, 404 authenticated
        response, body = get(client, url)
        assert response.status_code == 401, response.status
        assert not body.startswith(b"PK")
        response, body = get(client, url, **token_auth(uploaded.token))
        assert response.status_code == 404, response.status
        assert not body.startswith(b"PK")
        return
    response, body = get(client, url)
    assert response.status_code == 404, response.status
    assert not body.startswith(b"PK")
    assert b"Metadata-Version" not in body


def test_file_in_another_repository_is_404(client: FlaskClient, uploaded: Uploaded) -> None:
    models.Repository.create(name="other")
    response, body = get(client, f"/other/files/demo-pkg/{WHEEL_10}")
    assert response.status_code == 404
    assert body != uploaded.data(WHEEL_10)


@pytest.mark.parametrize(
    "url",
    [
        "/files/..%2f..%2fminirepo.sqlite3",
        "/files/..%2fminirepo.sqlite3",
        "/files/x/%2e%2e%2f%2e%2e%2fsecret",
        "/files/x/%2e%2e%2f%2e%2e%2fminirepo.sqlite3",
        "/files/foo/..%2f..%2fsecret",
        "/files/demo-pkg/..%2f..%2fsecret",
        "/files/demo-pkg/..%2f..%2fminirepo.sqlite3",
        "/files/demo-pkg/..",
        "/files/demo-pkg/%2e%2e",
        "/files/../secret",
        "/files/%2e%2e/secret",
        "/files/foo%00.whl",
        "/files/foo/foo%00.whl",
        f"/files/demo-pkg/{WHEEL_10}%00.whl",
        "/files/demo-pkg/..%5c..%5csecret",
        "/files/demo-pkg/%2fetc%2fpasswd",
        "/main/files/..%2f..%2fsecret",
        "/..%2ffiles/demo-pkg/secret",
    ],
)
def test_traversal(client: FlaskClient, uploaded: Uploaded, settings: Settings, url: str) -> None:
    for method in (client.get, client.head):
        with method(url) as response:
            body = response.get_data()
            assert response.status_code in (400, 404), (url, response.status)
            assert not body.startswith(b"SQLite format")
            assert (settings.data / "secret").read_bytes() not in body
            assert b"PK" not in body


def test_traversal_in_raw_path(client: FlaskClient, uploaded: Uploaded, settings: Settings) -> None:
    """The same, with PATH_INFO exactly as a server might pass it on."""
    for path_info in ("/files/../../minirepo.sqlite3", "/files/x/../../secret", "/files/.."):
        with client.get("/", environ_overrides={"PATH_INFO": path_info}) as response:
            body = response.get_data()
            assert response.status_code in (400, 404), (path_info, response.status)
            assert not body.startswith(b"SQLite format")
            assert (settings.data / "secret").read_bytes() not in body


# --- damaged storage -----------------------------------------------------------------


def assert_refused(client: FlaskClient, url: str, data: bytes, **headers: str) -> None:
    for method in (client.get, client.head):
        with method(url, headers=headers) as response:
            body = response.get_data()
            assert 500 <= response.status_code < 600, response.status
            assert not body.startswith(b"PK")
            assert data[:64] not in body


def test_truncated_file_is_refused(
    client: FlaskClient, uploaded: Uploaded, settings: Settings
) -> None:
    data = uploaded.data(WHEEL_10)
    path = blob_path(settings, WHEEL_10)
    assert path.read_bytes() == data
    path.write_bytes(data[: len(data) // 2])
    url = url_of(WHEEL_10)
    assert_refused(client, url, data)
    assert_refused(client, url, data, Range="bytes=0-9")
    assert_refused(client, url, data, **{"If-None-Match": "*"})
    # The metadata lives in the database and stays available; other files are unaffected.
    assert get(client, url + ".metadata")[0].status_code == 200
    response, body = get(client, url_of(SDIST_10))
    assert response.status_code == 200
    assert body == uploaded.data(SDIST_10)


def test_grown_file_is_refused(client: FlaskClient, uploaded: Uploaded, settings: Settings) -> None:
    data = uploaded.data(WHEEL_10)
    with blob_path(settings, WHEEL_10).open("ab") as handle:
        handle.write(b"tail")
    assert_refused(client, url_of(WHEEL_10), data)


def test_deleted_file_is_refused(
    client: FlaskClient, uploaded: Uploaded, settings: Settings
) -> None:
    data = uploaded.data(WHEEL_10)
    blob_path(settings, WHEEL_10).unlink()
    assert_refused(client, url_of(WHEEL_10), data)
    assert_refused(client, url_of(WHEEL_10), data, Range="bytes=0-0")


def test_symlinked_file_is_refused(
    client: FlaskClient, uploaded: Uploaded, settings: Settings, tmp_path: Path
) -> None:
    """A blob replaced by a symlink (to anything, even the right bytes) is not followed."""
    data = uploaded.data(WHEEL_10)
    outside = tmp_path / "outside.whl"
    outside.write_bytes(data)
    path = blob_path(settings, WHEEL_10)
    path.unlink()
    os.symlink(outside, path)
    assert_refused(client, url_of(WHEEL_10), data)
