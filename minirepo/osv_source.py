"""Reading OSV advisory documents for `minirepo advisories update [--from ZIP|DIR|FILE|URL]`.

OSV publishes each ecosystem as one zip of `<ID>.json` documents (PyPI's `all.zip`); an
operator may also give a folder of them, one document, or the zip's URL. Whatever the
source, the caller gets the documents one at a time and never the database's problem of
what they mean. The export is someone else's file fetched over the network, so it is read
as archives.py reads an upload: members are counted and sized from the zip's directory
before anything is read (a bad zip fails before the caller stages a row), then each is read
through a hard byte limit whatever its header declared, and nothing is ever extracted.

No database, no Flask: pure IO, so the caller can stage rows while reading and discard them
on any UserError raised here, mid-way included.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from minirepo import archives
from minirepo.errors import InvalidUpload, UserError
from minirepo.units import format_size

log = logging.getLogger(__name__)

# Read at call time, so tests can lower them. An OSV document is a few KiB: the caps are
# far above any real export and far below what would exhaust a small server.
MEMBER_CAP = 2 * 1024 * 1024
TOTAL_CAP = 1024**3
COUNT_CAP = 500_000
DOWNLOAD_TIMEOUT = 60.0
OSV_PYPI_EXPORT = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
_CHUNK = 1024 * 1024
_KIND = "OSV export"
_COUNT_LIMIT = "the most minirepo reads from one export"
_UNCHANGED = "nothing was changed"
_WHAT_TO_GIVE = (
    "give OSV's PyPI export (all.zip), a folder of OSV .json files, one of them, or a URL"
)


@dataclass
class ReadStats:
    """What a source held: `full` when it is a whole export (a zip or a folder), so the
    caller may retire advisories it no longer lists; never for one file."""

    full: bool
    read: int = 0  # documents yielded
    bad: int = 0  # members skipped: not UTF-8, not JSON, or not a JSON object


@contextlib.contextmanager
def open_source(source: str, tmp: Path) -> Iterator[tuple[Iterator[dict[str, Any]], ReadStats]]:
    """The documents of `source` (a zip, a folder, a .json file or an http(s) URL of a
    zip) and their running counts, valid inside the `with` block.

    A download goes to an anonymous temp file in `tmp`, gone when the block ends. Every
    refusal is a UserError saying what was wrong: on entry for what the zip's directory,
    the folder's listing or the one file shows, while iterating for what only reading shows.
    """
    if urlsplit(source).scheme.lower() in ("http", "https"):
        with _downloaded(source, tmp) as handle:
            yield _zip_source(handle, _shown(source))
        return
    path = Path(source)
    if path.is_dir():
        yield _folder_source(path)
        return
    if not path.is_file():  # missing, or a device or pipe that would block the read
        raise UserError(f"advisories: {source} is not a file, a folder or a URL: {_WHAT_TO_GIVE}")
    with _opened(path) as handle:
        if zipfile.is_zipfile(handle):
            yield _zip_source(handle, str(path))
        else:
            yield _one_document(handle, path)


def _zip_source(handle: IO[bytes], label: str) -> tuple[Iterator[dict[str, Any]], ReadStats]:
    """Check the zip's directory now; read its members when the caller iterates.

    The zip is opened twice (its directory parsed twice: about 1 s each for 50 000 members):
    archives.open_zip turns zipfile's errors into refusals inside its block, which must
    hold this module's reads and never the caller's code.
    """
    size = handle.seek(0, os.SEEK_END)
    with _refusals(label), _zip(handle, size, label) as archive:
        _json_members(archive, label)
    stats = ReadStats(full=True)
    return _documents(_zip_members(handle, size, label), label, stats), stats


def _zip_members(handle: IO[bytes], size: int, label: str) -> Iterator[tuple[str, bytes]]:
    with _refusals(label), _zip(handle, size, label) as archive:
        for info in _json_members(archive, label):
            with archive.open(info) as member:
                data = _read_capped(member, f"member {info.filename!r} of {label}")
            yield info.filename, data


def _zip(
    handle: IO[bytes], size: int, label: str
) -> contextlib.AbstractContextManager[zipfile.ZipFile]:
    return archives.open_zip(handle, size, COUNT_CAP, _KIND, label, _COUNT_LIMIT)


def _json_members(archive: zipfile.ZipFile, label: str) -> list[zipfile.ZipInfo]:
    """The `.json` members by name (folders and other files are not documents), once
    their declared sizes are within the caps: a bad export fails before any is read."""
    members = sorted(
        (info for info in archive.infolist() if info.filename.endswith(".json")),
        key=lambda info: info.filename,
    )
    for info in members:
        if info.file_size > MEMBER_CAP:
            raise _too_large(f"member {info.filename!r} of {label}")
    if sum(info.file_size for info in members) > TOTAL_CAP:
        raise _too_much(label)
    return members


def _folder_source(folder: Path) -> tuple[Iterator[dict[str, Any]], ReadStats]:
    """Every regular `*.json` file directly in `folder`, by name; counted and sized now."""
    names: list[str] = []
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not (entry.name.endswith(".json") and entry.is_file()):
                    continue
                names.append(entry.name)
                if len(names) > COUNT_CAP:
                    raise UserError(
                        f"advisories: {folder} has more than {COUNT_CAP} .json files, "
                        f"{_COUNT_LIMIT}: not an OSV export? {_UNCHANGED}"
                    )
                size = entry.stat().st_size
                if size > MEMBER_CAP:
                    raise _too_large(f"file {entry.path}")
                total += size
    except OSError as exc:
        raise UserError(f"advisories: cannot read the folder {folder}: {exc.strerror}") from exc
    if total > TOTAL_CAP:
        raise _too_much(str(folder))
    stats = ReadStats(full=True)
    return _documents(_folder_members(folder, sorted(names)), str(folder), stats), stats


def _folder_members(folder: Path, names: list[str]) -> Iterator[tuple[str, bytes]]:
    for name in names:
        with _opened(folder / name) as handle:
            data = _read_capped(handle, f"file {folder / name}")
        yield name, data


def _one_document(handle: IO[bytes], path: Path) -> tuple[Iterator[dict[str, Any]], ReadStats]:
    """One document, read and parsed now: a file that is not one is a mistake to report,
    not a member to skip, since nothing else would be read."""
    handle.seek(0)  # zipfile.is_zipfile read its end
    data = _read_capped(handle, f"file {path}")
    document = _decoded(data)
    if isinstance(document, str):
        raise UserError(f"advisories: {path} is not an OSV document ({document}): {_WHAT_TO_GIVE}")
    stats = ReadStats(full=False)
    return _documents(iter([(path.name, data)]), str(path), stats), stats


def _documents(
    members: Iterator[tuple[str, bytes]], label: str, stats: ReadStats
) -> Iterator[dict[str, Any]]:
    """Parse each member, skipping (and counting, and logging once) those that are not
    documents; the running total caps what a lying export could make the caller hold."""
    total = 0
    for name, data in members:
        total += len(data)
        if total > TOTAL_CAP:
            raise _too_much(label)
        document = _decoded(data)
        if isinstance(document, str):
            stats.bad += 1
            log.warning("advisories: skipped %r: %s", name, document)  # the name, never content
            continue
        stats.read += 1
        yield document


def _decoded(data: bytes) -> dict[str, Any] | str:
    """The JSON object in `data`, or why it is not one (words only: a hostile member's
    bytes stay out of the log). NaN, infinities and integers past Python's digit limit are
    refused too: the database could not store them as JSON."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "not UTF-8"
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        return f"not JSON (line {exc.lineno}, column {exc.colno})"
    except (ValueError, RecursionError):
        return "JSON with a value no database holds (NaN, a huge number, deep nesting)"
    if not isinstance(value, dict):
        return "not a JSON object"
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _read_capped(handle: IO[bytes], what: str) -> bytes:
    """All of `handle`, refused past MEMBER_CAP whatever a zip header declared."""
    data = handle.read(MEMBER_CAP + 1)
    if len(data) > MEMBER_CAP:
        raise _too_large(what)
    return data


def _too_large(what: str) -> UserError:
    return UserError(
        f"advisories: {what} is over {format_size(MEMBER_CAP)} (OSV documents are a few KiB): "
        f"not an OSV export? {_UNCHANGED}"
    )


def _too_much(label: str) -> UserError:
    return UserError(
        f"advisories: {label} holds more than {format_size(TOTAL_CAP)} of documents: "
        f"not an OSV export? {_UNCHANGED}"
    )


@contextlib.contextmanager
def _refusals(label: str) -> Iterator[None]:
    """archives.open_zip refuses an upload; here the refusal is the operator's to read."""
    try:
        yield
    except InvalidUpload as exc:
        raise UserError(f"advisories: cannot read {label}: {exc.reason}; {_UNCHANGED}") from exc


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[IO[bytes]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UserError(f"advisories: cannot read {path}: {exc.strerror}; {_UNCHANGED}") from exc
    with handle:
        yield handle


@contextlib.contextmanager
def _downloaded(url: str, tmp: Path) -> Iterator[IO[bytes]]:
    """The zip at `url` in an unnamed temp file in `tmp` (nothing left behind, even after
    a crash), refused past TOTAL_CAP bytes."""
    shown = _shown(url)
    with tempfile.TemporaryFile(dir=tmp, prefix="osv-") as handle:
        try:
            # The scheme is http or https: open_source checked it.
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:  # noqa: S310
                _copy_capped(response, handle, shown)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise UserError(
                f"advisories: {shown} answered {exc.code} {exc.reason}: check the URL "
                f"(OSV's PyPI export is {OSV_PYPI_EXPORT}); {_UNCHANGED}"
            ) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise UserError(
                f"advisories: could not download {shown}: {reason}; check the URL and the "
                f"network, or download the file and give its path; {_UNCHANGED}"
            ) from exc
        handle.flush()
        yield handle


def _copy_capped(response: Any, handle: IO[bytes], shown: str) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > TOTAL_CAP:
        raise _too_much(shown)
    copied = 0
    while chunk := response.read(_CHUNK):
        copied += len(chunk)
        if copied > TOTAL_CAP:
            raise _too_much(shown)
        handle.write(chunk)


def _shown(url: str) -> str:
    """`url` without credentials or query (a signed URL's token) for messages and logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
