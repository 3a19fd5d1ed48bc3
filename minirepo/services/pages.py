"""The bytes of simple pages (PEP 503 HTML, PEP 691 JSON), from rows however they were got.

Hosted pages come from file rows, a proxy's from its cached upstream page: both render
here, so the two can't drift apart in what a client sees.
"""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import html
import json
from collections.abc import Iterable
from urllib.parse import quote

from packaging.version import InvalidVersion, Version

HTML = "text/html"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
JSON_V1 = "application/vnd.pypi.simple.v1+json"
API_VERSION = "1.3"  # 1.3: PEP 740 `provenance`


@dataclasses.dataclass(frozen=True)
class Page:
    body: bytes
    gzipped: bytes
    etag: str


@dataclasses.dataclass(frozen=True)
class FileRow:
    filename: str
    version: str
    sha256: str
    size: int | None  # None: a proxied file whose upstream page gave no size
    requires_python: str
    metadata_sha256: str | None
    yanked: bool
    yanked_reason: str
    upload_time: str | None  # PEP 700 text; None: not known
    provenance: bool = False  # a PEP 740 provenance object is served at <url>.provenance


def make_page(body: bytes, stamp: str = "") -> Page:
    """`stamp`: what else the page was made under (the advisories in force), so its ETag
    changes with it even where the bytes do not."""
    return Page(body, gzip.compress(body, compresslevel=6, mtime=0), _etag(body) + stamp)


def _etag(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def upload_time_text(value: datetime.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_key(text: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)


def sorted_rows(files: Iterable[FileRow]) -> list[FileRow]:
    """Oldest version first, as PyPI lists them; unparseable versions before the rest."""
    return sorted(files, key=lambda row: (version_key(row.version), row.filename))


def _file_url(normalized: str, filename: str) -> str:
    return f"../../files/{normalized}/{quote(filename)}"


def _head(title: str, tracks: tuple[str, ...] = ()) -> str:
    meta = "".join(f'<meta name="pypi:tracks" content="{html.escape(url)}">\n' for url in tracks)
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta name="pypi:repository-version" content="{API_VERSION}">\n{meta}'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
    )


def root_html(projects: list[tuple[str, str]]) -> bytes:
    links = "".join(
        f'<a href="{quote(normalized)}/">{html.escape(name)}</a>\n' for name, normalized in projects
    )
    return (_head("Simple index") + links + "</body>\n</html>\n").encode()


def root_json(projects: list[tuple[str, str]]) -> bytes:
    document = {
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": name} for name, _ in projects],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def project_html(
    name: str,
    normalized: str,
    files: list[FileRow],
    *,
    banner: str = "",
    tracks: tuple[str, ...] = (),
) -> bytes:
    """`banner`: a line for people reading the page (a stale proxy page says why)."""
    lines = [_head(f"Links for {name}", tracks)]
    if banner:
        lines.append(f'<p class="minirepo-banner">{html.escape(banner)}</p>\n')
    for row in files:
        attributes = [f'href="{_file_url(normalized, row.filename)}#sha256={row.sha256}"']
        if row.requires_python:
            attributes.append(f'data-requires-python="{html.escape(row.requires_python)}"')
        if row.metadata_sha256:
            value = f"sha256={row.metadata_sha256}"
            attributes.append(f'data-core-metadata="{value}" data-dist-info-metadata="{value}"')
        if row.yanked:
            attributes.append(f'data-yanked="{html.escape(row.yanked_reason)}"')
        if row.provenance:
            url = _file_url(normalized, row.filename) + ".provenance"
            attributes.append(f'data-provenance="{url}"')
        lines.append(f"<a {' '.join(attributes)}>{html.escape(row.filename)}</a><br>\n")
    lines.append("</body>\n</html>\n")
    return "".join(lines).encode()


def project_json(
    name: str, normalized: str, files: list[FileRow], *, tracks: tuple[str, ...] = ()
) -> bytes:
    entries = []
    for row in files:
        entry: dict[str, object] = {
            "filename": row.filename,
            "url": _file_url(normalized, row.filename),
            "hashes": {"sha256": row.sha256} if row.sha256 else {},
        }
        if row.requires_python:
            entry["requires-python"] = row.requires_python
        metadata: object = {"sha256": row.metadata_sha256} if row.metadata_sha256 else False
        entry["core-metadata"] = metadata
        entry["dist-info-metadata"] = metadata
        entry["yanked"] = (row.yanked_reason or True) if row.yanked else False
        if row.size is not None:
            entry["size"] = row.size
        if row.upload_time is not None:
            entry["upload-time"] = row.upload_time
        if row.provenance:
            entry["provenance"] = _file_url(normalized, row.filename) + ".provenance"
        entries.append(entry)
    versions = sorted({row.version for row in files}, key=version_key)
    meta: dict[str, object] = {"api-version": API_VERSION}
    if tracks:
        meta["tracks"] = list(tracks)
    document = {"meta": meta, "name": normalized, "versions": versions, "files": entries}
    return json.dumps(document, separators=(",", ":")).encode()
