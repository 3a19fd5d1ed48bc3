"""An upstream's project page (PEP 503 HTML or PEP 691 JSON), read into plain values.

An upstream is trusted for what it lists, not for how well it writes it: each entry is
checked on its own and a bad one is dropped, so one odd file (a legacy `.egg`, a file of
another project, a mangled hash) doesn't hide a project's good releases. Only a page that
can't be read at all is an error. Entries keep the upstream's order.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from minirepo.dists import parse_filename
from minirepo.errors import InvalidUpload
from minirepo.names import normalized_project

log = logging.getLogger(__name__)

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_TYPES = frozenset({"text/html", "application/vnd.pypi.simple.v1+html"})
# PEP 629: a client must refuse a page of a major version it doesn't know.
API_MAJOR = "1"
SHA256_RE = re.compile(r"[0-9a-f]{64}")
STORED_VERSION = 1


@dataclasses.dataclass(frozen=True)
class UpstreamFile:
    filename: str
    url: str  # absolute, without its fragment
    sha256: str  # lowercase hex, "" when the upstream gave none
    requires_python: str
    yanked: bool
    yanked_reason: str
    metadata_sha256: str | None  # PEP 658/714; None unless advertised with a sha256
    size: int | None
    upload_time: str | None  # as sent (PEP 700)
    provenance: str | None = None  # PEP 740: the provenance object's absolute URL


@dataclasses.dataclass(frozen=True)
class UpstreamPage:
    name: str
    files: tuple[UpstreamFile, ...]
    tracks: tuple[str, ...]  # PEP 708


class _Skip(Exception):
    """One entry is unusable; the rest of the page still counts."""


def parse_page(body: bytes, content_type: str, base_url: str, normalized: str) -> UpstreamPage:
    """The page at `base_url` (the URL it was finally fetched from, after redirects: the
    base of relative links). Raises ValueError with a short reason when it can't be read."""
    if content_type == JSON_V1:
        return _parse_json(body, base_url, normalized)
    if content_type in HTML_TYPES:
        return _parse_html(body, base_url, normalized)
    raise ValueError(f"not a simple page: content type {content_type!r}")


# -- JSON (PEP 691) ----------------------------------------------------------------------


def _parse_json(body: bytes, base_url: str, normalized: str) -> UpstreamPage:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ValueError("not valid JSON") from exc
    if not isinstance(document, dict):
        raise ValueError("the JSON page is not an object")
    files = document.get("files")
    if not isinstance(files, list):
        raise ValueError("the JSON page has no 'files' list")
    meta = document.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    _check_api_version(meta.get("api-version"))
    entries = _Entries(normalized)
    for item in files:
        entries.add(functools.partial(_json_entry, item, base_url))
    tracks = meta.get("tracks")
    return UpstreamPage(
        name=_display_name(document.get("name"), normalized),
        files=entries.collected(),
        tracks=_tracks(tracks if isinstance(tracks, list) else [], base_url),
    )


def _json_entry(item: Any, base_url: str) -> UpstreamFile:
    if not isinstance(item, dict):
        raise _Skip("an entry is not an object")
    filename, url = item.get("filename"), item.get("url")
    if not isinstance(filename, str) or not isinstance(url, str):
        raise _Skip("an entry has no filename or url")
    hashes = item.get("hashes")
    sha256 = hashes.get("sha256", "") if isinstance(hashes, dict) else ""
    if not isinstance(sha256, str):
        raise _Skip(f"{filename}: its sha256 is not a string")
    requires_python = item.get("requires-python")
    yanked, yanked_reason = _json_yanked(item.get("yanked"))
    size = item.get("size")
    upload_time = item.get("upload-time")
    return UpstreamFile(
        filename=filename,
        url=_absolute(url, base_url, filename),
        sha256=_sha256(sha256, filename),
        requires_python=requires_python if isinstance(requires_python, str) else "",
        yanked=yanked,
        yanked_reason=yanked_reason,
        metadata_sha256=_json_metadata(item),
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time=upload_time if isinstance(upload_time, str) else None,
        provenance=_provenance(item.get("provenance"), base_url, filename),
    )


def _provenance(url: Any, base_url: str, filename: str) -> str | None:
    """A provenance URL we would fetch: http(s) only, as files; anything else: none."""
    if not isinstance(url, str) or not url:
        return None
    try:
        return _absolute(url, base_url, filename)
    except _Skip:
        return None


def _json_yanked(value: Any) -> tuple[bool, str]:
    """As pip reads it: a non-empty string is a reason, any other true value a bare yank."""
    if isinstance(value, str):
        return bool(value), value
    return bool(value), ""


def _json_metadata(item: dict[str, Any]) -> str | None:
    """PEP 714: `core-metadata` wins over the older `dist-info-metadata`."""
    value = item.get("core-metadata", item.get("dist-info-metadata"))
    digest = value.get("sha256") if isinstance(value, dict) else None
    return _metadata_sha256(digest if isinstance(digest, str) else None)


# -- HTML (PEP 503) ----------------------------------------------------------------------


class _LinkParser(HTMLParser):
    """Collects anchors, the title and the PEP 629/708 meta tags; ignores everything else."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.title = ""
        self.base_href: str | None = None
        self.meta: list[tuple[str, str]] = []
        self._anchor: dict[str, str | None] | None = None
        self._text: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a":
            self._anchor, self._text = attributes, []
        elif tag == "title":
            self._in_title = True
        elif tag == "base" and self.base_href is None:
            self.base_href = attributes.get("href")
        elif tag == "meta":
            self.meta.append((attributes.get("name") or "", attributes.get("content") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._anchor is not None:
            self.anchors.append((self._anchor, "".join(self._text).strip()))
            self._anchor = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._anchor is not None:
            self._text.append(data)
        elif self._in_title:
            self.title += data


def _parse_html(body: bytes, base_url: str, normalized: str) -> UpstreamPage:
    parser = _LinkParser()
    try:
        parser.feed(body.decode("utf-8", "replace"))
        parser.close()
    except (AssertionError, ValueError) as exc:  # older html.parser asserts on some junk
        raise ValueError("not parseable HTML") from exc
    meta = parser.meta
    for name, content in meta:
        if name == "pypi:repository-version":
            _check_api_version(content)
    if parser.base_href:  # pip honours <base href>, so the pages that work with pip use it
        base_url = urljoin(base_url, parser.base_href)
    entries = _Entries(normalized)
    for attributes, text in parser.anchors:
        entries.add(functools.partial(_html_entry, attributes, text, base_url))
    title = parser.title.strip()
    return UpstreamPage(
        name=_display_name(title.removeprefix("Links for ").strip(), normalized),
        files=entries.collected(),
        tracks=_tracks([content for name, content in meta if name == "pypi:tracks"], base_url),
    )


def _html_entry(attributes: dict[str, str | None], text: str, base_url: str) -> UpstreamFile:
    href = attributes.get("href")
    if not href:
        raise _Skip("an anchor has no href")
    filename = text  # PEP 503: the anchor's text is the filename
    hash_name, _, digest = urldefrag(href).fragment.partition("=")
    metadata = attributes.get("data-core-metadata", attributes.get("data-dist-info-metadata"))
    return UpstreamFile(
        filename=filename,
        url=_absolute(href, base_url, filename),
        sha256=_sha256(digest if hash_name == "sha256" else "", filename),
        requires_python=attributes.get("data-requires-python") or "",
        yanked="data-yanked" in attributes,  # present is yanked; its value is the reason
        yanked_reason=attributes.get("data-yanked") or "",
        metadata_sha256=_html_metadata(metadata),
        size=None,
        upload_time=None,
        provenance=_provenance(attributes.get("data-provenance"), base_url, filename),
    )


def _html_metadata(value: str | None) -> str | None:
    """`sha256=<hex>` gives the hash; `true` (or another hash) advertises none we can check."""
    hash_name, _, digest = (value or "").partition("=")
    return _metadata_sha256(digest if hash_name == "sha256" else None)


# -- shared ------------------------------------------------------------------------------


class _Entries:
    """The page's usable entries, in upstream order: a bad, foreign or repeated one is
    dropped (logged at debug) rather than failing the page."""

    def __init__(self, normalized: str) -> None:
        self.normalized = normalized
        self.files: dict[str, UpstreamFile] = {}

    def add(self, build: Callable[[], UpstreamFile]) -> None:
        try:
            entry = build()
            self._check(entry)
        except _Skip as exc:
            log.debug("upstream page of %s: skipped: %s", self.normalized, exc)
            return
        self.files[entry.filename] = entry

    def _check(self, entry: UpstreamFile) -> None:
        try:
            dist = parse_filename(entry.filename)
        except InvalidUpload as exc:
            raise _Skip(exc.reason) from exc
        if dist.normalized != self.normalized:
            raise _Skip(f"{entry.filename} is a file of {dist.normalized}")
        if entry.filename in self.files:
            raise _Skip(f"{entry.filename} is listed twice")

    def collected(self) -> tuple[UpstreamFile, ...]:
        return tuple(self.files.values())


def _absolute(url: str, base_url: str, filename: str) -> str:
    """The link resolved against the page's URL, without its fragment; http(s) only, so a
    page can't point the proxy at a local file or another scheme."""
    absolute = urldefrag(urljoin(base_url, url)).url
    if urlsplit(absolute).scheme not in ("http", "https"):
        raise _Skip(f"{filename}: its URL is not http(s)")
    return absolute


def _sha256(digest: str, filename: str) -> str:
    digest = digest.lower()
    if digest and not SHA256_RE.fullmatch(digest):
        raise _Skip(f"{filename}: its sha256 is not 64 hex digits")
    return digest


def _metadata_sha256(digest: str | None) -> str | None:
    """A metadata hash we can't check is as good as none: the metadata is not offered."""
    if digest is None or not SHA256_RE.fullmatch(digest.lower()):
        return None
    return digest.lower()


def _check_api_version(value: Any) -> None:
    """No version (a plain PEP 503 page) is version 1."""
    if isinstance(value, str) and value.strip() and value.partition(".")[0].strip() != API_MAJOR:
        raise ValueError(f"unsupported simple API version {value[:20]!r}")


def _display_name(name: Any, normalized: str) -> str:
    """The upstream's spelling of the name, unless it names another project."""
    if isinstance(name, str) and normalized_project(name) == normalized:
        return name
    return normalized


def _tracks(values: list[Any], base_url: str) -> tuple[str, ...]:
    tracks = (urljoin(base_url, value) for value in values if isinstance(value, str) and value)
    return tuple(url for url in tracks if urlsplit(url).scheme in ("http", "https"))


# -- storage -----------------------------------------------------------------------------


def to_json(page: UpstreamPage) -> str:
    """The page as compact JSON, for a TEXT column; `from_json` gives it back exactly."""
    return json.dumps({"v": STORED_VERSION, **dataclasses.asdict(page)}, separators=(",", ":"))


def from_json(text: str) -> UpstreamPage:
    """Raises ValueError for text `to_json` didn't write (or wrote in another version)."""
    try:
        stored = json.loads(text)
        if stored.pop("v") != STORED_VERSION:
            raise ValueError("another format version")
        return UpstreamPage(
            name=stored["name"],
            files=tuple(UpstreamFile(**entry) for entry in stored["files"]),
            tracks=tuple(stored["tracks"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a stored upstream page: {exc}") from exc
