"""`/-/search`: names, summaries and keywords found on SQLite (FTS5) and PostgreSQL (tsvector),
kept right by every write, and never a project the viewer may not read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo.services import accounts, projects, repos, retention, search
from tests.conftest import basic
from tests.helpers.backends import BACKENDS, backend_settings, served
from tests.helpers.distfactory import Dist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH

PASSWORD = "a-password-1"
ALICE = basic("alice", PASSWORD)
BOB = basic("bob", PASSWORD)


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with served(backend_settings(request, tmp_path)) as app:
        accounts.add_user("alice", PASSWORD, method=FAST_HASH)
        accounts.add_user("bob", PASSWORD, method=FAST_HASH)
        repos.create("team", read="authenticated")
        repos.grant("alice", "team", "owner")
        yield app


def upload(client: FlaskClient, tmp_path: Path, repo: str, dist: Dist) -> None:
    folder = tmp_path / "dists"
    folder.mkdir(exist_ok=True)
    response = client.post(
        f"/{repo}/",
        data=upload_form(make_wheel(folder, dist)),
        headers=ALICE,
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.data


def found(client: FlaskClient, query: str, auth: dict[str, str] | None = None) -> Any:
    response = client.get("/-/search", query_string={"q": query, "format": "json"}, headers=auth)
    assert response.status_code == 200, response.data
    return response.json


def names(client: FlaskClient, query: str, auth: dict[str, str] | None = None) -> list[str]:
    return [hit["name"] for hit in found(client, query, auth)["results"]]


@pytest.fixture
def client(app: Flask, tmp_path: Path) -> FlaskClient:
    client = app.test_client()
    upload(client, tmp_path, "main", Dist("Alice-Http", "1.0", summary="An HTTP client"))
    upload(
        client,
        tmp_path,
        "main",
        Dist("alice-http", "2.0", summary="Fast HTTP", extra_headers=("Keywords: web,requests",)),
    )
    upload(client, tmp_path, "main", Dist("zebra", "0.1", summary="Stripes for nothing"))
    upload(
        client,
        tmp_path,
        "team",
        Dist(
            "secret-billing", "1.0", summary="Invoices for HTTP", extra_headers=("Keywords: web",)
        ),
    )
    return client


def test_finds_by_name_prefix_summary_and_keywords(client: FlaskClient) -> None:
    answer = found(client, "alice")
    assert answer == {
        "query": "alice",
        "total": 1,
        "results": [
            {
                "repository": "main",
                "name": "Alice-Http",
                "version": "2.0",
                "summary": "Fast HTTP",
                "url": "/main/project/alice-http/",
            }
        ],
    }
    assert names(client, "alicehttp") == ["Alice-Http"]  # the name without separators
    assert names(client, "ali ht") == ["Alice-Http"]  # every word, as a prefix
    assert names(client, "fast") == ["Alice-Http"]  # the latest release's summary
    assert names(client, "an http client") == []  # 1.0's summary is no longer the latest
    assert names(client, "requests") == ["Alice-Http"]  # keywords
    assert names(client, "stripes zebra") == ["zebra"]
    assert names(client, "zebra http") == []


def test_a_private_project_never_shows_to_who_may_not_read_it(client: FlaskClient) -> None:
    for auth in (None, BOB):
        assert names(client, "web", auth) == ["Alice-Http"]
        assert names(client, "secret", auth) == []
        page = client.get("/-/search?q=secret", headers=auth)
        assert page.status_code == 200
        assert b"secret-billing" not in page.data
        assert b"Invoices" not in page.data
    assert sorted(names(client, "web", ALICE)) == ["Alice-Http", "secret-billing"]
    page = client.get("/-/search?q=billing", headers=ALICE)
    assert b'href="/team/project/secret-billing/"' in page.data


def test_json_by_accept_header_and_page_otherwise(client: FlaskClient) -> None:
    response = client.get("/-/search?q=zebra", headers={"Accept": "application/json"})
    assert response.json["total"] == 1
    page = client.get("/-/search?q=zebra")
    assert page.mimetype == "text/html"
    assert b'href="/main/project/zebra/"' in page.data
    assert b"Stripes for nothing" in page.data
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


HOSTILE = [
    "",
    '"',
    "'",
    '"alice',
    "alice*",
    "NEAR(alice http)",
    "alice OR zebra",
    "alice AND NOT zebra",
    "^alice",
    "name:alice",
    "-alice",
    "{name}: alice",
    "a\x00lice",
    "%",
    "_",
    "\\",
    "');DROP TABLE project;--",
    "<script>alert(1)</script>",
    "ä" * 5000,
    "alice " * 5000,
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_fail(client: FlaskClient, query: str) -> None:
    answer = found(client, query)
    assert answer["total"] == len(answer["results"])
    page = client.get("/-/search", query_string={"q": query})
    assert page.status_code == 200
    assert b"<script>alert" not in page.data


def test_a_query_that_is_not_utf8_finds_nothing(client: FlaskClient) -> None:
    answer = client.get("/-/search?q=%ED%A0%80%FF%00&format=json").json
    assert (answer["total"], answer["results"]) == (0, [])


def test_every_write_keeps_the_index(app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    projects.delete("main", "zebra", actor="test")  # the row stays, with no release
    assert names(client, "zebra") == []
    upload(client, tmp_path, "main", Dist("zebra", "0.2", summary="Back again"))
    assert names(client, "again") == ["zebra"]
    projects.delete("main", "alice-http", "2.0", actor="test")
    assert names(client, "fast") == []
    assert names(client, "client") == ["Alice-Http"]  # 1.0 is the latest again
    # Retention prunes 1.0: nothing of alice-http is left to find.
    repos.update("main", retention={"keep": 0})
    retention.apply_due()
    assert names(client, "client") == []
    repos.delete("team", force=True)
    assert names(client, "billing", ALICE) == []


def test_pages_of_results(client: FlaskClient, tmp_path: Path) -> None:
    for number in range(25):
        upload(client, tmp_path, "main", Dist(f"many{number:02}", "1.0"))
    first = client.get("/-/search?q=many")
    assert b"Page 1 of 2" in first.data
    assert b'href="/-/search?q=many&amp;page=2"' in first.data
    second = client.get("/-/search?q=many&page=2&format=json").json
    assert second["total"] == 25
    assert len(second["results"]) == 5
    assert search.search("many", [], limit=10).total == 0


def test_names_rank_before_keywords_before_summaries(client: FlaskClient, tmp_path: Path) -> None:
    """The same order on both backends: bm25 on SQLite, ts_rank on PostgreSQL, each
    weighing a name 10, keywords 4 and a summary 1."""
    upload(client, tmp_path, "main", Dist("webby", "1.0", summary="Nothing else"))
    upload(client, tmp_path, "main", Dist("spider", "1.0", summary="Crawls the web"))
    assert names(client, "web") == ["webby", "Alice-Http", "spider"]
    assert names(client, "http", ALICE) == ["Alice-Http", "secret-billing"]
