"""READMEs (`services.readme`): hostile text never reaches a page as markup that runs,
ordinary text renders, an old sdist's README comes from its archive, and each release is
rendered once."""

from __future__ import annotations

import html.parser
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import models
from minirepo.services import accounts, readme
from minirepo.services.container import Services
from minirepo.storage import BlobStore
from tests.conftest import post_upload
from tests.helpers.backends import BACKENDS, backend_settings, served
from tests.helpers.distfactory import (
    Dist,
    sdist_members,
    wheel_members,
    write_tar_gz,
    write_zip,
)
from tests.helpers.serverproc import FAST_HASH

ALLOWED_TAGS = frozenset(readme._TAG_NAMES.split())

HOSTILE_MARKDOWN = """\
# Title

<script>alert(1)</script>
<img src=x onerror=alert(2)>
<iframe src="https://evil.example/"></iframe>
<style>body { display: none }</style>
<svg><script>alert(3)</script></svg>
<a href="javascript:alert(4)">raw link</a>

[plain](javascript:alert(5)) [entity](jav&#x61;script:alert(6)) [upper](JaVaScRiPt:alert(7))
[spaced]( javascript:alert(8)) [vb](vbscript:msgbox) [data](data:text/html;base64,PHNjcmlwdD4=)
![pixel](data:image/png;base64,iVBORw0KGgo=) ![file](file:///etc/passwd)
[ref]

[ref]: javascript:alert(9)
"""

HOSTILE_RST = """\
Title
=====

`bad <javascript:alert(1)>`_ and `entity <jav&#x61;script:alert(2)>`_

.. raw:: html

   <script>alert(3)</script>

.. include:: /etc/passwd

.. image:: javascript:alert(4)

.. csv-table::
   :file: /etc/passwd

__ data:text/html;base64,PHNjcmlwdD4=

anonymous__
"""

NORMAL_MARKDOWN = """\
# Demo

Some `inline code` and a [link](https://example.org/docs).

| a | b |
|---|--:|
| 1 | 2 |

```python
print("hi")
```

~~old~~
"""

NORMAL_RST = """\
Demo
====

Some ``inline code`` and a `link <https://example.org/docs>`_.

::

    print("hi")

===  ===
a    b
===  ===
1    2
===  ===
"""


class _Collect(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))


def assert_inert(output: str) -> None:
    """Only allow-listed tags, no event or style attribute, links to http(s), mailto or
    this site, images from http(s) only."""
    parser = _Collect()
    parser.feed(output)
    for tag, attrs in parser.elements:
        assert tag in ALLOWED_TAGS, (tag, output)
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name, output)
            assert name not in ("style", "srcdoc", "formaction"), (tag, name)
            if name == "href":
                scheme = urllib.parse.urlsplit((value or "").strip()).scheme.lower()
                assert scheme in ("", "http", "https", "mailto"), (value, output)
            if name == "src":
                assert (value or "").startswith(("https://", "http://")), (value, output)
    lowered = output.lower()  # escaped text may say `javascript:`; a tag never starts
    for fragment in ("<script", "<iframe", "<style", "<svg", "root:x:0:0"):
        assert fragment not in lowered, (fragment, output)


@pytest.mark.parametrize(
    ("text", "content_type"),
    [
        (HOSTILE_MARKDOWN, "text/markdown"),
        (HOSTILE_MARKDOWN, "text/markdown; charset=UTF-8; variant=GFM"),
        (HOSTILE_MARKDOWN, "text/markdown; variant=CommonMark"),
        (HOSTILE_RST, "text/x-rst"),
        (HOSTILE_RST, ""),
        (HOSTILE_MARKDOWN, "text/plain"),
        ("<script>alert(1)</script><b onclick=x>", "text/html"),
    ],
)
def test_hostile_readmes_come_out_inert(text: str, content_type: str) -> None:
    output = readme.render(text, content_type)
    assert_inert(output)
    if text is HOSTILE_RST:
        assert "Title</h" in output  # docutils rendered it (no fallback to <pre>)


def test_plain_text_is_escaped_in_a_pre() -> None:
    assert readme.render("<b>bold</b> & more", "text/plain") == (
        "<pre>&lt;b&gt;bold&lt;/b&gt; &amp; more</pre>"
    )


def test_markdown_renders_headings_code_tables_and_links() -> None:
    output = readme.render(NORMAL_MARKDOWN, "text/markdown")
    assert "<h1>Demo</h1>" in output
    assert "<code>inline code</code>" in output
    assert "<table>" in output
    assert "<td>2</td>" in output
    assert "<pre><code>" in output
    assert "<s>old</s>" in output
    assert 'href="https://example.org/docs"' in output
    assert 'rel="nofollow noopener noreferrer"' in output


def test_restructured_text_renders_headings_code_tables_and_links() -> None:
    output = readme.render(NORMAL_RST, "text/x-rst")
    assert ">Demo</h" in output
    assert "inline code" in output
    assert 'print("hi")' in output or "print(&quot;hi&quot;)" in output
    assert "<table>" in output
    assert 'href="https://example.org/docs"' in output
    assert 'id="readme-demo"' in output  # its ids, prefixed: none clashes with the page's


def test_a_docutils_failure_shows_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    import docutils.core

    def broken(*args: object, **kwargs: object) -> None:
        raise IndexError("a docutils bug")

    monkeypatch.setattr(docutils.core, "publish_parts", broken)
    assert readme.render("Title\n=====\n\n<b>", "text/x-rst") == (
        "<pre>Title\n=====\n\n&lt;b&gt;</pre>"
    )


def test_a_huge_readme_is_shown_as_text() -> None:
    text = "# Heading\n\n" + "word " * (readme.MAX_MARKUP_CHARS // 5)
    assert readme.render(text, "text/markdown").startswith("<pre># Heading")


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with served(backend_settings(request, tmp_path)) as flask_app:
        yield flask_app


@pytest.fixture
def token(app: Flask) -> str:
    accounts.add_user("root", "a-password-1", method=FAST_HASH, admin=True)
    return accounts.create_token("root", permission="admin").secret


def metadata(dist: Dist, description: str, content_type: str) -> bytes:
    lines = [
        f"Metadata-Version: {dist.metadata_version}",
        f"Name: {dist.name}",
        f"Version: {dist.version}",
        "Summary: A test package",
        f"Description-Content-Type: {content_type}",
        "",
        description,
    ]
    return "\n".join(lines).encode()


def release(name: str, version: str) -> models.Release:
    return (
        models.Release.select()
        .join(models.Project)
        .where((models.Project.normalized == name) & (models.Release.version == version))
        .get()
    )


def store(app: Flask) -> BlobStore:
    services: Services = app.extensions["minirepo"]
    return services.folder.store


def test_an_old_sdist_readme_is_read_from_its_archive(
    app: Flask, token: str, tmp_path: Path
) -> None:
    dist = Dist("oldpkg", "1.0", metadata_version="2.1")
    pkg_info = metadata(dist, "# From the archive\n\n*kept*", "text/markdown")
    path = write_tar_gz(tmp_path / dist.sdist_name, sdist_members(dist, pkg_info))
    client: FlaskClient = app.test_client()
    assert post_upload(client, token, path).status_code == 200
    assert models.FileMetadata.select().count() == 0  # nothing stored: 2.1 sdist metadata
    output = readme.rendered(release("oldpkg", "1.0"), store(app))
    assert "<h1>From the archive</h1>" in output
    assert "<em>kept</em>" in output


def test_a_missing_blob_is_not_cached(app: Flask, token: str, tmp_path: Path) -> None:
    dist = Dist("gonepkg", "1.0")
    path = write_tar_gz(tmp_path / dist.sdist_name, sdist_members(dist))
    assert post_upload(app.test_client(), token, path).status_code == 200
    row = models.File.get(models.File.filename == dist.sdist_name)
    services: Services = app.extensions["minirepo"]
    (services.settings.data / "files" / row.storage_key).unlink()
    assert readme.rendered(release("gonepkg", "1.0"), store(app)) == ""
    assert models.ReadmeHtml.select().count() == 0


def test_a_readme_is_rendered_once_and_again_for_a_new_renderer(
    app: Flask, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = Dist("cached", "1.0")
    members = wheel_members(dist, metadata(dist, HOSTILE_MARKDOWN, "text/markdown"))
    path = write_zip(tmp_path / dist.wheel_name, members)
    assert post_upload(app.test_client(), token, path).status_code == 200
    calls: list[str] = []
    real = readme.render

    def counting(text: str, content_type: str) -> str:
        calls.append(content_type)
        return real(text, content_type)

    monkeypatch.setattr(readme, "render", counting)
    row = release("cached", "1.0")
    first = readme.rendered(row, store(app))
    assert_inert(first)
    assert "<h1>Title</h1>" in first
    assert readme.rendered(row, store(app)) == first
    assert calls == ["text/markdown"]
    models.ReadmeHtml.update(renderer="readme-0", html="stale").execute()
    assert readme.rendered(row, store(app)) == first
    assert len(calls) == 2
    assert models.ReadmeHtml.get().html == first
