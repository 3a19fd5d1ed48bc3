"""Distribution filenames and core metadata of wheels and sdists.

Reads one member of an archive with byte caps and never extracts anything: an upload is
hostile until proven otherwise (zip bombs, polyglots, traversal, lying sizes).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import re
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Protocol

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from minirepo.errors import InvalidUpload

NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII)
FILENAME_RE = re.compile(r"[A-Za-z0-9._+!-]+")
MAX_NAME_LENGTH = 200
MAX_FILENAME_BYTES = 255
MAX_VERSION_LENGTH = 100
# A zip or tar whose members inflate past this size and ratio is treated as a bomb (warehouse).
BOMB_SIZE = 64 * 1024**2
BOMB_RATIO = 50
WHEEL = "bdist_wheel"
SDIST = "sdist"
_CHUNK = 64 * 1024
_ZIP_LOCAL_HEADER = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
_ZIP_END_SIZE = 22
# What a corrupt or crafted zip makes `zipfile` raise besides BadZipFile: a negative seek
# (OSError), an undecodable UTF-8 name (ValueError), a short struct, an encrypted member.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OSError,
    struct.error,
)


@dataclasses.dataclass(frozen=True)
class DistFilename:
    filename: str
    normalized: str
    version: Version
    packagetype: str
    python_version: str


@dataclasses.dataclass(frozen=True)
class CoreMetadata:
    """The parsed metadata and the exact bytes it came from (served as `.metadata`)."""

    raw: bytes
    name: str
    version: Version
    metadata_version: str
    summary: str
    requires_python: str
    fields: dict[str, Any]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def validate_project_name(name: str) -> str:
    """The PEP 503 form of an ASCII project name; confusables and junk are refused."""
    if not name or len(name) > MAX_NAME_LENGTH or not NAME_RE.match(name):
        raise InvalidUpload(
            f"Invalid project name {name!r}: use ASCII letters, digits, '.', '_', '-'"
        )
    return canonicalize_name(name)


def parse_version(text: str, what: str = "version") -> Version:
    if not text or len(text) > MAX_VERSION_LENGTH:
        raise InvalidUpload(f"Invalid {what} {text[:MAX_VERSION_LENGTH]!r}: not a PEP 440 version")
    try:
        return Version(text)
    except InvalidVersion as exc:
        raise InvalidUpload(f"Invalid {what} {text!r}: not a PEP 440 version") from exc


def parse_filename(filename: str) -> DistFilename:
    """Validate a distribution filename; refuse rather than sanitize it:
    a name changed on the way in is a name the uploader never chose."""
    if not filename:
        raise InvalidUpload("The upload has no filename")
    if re.search(r"[\x00-\x1f\x7f/\\]", filename) or filename.startswith("."):
        raise InvalidUpload("Invalid filename: it contains a path or control characters")
    if len(filename.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise InvalidUpload("Invalid filename: it is too long")
    try:
        if filename.endswith(".whl"):
            name, version, _build, tags = parse_wheel_filename(filename)
            python_version = sorted({tag.interpreter for tag in tags})[0]
            packagetype = WHEEL
        elif filename.endswith(".tar.gz"):
            name, version = parse_sdist_filename(filename)
            python_version, packagetype = "source", SDIST
        else:
            raise InvalidUpload(f"Invalid filename {filename!r}: only .whl and .tar.gz accepted")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise InvalidUpload(f"Invalid distribution filename {filename!r}: {exc}") from exc
    validate_project_name(str(name))
    if len(str(version)) > MAX_VERSION_LENGTH:
        raise InvalidUpload(f"Invalid filename {filename!r}: the version is too long")
    # packaging checks neither the characters of tags nor whitespace around a version.
    if not FILENAME_RE.fullmatch(filename):
        raise InvalidUpload(
            f"Invalid filename {filename!r}: use only ASCII letters, digits and . _ + ! -"
        )
    return DistFilename(filename, str(name), version, packagetype, python_version)


def read_core_metadata(path: Path, dist: DistFilename, cap: int) -> CoreMetadata:
    """Read and check the METADATA (wheel) or PKG-INFO (sdist) inside an uploaded file."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if len(head) >= 262 and head[257:262] == b"ustar" and dist.packagetype == WHEEL:
        raise InvalidUpload("Invalid wheel: the file is also a tar archive")
    if dist.packagetype == WHEEL:
        raw = _wheel_metadata(path, dist, cap)
    else:
        raw = _sdist_metadata(path, cap)
    metadata = parse_metadata(raw)
    if canonicalize_name(metadata.name) != dist.normalized:
        raise InvalidUpload(
            f"Metadata name {metadata.name!r} does not match the filename {dist.filename!r}"
        )
    if metadata.version != dist.version:
        raise InvalidUpload(
            f"Metadata version {metadata.version} does not match the filename {dist.filename!r}"
        )
    return metadata


def parse_metadata(raw: bytes) -> CoreMetadata:
    # Imported on the first upload: with its requirement parser it is a tenth of start-up.
    from packaging.metadata import InvalidMetadata, Metadata

    try:
        parsed = Metadata.from_email(raw, validate=True)
    except (InvalidMetadata, ValueError) as exc:
        raise InvalidUpload(f"Invalid core metadata: {_metadata_problem(exc)}") from exc
    except Exception as exc:  # packaging raises its own ExceptionGroup on Python 3.10
        if type(exc).__name__ != "ExceptionGroup":
            raise
        raise InvalidUpload(f"Invalid core metadata: {_metadata_problem(exc)}") from exc
    fields = {
        key: _jsonable(getattr(parsed, key))
        for key in (
            "summary",
            "description_content_type",
            "keywords",
            "home_page",
            "download_url",
            "author",
            "author_email",
            "maintainer",
            "maintainer_email",
            "license",
            "license_expression",
            "classifiers",
            "requires_dist",
            "requires_python",
            "project_urls",
            "provides_extra",
            "platforms",
        )
    }
    return CoreMetadata(
        raw=raw,
        name=parsed.name,
        version=parsed.version,
        metadata_version=str(parsed.metadata_version),
        summary=(parsed.summary or "").strip(),
        requires_python=str(parsed.requires_python or ""),
        fields={key: value for key, value in fields.items() if value not in (None, [], {}, "")},
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, dict):
        return {str(key): str(item) for key, item in value.items()}
    return None if value is None else str(value)


def _metadata_problem(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)
    if inner:
        return "; ".join(str(item) for item in inner[:3])
    return str(exc)


def _read_capped(handle: IO[bytes], cap: int, what: str) -> bytes:
    data = handle.read(cap + 1)
    if len(data) > cap:
        raise InvalidUpload(f"{what} is larger than the server accepts ({cap} bytes)")
    return data


def _wheel_metadata(path: Path, dist: DistFilename, cap: int) -> bytes:
    try:
        _check_zip_envelope(path)
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_zip_members(infos, path.stat().st_size)
            dist_info = _dist_info_dir(infos, dist)
            names = {info.filename for info in infos}
            for required in ("METADATA", "WHEEL"):
                if f"{dist_info}/{required}" not in names:
                    raise InvalidUpload(f"Invalid wheel: {dist_info}/{required} is missing")
            info = archive.getinfo(f"{dist_info}/METADATA")
            if info.file_size > cap:
                raise InvalidUpload(f"METADATA is larger than the server accepts ({cap} bytes)")
            with archive.open(info) as member:
                return _read_capped(member, cap, "METADATA")
    except _ZIP_ERRORS as exc:
        reason = str(exc) or "not a zip archive"
        raise InvalidUpload(f"Invalid wheel {dist.filename!r}: {reason}") from exc


def _check_zip_envelope(path: Path) -> None:
    """A wheel is a zip from its first byte to its last: no polyglot, prefix or trailer.

    Data before the first member or after the end record (a zip comment included) is how
    one file reads as two different archives to two different tools.
    """
    with path.open("rb") as handle:
        head = handle.read(len(_ZIP_LOCAL_HEADER))
        size = handle.seek(0, 2)
        if size >= _ZIP_END_SIZE:
            handle.seek(size - _ZIP_END_SIZE)
        tail = handle.read(_ZIP_END_SIZE)
    if head != _ZIP_LOCAL_HEADER:
        raise InvalidUpload("Invalid wheel: not a zip archive (or data before its first member)")
    if len(tail) != _ZIP_END_SIZE or not tail.startswith(_ZIP_END) or tail[-2:] != b"\0\0":
        raise InvalidUpload("Invalid wheel: data after the zip archive (or a zip comment)")


def _check_zip_members(infos: list[zipfile.ZipInfo], archive_size: int) -> None:
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise InvalidUpload("Invalid wheel: the archive has duplicate entries")
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise InvalidUpload("Invalid wheel: encrypted members are not accepted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InvalidUpload("Invalid wheel: only stored and deflated members are accepted")
        if _unsafe_member_name(info.filename):
            raise InvalidUpload(f"Invalid wheel: unsafe member name {info.filename!r}")
        total += info.file_size
    if total > BOMB_SIZE and total > BOMB_RATIO * max(archive_size, 1):
        raise InvalidUpload("Invalid wheel: the archive inflates too much (zip bomb)")
    ordered = sorted(infos, key=lambda info: info.header_offset)
    for current, following in itertools.pairwise(ordered):
        end = current.header_offset + 30 + len(current.orig_filename) + current.compress_size
        if end > following.header_offset:
            raise InvalidUpload("Invalid wheel: overlapping archive members")


def _unsafe_member_name(name: str) -> bool:
    parts = name.split("/")
    return name.startswith("/") or "\\" in name or ".." in parts or "\x00" in name


def _dist_info_dir(infos: list[zipfile.ZipInfo], dist: DistFilename) -> str:
    """The one top-level `<name>-<version>.dist-info` folder, named as the file is (pip)."""
    candidates = {
        info.filename.split("/")[0]
        for info in infos
        if "/" in info.filename and info.filename.split("/")[0].endswith(".dist-info")
    }
    if len(candidates) != 1:
        raise InvalidUpload(
            f"Invalid wheel: expected exactly one .dist-info directory, found {len(candidates)}"
        )
    dist_info = candidates.pop()
    name, _, version = dist_info.removesuffix(".dist-info").rpartition("-")
    try:
        matches = canonicalize_name(name) == dist.normalized and Version(version) == dist.version
    except InvalidVersion:
        matches = False
    if not matches:
        raise InvalidUpload(f"Invalid wheel: {dist_info!r} does not match the filename")
    return dist_info


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CappedReader:
    """Refuses to inflate more than `limit` bytes, bounding tar and gzip bombs."""

    def __init__(self, inner: _Readable, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.seen = 0

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size if size >= 0 else _CHUNK)
        self.seen += len(data)
        if self.seen > self.limit:
            raise InvalidUpload("Invalid sdist: the archive inflates too much (tar bomb)")
        return data


def _sdist_metadata(path: Path, cap: int) -> bytes:
    with path.open("rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            raise InvalidUpload("Invalid sdist: a .tar.gz file must be gzip-compressed")
    limit = max(BOMB_SIZE, BOMB_RATIO * path.stat().st_size)
    found: bytes | None = None
    tops: set[str] = set()
    try:
        with gzip.open(path, "rb") as inflated:
            capped = _CappedReader(inflated, limit)
            with tarfile.open(fileobj=capped, mode="r|") as archive:  # type: ignore[call-overload]
                for member in archive:
                    found = _check_tar_member(archive, member, tops, found, cap)
            # Read the gzip stream to its end: a zip (or anything) hidden after the tar's
            # end-of-archive or after the gzip stream makes the file a polyglot.
            while capped.read(_CHUNK):
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise InvalidUpload(f"Invalid sdist: not a valid gzip-compressed tar ({exc})") from exc
    if len(tops) != 1:
        raise InvalidUpload("Invalid sdist: expected exactly one top-level directory")
    if found is None:
        raise InvalidUpload("Invalid sdist: PKG-INFO is missing from the top-level directory")
    return found


def _check_tar_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, tops: set[str], found: bytes | None, cap: int
) -> bytes | None:
    name = member.name.removeprefix("./")
    if _unsafe_member_name(name):
        raise InvalidUpload(f"Invalid sdist: unsafe member name {member.name!r}")
    if member.issparse():
        raise InvalidUpload("Invalid sdist: sparse members are not accepted")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise InvalidUpload(f"Invalid sdist: special member {member.name!r}")
    parts = [part for part in name.split("/") if part]
    if parts:
        tops.add(parts[0])
    if len(parts) == 2 and parts[1] == "PKG-INFO":
        if not member.isfile():
            raise InvalidUpload("Invalid sdist: PKG-INFO is not a regular file")
        if found is not None:
            raise InvalidUpload("Invalid sdist: the archive has more than one PKG-INFO")
        if member.size > cap:
            raise InvalidUpload(f"PKG-INFO is larger than the server accepts ({cap} bytes)")
        handle = archive.extractfile(member)
        if handle is None:
            raise InvalidUpload("Invalid sdist: PKG-INFO cannot be read")
        return _read_capped(handle, cap, "PKG-INFO")
    return found


def advertises_metadata(dist: DistFilename, metadata: CoreMetadata) -> bool:
    """Sdist metadata is trustworthy (PEP 643) only from Metadata-Version 2.2 on."""
    if dist.packagetype == WHEEL:
        return True
    return Version(metadata.metadata_version) >= Version("2.2")
