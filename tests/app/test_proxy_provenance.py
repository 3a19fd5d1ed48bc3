"""PEP 740 provenance through a proxy repository (issue 19): the upstream's page names
each file's provenance URL, the proxy lists its own and serves the upstream's object
verbatim, fetched once and kept, so it still answers offline. On SQLite and PostgreSQL.

The upstream is `FakeUpstream`, serving provenance where PyPI does, at a path of its own
(/integrity/<filename>/provenance): the proxy must take the page's URL, not guess one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo.services import repos
from tests.helpers.backends import BACKENDS, backend_settings, run_cli, served
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.upstreamfake import FakeUpstream

FIXTURES = Path(__file__).parent.parent / "fixtures" / "attestations"
SDIST = "pypi_attestations-0.0.19.tar.gz"
WHEEL = "pypi_attestations-0.0.19-py3-none-any.whl"  # listed without a provenance
OLDER = "pypi_attestations-0.0.18.tar.gz"  # with one, never fetched before offline
PROVENANCE = (FIXTURES / f"{SDIST}.provenance").read_bytes()
OLDER_PROVENANCE = b'{"version": 1, "attestation_bundles": []}'
JSON_V1 = {"Accept": "application/vnd.pypi.simple.v1+json"}
FILES = "files/pypi-attestations"


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path, upstream: FakeUpstream) -> Iterator[Flask]:
    """A first start with the fake as its upstream (`main`, `pypi-proxy`, `all`), which
    lists the signed sdist with its provenance, a wheel without one, and an older sdist
    with one."""
    upstream.add_file("pypi-attestations", OLDER, b"older sdist", provenance=OLDER_PROVENANCE)
    upstream.add_file(
        "pypi-attestations", SDIST, (FIXTURES / SDIST).read_bytes(), provenance=PROVENANCE
    )
    wheel = make_wheel(tmp_path, Dist("pypi-attestations", "0.0.19"))
    upstream.add_file("pypi-attestations", WHEEL, wheel.read_bytes())
    with served(backend_settings(request, tmp_path, upstream=upstream.url)) as flask_app:
        repos.update("pypi-proxy", options={"min_free_disk": 0, "connect_timeout": 1.0})
        yield flask_app


def get(client: FlaskClient, path: str, status: int = 200) -> bytes:
    answer = client.get(path)
    assert answer.status_code == status, (answer.status, answer.get_data(as_text=True))
    return answer.get_data()


def provenance_urls(client: FlaskClient, repo: str) -> dict[str, str | None]:
    """{filename: its `provenance` URL, None without one} on the JSON page."""
    answer = client.get(f"/{repo}/simple/pypi-attestations/", headers=JSON_V1)
    assert answer.status_code == 200, answer.status
    return {entry["filename"]: entry.get("provenance") for entry in answer.json["files"]}  # type: ignore[index]


@pytest.mark.parametrize("upstream_page", ["json", "html"])
@pytest.mark.parametrize("repo", ["pypi-proxy", "all"])
def test_the_page_lists_a_provenance_where_the_upstream_has_one(
    app: Flask, upstream: FakeUpstream, repo: str, upstream_page: str
) -> None:
    """From either kind of upstream page (its `provenance` key, its `data-provenance`
    attribute), as the proxy's own URL on both kinds of its own pages."""
    upstream.page_html_only = upstream_page == "html"
    client = app.test_client()
    own = f"../../{FILES}/{{}}.provenance"
    assert provenance_urls(client, repo) == {
        OLDER: own.format(OLDER),
        SDIST: own.format(SDIST),
        WHEEL: None,
    }
    html = get(client, f"/{repo}/simple/pypi-attestations/").decode()
    assert f'data-provenance="{own.format(SDIST)}"' in html
    assert html.count("data-provenance=") == 2
    assert upstream.count("/integrity/") == 0  # listing needs no provenance fetched


def test_the_provenance_is_the_upstreams_verbatim_and_fetched_once(
    app: Flask, upstream: FakeUpstream
) -> None:
    client = app.test_client()
    answer = client.get(f"/pypi-proxy/{FILES}/{SDIST}.provenance")
    assert answer.status_code == 200, answer.status
    assert answer.data == PROVENANCE
    assert answer.content_type == "application/json"
    assert answer.headers["ETag"] == f'"{hashlib.sha256(PROVENANCE).hexdigest()}"'
    for repo in ("pypi-proxy", "all"):  # kept: neither asks the upstream again
        assert get(client, f"/{repo}/{FILES}/{SDIST}.provenance") == PROVENANCE
    revalidated = client.get(
        f"/all/{FILES}/{SDIST}.provenance", headers={"If-None-Match": answer.headers["ETag"]}
    )
    assert revalidated.status_code == 304
    assert upstream.count(f"/integrity/{SDIST}/provenance") == 1
    assert upstream.count("/files/") == 0  # the file itself is not needed for it


def test_a_file_without_one_has_no_provenance(app: Flask, upstream: FakeUpstream) -> None:
    for repo in ("pypi-proxy", "all"):
        answer = app.test_client().get(f"/{repo}/{FILES}/{WHEEL}.provenance")
        assert answer.status_code == 404
        assert answer.status == f"404 No provenance for {WHEEL!r}"
    assert upstream.count("/integrity/") == 0


def test_an_upstream_failure_is_a_502_and_not_kept(app: Flask, upstream: FakeUpstream) -> None:
    client = app.test_client()
    provenance_urls(client, "pypi-proxy")  # the page is fresh: only the provenance fails
    upstream.down = True
    answer = client.get(f"/pypi-proxy/{FILES}/{SDIST}.provenance")
    assert answer.status_code == 502
    assert "503" in answer.status
    upstream.down = False
    assert get(client, f"/pypi-proxy/{FILES}/{SDIST}.provenance") == PROVENANCE


@pytest.mark.parametrize("repo", ["pypi-proxy", "all"])
def test_offline_serves_the_kept_provenance_and_names_a_missing_one(
    app: Flask, upstream: FakeUpstream, repo: str
) -> None:
    client = app.test_client()
    assert get(client, f"/{repo}/{FILES}/{SDIST}.provenance") == PROVENANCE
    assert run_cli(app, "repo", "set", "pypi-proxy", "--offline").exit_code == 0
    asked = len(upstream.requests)
    assert get(client, f"/{repo}/{FILES}/{SDIST}.provenance") == PROVENANCE
    missing = client.get(f"/{repo}/{FILES}/{OLDER}.provenance")
    assert missing.status_code == 404
    assert missing.status == f"404 offline: the provenance of {OLDER} is not cached in pypi-proxy"
    assert len(upstream.requests) == asked
