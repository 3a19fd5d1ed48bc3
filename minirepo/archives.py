"""Reading untrusted zip and tar archives within bounds.

Checks an archive's structure and counts its members before the standard library builds
anything for them, caps the bytes inflated and read, and never extracts anything: an
upload is hostile until proven otherwise (zip bombs, polyglots, traversal, lying sizes, a
directory of 400 000 empty entries). Every refusal is an InvalidUpload with its reason;
`kind` ("wheel", "sdist") names the archive in it.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Protocol

from minirepo.errors import InvalidUpload

# A zip or tar whose members inflate past this size and ratio is treated as a bomb (warehouse).
BOMB_SIZE = 64 * 1024**2
BOMB_RATIO = 50
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
# What a too-many-members refusal names as the limit: an upload's setting by default.
_MEMBER_LIMIT = "the server's max_archive_members"
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


@contextlib.contextmanager
def open_zip(
    handle: IO[bytes],
    size: int,
    max_members: int,
    kind: str,
    filename: str,
    limit_name: str = _MEMBER_LIMIT,
) -> Iterator[zipfile.ZipFile]:
    """The zip in `handle` (`size` bytes), opened once its envelope, its member count and
    its members' names, sizes and layout have passed.

    Whatever zipfile raises on a corrupt or crafted archive, while opening it or while the
    caller reads from it in the `with` block, becomes an InvalidUpload naming `filename`.
    `limit_name` is what a refusal for `max_members` names as the limit.
    """
    try:
        _check_zip_envelope(handle, size, kind)
        _check_central_directory(handle, size, max_members, kind, limit_name)
        with zipfile.ZipFile(handle) as archive:
            _check_zip_members(archive.infolist(), size, kind)
            yield archive
    except _ZIP_ERRORS as exc:
        reason = str(exc) or "not a zip archive"
        raise InvalidUpload(f"Invalid {kind} {filename!r}: {reason}") from exc


def walk_tar_gz(
    handle: IO[bytes],
    size: int,
    max_members: int,
    kind: str,
    visit: Callable[[tarfile.TarFile, tarfile.TarInfo, str], None],
) -> None:
    """Call `visit(archive, member, name)` for each member of the gzip-compressed tar in
    `handle` (`size` bytes), `name` being the member's name without a leading "./".

    The archive is read once, as a stream: `visit` sees a member only after its name and
    type have passed, and may read it with `archive.extractfile(member)` then, never
    later. Whatever gzip or tarfile raise, here or in `visit`, becomes an InvalidUpload.
    """
    handle.seek(0)
    if handle.read(2) != b"\x1f\x8b":
        raise InvalidUpload(f"Invalid {kind}: a .tar.gz file must be gzip-compressed")
    handle.seek(0)
    limit = max(BOMB_SIZE, BOMB_RATIO * size)
    try:
        with gzip.GzipFile(fileobj=handle, mode="rb") as inflated:
            capped = _CappedReader(inflated, limit, kind)
            with tarfile.open(fileobj=capped, mode="r|") as archive:  # type: ignore[call-overload]
                members = 0
                while (member := archive.next()) is not None:
                    # A stream-mode tarfile keeps every TarInfo it reads (400 000 of them
                    # took 170 MiB); nothing here looks back, so it keeps none.
                    archive.members.clear()
                    members += 1
                    if members > max_members:
                        raise _too_many_members(kind, max_members)
                    visit(archive, member, _checked_tar_name(member, kind))
            # Read the gzip stream to its end: a zip (or anything) hidden after the tar's
            # end-of-archive or after the gzip stream makes the file a polyglot.
            while capped.read(_CHUNK):
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise InvalidUpload(f"Invalid {kind}: not a valid gzip-compressed tar ({exc})") from exc


def read_capped(handle: IO[bytes], cap: int, what: str) -> bytes:
    """All of a member, refused once it passes `cap` bytes whatever its header declared."""
    data = handle.read(cap + 1)
    if len(data) > cap:
        raise InvalidUpload(f"{what} is larger than the server accepts ({cap} bytes)")
    return data


def _too_many_members(
    kind: str, max_members: int, limit_name: str = _MEMBER_LIMIT
) -> InvalidUpload:
    return InvalidUpload(f"Invalid {kind}: it has more than {max_members} members ({limit_name})")


def _check_zip_envelope(handle: IO[bytes], size: int, kind: str) -> None:
    """A wheel is a zip from its first byte to its last: no polyglot, prefix or trailer.

    Data before the first member or after the end record (a zip comment included) is how
    one file reads as two different archives to two different tools.
    """
    handle.seek(0)
    head = handle.read(len(_ZIP_LOCAL_HEADER))
    handle.seek(max(size - _ZIP_END_SIZE, 0))
    tail = handle.read(_ZIP_END_SIZE)
    if head != _ZIP_LOCAL_HEADER:
        raise InvalidUpload(f"Invalid {kind}: not a zip archive (or data before its first member)")
    if len(tail) != _ZIP_END_SIZE or not tail.startswith(_ZIP_END) or tail[-2:] != b"\0\0":
        raise InvalidUpload(f"Invalid {kind}: data after the zip archive (or a zip comment)")


def _check_central_directory(
    handle: IO[bytes], size: int, max_members: int, kind: str, limit_name: str
) -> None:
    """Count the members before zipfile builds a ZipInfo for each (400 000 took 221 MiB).

    The end record's entry count is the uploader's word and zipfile ignores it: it reads
    the directory's declared size in one go, then walks it. So the size is bounded first,
    then the entries are counted the way zipfile will walk them, reading only headers.
    """
    start, length, claimed = _central_directory_extent(handle, size, kind)
    if claimed > max_members:
        raise _too_many_members(kind, max_members, limit_name)
    budget = max_members * _CENTRAL_BYTES_PER_MEMBER
    if length > budget:
        raise InvalidUpload(
            f"Invalid {kind}: its central directory ({length} bytes) is larger than "
            f"{max_members} members need ({budget} bytes; {limit_name})"
        )
    if start < 0:
        raise InvalidUpload(f"Invalid {kind}: the central directory is larger than the file")
    handle.seek(start)
    walked = members = 0
    while walked < length:
        entry = handle.read(_ZIP_CENTRAL_ENTRY.size)
        if len(entry) != _ZIP_CENTRAL_ENTRY.size or not entry.startswith(b"PK\x01\x02"):
            raise InvalidUpload(f"Invalid {kind}: a central directory entry is damaged")
        members += 1
        if members > max_members:
            raise _too_many_members(kind, max_members, limit_name)
        _signature, *lengths = _ZIP_CENTRAL_ENTRY.unpack(entry)
        handle.seek(sum(lengths), os.SEEK_CUR)
        walked += _ZIP_CENTRAL_ENTRY.size + sum(lengths)


def _central_directory_extent(handle: IO[bytes], size: int, kind: str) -> tuple[int, int, int]:
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
            raise InvalidUpload(f"Invalid {kind}: inconsistent zip64 end records")
        fields64 = _ZIP64_END_RECORD.unpack(record)
        claimed, length, end = fields64[7], fields64[8], record_at
    return end - length, length, claimed


def _check_zip_members(infos: list[zipfile.ZipInfo], archive_size: int, kind: str) -> None:
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise InvalidUpload(f"Invalid {kind}: the archive has duplicate entries")
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise InvalidUpload(f"Invalid {kind}: encrypted members are not accepted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InvalidUpload(f"Invalid {kind}: only stored and deflated members are accepted")
        if _unsafe_member_name(info.filename):
            raise InvalidUpload(f"Invalid {kind}: unsafe member name {info.filename!r}")
        total += info.file_size
    if total > BOMB_SIZE and total > BOMB_RATIO * max(archive_size, 1):
        raise InvalidUpload(f"Invalid {kind}: the archive inflates too much (zip bomb)")
    ordered = sorted(infos, key=lambda info: info.header_offset)
    for current, following in itertools.pairwise(ordered):
        end = current.header_offset + 30 + len(current.orig_filename) + current.compress_size
        if end > following.header_offset:
            raise InvalidUpload(f"Invalid {kind}: overlapping archive members")


def _unsafe_member_name(name: str) -> bool:
    parts = name.split("/")
    return name.startswith("/") or "\\" in name or ".." in parts or "\x00" in name


def _checked_tar_name(member: tarfile.TarInfo, kind: str) -> str:
    """The member's name without "./", once the name and the member's type are safe."""
    name = member.name.removeprefix("./")
    if _unsafe_member_name(name):
        raise InvalidUpload(f"Invalid {kind}: unsafe member name {member.name!r}")
    if member.issparse():
        raise InvalidUpload(f"Invalid {kind}: sparse members are not accepted")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise InvalidUpload(f"Invalid {kind}: special member {member.name!r}")
    return name


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CappedReader:
    """Refuses to inflate more than `limit` bytes, bounding tar and gzip bombs."""

    def __init__(self, inner: _Readable, limit: int, kind: str) -> None:
        self.inner = inner
        self.limit = limit
        self.kind = kind
        self.seen = 0

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size if size >= 0 else _CHUNK)
        self.seen += len(data)
        if self.seen > self.limit:
            raise InvalidUpload(f"Invalid {self.kind}: the archive inflates too much (tar bomb)")
        return data
