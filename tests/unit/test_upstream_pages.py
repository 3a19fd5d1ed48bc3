"""Reading upstream project pages: every field of both formats, the entries dropped one by
one, the pages refused whole, and the stored form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirepo.upstream_pages import (
    UpstreamFile,
    UpstreamPage,
    from_json,
    parse_page,
    to_json,
)

BASE = "https://index.example/simple/demo/"
JSON_V1 = "application/vnd.pypi.simple.v1+json"
SHA = "ab" * 32
META = "cd" * 32
WHEEL = "demo-1.0-py3-none-any.whl"
SDIST = "demo-1.0.tar.gz"


def json_page(files: list[Any], **extra: Any) -> bytes:
    return json.dumps(
        {"meta": {"api-version": "1.1"}, "name": "Demo", "files": files, **extra}
    ).encode()


def entry(filename: str = WHEEL, **fields: Any) -> dict[str, Any]:
    return {
        "filename": filename,
        "url": f"../../files/{filename}",
        "hashes": {"sha256": SHA},
        **fields,
    }


def html_page(anchors: str, head: str = "") -> bytes:
    return (
        f"<!DOCTYPE html><html><head>{head}<title>Links for Demo</title></head>"
        f"<body><h1>Links for Demo</h1>{anchors}</body></html>"
    ).encode()


def parse_json(body: bytes) -> UpstreamPage:
    return parse_page(body, JSON_V1, BASE, "demo")


def parse_html(body: bytes, content_type: str = "text/html") -> UpstreamPage:
    return parse_page(body, content_type, BASE, "demo")


# -- JSON ------------------------------------------------------------------------------


def test_json_every_field() -> None:
    fields: dict[str, Any] = {
        "hashes": {"sha256": SHA.upper(), "md5": "00"},
        "requires-python": ">=3.9",
        "yanked": "broken build",
        "core-metadata": {"sha256": META},
        "size": 1234,
        "upload-time": "2024-01-02T03:04:05.000000Z",
    }
    body = json_page(
        [entry(**fields)],
        meta={"api-version": "1.1", "tracks": ["https://pypi.org/simple/demo/"]},
    )
    page = parse_json(body)
    assert page == UpstreamPage(
        name="Demo",
        files=(
            UpstreamFile(
                filename=WHEEL,
                url=f"https://index.example/files/{WHEEL}",
                sha256=SHA,
                requires_python=">=3.9",
                yanked=True,
                yanked_reason="broken build",
                metadata_sha256=META,
                size=1234,
                upload_time="2024-01-02T03:04:05.000000Z",
            ),
        ),
        tracks=("https://pypi.org/simple/demo/",),
    )


def test_json_minimal_entry_has_defaults() -> None:
    body = json_page(
        [{"filename": SDIST, "url": f"https://files.example/{SDIST}#frag", "hashes": {}}]
    )
    (file,) = parse_json(body).files
    assert file == UpstreamFile(
        filename=SDIST,
        url=f"https://files.example/{SDIST}",
        sha256="",
        requires_python="",
        yanked=False,
        yanked_reason="",
        metadata_sha256=None,
        size=None,
        upload_time=None,
    )


@pytest.mark.parametrize(
    ("value", "yanked", "reason"),
    [
        (True, True, ""),
        (False, False, ""),
        ("why", True, "why"),
        ("", False, ""),  # as pip reads it: an empty reason is no yank
        (None, False, ""),
    ],
)
def test_json_yanked(value: Any, yanked: bool, reason: str) -> None:
    (file,) = parse_json(json_page([entry(yanked=value)])).files
    assert (file.yanked, file.yanked_reason) == (yanked, reason)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"core-metadata": {"sha256": META}}, META),
        ({"core-metadata": {"sha256": META.upper()}}, META),
        ({"dist-info-metadata": {"sha256": META}}, META),
        ({"core-metadata": True}, None),
        ({"core-metadata": False, "dist-info-metadata": {"sha256": META}}, None),  # PEP 714
        ({"core-metadata": {"md5": "00"}}, None),
        ({"core-metadata": {"sha256": "short"}}, None),
        ({"core-metadata": {"sha256": 5}}, None),
        ({}, None),
    ],
)
def test_json_core_metadata(fields: dict[str, Any], expected: str | None) -> None:
    (file,) = parse_json(json_page([entry(**fields)])).files
    assert file.metadata_sha256 == expected


@pytest.mark.parametrize(
    ("fields", "size", "upload_time", "requires_python"),
    [
        ({"size": -1, "upload-time": 5, "requires-python": None}, None, None, ""),
        ({"size": True, "upload-time": None, "requires-python": 3}, None, None, ""),
        ({"size": "12", "upload-time": "soon", "requires-python": "<4"}, None, "soon", "<4"),
    ],
)
def test_json_odd_field_types_are_dropped(
    fields: dict[str, Any], size: int | None, upload_time: str | None, requires_python: str
) -> None:
    (file,) = parse_json(json_page([entry(**fields)])).files
    assert (file.size, file.upload_time, file.requires_python) == (
        size,
        upload_time,
        requires_python,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Demo", "Demo"), ("DEMO", "DEMO"), ("other", "demo"), (None, "demo"), (7, "demo")],
)
def test_json_display_name_must_be_the_project(name: Any, expected: str) -> None:
    body = json.dumps({"name": name, "files": []}).encode()
    assert parse_json(body).name == expected


def test_json_tracks_keep_http_urls_only() -> None:
    meta = {"tracks": ["https://a.example/simple/demo/", "../other/", "ftp://x/", 5, ""]}
    page = parse_json(json_page([], meta=meta))
    assert page.tracks == ("https://a.example/simple/demo/", "https://index.example/simple/other/")


# -- HTML ------------------------------------------------------------------------------


def test_html_every_field() -> None:
    anchors = (
        f'<a href="../../files/{WHEEL}#sha256={SHA.upper()}" data-requires-python="&gt;=3.9"'
        f' data-yanked="broken &amp; old" data-core-metadata="sha256={META}">{WHEEL}</a><br>'
        f'<a href="https://files.example/{SDIST}#md5=00" data-yanked'
        f' data-dist-info-metadata="true"> {SDIST} </a>'
    )
    head = '<meta name="pypi:tracks" content="https://pypi.org/simple/demo/">'
    page = parse_html(html_page(anchors, head))
    assert page == UpstreamPage(
        name="Demo",
        files=(
            UpstreamFile(
                filename=WHEEL,
                url=f"https://index.example/files/{WHEEL}",
                sha256=SHA,
                requires_python=">=3.9",
                yanked=True,
                yanked_reason="broken & old",
                metadata_sha256=META,
                size=None,
                upload_time=None,
            ),
            UpstreamFile(
                filename=SDIST,
                url=f"https://files.example/{SDIST}",
                sha256="",
                requires_python="",
                yanked=True,
                yanked_reason="",
                metadata_sha256=None,
                size=None,
                upload_time=None,
            ),
        ),
        tracks=("https://pypi.org/simple/demo/",),
    )


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        (f'data-core-metadata="sha256={META}"', META),
        (f'data-dist-info-metadata="sha256={META}"', META),
        ('data-core-metadata="true"', None),
        (f'data-core-metadata="md5={META}"', None),
        ('data-core-metadata="sha256=nothex"', None),
        ("", None),
    ],
)
def test_html_core_metadata(attributes: str, expected: str | None) -> None:
    body = html_page(f'<a href="/f/{WHEEL}" {attributes}>{WHEEL}</a>')
    (file,) = parse_html(body).files
    assert file.metadata_sha256 == expected


def test_html_v1_content_type_and_base_href() -> None:
    body = html_page(
        f'<a href="{WHEEL}">{WHEEL}</a>', head='<base href="https://mirror.example/pkgs/">'
    )
    page = parse_html(body, "application/vnd.pypi.simple.v1+html")
    assert page.files[0].url == f"https://mirror.example/pkgs/{WHEEL}"


def test_html_without_title_uses_the_normalized_name() -> None:
    body = f'<a href="/{WHEEL}">{WHEEL}</a>'.encode()
    page = parse_html(body)
    assert (page.name, page.tracks, len(page.files)) == ("demo", (), 1)


def test_html_title_of_another_project_is_not_the_name() -> None:
    assert parse_html(b"<title>Links for evil</title>").name == "demo"


# -- entries skipped one by one ------------------------------------------------------------


def test_json_bad_entries_are_skipped_not_the_page() -> None:
    files = [
        entry("demo-0.9.tar.gz"),
        "not an object",
        {"filename": WHEEL},  # no url
        {"filename": 5, "url": "x"},
        entry("demo-1.0.egg"),  # not a wheel or an sdist
        entry("other-1.0.tar.gz"),  # another project's file
        entry("demo-1.1.tar.gz", hashes={"sha256": "abc"}),
        entry("demo-1.2.tar.gz", hashes={"sha256": "zz" * 32}),
        entry("demo-1.3.tar.gz", hashes={"sha256": 12}),
        {**entry("demo-1.4.tar.gz"), "url": "file:///etc/passwd"},
        {**entry("demo-1.5.tar.gz"), "url": "javascript:alert(1)"},
        entry("demo-0.9.tar.gz", hashes={"sha256": "ef" * 32}),  # a duplicate
        entry(WHEEL),
    ]
    page = parse_json(json_page(files))
    assert [file.filename for file in page.files] == ["demo-0.9.tar.gz", WHEEL]
    assert page.files[0].sha256 == SHA  # the first of the duplicates wins


def test_html_bad_entries_are_skipped_not_the_page() -> None:
    anchors = "".join(
        [
            '<a href="/f/demo-2.0.tar.gz">demo-2.0.tar.gz</a>',
            "<a>demo-2.1.tar.gz</a>",  # no href
            '<a href="/f/x">../demo-2.2.tar.gz</a>',
            '<a href="/f/demo-2.3.zip">demo-2.3.zip</a>',
            '<a href="/f/other-2.0.tar.gz">other-2.0.tar.gz</a>',
            '<a href="/f/demo-2.4.tar.gz#sha256=123">demo-2.4.tar.gz</a>',
            '<a href="mailto:me@example.com">demo-2.5.tar.gz</a>',
            '<a href="/f/again.tar.gz">demo-2.0.tar.gz</a>',
            "<a href='/f/demo-1.0.tar.gz'>demo-1.0.tar.gz</a>",
        ]
    )
    page = parse_html(html_page(anchors))
    assert [file.filename for file in page.files] == ["demo-2.0.tar.gz", "demo-1.0.tar.gz"]
    assert page.files[0].url == "https://index.example/f/demo-2.0.tar.gz"


def test_upstream_order_is_kept() -> None:
    names = ["demo-3.0.tar.gz", "demo-1.0.tar.gz", "demo-2.0-py3-none-any.whl"]
    page = parse_json(json_page([entry(name) for name in names]))
    assert [file.filename for file in page.files] == names


# -- pages refused whole ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b"[]", "not an object"),
        (b'{"name": "demo"}', "no 'files' list"),
        (b'{"files": {}}', "no 'files' list"),
        (b'{"meta": {"api-version": "2.0"}, "files": []}', "unsupported simple API version"),
    ],
)
def test_json_unreadable_pages(body: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_json(body)


def test_html_of_a_newer_major_version_is_refused() -> None:
    body = html_page("", head='<meta name="pypi:repository-version" content="2.0">')
    with pytest.raises(ValueError, match="unsupported simple API version"):
        parse_html(body)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
def test_other_content_types_are_refused(content_type: str) -> None:
    with pytest.raises(ValueError, match="not a simple page"):
        parse_page(b"{}", content_type, BASE, "demo")


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=2000), html=st.booleans())
def test_any_bytes_give_a_page_or_a_value_error(body: bytes, html: bool) -> None:
    try:
        page = parse_page(body, "text/html" if html else JSON_V1, BASE, "demo")
    except ValueError:
        return
    assert isinstance(page, UpstreamPage)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_any_html_text_gives_a_page(text: str) -> None:
    assert isinstance(
        parse_html(html_page(text).replace(b"<body>", b"<body><a href='/x'>")), UpstreamPage
    )


# -- the stored form ------------------------------------------------------------------------


def test_round_trip_is_exact() -> None:
    files = [
        entry(
            WHEEL,
            **{"yanked": "why", "core-metadata": {"sha256": META}, "size": 3, "upload-time": "t"},
        ),
        entry(SDIST, hashes={}, **{"requires-python": ">=3.10"}),
    ]
    page = parse_json(json_page(files, meta={"tracks": ["https://a.example/demo/"]}))
    text = to_json(page)
    assert "\n" not in text
    assert ": " not in text
    assert from_json(text) == page
    assert to_json(from_json(text)) == text


def test_empty_page_round_trips() -> None:
    page = UpstreamPage(name="demo", files=(), tracks=())
    assert from_json(to_json(page)) == page


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '{"v": 2, "name": "x", "files": [], "tracks": []}',
        '{"v": 1}',
        '{"v": 1, "name": "x", "files": [{"filename": "a"}], "tracks": []}',
    ],
)
def test_from_json_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a stored upstream page"):
        from_json(text)
