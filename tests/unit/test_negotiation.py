"""PEP 691 content negotiation: `negotiate()` as a table, then the types the pages carry."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from minirepo.services.index import HTML, HTML_V1, JSON_V1
from minirepo.views.simple import negotiate

PIP = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
POETRY = "application/vnd.pypi.simple.v1+json, */*;q=0.1"
PDM = PIP

CASES = [
    # The installers of CLIENTS.md section 3: all prefer JSON.
    pytest.param(PIP, JSON_V1, id="pip"),
    pytest.param(UV, JSON_V1, id="uv"),
    pytest.param(POETRY, JSON_V1, id="poetry"),
    pytest.param(PDM, JSON_V1, id="pdm"),
    # hatch's duplicate probe, browsers, curl: HTML.
    pytest.param("*/*", HTML, id="hatch-any"),
    pytest.param("text/html", HTML, id="text-html"),
    pytest.param("text/*", HTML, id="text-any"),
    pytest.param(
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", HTML, id="browser"
    ),
    pytest.param(None, HTML, id="missing"),
    pytest.param("", HTML, id="empty"),
    pytest.param("   ", HTML, id="blank"),
    pytest.param(",,, ;;;", HTML, id="separators-only"),
    pytest.param("garbage", HTML, id="garbage"),
    pytest.param("application/json", HTML, id="plain-json-is-not-ours"),
    pytest.param("*/*;q=abc", HTML, id="bad-q"),
    pytest.param("*/*;q=", HTML, id="empty-q"),
    pytest.param("*/*;q=nan", HTML, id="nan-q"),
    pytest.param("*/*;q=inf", HTML, id="inf-q"),
    pytest.param("application/vnd.pypi.simple.v1+json;q=abc", HTML, id="json-bad-q"),
    pytest.param("application/vnd.pypi.simple.v1+json;q=2", HTML, id="json-q-over-1"),
    pytest.param("application/vnd.pypi.simple.v1+json;q=-1", HTML, id="json-negative-q"),
    pytest.param("application/vnd.pypi.simple.v1+json, */*;q=abc", JSON_V1, id="json-bad-any"),
    pytest.param("application/vnd.pypi.simple.v1+json;q=0", HTML, id="json-refused"),
    pytest.param(
        "application/vnd.pypi.simple.v1+json;q=0, text/html;q=0.1", HTML, id="json-refused-html"
    ),
    pytest.param("application/vnd.pypi.simple.v1+json", JSON_V1, id="json-only"),
    pytest.param("application/vnd.pypi.simple.v1+json;q=0.5", JSON_V1, id="json-low-q"),
    pytest.param("APPLICATION/VND.PYPI.SIMPLE.V1+JSON", JSON_V1, id="json-upper-case"),
    pytest.param("application/vnd.pypi.simple.v1+json ; Q=0.9", JSON_V1, id="json-spaced"),
    pytest.param(
        "application/vnd.pypi.simple.v1+json; charset=utf-8", JSON_V1, id="json-other-param"
    ),
    pytest.param("application/vnd.pypi.simple.latest+json", JSON_V1, id="latest-json"),
    pytest.param("application/vnd.pypi.simple.latest+html", HTML_V1, id="latest-html"),
    pytest.param("application/vnd.pypi.simple.v1+html", HTML_V1, id="v1-html"),
    pytest.param(
        "application/vnd.pypi.simple.v1+html, text/html;q=0.5", HTML_V1, id="v1-html-preferred"
    ),
    pytest.param(
        "application/vnd.pypi.simple.v1+json;q=0.5, application/vnd.pypi.simple.v1+html",
        HTML_V1,
        id="v1-html-over-json",
    ),
    pytest.param(
        "application/vnd.pypi.simple.v1+json;q=0.5, text/html;q=0.4", JSON_V1, id="json-wins-q"
    ),
    # Ties go to HTML, whichever comes first.
    pytest.param("application/vnd.pypi.simple.v1+json, text/html", HTML, id="tie-json-first"),
    pytest.param("text/html, application/vnd.pypi.simple.v1+json", HTML, id="tie-html-first"),
    pytest.param("application/vnd.pypi.simple.v1+json, */*", HTML, id="tie-any"),
    pytest.param(
        "application/vnd.pypi.simple.v1+json;q=0.3, application/vnd.pypi.simple.v1+html;q=0.3",
        HTML_V1,
        id="tie-v1",
    ),
    pytest.param("text/html;q=0.3, */*;q=0.9", HTML, id="html-variants"),
]


@pytest.mark.parametrize(("accept", "expected"), CASES)
def test_negotiate_table(accept: str | None, expected: str) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    "accept",
    [
        "\x00\x01\x02",
        "tëxt/html;q=0.5",
        ";q=1",
        "=;=;=",
        "a/b;q=1e400",
        "a/b;q=0x10",
        "application/vnd.pypi.simple.v1+json;q=1;q=0",
        "application/vnd.pypi.simple.v1+json;;;",
        "x" * 20_000,
        ",".join(["application/vnd.pypi.simple.v1+json;q=0.5"] * 2_000),
    ],
)
def test_negotiate_never_raises(accept: str) -> None:
    assert negotiate(accept) in (HTML, HTML_V1, JSON_V1)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (PIP, JSON_V1),
        (UV, JSON_V1),
        (POETRY, JSON_V1),
        ("*/*", "text/html; charset=utf-8"),
        ("text/html", "text/html; charset=utf-8"),
        ("garbage", "text/html; charset=utf-8"),
        ("*/*;q=abc", "text/html; charset=utf-8"),
        ("", "text/html; charset=utf-8"),
        ("application/vnd.pypi.simple.v1+json;q=0", "text/html; charset=utf-8"),
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ("application/vnd.pypi.simple.v1+html", HTML_V1),
        ("application/vnd.pypi.simple.v1+html, text/html;q=0.5", HTML_V1),
    ],
)
def test_root_page_content_type(client: FlaskClient, accept: str, content_type: str) -> None:
    response = client.get("/simple/", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert "Accept" in response.headers["Vary"]


def test_missing_accept_is_html(client: FlaskClient) -> None:
    response = client.get("/simple/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Accept" in response.headers["Vary"]


def test_representations_have_distinct_etags(client: FlaskClient) -> None:
    """Same body typed twice (text/html and v1+html) is two representations."""
    tags = {
        accept: client.get("/simple/", headers={"Accept": accept}).headers["ETag"]
        for accept in ("text/html", "application/vnd.pypi.simple.v1+html", PIP)
    }
    assert len(set(tags.values())) == 3
    # Revalidating the text/html copy with the v1+html Accept must not answer 304.
    response = client.get(
        "/simple/",
        headers={
            "Accept": "application/vnd.pypi.simple.v1+html",
            "If-None-Match": tags["text/html"],
        },
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == HTML_V1
