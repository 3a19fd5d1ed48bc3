"""Distribution filenames and core metadata of wheels and sdists.

Reads one member of an archive with byte and member-count caps and never extracts
anything: an upload is hostile until proven otherwise (zip bombs, polyglots, traversal,
lying sizes, a directory of 400 000 empty entries).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import os
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

from minirepo.config import Settings
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
# The end record, the zip64 end locator and record, and a central directory entry (its
# signature and the lengths of what follows it) as APPNOTE.TXT lays them out.
_ZIP_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
_ZIP_CENTRAL_ENTRY = struct.Struct("<4s24x3H12x")
# Central directory bytes allowed per member before zipfile reads them all at once: the
# 46-byte entry and a long path. Real wheels average far less (about 100 bytes).
_CENTRAL_BYTES_PER_MEMBER = _ZIP_CENTRAL_ENTRY.size + 256
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


def read_core_metadata(
    path: Path,
    dist: DistFilename,
    cap: int,
    *,
    max_members: int = Settings.max_archive_members,
) -> CoreMetadata:
    """Read and check the METADATA (wheel) or PKG-INFO (sdist) inside an uploaded file.

    `max_members` bounds the entries walked, and with them the memory and time one check
    costs (a thread's CPU time can't be capped). The file is opened once, here: an
    OSError from that (out of file descriptors) is the server's problem, not the upload's,
    and is left to the caller.
    """
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(512)
        if len(head) >= 262 and head[257:262] == b"ustar" and dist.packagetype == WHEEL:
            raise InvalidUpload("Invalid wheel: the file is also a tar archive")
        if dist.packagetype == WHEEL:
            raw = _wheel_metadata(handle, size, dist, cap, max_members)
        else:
            raw = _sdist_metadata(handle, size, cap, max_members)
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


def _too_many_members(kind: str, max_members: int) -> InvalidUpload:
    return InvalidUpload(
        f"Invalid {kind}: it has more than {max_members} members (the server's max_archive_members)"
    )


def _wheel_metadata(
    handle: IO[bytes], size: int, dist: DistFilename, cap: int, max_members: int
) -> bytes:
    try:
        _check_zip_envelope(handle, size)
        _check_central_directory(handle, size, max_members)
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
            _check_zip_members(infos, size)
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


def _check_zip_envelope(handle: IO[bytes], size: int) -> None:
    """A wheel is a zip from its first byte to its last: no polyglot, prefix or trailer.

    Data before the first member or after the end record (a zip comment included) is how
    one file reads as two different archives to two different tools.
    """
    handle.seek(0)
    head = handle.read(len(_ZIP_LOCAL_HEADER))
    handle.seek(max(size - _ZIP_END_SIZE, 0))
    tail = handle.read(_ZIP_END_SIZE)
    if head != _ZIP_LOCAL_HEADER:
        raise InvalidUpload("Invalid wheel: not a zip archive (or data before its first member)")
    if len(tail) != _ZIP_END_SIZE or not tail.startswith(_ZIP_END) or tail[-2:] != b"\0\0":
        raise InvalidUpload("Invalid wheel: data after the zip archive (or a zip comment)")


def _check_central_directory(handle: IO[bytes], size: int, max_members: int) -> None:
    """Count the members before zipfile builds a ZipInfo for each (400 000 took 221 MiB).

    The end record's entry count is the uploader's word and zipfile ignores it: it reads
    the directory's declared size in one go, then walks it. So the size is bounded first,
    then the entries are counted the way zipfile will walk them, reading only headers.
    """
    start, length, claimed = _central_directory_extent(handle, size)
    if claimed > max_members:
        raise _too_many_members("wheel", max_members)
    budget = max_members * _CENTRAL_BYTES_PER_MEMBER
    if length > budget:
        raise InvalidUpload(
            f"Invalid wheel: its central directory ({length} bytes) is larger than "
            f"{max_members} members need ({budget} bytes; the server's max_archive_members)"
        )
    if start < 0:
        raise InvalidUpload("Invalid wheel: the central directory is larger than the file")
    handle.seek(start)
    walked = members = 0
    while walked < length:
        entry = handle.read(_ZIP_CENTRAL_ENTRY.size)
        if len(entry) != _ZIP_CENTRAL_ENTRY.size or not entry.startswith(b"PK\x01\x02"):
            raise InvalidUpload("Invalid wheel: a central directory entry is damaged")
        members += 1
        if members > max_members:
            raise _too_many_members("wheel", max_members)
        _signature, *lengths = _ZIP_CENTRAL_ENTRY.unpack(entry)
        handle.seek(sum(lengths), os.SEEK_CUR)
        walked += _ZIP_CENTRAL_ENTRY.size + sum(lengths)


def _central_directory_extent(handle: IO[bytes], size: int) -> tuple[int, int, int]:
    """(start, length, claimed entries) of the central directory as zipfile finds it.

    zipfile reads `length` bytes ending where the end records begin, whatever the offset
    field says, and believes zip64 end records found right before the end record. Records
    another zipfile version could read differently (through the locator's offset, or
    with extensible data) are refused.
    """
    records = _ZIP64_END_RECORD.size + _ZIP64_LOCATOR.size + _ZIP_END_SIZE
    handle.seek(max(size - records, 0))
    tail = handle.read(records)
    fields = _ZIP_END_RECORD.unpack(tail[-_ZIP_END_SIZE:])
    claimed, length, end = fields[4], fields[5], size - _ZIP_END_SIZE
    locator = tail[-_ZIP_END_SIZE - _ZIP64_LOCATOR.size : -_ZIP_END_SIZE]
    if locator.startswith(b"PK\x06\x07"):
        record = tail[: -_ZIP_END_SIZE - _ZIP64_LOCATOR.size]
        record_at = end - len(locator) - _ZIP64_END_RECORD.size
        if (
            len(record) != _ZIP64_END_RECORD.size
            or not record.startswith(b"PK\x06\x06")
            or _ZIP64_LOCATOR.unpack(locator)[2] != record_at
            or _ZIP64_END_RECORD.unpack(record)[1] != _ZIP64_END_RECORD.size - 12
        ):
            raise InvalidUpload("Invalid wheel: inconsistent zip64 end records")
        fields64 = _ZIP64_END_RECORD.unpack(record)
        claimed, length, end = fields64[7], fields64[8], record_at
    return end - length, length, claimed


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


def _sdist_metadata(handle: IO[bytes], size: int, cap: int, max_members: int) -> bytes:
    handle.seek(0)
    if handle.read(2) != b"\x1f\x8b":
        raise InvalidUpload("Invalid sdist: a .tar.gz file must be gzip-compressed")
    handle.seek(0)
    limit = max(BOMB_SIZE, BOMB_RATIO * size)
    found: bytes | None = None
    tops: set[str] = set()
    try:
        with gzip.GzipFile(fileobj=handle, mode="rb") as inflated:
            capped = _CappedReader(inflated, limit)
            with tarfile.open(fileobj=capped, mode="r|") as archive:  # type: ignore[call-overload]
                members = 0
                while (member := archive.next()) is not None:
                    # A stream-mode tarfile keeps every TarInfo it reads (400 000 of them
                    # took 170 MiB); nothing here looks back, so it keeps none.
                    archive.members.clear()
                    members += 1
                    if members > max_members:
                        raise _too_many_members("sdist", max_members)
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
