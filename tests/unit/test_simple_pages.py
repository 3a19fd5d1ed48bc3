"""The simple index as installers read it: PEPs 503, 592, 629, 658/714, 691, 700.

Pages are built from real uploads (wheels and sdists, one yanked file); the repository
cache is switched off (`page_cache_seconds=0`) so that a yank written straight to the
database shows at once, except in the test that proves an upload shows at once anyway.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import json
import re
import shutil
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from minirepo import models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.services import accounts
from minirepo.services.index import Index
from minirepo.services.proxies import Proxies
from minirepo.services.repos import RepoInfo
from minirepo.storage import BlobStore
from tests.conftest import ADMIN_PASSWORD, basic, post_upload, token_auth
from tests.helpers.distfactory import Dist, make_sdist, make_wheel
from tests.helpers.serverproc import FAST_HASH

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
JSON = {"Accept": JSON_V1}
UPLOAD_TIME_RE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
YANK_REASON = "broken build <b>&\"'"

WHEEL_10 = "demo_pkg-1.0-py3-none-any.whl"
SDIST_10 = "demo_pkg-1.0.tar.gz"
SDIST_09 = "demo_pkg-0.9.tar.gz"
WHEEL_20 = "demo_pkg-2.0-py3-none-any.whl"
FOO_WHEEL = "foo_bar-1.0-py3-none-any.whl"


@dataclasses.dataclass
class Uploaded:
    paths: dict[str, Path]
    metadata: dict[str, bytes]
    token: str

    def data(self, filename: str) -> bytes:
        return self.paths[filename].read_bytes()


@dataclasses.dataclass
class Template:
    """A data folder filled once per module; each test works on its own copy."""

    data: Path
    uploaded: Uploaded


def upload_ok(client: FlaskClient, token: str, path: Path, url: str = "/") -> None:
    response = post_upload(client, token, path, url=url)
    assert response.status_code == 200, response.get_data(as_text=True)


def yank(filename: str, reason: str) -> None:
    """What a yank command would do: mark the row and bump the repository generation."""
    models.File.update(yanked=True, yanked_reason=reason).where(
        models.File.filename == filename
    ).execute()
    models.Repository.update(generation=models.Repository.generation + 1).execute()


def build_template(root: Path, read: str, dists: list[tuple[Maker, Dist]]) -> Template:
    folder = root / "dists"
    folder.mkdir()
    settings = Settings(
        data=root / "data", password_hash=FAST_HASH, read=read, explicit=frozenset({"read"})
    )
    app = create_app(settings)
    client = app.test_client()
    database = app.extensions["minirepo"].folder.database
    with database.activated():
        accounts.add_user("root", ADMIN_PASSWORD, method=FAST_HASH, admin=True)
        token = accounts.create_token("root", permission="admin").secret
        paths: dict[str, Path] = {}
        metadata: dict[str, bytes] = {}
        for maker, dist in dists:
            path = maker(folder, dist)
            upload_ok(client, token, path)
            paths[path.name] = path
            metadata[path.name] = dist.metadata()
        if WHEEL_20 in paths:
            yank(WHEEL_20, YANK_REASON)
        database.handle.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    return Template(settings.data, Uploaded(paths, metadata, token))


Maker = Callable[[Path, Dist], Path]
PUBLIC_DISTS: list[tuple[Maker, Dist]] = [
    (make_wheel, Dist("demo-pkg", "1.0", requires_python=">=3.8")),
    (make_sdist, Dist("demo-pkg", "1.0", requires_python=">=3.8", metadata_version="2.2")),
    (make_sdist, Dist("demo-pkg", "0.9")),
    (make_wheel, Dist("demo-pkg", "2.0")),
    (make_wheel, Dist("Foo.Bar", "1.0")),
]


@pytest.fixture(scope="module")
def public_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """demo-pkg 0.9 (sdist, Metadata 2.1), 1.0 (wheel + sdist 2.2), 2.0 (yanked); Foo.Bar 1.0."""
    return build_template(tmp_path_factory.mktemp("public"), "anonymous", PUBLIC_DISTS)


def copied_settings(tmp_path: Path, template: Template) -> Settings:
    """A copy of the filled folder; no repository cache, so direct DB writes show at once."""
    shutil.copytree(template.data, tmp_path / "data")
    return Settings(data=tmp_path / "data", password_hash=FAST_HASH, page_cache_seconds=0)


@pytest.fixture
def settings(tmp_path: Path, public_template: Template) -> Settings:
    return copied_settings(tmp_path, public_template)


@pytest.fixture
def uploaded(app: Flask, public_template: Template) -> Uploaded:
    return public_template.uploaded


class Links(HTMLParser):
    """Anchors and meta tags of a page, with the raw start tag text kept."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str, str]] = []
        self.meta: list[dict[str, str | None]] = []
        self._open: tuple[dict[str, str | None], str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open = (dict(attrs), self.get_starttag_text() or "")
            self._text = []
        elif tag == "meta":
            self.meta.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open[0], self._open[1], "".join(self._text)))
            self._open = None


def parse(body: str) -> Links:
    links = Links()
    links.feed(body)
    links.close()
    return links


def anchors_by_text(body: str) -> dict[str, tuple[dict[str, str | None], str]]:
    return {text: (attrs, raw) for attrs, raw, text in parse(body).anchors}


def resolve(request_path: str, location: str) -> tuple[str, str]:
    """(netloc, path) of `location` resolved against the URL that was asked for."""
    parts = urlsplit(urljoin(f"http://localhost{request_path}", location))
    return parts.netloc, parts.path


def follow(client: FlaskClient, url: str, headers: dict[str, str]) -> tuple[str, TestResponse]:
    """Follow redirects the way installers do: same host only, relative to the last URL.

    (werkzeug's `follow_redirects` does not resolve a relative `Location` against the
    request path, so it cannot stand in for a real client here.)
    """
    for _ in range(5):
        response = client.get(url, headers=headers)
        if response.status_code not in (301, 302, 303, 307, 308):
            return url, response
        netloc, url = resolve(url, response.headers["Location"])
        assert netloc == "localhost", response.headers["Location"]
    raise AssertionError(f"redirect loop at {url}")


def fetch(client: FlaskClient, url: str, **kwargs: object) -> tuple[int, bytes, TestResponse]:
    with client.get(url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status_code, response.get_data(), response


# --- JSON project page ---------------------------------------------------------------


def test_json_project_page(client: FlaskClient, uploaded: Uploaded) -> None:
    response = client.get("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == JSON_V1
    page = json.loads(response.get_data())
    assert set(page) == {"meta", "name", "versions", "files"}
    assert page["meta"] == {"api-version": "1.3"}
    assert page["name"] == "demo-pkg"
    assert page["versions"] == ["0.9", "1.0", "2.0"]
    by_name = {entry["filename"]: entry for entry in page["files"]}
    assert set(by_name) == {WHEEL_10, SDIST_10, SDIST_09, WHEEL_20}
    for filename, entry in by_name.items():
        data = uploaded.data(filename)
        expected_keys = {
            "filename",
            "url",
            "hashes",
            "core-metadata",
            "dist-info-metadata",
            "yanked",
            "size",
            "upload-time",
        }
        if filename in (WHEEL_10, SDIST_10):
            expected_keys.add("requires-python")
            assert entry["requires-python"] == ">=3.8"
        assert set(entry) == expected_keys, filename
        assert entry["url"] == f"../../files/demo-pkg/{filename}"
        assert entry["hashes"] == {"sha256": hashlib.sha256(data).hexdigest()}
        assert entry["size"] == len(data)
        assert type(entry["size"]) is int
        assert UPLOAD_TIME_RE.match(entry["upload-time"]), entry["upload-time"]
        assert entry["yanked"] == (YANK_REASON if filename == WHEEL_20 else False)
        assert entry["core-metadata"] == entry["dist-info-metadata"]
        file_url = urljoin("/simple/demo-pkg/", entry["url"])
        status, body, _ = fetch(client, file_url)
        assert status == 200
        assert body == data
        if filename == SDIST_09:  # Metadata-Version 2.1 sdist: nothing advertised
            assert entry["core-metadata"] is False
            status, _, _ = fetch(client, file_url + ".metadata")
            assert status == 404
            continue
        status, metadata, _ = fetch(client, file_url + ".metadata")
        assert status == 200
        assert metadata == uploaded.metadata[filename]
        assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}


def test_json_yanked_without_reason_is_true(client: FlaskClient, uploaded: Uploaded) -> None:
    yank(WHEEL_10, "")
    page = client.get("/simple/demo-pkg/", headers=JSON).get_json()
    by_name = {entry["filename"]: entry for entry in page["files"]}
    assert by_name[WHEEL_10]["yanked"] is True
    assert by_name[WHEEL_20]["yanked"] == YANK_REASON
    assert by_name[SDIST_10]["yanked"] is False


def test_json_name_is_normalized(client: FlaskClient, uploaded: Uploaded) -> None:
    page = client.get("/simple/foo-bar/", headers=JSON).get_json()
    assert page["name"] == "foo-bar"
    assert page["versions"] == ["1.0"]
    assert [entry["url"] for entry in page["files"]] == [f"../../files/foo-bar/{FOO_WHEEL}"]


# --- HTML project page ---------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "*/*", "text/html", HTML_V1])
def test_html_project_page(client: FlaskClient, uploaded: Uploaded, accept: str | None) -> None:
    headers = {} if accept is None else {"Accept": accept}
    response = client.get("/simple/demo-pkg/", headers=headers)
    assert response.status_code == 200
    expected_type = HTML_V1 if accept == HTML_V1 else "text/html; charset=utf-8"
    assert response.headers["Content-Type"] == expected_type
    body = response.get_data(as_text=True)
    assert '<meta name="pypi:repository-version" content="1.3">' in body
    links = parse(body)
    assert {"name": "pypi:repository-version", "content": "1.3"} in links.meta
    # hatch's duplicate check matches `<a ...>FILENAME</a>` literally.
    for filename in (WHEEL_10, SDIST_10, SDIST_09, WHEEL_20):
        assert re.search(rf"<a [^>]*>{re.escape(filename)}</a>", body), filename
    anchors = anchors_by_text(body)
    assert set(anchors) == {WHEEL_10, SDIST_10, SDIST_09, WHEEL_20}
    for filename, (attrs, raw) in anchors.items():
        data = uploaded.data(filename)
        sha256 = hashlib.sha256(data).hexdigest()
        assert attrs["href"] == f"../../files/demo-pkg/{filename}#sha256={sha256}"
        if filename in (WHEEL_10, SDIST_10):
            assert attrs["data-requires-python"] == ">=3.8"
            assert 'data-requires-python="&gt;=3.8"' in raw
        else:
            assert "data-requires-python" not in attrs
        if filename == WHEEL_20:
            assert attrs["data-yanked"] == YANK_REASON
            assert "<b>" not in raw
        else:
            assert "data-yanked" not in attrs
        if filename == SDIST_09:
            assert "data-core-metadata" not in attrs
            assert "data-dist-info-metadata" not in attrs
            continue
        meta_sha = hashlib.sha256(uploaded.metadata[filename]).hexdigest()
        assert attrs["data-core-metadata"] == f"sha256={meta_sha}"
        assert attrs["data-dist-info-metadata"] == f"sha256={meta_sha}"
        href = attrs["href"]
        assert href is not None
        url = urljoin("/simple/demo-pkg/", href.split("#")[0])
        status, metadata, _ = fetch(client, url + ".metadata")
        assert status == 200
        assert hashlib.sha256(metadata).hexdigest() == meta_sha


def test_html_yanked_without_reason(client: FlaskClient, uploaded: Uploaded) -> None:
    yank(WHEEL_10, "")
    anchors = anchors_by_text(client.get("/simple/demo-pkg/").get_data(as_text=True))
    attrs, raw = anchors[WHEEL_10]
    assert attrs["data-yanked"] == ""
    assert 'data-yanked=""' in raw


def test_html_and_json_list_the_same_files(client: FlaskClient, uploaded: Uploaded) -> None:
    html_names = set(anchors_by_text(client.get("/simple/demo-pkg/").get_data(as_text=True)))
    page = client.get("/simple/demo-pkg/", headers=JSON).get_json()
    assert html_names == {entry["filename"] for entry in page["files"]}


# --- the project list ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/main"])
def test_root_index_html(client: FlaskClient, uploaded: Uploaded, prefix: str) -> None:
    response = client.get(f"{prefix}/simple/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    body = response.get_data(as_text=True)
    assert '<meta name="pypi:repository-version" content="1.3">' in body
    anchors = {text: attrs["href"] for attrs, _, text in parse(body).anchors}
    assert anchors == {"demo-pkg": "demo-pkg/", "Foo.Bar": "foo-bar/"}
    for href in anchors.values():
        assert client.get(urljoin(f"{prefix}/simple/", href)).status_code == 200


@pytest.mark.parametrize("prefix", ["", "/main"])
def test_root_index_json(client: FlaskClient, uploaded: Uploaded, prefix: str) -> None:
    response = client.get(f"{prefix}/simple/", headers={"Accept": PIP_ACCEPT})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == JSON_V1
    assert response.get_json() == {
        "meta": {"api-version": "1.3"},
        "projects": [{"name": "demo-pkg"}, {"name": "Foo.Bar"}],
    }


def test_empty_root_index(tmp_path: Path) -> None:
    client = create_app(Settings(data=tmp_path / "empty", password_hash=FAST_HASH)).test_client()
    assert client.get("/simple/", headers=JSON).get_json() == {
        "meta": {"api-version": "1.3"},
        "projects": [],
    }
    assert parse(client.get("/simple/").get_data(as_text=True)).anchors == []


# --- Vary, ETag, gzip, HEAD ----------------------------------------------------------

VARY_URLS = [
    "/simple/",
    "/main/simple/",
    "/simple/demo-pkg/",
    "/main/simple/demo-pkg/",
    "/+simple/demo-pkg/",
    "/simple/Demo_Pkg/",
    "/simple/demo-pkg",
    "/simple/no-such-project/",
    "/simple/bad%20name/",
    "/nope/simple/",
    "/main/demo-pkg/",
]


@pytest.mark.parametrize("url", VARY_URLS)
def test_vary_accept_on_every_answer(client: FlaskClient, uploaded: Uploaded, url: str) -> None:
    for accept in (None, "*/*", PIP_ACCEPT, "garbage", HTML_V1):
        headers = {} if accept is None else {"Accept": accept}
        for response in (client.get(url, headers=headers), client.head(url, headers=headers)):
            assert response.status_code < 500
            assert "Accept" in response.vary, (url, accept, response.status)


def test_vary_accept_on_304(client: FlaskClient, uploaded: Uploaded) -> None:
    etag = client.get("/simple/demo-pkg/").headers["ETag"]
    response = client.get("/simple/demo-pkg/", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert "Accept" in response.vary


@pytest.mark.parametrize("url", ["/simple/", "/simple/demo-pkg/"])
@pytest.mark.parametrize("accept", ["text/html", PIP_ACCEPT, HTML_V1])
def test_etag_and_304(client: FlaskClient, uploaded: Uploaded, url: str, accept: str) -> None:
    first = client.get(url, headers={"Accept": accept})
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9A-Za-z-]+"', etag), etag  # strong: no W/ prefix
    assert "must-revalidate" in first.headers["Cache-Control"]
    again = client.get(url, headers={"Accept": accept})
    assert again.headers["ETag"] == etag
    assert again.get_data() == first.get_data()
    for condition in (etag, f'"nope", {etag}', f"W/{etag}", "*"):
        response = client.get(url, headers={"Accept": accept, "If-None-Match": condition})
        assert response.status_code == 304, condition
        assert response.get_data() == b""
        assert response.headers["ETag"] == etag
    stale = client.get(url, headers={"Accept": accept, "If-None-Match": '"stale"'})
    assert stale.status_code == 200
    assert stale.get_data() == first.get_data()


def test_etag_is_not_a_prefix_match(client: FlaskClient, uploaded: Uploaded) -> None:
    etag = client.get("/simple/demo-pkg/").headers["ETag"]
    truncated = etag[:-3] + '"'
    response = client.get("/simple/demo-pkg/", headers={"If-None-Match": truncated})
    assert response.status_code == 200


@pytest.mark.parametrize("url", ["/simple/", "/simple/demo-pkg/"])
@pytest.mark.parametrize("accept", ["text/html", PIP_ACCEPT])
def test_gzip(client: FlaskClient, uploaded: Uploaded, url: str, accept: str) -> None:
    plain = client.get(url, headers={"Accept": accept})
    zipped = client.get(url, headers={"Accept": accept, "Accept-Encoding": "gzip, deflate"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Content-Type"] == plain.headers["Content-Type"]
    assert "Accept-Encoding" in zipped.vary
    assert "Accept-Encoding" in plain.vary
    assert gzip.decompress(zipped.get_data()) == plain.get_data()
    assert int(zipped.headers["Content-Length"]) == len(zipped.get_data())
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    # Each copy revalidates only against its own tag.
    gz_headers = {"Accept": accept, "Accept-Encoding": "gzip"}
    hit = client.get(url, headers={**gz_headers, "If-None-Match": zipped.headers["ETag"]})
    assert hit.status_code == 304
    miss = client.get(url, headers={**gz_headers, "If-None-Match": plain.headers["ETag"]})
    assert miss.status_code == 200
    identity = client.get(url, headers={"Accept": accept, "Accept-Encoding": "identity"})
    assert "Content-Encoding" not in identity.headers
    refused = client.get(url, headers={"Accept": accept, "Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers


@pytest.mark.parametrize(
    "url", ["/simple/", "/simple/demo-pkg/", "/main/simple/", "/main/simple/demo-pkg/"]
)
@pytest.mark.parametrize("accept", ["text/html", PIP_ACCEPT])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_head_matches_get(
    client: FlaskClient, uploaded: Uploaded, url: str, accept: str, encoding: str
) -> None:
    headers = {"Accept": accept, "Accept-Encoding": encoding}
    got = client.get(url, headers=headers)
    head = client.head(url, headers=headers)
    assert head.status_code == got.status_code == 200
    assert head.get_data() == b""
    assert dict(head.headers) == dict(got.headers)
    assert int(head.headers["Content-Length"]) == len(got.get_data())


@pytest.mark.parametrize(
    "url", ["/simple/no-such/", "/simple/Demo_Pkg/", "/simple/demo-pkg", "/simple/bad%20x/"]
)
def test_head_matches_get_on_other_answers(
    client: FlaskClient, uploaded: Uploaded, url: str
) -> None:
    got = client.get(url)
    head = client.head(url)
    assert head.status_code == got.status_code
    assert head.get_data() == b""
    assert dict(head.headers) == dict(got.headers)


# --- redirects to the canonical name -------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/main"])
@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("simple/Foo.Bar/", "../foo-bar/"),
        ("simple/foo_bar/", "../foo-bar/"),
        ("simple/FOO-bar/", "../foo-bar/"),
        ("simple/foo--bar/", "../foo-bar/"),
        ("simple/foo-bar", "foo-bar/"),
        ("simple/Foo.Bar", "foo-bar/"),
        ("+simple/Foo.Bar/", "../foo-bar/"),
    ],
)
def test_redirect_to_normalized_name(
    client: FlaskClient, uploaded: Uploaded, prefix: str, path: str, location: str
) -> None:
    url = f"{prefix}/{path}"
    expected_dir = "+simple" if path.startswith("+") else "simple"
    for accept in (None, PIP_ACCEPT):
        headers = {} if accept is None else {"Accept": accept}
        response = client.get(url, headers=headers)
        assert response.status_code == 301
        assert response.headers["Location"] == location
        assert "Accept" in response.vary
        netloc, target = resolve(url, location)
        assert netloc == "localhost"
        assert target == f"{prefix}/{expected_dir}/foo-bar/"
        followed = client.get(target, headers=headers)
        assert followed.status_code == 200
        if accept is not None:  # JSON clients keep JSON across the redirect
            assert followed.headers["Content-Type"] == JSON_V1


def test_redirect_follows_in_the_client(client: FlaskClient, uploaded: Uploaded) -> None:
    for url in ("/simple/Foo.Bar", "/simple/Foo.Bar/", "/main/FOO_bar/", "/main/Foo.Bar/"):
        final, response = follow(client, url, JSON)
        assert response.status_code == 200
        assert final.endswith("/simple/foo-bar/")
        assert response.get_json()["name"] == "foo-bar"


@pytest.mark.parametrize(
    "url",
    [
        "/simple/no-such/",
        "/simple/No_Such/",
        "/main/simple/no-such/",
        "/+simple/no-such/",
        "/simple/-bad-/",
        "/simple/bad%20name/",
        "/simple/%C3%A9t%C3%A9/",
        "/simple/" + "a" * 300 + "/",
        "/nope/simple/demo-pkg/",
        "/nope/simple/",
    ],
)
def test_unknown_project_is_404(client: FlaskClient, uploaded: Uploaded, url: str) -> None:
    for headers in ({}, JSON):
        if url.startswith("/nope/"):
            # a missing repository answers like a private one: 401 first, 404 once known
            assert_missing_repository(client, uploaded, url, headers)
            continue
        response = client.get(url, headers=headers)
        assert response.status_code == 404, (url, response.status)
        assert "Location" not in response.headers


def assert_missing_repository(
    client: FlaskClient, uploaded: Uploaded, url: str, headers: dict[str, str]
) -> None:
    """A valid-name repository that does not exist: 401 (Basic challenge) to anonymous
    callers, 404 to authenticated ones; never a redirect."""
    response = client.get(url, headers=headers)
    assert response.status_code == 401, (url, response.status)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="minirepo"'
    assert "Location" not in response.headers
    response = client.get(url, headers={**headers, **token_auth(uploaded.token)})
    assert response.status_code == 404, (url, response.status)
    assert "Location" not in response.headers


@pytest.mark.parametrize("url", ["/simple/no-such", "/simple/No_Such", "/main/simple/no-such"])
def test_unknown_project_without_slash_is_404(
    client: FlaskClient, uploaded: Uploaded, url: str
) -> None:
    """No redirect dance for names that do not exist: answer 404 at once (A9)."""
    response = client.get(url)
    assert response.status_code == 404
    assert "Location" not in response.headers


def test_project_in_another_repository_is_not_listed(
    client: FlaskClient, uploaded: Uploaded
) -> None:
    models.Repository.create(name="other")
    assert client.get("/other/simple/demo-pkg/").status_code == 404
    assert client.get("/other/simple/", headers=JSON).get_json()["projects"] == []


# --- cache invalidation --------------------------------------------------------------


def test_upload_shows_at_once_with_the_page_cache_on(tmp_path: Path, dist_folder: Path) -> None:
    """The default cache trusts the repository row for a while; an upload bypasses that."""
    app = create_app(Settings(data=tmp_path / "cached", password_hash=FAST_HASH))
    client = app.test_client()
    with app.extensions["minirepo"].folder.database.activated():
        accounts.add_user("root", ADMIN_PASSWORD, method=FAST_HASH, admin=True)
        token = accounts.create_token("root", permission="admin").secret
    upload_ok(client, token, make_wheel(dist_folder, Dist("demo-pkg", "1.0")))
    before = {
        kind: client.get("/simple/demo-pkg/", headers={"Accept": kind})
        for kind in ("text/html", JSON_V1)
    }
    root_before = client.get("/simple/", headers=JSON).get_json()
    upload_ok(client, token, make_wheel(dist_folder, Dist("demo-pkg", "1.1")))
    upload_ok(client, token, make_wheel(dist_folder, Dist("other-pkg", "1.0")))
    html_after = client.get("/simple/demo-pkg/")
    assert "demo_pkg-1.1-py3-none-any.whl" in html_after.get_data(as_text=True)
    assert html_after.headers["ETag"] != before["text/html"].headers["ETag"]
    json_after = client.get("/simple/demo-pkg/", headers=JSON).get_json()
    assert json_after["versions"] == ["1.0", "1.1"]
    stale = client.get(
        "/simple/demo-pkg/",
        headers={"Accept": JSON_V1, "If-None-Match": before[JSON_V1].headers["ETag"]},
    )
    assert stale.status_code == 200
    assert root_before["projects"] == [{"name": "demo-pkg"}]
    assert client.get("/simple/", headers=JSON).get_json()["projects"] == [
        {"name": "demo-pkg"},
        {"name": "other-pkg"},
    ]


def test_generation_bump_rerenders(client: FlaskClient, uploaded: Uploaded) -> None:
    """A change written by another process shows once the generation moves."""
    before = client.get("/simple/demo-pkg/", headers=JSON).get_json()
    models.File.update(yanked=True, yanked_reason="later").where(
        models.File.filename == SDIST_09
    ).execute()
    # Same generation: the cached page stands (the cache is keyed by generation only).
    assert client.get("/simple/demo-pkg/", headers=JSON).get_json() == before
    models.Repository.update(generation=models.Repository.generation + 1).execute()
    after = client.get("/simple/demo-pkg/", headers=JSON).get_json()
    by_name = {entry["filename"]: entry for entry in after["files"]}
    assert by_name[SDIST_09]["yanked"] == "later"


@pytest.mark.parametrize("cache_seconds", [0.0, 60.0])
def test_reader_racing_an_upload_keeps_the_new_generation(
    app: Flask, settings: Settings, monkeypatch: pytest.MonkeyPatch, cache_seconds: float
) -> None:
    """A reader that read the repository row just before an upload committed (and noted
    its generation) must not put the older generation back into the cache."""
    index = Index(
        dataclasses.replace(settings, page_cache_seconds=cache_seconds),
        app_store(app),
        proxies(app),
    )
    start = models.Repository.get(models.Repository.name == "main").generation
    read_row = models.Repository.get_or_none

    def read_then_upload_commits(*args: object, **kwargs: object) -> models.Repository:
        row = read_row(*args, **kwargs)
        monkeypatch.setattr(models.Repository, "get_or_none", read_row)
        models.Repository.update(generation=start + 1).execute()
        index.note_generation(RepoInfo(row.id, row.name, row.read, start), start + 1)
        return row

    monkeypatch.setattr(models.Repository, "get_or_none", read_then_upload_commits)
    assert index.repo(None).generation == start + 1
    assert index.repo(None).generation == start + 1
    assert index.repo("main").generation == start + 1


def test_notes_out_of_order_keep_the_highest_generation(app: Flask, settings: Settings) -> None:
    index = Index(
        dataclasses.replace(settings, page_cache_seconds=60.0), app_store(app), proxies(app)
    )
    info = index.repo(None)
    index.note_generation(info, info.generation + 2)
    index.note_generation(info, info.generation + 1)
    assert index.repo(None).generation == info.generation + 2


def app_store(app: Flask) -> BlobStore:
    store: BlobStore = app.extensions["minirepo"].folder.store
    return store


# --- hatch's +simple and an index URL set to the repository URL -----------------------


@pytest.mark.parametrize("url", ["/+simple/demo-pkg/", "/main/+simple/demo-pkg/"])
def test_plus_simple_alias(client: FlaskClient, uploaded: Uploaded, url: str) -> None:
    for accept in ("*/*", PIP_ACCEPT):
        alias = client.get(url, headers={"Accept": accept})
        page = client.get("/simple/demo-pkg/", headers={"Accept": accept})
        assert alias.status_code == 200
        assert alias.get_data() == page.get_data()
        assert alias.headers["Content-Type"] == page.headers["Content-Type"]
    names = anchors_by_text(client.get(url, headers={"Accept": "*/*"}).get_data(as_text=True))
    assert WHEEL_10 in names


def test_plus_simple_percent_encoded(client: FlaskClient, uploaded: Uploaded) -> None:
    """hatch sends `%2Bsimple`."""
    response = client.get("/main/%2Bsimple/demo-pkg/", headers={"Accept": "*/*"})
    assert response.status_code == 200
    assert WHEEL_10 in response.get_data(as_text=True)


@pytest.mark.parametrize("accept", [PIP_ACCEPT, JSON_V1, HTML_V1])
@pytest.mark.parametrize("name", ["demo-pkg", "Demo_Pkg"])
def test_repository_url_as_index_redirects(
    client: FlaskClient, uploaded: Uploaded, accept: str, name: str
) -> None:
    url = f"/main/{name}/"
    response = client.get(url, headers={"Accept": accept})
    assert response.status_code == 301
    assert "Accept" in response.vary
    netloc, target = resolve(url, response.headers["Location"])
    assert netloc == "localhost"
    assert target == "/main/simple/demo-pkg/"
    assert client.get(target, headers={"Accept": accept}).status_code == 200


@pytest.mark.parametrize("accept", [None, "text/html", "*/*", "garbage"])
def test_repository_url_as_index_html_is_404(
    client: FlaskClient, uploaded: Uploaded, accept: str | None
) -> None:
    headers = {} if accept is None else {"Accept": accept}
    response = client.get("/main/demo-pkg/", headers=headers)
    assert response.status_code == 404
    assert "Accept" in response.vary


@pytest.mark.parametrize(
    "url", ["/nope/demo-pkg/", "/main/bad%20name/", "/main/no-such/", "/no-such/", "/Bad%20x/"]
)
def test_repository_url_for_unknown_names_is_404(
    client: FlaskClient, uploaded: Uploaded, url: str
) -> None:
    """No redirect at all for a name that does not exist (A9)."""
    if url in ("/nope/demo-pkg/", "/no-such/"):  # valid names of missing repositories
        assert_missing_repository(client, uploaded, url, JSON)
        return
    response = client.get(url, headers=JSON)
    assert response.status_code == 404
    assert "Location" not in response.headers


def test_repository_url_in_a_private_repository(private: tuple[Flask, str, Path]) -> None:
    app, token, _ = private
    client = app.test_client()
    for url in ("/main/demo-pkg/", "/main/no-such/", "/demo-pkg/"):
        response = client.get(url, headers=JSON)
        assert response.status_code == 401, url
        assert "Location" not in response.headers
    response = client.get("/main/demo-pkg/", headers={**JSON, **token_auth(token)})
    assert response.status_code == 301
    assert client.get("/main/no-such/", headers={**JSON, **token_auth(token)}).status_code == 404


def test_default_repository_name_as_index(client: FlaskClient, uploaded: Uploaded) -> None:
    """`/<name>/` with the simple Accept when no repository has that name."""
    response = client.get("/demo-pkg/", headers=JSON)
    assert response.status_code == 301
    netloc, target = resolve("/demo-pkg/", response.headers["Location"])
    assert (netloc, target) == ("localhost", "/simple/demo-pkg/")
    assert client.get("/main/", headers=JSON).status_code == 200


# --- header injection and open redirects (A1, A9, A21) --------------------------------

INJECTION_PATHS = [
    "/simple/Foo%0d%0aSet-Cookie:x=1/",
    "/simple/%0d%0aX:y/",
    "/simple/Foo%0d%0aSet-Cookie:x=1",
    "/simple/%0d%0aX:y",
    "/simple//Foo%0d%0aSet-Cookie:x=1/",
    "/main/simple/%0d%0aX:y/",
    "/+simple/%0d%0aX:y/",
    "/main/Foo%0d%0aSet-Cookie:x=1/",
    "/Foo%0d%0aSet-Cookie:x=1/",
    "/%0d%0aSet-Cookie:x=1/simple/foo-bar/",
    "/simple/foo-bar/?x=%0d%0aSet-Cookie:x=1",
    "/simple/Foo.Bar/?%0d%0aSet-Cookie:x=1",
    "/simple/Foo.Bar?x=%0d%0aSet-Cookie:x=1",
    "/files/foo-bar/%0d%0aSet-Cookie:x=1",
    "/files/%0d%0aX:y/foo_bar-1.0-py3-none-any.whl",
    "/files/foo-bar/foo_bar-1.0-py3-none-any.whl%0d%0aX:y",
]


@pytest.mark.parametrize("url", INJECTION_PATHS)
@pytest.mark.parametrize("headers", [{}, {"Accept": PIP_ACCEPT}], ids=["html", "json"])
def test_no_header_injection(
    client: FlaskClient, uploaded: Uploaded, url: str, headers: dict[str, str]
) -> None:
    with client.get(url, headers=headers) as response:
        assert response.status_code < 500
        assert "Set-Cookie" not in response.headers
        assert "X" not in response.headers
        for name, value in response.headers.items():
            assert not re.search(r"[\r\n]", name + value), (name, value)
        assert not re.search(r"[\r\n]", response.status)
        if "Location" in response.headers:
            location = response.headers["Location"]
            netloc, _ = resolve(url.split("?")[0], location)
            assert netloc == "localhost", location
            if "//" not in url:  # our redirects: built from the canonical name only
                assert location in ("../foo-bar/", "foo-bar/"), location


@pytest.mark.parametrize(
    "path_info",
    [
        "//evil.example/simple/foo-bar/",
        "//evil.example/simple/Foo.Bar/",
        "//evil.example/simple/foo-bar",
        "//evil.example/",
        "//evil.example/foo-bar/",
        "///evil.example/simple/",
        "/simple//evil.example/",
        "/simple/Foo.Bar//evil.example/",
        "/\\evil.example/simple/",
        "/simple/\\\\evil.example/",
    ],
)
def test_no_off_host_location_from_path(
    client: FlaskClient, uploaded: Uploaded, path_info: str
) -> None:
    for headers in ({}, {"Accept": PIP_ACCEPT}):
        response = client.get("/", headers=headers, environ_overrides={"PATH_INFO": path_info})
        assert response.status_code < 500
        location = response.headers.get("Location")
        if location is not None:
            # The name may come back canonicalized (`evil-example`), but only as a path.
            assert not location.startswith(("//", "\\", "/\\")), location
            netloc, _ = resolve(path_info, location)
            assert netloc == "localhost", location


@pytest.mark.parametrize(
    "url",
    [
        "/simple/foo-bar?next=//evil.example",
        "/simple/Foo.Bar?next=//evil.example",
        "/simple/Foo.Bar/?next=//evil.example",
        "/simple/foo-bar/?next=http://evil.example/",
        "/main/Foo.Bar/?next=//evil.example",
    ],
)
def test_no_off_host_location_from_query(client: FlaskClient, uploaded: Uploaded, url: str) -> None:
    response = client.get(url, headers=JSON)
    location = response.headers.get("Location")
    if location is not None:
        assert "evil" not in location
        netloc, path = resolve(url, location)
        assert netloc == "localhost"
        assert path.endswith("/foo-bar/")


def test_no_redirect_ever_leaves_the_host(client: FlaskClient, uploaded: Uploaded) -> None:
    """A9: an unknown project is a 404 here, never a pointer to another index."""
    for url in ("/simple/requests/", "/simple/requests", "/main/requests/", "/requests/"):
        for headers in ({}, JSON):
            if url == "/requests/":  # also the page of a missing repository named requests
                assert_missing_repository(client, uploaded, url, headers)
                continue
            response = client.get(url, headers=headers)
            assert response.status_code == 404, url
            assert "Location" not in response.headers


# --- read = "authenticated" -----------------------------------------------------------


@pytest.fixture(scope="module")
def private_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    dists: list[tuple[Maker, Dist]] = [
        (make_wheel, Dist("demo-pkg", "1.0", requires_python=">=3.8")),
    ]
    return build_template(tmp_path_factory.mktemp("private"), "authenticated", dists)


@pytest.fixture
def private(tmp_path: Path, private_template: Template) -> tuple[Flask, str, Path]:
    """A repository that needs credentials to read: (app, admin token, a stored wheel)."""
    shutil.copytree(private_template.data, tmp_path / "private")
    settings = Settings(
        data=tmp_path / "private",
        password_hash=FAST_HASH,
        read="authenticated",
        explicit=frozenset({"read"}),
        page_cache_seconds=0,
        login_failure_limit=1000,  # the refusal loop below is not a brute force
    )
    uploaded = private_template.uploaded
    return create_app(settings), uploaded.token, uploaded.paths[WHEEL_10]


PRIVATE_URLS = [
    "/simple/",
    "/main/simple/",
    "/simple/demo-pkg/",
    "/main/simple/demo-pkg/",
    "/+simple/demo-pkg/",
    f"/files/demo-pkg/{WHEEL_10}",
    f"/files/demo-pkg/{WHEEL_10}.metadata",
    f"/main/files/demo-pkg/{WHEEL_10}",
    f"/main/files/demo-pkg/{WHEEL_10}.metadata",
]


def _empty_password() -> dict[str, str]:
    return basic("__token__", "")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="anonymous"),
        pytest.param(_empty_password(), id="empty-password"),
        pytest.param(basic("root", ""), id="user-empty-password"),
        pytest.param(basic("root", "wrong-password"), id="wrong-password"),
        pytest.param(basic("nobody", "wrong-password"), id="unknown-user"),
        pytest.param(token_auth("mr-not-a-token"), id="bad-token"),
    ],
)
def test_private_repository_refuses(
    private: tuple[Flask, str, Path], headers: dict[str, str]
) -> None:
    app, _, _ = private
    client = app.test_client()
    for url, extra in itertools.product(PRIVATE_URLS, ({}, {"Accept": PIP_ACCEPT})):
        with client.get(url, headers={**headers, **extra}) as response:
            assert response.status_code == 401, (url, response.status)
            assert response.headers["WWW-Authenticate"] == 'Basic realm="minirepo"'
            assert b"PK" not in response.get_data()
            assert b"Metadata-Version" not in response.get_data()


@pytest.mark.parametrize("how", ["token", "password"])
def test_private_repository_with_credentials(private: tuple[Flask, str, Path], how: str) -> None:
    app, token, wheel = private
    client = app.test_client()
    headers = token_auth(token) if how == "token" else basic("root", ADMIN_PASSWORD)
    for url in PRIVATE_URLS:
        with client.get(url, headers=headers) as response:
            assert response.status_code == 200, (url, response.status)
            if url.endswith(".whl"):
                assert response.get_data() == wheel.read_bytes()
                assert "private" in response.headers["Cache-Control"]


def test_private_repository_unknown_project_needs_credentials_first(
    private: tuple[Flask, str, Path],
) -> None:
    """Anonymous callers cannot tell a missing project from a hidden one."""
    app, token, _ = private
    client = app.test_client()
    for url in ("/simple/no-such/", "/simple/Demo_Pkg/", "/files/demo-pkg/nope-1.0.tar.gz"):
        assert client.get(url).status_code == 401
    assert client.get("/simple/no-such/", headers=token_auth(token)).status_code == 404
    assert client.get("/simple/Demo_Pkg/", headers=token_auth(token)).status_code == 301


def test_private_pages_are_not_publicly_cacheable(private: tuple[Flask, str, Path]) -> None:
    app, token, _ = private
    response = app.test_client().get("/simple/demo-pkg/", headers=token_auth(token))
    assert "private" in response.headers["Cache-Control"]


def proxies(app: Flask) -> Proxies:
    found: Proxies = app.extensions["minirepo"].proxies
    return found
