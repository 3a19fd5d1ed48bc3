"""Distribution filenames and core metadata of wheels and sdists.

Where a wheel's METADATA and an sdist's PKG-INFO live, and what makes a name, a version,
a filename and its metadata valid. The archives themselves are hostile until proven
otherwise; `archives` reads them within bounds and never extracts anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tarfile
import zipfile
from pathlib import Path
from typing import IO, Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from minirepo import archives
from minirepo.config import Settings
from minirepo.errors import InvalidUpload

NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII)
FILENAME_RE = re.compile(r"[A-Za-z0-9._+!-]+")
MAX_NAME_LENGTH = 200
MAX_FILENAME_BYTES = 255
MAX_VERSION_LENGTH = 100
WHEEL = "bdist_wheel"
SDIST = "sdist"
# The core metadata fields `parse_metadata` keeps in `CoreMetadata.fields` (stored as
# `Release.metadata_json`), by packaging's names, which are also PyPI's JSON API names;
# empty ones are left out.
METADATA_FIELDS = (
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
        return read_core_metadata_from(handle, dist, cap, max_members=max_members)


def read_core_metadata_from(
    handle: IO[bytes],
    dist: DistFilename,
    cap: int,
    *,
    max_members: int = Settings.max_archive_members,
) -> CoreMetadata:
    """`read_core_metadata` from an open, seekable file (a stored blob, `services.readme`)."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
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
        parsed = Metadata.from_email(_without_early_license_files(raw), validate=True)
    except (InvalidMetadata, ValueError) as exc:
        raise InvalidUpload(f"Invalid core metadata: {_metadata_problem(exc)}") from exc
    except Exception as exc:  # packaging raises its own ExceptionGroup on Python 3.10
        if type(exc).__name__ != "ExceptionGroup":
            raise
        raise InvalidUpload(f"Invalid core metadata: {_metadata_problem(exc)}") from exc
    fields = {key: _jsonable(getattr(parsed, key)) for key in METADATA_FIELDS}
    return CoreMetadata(
        raw=raw,
        name=parsed.name,
        version=parsed.version,
        metadata_version=str(parsed.metadata_version),
        summary=(parsed.summary or "").strip(),
        requires_python=str(parsed.requires_python or ""),
        fields={key: value for key, value in fields.items() if value not in (None, [], {}, "")},
    )


def _without_early_license_files(raw: bytes) -> bytes:
    """setuptools and hatchling wrote `License-File` before metadata 2.4 defined it, and
    PyPI took those files: so do we, reading such metadata without that field (it is
    served as uploaded, `.metadata` included)."""
    if b"License-File:" not in raw and b"license-file:" not in raw.lower():
        return raw
    head, separator, body = raw.partition(b"\n\n")
    lines = head.split(b"\n")
    version = next(
        (
            line.split(b":", 1)[1].strip()
            for line in lines
            if line.lower().startswith(b"metadata-version:")
        ),
        b"",
    )
    if version not in (b"1.0", b"1.1", b"1.2", b"2.0", b"2.1", b"2.2", b"2.3"):
        return raw
    kept = [line for line in lines if not line.lower().startswith(b"license-file:")]
    return b"\n".join(kept) + separator + body


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


def _wheel_metadata(
    handle: IO[bytes], size: int, dist: DistFilename, cap: int, max_members: int
) -> bytes:
    with archives.open_zip(handle, size, max_members, "wheel", dist.filename) as archive:
        infos = archive.infolist()
        dist_info = _dist_info_dir(infos, dist)
        names = {info.filename for info in infos}
        for required in ("METADATA", "WHEEL"):
            if f"{dist_info}/{required}" not in names:
                raise InvalidUpload(f"Invalid wheel: {dist_info}/{required} is missing")
        info = archive.getinfo(f"{dist_info}/METADATA")
        if info.file_size > cap:
            raise InvalidUpload(f"METADATA is larger than the server accepts ({cap} bytes)")
        with archive.open(info) as member:
            return archives.read_capped(member, cap, "METADATA")


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


def _sdist_metadata(handle: IO[bytes], size: int, cap: int, max_members: int) -> bytes:
    tops: set[str] = set()
    found: bytes | None = None

    def visit(archive: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
        nonlocal found
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
            stream = archive.extractfile(member)
            if stream is None:
                raise InvalidUpload("Invalid sdist: PKG-INFO cannot be read")
            found = archives.read_capped(stream, cap, "PKG-INFO")

    archives.walk_tar_gz(handle, size, max_members, "sdist", visit)
    if len(tops) != 1:
        raise InvalidUpload("Invalid sdist: expected exactly one top-level directory")
    if found is None:
        raise InvalidUpload("Invalid sdist: PKG-INFO is missing from the top-level directory")
    return found


def advertises_metadata(dist: DistFilename, metadata: CoreMetadata) -> bool:
    """Sdist metadata is trustworthy (PEP 643) only from Metadata-Version 2.2 on."""
    if dist.packagetype == WHEEL:
        return True
    return Version(metadata.metadata_version) >= Version("2.2")
