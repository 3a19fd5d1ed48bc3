"""Property tests (hypothesis): the parsers and the upload form refuse junk, never crash.

Whatever the input, a parser returns a sound result or raises `InvalidUpload` (or
`Unauthorized`), and the upload endpoint answers with one of its 2xx/4xx statuses and a
one-line reason, leaving nothing behind when it refuses.

These run in CI: every test is derandomized (the same examples on every run) with a
bounded example count, under 20 s in all on one core. `MINIREPO_FUZZ_SCALE=20` multiplies
the counts and draws fresh random examples, for a deeper run by hand. The long run over raw
HTTP against a real server is `python -m benchmarks.fuzz_requests`.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name
from packaging.version import Version

from minirepo import auth, dists
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.errors import InvalidUpload, Unauthorized
from minirepo.services import accounts
from minirepo.services.index import HTML, HTML_V1, JSON_V1, Page
from minirepo.services.repos import RepoInfo
from minirepo.views.simple import accepts_gzip, negotiate, page_answer
from tests.conftest import snapshot
from tests.helpers.distfactory import Dist, sdist_members, wheel_members
from tests.helpers.serverproc import FAST_HASH

SCALE = max(1, int(os.environ.get("MINIREPO_FUZZ_SCALE", "1")))
CAP = 64 * 1024
# Seconds one archive may take to be refused; real ones take milliseconds.
ARCHIVE_TIME_LIMIT = 5.0
FOO = Dist("foo", "1.0")
WHEEL_DIST = dists.parse_filename(FOO.wheel_name)
SDIST_DIST = dists.parse_filename(FOO.sdist_name)
UPLOAD_STATUSES = {200, 400, 401, 403, 409, 410, 413}
T = TypeVar("T")


def attempt(
    call: Callable[..., T], *args: Any, refusal: type[Exception] = InvalidUpload
) -> T | None:
    """`call(*args)`, or None when it refuses with `refusal` and a reason; nothing else."""
    try:
        return call(*args)
    except refusal as exc:
        reason = exc.reason  # type: ignore[attr-defined]
    assert reason
    return None


def fuzz(examples: int) -> hsettings:
    """Derandomized and bounded for CI; deeper and random with MINIREPO_FUZZ_SCALE."""
    return hsettings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# --- archives and byte mutations -----------------------------------------------------------


def zip_bytes(members: dict[str, bytes] | list[tuple[str, bytes]], method: int) -> bytes:
    items = members.items() if isinstance(members, dict) else members
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on the duplicate names we ask for
        with zipfile.ZipFile(buffer, "w", method) as archive:
            for name, data in items:
                archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes] | list[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar: mutate it, then gzip it, to reach the tar parser."""
    items = members.items() if isinstance(members, dict) else members
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_577_836_800
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@functools.cache
def wheel_deflated() -> bytes:
    return zip_bytes(wheel_members(FOO), zipfile.ZIP_DEFLATED)


@functools.cache
def wheel_stored() -> bytes:
    return zip_bytes(wheel_members(FOO), zipfile.ZIP_STORED)


@functools.cache
def sdist_tar() -> bytes:
    return tar_bytes(sdist_members(FOO))


@functools.cache
def sdist_gz() -> bytes:
    return gz(sdist_tar())


def zip_points(data: bytes) -> tuple[int, ...]:
    """Where a zip's structure is: its signatures and its end record."""
    points = {0, len(data), max(0, len(data) - 22)}
    for signature in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"):
        start = data.find(signature)
        while start >= 0:
            points.add(start)
            start = data.find(signature, start + 1)
    return tuple(sorted(points))


# Offsets in a tar header block: name, mode, size, mtime, chksum, typeflag, linkname, magic,
# prefix.
_TAR_FIELDS = (0, 100, 124, 136, 148, 156, 157, 257, 345)


def tar_points(data: bytes) -> tuple[int, ...]:
    blocks = range(0, len(data), 512)
    return tuple(sorted({len(data), *(b + f for b in blocks for f in _TAR_FIELDS)}))


INTERESTING = (
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    b"..",
    b"/",
    b"\\",
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"PK\x06\x06",
    b"PK\x06\x07",
    b"ustar\x00",
    b"\x1f\x8b\x08",
    b"77777777777",
    b"-1",
    b"\x01\x00\x08\x00",  # a zip64 extra field header
)
OPS = ("flip", "set", "insert", "delete", "truncate")


@st.composite
def mutated(draw: st.DrawFn, data: bytes, points: tuple[int, ...] = (), most: int = 4) -> bytes:
    """`data` with a few bytes flipped, overwritten, inserted or deleted, often at `points`."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, most))):
        near = draw(st.sampled_from(points or (0,))) + draw(st.integers(-4, 48))
        pos = draw(st.one_of(st.just(near), st.integers(0, len(out))))
        pos = min(max(pos, 0), len(out))
        op = draw(st.sampled_from(OPS))
        chunk = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=8)))
        if op == "flip" and pos < len(out):
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            out[pos : pos + len(chunk)] = chunk
        elif op == "insert":
            out[pos:pos] = chunk
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del out[pos:]
    return bytes(out)


def fix_tar_checksums(data: bytes) -> bytes:
    """Recompute every header checksum, so mutated headers get past the first check."""
    out = bytearray(data)
    for start in range(0, len(out) - 511, 512):
        block = out[start : start + 512]
        if block[257:262] != b"ustar":
            continue
        block[148:156] = b" " * 8
        out[start + 148 : start + 156] = b"%06o\0 " % sum(block)
    return bytes(out)


def noise(size: int) -> bytes:
    return hashlib.shake_256(b"fuzz").digest(size)


# --- filenames, names, versions ------------------------------------------------------------


LONG_TEXT = st.builds(
    lambda char, count: char * count,
    st.characters(exclude_categories=["Cs"]),
    st.integers(100, 600),
)
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="ascii"), max_size=40),
    LONG_TEXT,
    st.sampled_from(["\u0130", "\ufb01", "\u212a", "\u00df", "\u0660", "\uff11", "\u2028", "\x85"]),
)
WHEELISH = st.from_regex(
    r"[A-Za-z0-9_.]{1,12}-[0-9a-zA-Z.!+_-]{1,14}(-[0-9][a-z0-9]{0,3})?"
    r"-[a-z0-9_.]{1,8}-[a-z0-9_.]{1,8}-[a-z0-9_.]{1,12}\.whl",
    fullmatch=True,
)
SDISTISH = st.from_regex(r"[A-Za-z0-9_.-]{1,16}-[0-9a-zA-Z.!+_-]{1,14}\.tar\.gz", fullmatch=True)
FILENAMES = st.one_of(
    st.sampled_from(
        [
            FOO.wheel_name,
            FOO.sdist_name,
            "Foo-1.0-py3-none-any.whl",
            "foo-1.0.0-py3-none-any.whl",
            "foo-1.0-1-py3-none-any.whl",
            "foo-1.0-py2.py3-none-any.whl",
            "foo-1.0.zip",
            "../foo-1.0.tar.gz",
            ".foo-1.0.tar.gz",
            "foo-1.0-py3-none-any.whl\x00.tar.gz",
            "foo-1.0-py3-none-any.tar.gz",
            "foo-v1.0.tar.gz",
            "foo-1.0-py3-none-any%ed%a0%80.whl",  # invalid UTF-8 when sent as filename*=
            "foo-1.0%ff.tar.gz",
        ]
    ),
    WHEELISH,
    SDISTISH,
    ODD_TEXT,
    ODD_TEXT.map(lambda text: f"foo-{text}-py3-none-any.whl"),
    ODD_TEXT.map(lambda text: f"{text}-1.0.tar.gz"),
)


@fuzz(300)
@given(FILENAMES)
@example("foo-1.0-py3-none-any.whl")
@example("x-0-a-b-c.whl")
def test_parse_filename_returns_a_sound_name_or_refuses(filename: str) -> None:
    parsed = attempt(dists.parse_filename, filename)
    if parsed is None:
        return
    assert parsed.filename == filename
    assert dists.validate_project_name(parsed.normalized) == parsed.normalized
    assert Version(str(parsed.version)) == parsed.version
    assert len(str(parsed.version)) <= dists.MAX_VERSION_LENGTH
    assert parsed.packagetype in (dists.WHEEL, dists.SDIST)
    assert parsed.python_version
    assert len(filename.encode()) <= dists.MAX_FILENAME_BYTES
    assert filename.isascii()
    assert not any(ch in filename for ch in "/\\\x00")


# Found by fuzzing the form's filename (an RFC 2231 `filename*=` with invalid UTF-8 became
# U+FFFD in the platform tag and got through); parse_filename now refuses non-ASCII.
@pytest.mark.parametrize(
    "filename",
    [
        "foo-1.0-py3-none-any\u202e.whl",
        "foo-1.0-py3-none-any\x85.whl",
        "foo-1.0-py3-none-\u0430ny.whl",
        "foo-1.0-1\u00e9-py3-none-any.whl",
        "foo-1.0-py3-none-any\ufffd.whl",
    ],
)
def test_filenames_with_non_ascii_tags_are_refused(filename: str) -> None:
    with pytest.raises(InvalidUpload):
        dists.parse_filename(filename)


# packaging checks neither the characters of wheel tags and build tags nor whitespace
# around a version: parse_filename refuses anything outside [A-Za-z0-9._+!-] itself.
@pytest.mark.parametrize(
    "filename",
    [
        "foo-1.0-py3-none-any x.whl",
        'foo-1.0-py3-none-an"y.whl',
        "foo-1.0-py3-none-any;<b>.whl",
        "foo-1.0-1#-py3-none-any.whl",
        "foo-1.0 .tar.gz",
    ],
)
def test_filenames_with_punctuation_in_tags_are_refused(filename: str) -> None:
    with pytest.raises(InvalidUpload):
        dists.parse_filename(filename)


VERSION_RE = r"([1-9]!)?[0-9]{1,3}(\.[0-9]{1,3}){0,3}((a|b|rc)[0-9])?(\.post[0-9])?"


@fuzz(100)
@given(
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._]{0,20}[A-Za-z0-9])?", fullmatch=True),
    st.from_regex(VERSION_RE, fullmatch=True),
    st.booleans(),
)
def test_valid_filenames_round_trip(name: str, version: str, wheel: bool) -> None:
    # A wheel carries the escaped name (runs of -_. as one _): packaging refuses `a__b`.
    escaped = re.sub(r"[-_.]+", "_", name)
    filename = f"{escaped}-{version}-py3-none-any.whl" if wheel else f"{name}-{version}.tar.gz"
    parsed = dists.parse_filename(filename)
    assert parsed.normalized == canonicalize_name(name)
    assert parsed.version == Version(version)
    assert parsed.packagetype == (dists.WHEEL if wheel else dists.SDIST)


@fuzz(300)
@given(st.one_of(ODD_TEXT, st.from_regex(dists.NAME_RE, fullmatch=True)))
def test_validate_project_name_normalizes_or_refuses(name: str) -> None:
    normalized = attempt(dists.validate_project_name, name)
    if normalized is None:
        return
    assert normalized == canonicalize_name(name)
    assert dists.validate_project_name(normalized) == normalized
    assert normalized.isascii()


@fuzz(300)
@given(st.one_of(ODD_TEXT, st.from_regex(r"v?[0-9][0-9a-z.!+_-]{0,20}", fullmatch=True)))
def test_parse_version_parses_or_refuses(text: str) -> None:
    version = attempt(dists.parse_version, text)
    if version is None:
        return
    assert Version(str(version)) == version


# --- core metadata -------------------------------------------------------------------------


FIELD_NAMES = (
    "Metadata-Version",
    "Name",
    "Version",
    "Summary",
    "Requires-Python",
    "Requires-Dist",
    "Provides-Extra",
    "Classifier",
    "Project-URL",
    "License",
    "License-Expression",
    "License-File",
    "Dynamic",
    "Description",
    "Description-Content-Type",
    "Keywords",
    "Author-email",
    "Home-page",
    "Platform",
    "Supported-Platform",
    "Obsoletes-Dist",
    "Provides-Dist",
    "Import-Name",
)
FIELD_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "1.0",
            "2.1",
            "2.2",
            "2.4",
            "9.9",
            "foo",
            "requests>=2; extra == 'x'",
            "foo ; python_version<'3'",
            "Homepage, https://example.org",
            "=?utf-8?q?caf=C3=A9?=",
            "=?x-unknown?b?Zm9v?=",
            "=?utf-8?b?/w==?=",
            "MIT AND (Apache-2.0 OR BSD-2-Clause)",
            "text/markdown; charset=utf-8; variant=GFM",
            ">=3.8,<4",
            "Programming Language :: Python",
            "",
        ]
    ),
)


METADATA_NAMES = ("foo", "Foo", "f\u00f6o", "", "foo bar")


@st.composite
def metadata_bytes(draw: st.DrawFn) -> bytes:
    """METADATA built of known (and unknown) fields with odd values, in odd encodings."""
    lines = [
        f"Metadata-Version: {draw(st.sampled_from(['1.0', '1.2', '2.1', '2.2', '2.4', '3.0']))}",
        f"Name: {draw(st.sampled_from(METADATA_NAMES))}",
        f"Version: {draw(st.sampled_from(['1.0', '1.0.0', 'one', '']))}",
    ]
    extra = st.tuples(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12)), FIELD_VALUES)
    lines += [f"{key}: {value}" for key, value in draw(st.lists(extra, max_size=8))]
    text = "\n".join(draw(st.permutations(lines))) + "\n\n" + draw(st.text(max_size=40))
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


def check_metadata(result: dists.CoreMetadata, raw: bytes) -> None:
    """What the upload pipeline then does with a parsed METADATA must work."""
    assert result.raw == raw
    assert isinstance(result.version, Version)
    assert canonicalize_name(result.name)
    json.dumps(result.fields)
    Version(result.metadata_version)
    dists.advertises_metadata(SDIST_DIST, result)


@fuzz(400)
@given(
    st.one_of(
        st.binary(max_size=400),
        mutated(FOO.metadata(), most=6),
        metadata_bytes(),
        metadata_bytes().flatmap(lambda raw: mutated(raw, most=3)),
    )
)
@example(FOO.metadata())
def test_parse_metadata_returns_metadata_or_refuses(raw: bytes) -> None:
    result = attempt(dists.parse_metadata, raw)
    if result is not None:
        check_metadata(result, raw)


# --- archives: read_core_metadata ----------------------------------------------------------


def read_metadata_bounded(path: Path, dist: dists.DistFilename) -> dists.CoreMetadata | None:
    start = time.monotonic()
    result = attempt(dists.read_core_metadata, path, dist, CAP)
    event("metadata read" if result is not None else "refused")
    assert time.monotonic() - start < ARCHIVE_TIME_LIMIT
    if result is not None:
        assert canonicalize_name(result.name) == dist.normalized
        assert result.version == dist.version
        check_metadata(result, result.raw)
    return result


def wheel_variants() -> st.SearchStrategy[bytes]:
    deflated, stored = wheel_deflated(), wheel_stored()
    return st.one_of(
        mutated(deflated, zip_points(deflated)),
        mutated(stored, zip_points(stored)),
    )


MEMBER_NAMES = st.one_of(
    st.sampled_from(
        [
            "foo-1.0.dist-info/METADATA",
            "foo-1.0.dist-info/WHEEL",
            "foo-1.0.dist-info/RECORD",
            "Foo-1.0.dist-info/METADATA",
            "foo-2.0.dist-info/METADATA",
            "foo-1.0.dist-info/",
            "foo-1.0.dist-info/../METADATA",
            "/foo-1.0.dist-info/METADATA",
            "foo-1.0.dist-info\\METADATA",
            "foo/__init__.py",
            "foo-1.0/PKG-INFO",
            "foo-1.0/",
            "./foo-1.0/PKG-INFO",
            "bar-1.0/PKG-INFO",
        ]
    ),
    st.text(min_size=1, max_size=30),
)


@st.composite
def member_lists(draw: st.DrawFn, base: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """`base` with members dropped, renamed, duplicated or added, METADATA mutated."""
    items = list(base.items())
    items = [
        (
            name,
            draw(st.one_of(st.just(data), mutated(data, most=3))) if draw(st.booleans()) else data,
        )
        for name, data in items
        if draw(st.integers(0, 9)) > 0
    ]
    items += draw(st.lists(st.tuples(MEMBER_NAMES, st.binary(max_size=64)), max_size=3))
    return draw(st.permutations(items))


@fuzz(300)
@given(data=wheel_variants())
@example(data=wheel_deflated())
def test_read_core_metadata_on_mutated_wheels(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / FOO.wheel_name
    path.write_bytes(data)
    read_metadata_bounded(path, WHEEL_DIST)


@fuzz(150)
@given(
    members=member_lists(wheel_members(FOO)),
    method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
)
def test_read_core_metadata_on_odd_wheel_members(
    tmp_path: Path, members: list[tuple[str, bytes]], method: int
) -> None:
    path = tmp_path / FOO.wheel_name
    try:
        path.write_bytes(zip_bytes(members, method))
    except (ValueError, UnicodeEncodeError):
        return  # zipfile will not write such a name (a NUL, a surrogate)
    read_metadata_bounded(path, WHEEL_DIST)


@fuzz(250)
@given(
    data=st.one_of(
        mutated(sdist_gz(), (0, 3, 9, len(sdist_gz()) - 8)),
        mutated(sdist_tar(), tar_points(sdist_tar())).map(gz),
        mutated(sdist_tar(), tar_points(sdist_tar())).map(fix_tar_checksums).map(gz),
        member_lists(sdist_members(FOO)).map(tar_bytes).map(gz),
    )
)
@example(data=sdist_gz())
def test_read_core_metadata_on_mutated_sdists(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / FOO.sdist_name
    path.write_bytes(data)
    read_metadata_bounded(path, SDIST_DIST)


# --- the upload form through the test client -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    value: bytes
    filename: str | None = None
    rfc2231: bool = False  # send the filename as `filename*=UTF-8''...`, `%` left as is


def encode_multipart(parts: list[Part], boundary: str) -> bytes:
    chunks = []
    for part in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{part.name}"'
        if part.filename is not None:
            if part.rfc2231:
                head += f"; filename*=UTF-8''{quote(part.filename, safe='%')}"
            else:
                head += f'; filename="{part.filename}"'
            head += "\r\nContent-Type: application/octet-stream"
        value = head.encode("utf-8", "surrogatepass") + b"\r\n\r\n" + part.value + b"\r\n"
        chunks.append(value)
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


FIELD_TEXT = st.one_of(ODD_TEXT, st.text(max_size=5), st.integers(17_000, 20_000).map("x".__mul__))


# rarely() and mostly() weight the request generator of benchmarks/fuzz_requests.py.
def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws (hypothesis favours the ends of a range: avoid them)."""
    return draw(st.integers(0, one_in - 1)) == one_in // 2


def mostly(good: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` about four times in five, else something from `other`."""
    return st.one_of(st.just(good), st.just(good), st.just(good), st.just(good), other)


ACTIONS = st.one_of(st.sampled_from(["submit", "", "FILE_UPLOAD", "file_upload "]), ODD_TEXT)
PROTOCOLS = st.one_of(st.sampled_from(["", "2", " 1"]), ODD_TEXT)
FORM_NAMES = st.one_of(st.sampled_from(["Foo", "FOO", "f.o.o", "foo-bar", ""]), ODD_TEXT)
FORM_VERSIONS = st.one_of(st.sampled_from(["1.0.0", "1", "v1.0", "1.0a1", "1.0 ", ""]), ODD_TEXT)
FILETYPES = st.one_of(st.sampled_from(["", "bdist_egg", "source"]), ODD_TEXT)
UPLOAD_URLS = ("/legacy/", "/main/", "/main/legacy", "/nope/")
OTHER_FILES = st.one_of(
    st.sampled_from([b"", b"PK\x05\x06" + bytes(18), b"\x1f\x8b"]),
    st.binary(max_size=200),
    st.integers(60_000, 70_000).map(noise),
)


def broken_files(wheel: bool) -> st.SearchStrategy[bytes]:
    """Files that are not a good foo 1.0 of their kind: mutated, junk, the other kind."""
    if wheel:
        return st.one_of(wheel_variants(), OTHER_FILES, st.just(sdist_gz()))
    tar = sdist_tar()
    return st.one_of(
        mutated(sdist_gz(), (0, 3, 9)),
        mutated(tar, tar_points(tar)).map(fix_tar_checksums).map(gz),
        OTHER_FILES,
        st.just(wheel_deflated()),
    )


def other_foo(wheel: bool, tag: int) -> bytes:
    """A good foo 1.0 with other bytes: a 409 once the first one is stored."""
    dist = dataclasses.replace(FOO, description=f"Another build ({tag})")
    if wheel:
        return zip_bytes(wheel_members(dist), zipfile.ZIP_DEFLATED)
    return gz(tar_bytes(sdist_members(dist)))


@dataclasses.dataclass(frozen=True)
class UploadRequest:
    url: str
    auth: str
    body: bytes
    content_type: str
    content_length: str | None


HASHERS: dict[str, Callable[[bytes], Any]] = {
    "sha256_digest": hashlib.sha256,
    "blake2_256_digest": lambda data: hashlib.blake2b(data, digest_size=32),
    "md5_digest": lambda data: hashlib.md5(data, usedforsecurity=False),
}
# What can go wrong in an upload; each example breaks a few of these and keeps the rest as
# twine sends them, so that every check of the pipeline is reached, not only the first.
ASPECTS = (
    "action",
    "protocol",
    "name",
    "version",
    "filetype",
    "description",
    "digests",
    "filename",
    "file",
    "other-content",
    "missing-part",
    "extra-parts",
    "order",
    "framing",
    "content-type",
    "content-length",
    "auth",
    "url",
)


@st.composite
def upload_requests(draw: st.DrawFn) -> UploadRequest:
    """What twine sends for foo 1.0, with up to three aspects of it gone wrong."""
    broken = draw(st.sets(st.sampled_from(ASPECTS), max_size=3))
    wheel = draw(st.booleans())
    data = wheel_deflated() if wheel else sdist_gz()
    if "file" in broken:
        data = draw(broken_files(wheel))
    if "other-content" in broken:
        data = other_foo(wheel, draw(st.integers(0, 3)))
    filename = draw(FILENAMES) if "filename" in broken else good_filename(wheel)
    fields = {
        ":action": draw(ACTIONS) if "action" in broken else "file_upload",
        "protocol_version": draw(PROTOCOLS) if "protocol" in broken else "1",
        "name": draw(FORM_NAMES) if "name" in broken else "foo",
        "version": draw(FORM_VERSIONS) if "version" in broken else "1.0",
        "filetype": draw(FILETYPES) if "filetype" in broken else good_filetype(wheel),
        "metadata_version": "2.1",
        "description": draw(FIELD_TEXT) if "description" in broken else "A description",
    }
    for field, hasher in HASHERS.items():
        correct = hasher(data).hexdigest()
        odd = st.sampled_from([None, correct.upper(), f"  {correct}\n", "0" * 64, "\u0660" * 64])
        fields[field] = draw(st.one_of(odd, ODD_TEXT)) if "digests" in broken else correct
    parts = [
        Part(key, value.encode("utf-8", "surrogatepass"))
        for key, value in fields.items()
        if value is not None
    ]
    parts.append(Part("content", data, filename, draw(st.booleans())))
    if "missing-part" in broken:
        del parts[draw(st.integers(0, len(parts) - 1))]
    if "extra-parts" in broken:
        extra = st.tuples(st.sampled_from([*fields, "content", "x"]), FIELD_TEXT)
        parts += [Part(k, v.encode()) for k, v in draw(st.lists(extra, min_size=1, max_size=3))]
    if "order" in broken:
        parts = draw(st.permutations(parts))
    boundary = draw(st.sampled_from(["fuzz-boundary-7f3a9c", "a", "x" * 69]))
    body = encode_multipart(parts, boundary)
    if "framing" in broken:
        body = draw(mutated(body, (0, len(body) - len(boundary) - 8)))
    content_type = f"multipart/form-data; boundary={boundary}"
    if "content-type" in broken:
        content_type = draw(
            st.sampled_from(
                [
                    f'multipart/form-data; boundary="{boundary}"',
                    "multipart/form-data",
                    "application/x-www-form-urlencoded",
                    f"multipart/mixed; boundary={boundary}",
                ]
            )
        )
    lengths = st.sampled_from(["0", "1", "-1", "abc", str(len(body) + 10), " 5"])
    return UploadRequest(
        url=draw(st.sampled_from(UPLOAD_URLS)) if "url" in broken else "/",
        auth=draw(st.sampled_from(["read", "scoped", "none"])) if "auth" in broken else "admin",
        body=body,
        content_type=content_type,
        content_length=draw(lengths) if "content-length" in broken else None,
    )


def good_filename(wheel: bool) -> str:
    return FOO.wheel_name if wheel else FOO.sdist_name


def good_filetype(wheel: bool) -> str:
    return dists.WHEEL if wheel else dists.SDIST


def token_header(secret: str) -> dict[str, str]:
    value = base64.b64encode(f"__token__:{secret}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


@pytest.fixture
def small_settings(tmp_path: Path) -> Settings:
    """Small limits, so random files and fields reach the 413s too."""
    return Settings(
        data=tmp_path / "data",
        password_hash=FAST_HASH,
        max_upload_size=64 * 1024,
        max_metadata_size=16 * 1024,
    )


@pytest.fixture
def small_app(small_settings: Settings) -> Iterator[Flask]:
    """The app, with its database active for the test's own calls (accounts, snapshot)."""
    app = create_app(small_settings)
    database = app.extensions["minirepo"].folder.database
    with database.activated():
        yield app
    database.close()


@pytest.fixture
def auth_headers(small_app: Flask) -> dict[str, dict[str, str]]:
    accounts.add_user("root", "root-password-1", method=FAST_HASH, admin=True)
    accounts.add_user("alice", "alice-password-1", method=FAST_HASH)
    return {
        "admin": token_header(accounts.create_token("root", permission="admin").secret),
        "read": token_header(accounts.create_token("alice", permission="read").secret),
        "scoped": token_header(accounts.create_token("alice", projects=("other",)).secret),
        "none": {},
    }


def check_answer(status: str, code: int, body: bytes) -> None:
    """One of the upload statuses, and a one-line ASCII reason that is also the body."""
    assert code in UPLOAD_STATUSES, (status, body[:300])
    phrase = status.partition(" ")[2]
    assert phrase.isascii()
    assert "\r" not in phrase
    assert "\n" not in phrase
    if code != 200:
        assert body == (phrase + "\n").encode()


@fuzz(200)
@given(request_=upload_requests())
def test_upload_form_answers_4xx_and_leaves_nothing(
    small_settings: Settings,
    small_app: Flask,
    auth_headers: dict[str, dict[str, str]],
    request_: UploadRequest,
) -> None:
    client: FlaskClient = small_app.test_client()
    before = snapshot(small_settings)
    overrides: dict[str, Any] = {}
    if request_.content_length is not None:
        overrides["CONTENT_LENGTH"] = request_.content_length
    response = client.post(
        request_.url,
        data=request_.body,
        content_type=request_.content_type,
        headers=auth_headers[request_.auth],
        environ_overrides=overrides,
    )
    with response:
        event(f"status {response.status_code}: {response.status[4:40]}")
        if request_.url == "/nope/":  # a missing repository: 401 anonymous, else 404
            expected = 401 if request_.auth == "none" else 404
            assert response.status_code == expected, response.status
        else:
            check_answer(response.status, response.status_code, response.get_data())
        after = snapshot(small_settings)
    assert not after.tmp
    if response.status_code != 200:
        assert after == before


# --- negotiation, conditional pages, Basic auth --------------------------------------------


HEADER_TEXT = st.one_of(
    st.text(max_size=60),
    st.text(st.characters(codec="latin-1"), max_size=60),
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "application/vnd.pypi.simple.v1+json",
                    "application/vnd.pypi.simple.v1+html",
                    "text/html",
                    "*/*",
                    "gzip",
                    "identity",
                    "W/",
                    '"x"',
                    "*",
                ]
            ),
            st.sampled_from(["", ";q=0", ";q=1", ";q=0.5", ";q=nan", ";q=1e999", ";q=", ";Q=-0"]),
        ).map("".join),
        max_size=4,
    ).map(", ".join),
)
PAGE = Page(body=b"<html></html>\n", gzipped=gzip.compress(b"<html></html>\n"), etag="abc123")


@fuzz(300)
@given(HEADER_TEXT, HEADER_TEXT, st.one_of(st.none(), HEADER_TEXT), st.booleans())
def test_negotiate_and_page_answer_never_raise(
    accept: str, encoding: str, if_none_match: str | None, public: bool
) -> None:
    kind = negotiate(accept)
    assert kind in (JSON_V1, HTML_V1, HTML)
    accepts_gzip(encoding)
    repo = RepoInfo(1, "main", "anonymous" if public else "authenticated", 1)
    status, headers, body = page_answer(PAGE, kind, repo, encoding, if_none_match)
    assert status in (200, 304)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers)
    assert (body == b"") == (status == 304)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


AUTH_HEADERS = st.one_of(
    st.text(max_size=60),
    st.text(st.characters(codec="latin-1"), max_size=60),  # what waitress hands the app
    st.text(st.characters(codec="latin-1"), max_size=30).map(lambda text: f"Basic {text}"),
    st.binary(max_size=40).map(lambda raw: f"Basic {b64(raw)}"),
    st.text(max_size=30).map(lambda text: f"Basic {b64(text.encode('utf-8', 'surrogatepass'))}"),
    st.sampled_from(["Basic", "Basic ", "basic Og==", "BASIC  Zm9vOmJhcg== ", "Bearer x"]),
)


@fuzz(400)
@given(AUTH_HEADERS)
@example("Basic \u00e9")  # a 500 until parse_basic caught ValueError (fuzz_requests found it)
def test_parse_basic_returns_or_refuses(header: str) -> None:
    parsed = attempt(auth.parse_basic, header, refusal=Unauthorized)
    if parsed is not None:
        user, password = parsed
        assert isinstance(user, str)
        assert password


@pytest.mark.parametrize("path", ["/", "/simple/", "/simple/foo/", "/files/foo/foo-1.0.tar.gz"])
def test_non_ascii_authorization_is_401_not_500(client: FlaskClient, path: str) -> None:
    response = client.get(path, headers={"Authorization": "Basic \u00e9"})
    assert response.status_code == 401
