"""Filenames, names, metadata and hostile archives, checked without a server.

The archive builders here (`HOSTILE_WHEELS`, `HOSTILE_SDISTS`) are also posted through the
upload endpoint by test_upload_validation.py.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.version import Version

from minirepo import archives, dists
from minirepo.errors import InvalidUpload
from tests.helpers.distfactory import Dist, sdist_members, wheel_members, write_tar_gz, write_zip

FOO = Dist("foo", "1.0")
INFO = "foo-1.0.dist-info"
TOP = "foo-1.0"
WHEEL_NAME = FOO.wheel_name
SDIST_NAME = FOO.sdist_name
CAP = 64 * 1024
MiB = 1024**2
# Big enough to trip the bomb checks with the real constants (64 MiB and ratio 50).
BOMB_BYTES = 256 * MiB


def noise(size: int) -> bytes:
    """Deterministic bytes that do not compress."""
    return hashlib.shake_256(b"minirepo").digest(size)


# --- a raw zip writer, for archives zipfile refuses to write -------------------------------


@dataclasses.dataclass
class RawMember:
    """One zip entry exactly as stored: `data` is already compressed."""

    name: bytes
    data: bytes
    size: int
    crc: int
    method: int = zipfile.ZIP_STORED
    flags: int = 0
    declared_size: int | None = None  # a lie about `size`, written in both headers
    central_at: int | None = None  # point the central entry at another member's header


def stored(name: str, data: bytes) -> RawMember:
    return RawMember(name.encode(), data, len(data), zlib.crc32(data))


def deflated(name: str, data: bytes) -> RawMember:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = packer.compress(data) + packer.flush()
    return RawMember(name.encode(), packed, len(data), zlib.crc32(data), zipfile.ZIP_DEFLATED)


def zeros_stream(prefix: bytes, zeros: int) -> tuple[bytes, int]:
    """Raw deflate of `prefix + zeros * b"\\0"` and its CRC, without compressing it all.

    After a full flush the compressor forgets its history, so every 1 MiB block of zeros
    compresses to the same bytes: compress one and repeat it.
    """
    chunk = bytes(MiB)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = packer.compress(prefix) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.flush(zlib.Z_FINISH)
    count, rest = divmod(zeros, MiB)
    assert rest == 0
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return head + block * count + tail, crc


def zero_bomb(name: str, prefix: bytes, zeros: int) -> RawMember:
    data, crc = zeros_stream(prefix, zeros)
    return RawMember(name.encode(), data, len(prefix) + zeros, crc, zipfile.ZIP_DEFLATED)


def raw_zip(members: list[RawMember], comment: bytes = b"", central_offset_lie: int = 0) -> bytes:
    out = io.BytesIO()
    offsets = []
    for member in members:
        offsets.append(out.tell())
        size = member.size if member.declared_size is None else member.declared_size
        out.write(
            struct.pack(
                "<4s5H3L2H",
                b"PK\x03\x04",
                20,
                member.flags,
                member.method,
                0,
                33,
                member.crc,
                len(member.data),
                size,
                len(member.name),
                0,
            )
        )
        out.write(member.name + member.data)
    central_start = out.tell()
    for member, offset in zip(members, offsets, strict=True):
        size = member.size if member.declared_size is None else member.declared_size
        at = offset if member.central_at is None else offsets[member.central_at]
        out.write(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                member.flags,
                member.method,
                0,
                33,
                member.crc,
                len(member.data),
                size,
                len(member.name),
                0,
                0,
                0,
                0,
                0o100644 << 16,
                at,
            )
        )
        out.write(member.name)
    central_size = out.tell() - central_start
    count = len(members)
    out.write(
        struct.pack(
            "<4s4H2LH",
            b"PK\x05\x06",
            0,
            0,
            count,
            count,
            central_size,
            central_start + central_offset_lie,
            len(comment),
        )
    )
    out.write(comment)
    return out.getvalue()


def foo_wheel_members(dist: Dist = FOO, metadata: bytes | None = None) -> list[RawMember]:
    return [deflated(name, data) for name, data in wheel_members(dist, metadata).items()]


def good_wheel_bytes() -> bytes:
    return raw_zip(foo_wheel_members())


def good_sdist_bytes(folder: Path) -> bytes:
    return write_tar_gz(folder / "good.tar.gz", sdist_members(FOO)).read_bytes()


# --- hostile wheels: every one is named foo-1.0-py3-none-any.whl ---------------------------


def _without(suffix: str) -> bytes:
    members = wheel_members(FOO)
    return raw_zip([deflated(n, d) for n, d in members.items() if not n.endswith(suffix)])


def _with_compression(method: int) -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in wheel_members(FOO).items():
                kind = method if name.endswith("METADATA") else zipfile.ZIP_DEFLATED
                archive.writestr(name, data, compress_type=kind)
        return buffer.getvalue()

    return build


def _flagged(flags: int, name: str = f"{INFO}/METADATA") -> bytes:
    members = foo_wheel_members()
    for member in members:
        if member.name == name.encode():
            member.flags |= flags
    return raw_zip(members)


def _invalid_utf8_name(folder: Path) -> bytes:
    junk = RawMember(b"foo/\xff\xfe.py", b"", 0, 0, flags=0x800)
    return raw_zip([*foo_wheel_members(), junk])


def _extra_member(name: str) -> Callable[[Path], bytes]:
    return lambda folder: raw_zip([*foo_wheel_members(), stored(name, b"x = 1\n")])


def _renamed_dist_info(folder: Path) -> bytes:
    members = [
        deflated(name.replace(INFO, "bar-1.0.dist-info"), data)
        for name, data in wheel_members(FOO).items()
    ]
    return raw_zip(members)


def _duplicate_metadata(folder: Path) -> bytes:
    members = foo_wheel_members()
    return raw_zip([*members, deflated(f"{INFO}/METADATA", FOO.metadata())])


def _overlapping(folder: Path) -> bytes:
    members = foo_wheel_members()
    index = next(i for i, m in enumerate(members) if m.name.endswith(b"METADATA"))
    ghost = dataclasses.replace(members[index], name=b"foo/ghost.py", central_at=index)
    return raw_zip([*members, ghost])


def _member_bomb(folder: Path) -> bytes:
    return raw_zip([*foo_wheel_members(), zero_bomb("foo/zeros.bin", b"", BOMB_BYTES)])


def _metadata_bomb(folder: Path) -> bytes:
    members = [m for m in foo_wheel_members() if not m.name.endswith(b"METADATA")]
    return raw_zip([*members, zero_bomb(f"{INFO}/METADATA", FOO.metadata(), BOMB_BYTES)])


def _metadata_bomb_lying(folder: Path) -> bytes:
    """METADATA says 200 bytes but inflates to 256 MiB: read no further than declared."""
    bomb = zero_bomb(f"{INFO}/METADATA", FOO.metadata(), BOMB_BYTES)
    bomb.declared_size = 200
    members = [m for m in foo_wheel_members() if not m.name.endswith(b"METADATA")]
    return raw_zip([*members, bomb])


def _metadata_declared_huge(folder: Path) -> bytes:
    members = foo_wheel_members()
    for member in members:
        if member.name.endswith(b"METADATA"):
            member.declared_size = 16 * MiB  # over the cap, under the bomb threshold
    return raw_zip(members)


def _metadata_over_cap(size: int) -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        big = dataclasses.replace(FOO, description="x" * size)
        return raw_zip(foo_wheel_members(big))

    return build


def _tar_zip_polyglot(folder: Path) -> bytes:
    header = tarfile.TarInfo("foo.txt").tobuf(format=tarfile.USTAR_FORMAT)
    assert header[257:262] == b"ustar"
    return header + good_wheel_bytes()


def _metadata_text(text: str) -> Callable[[Path], bytes]:
    return lambda folder: raw_zip(foo_wheel_members(metadata=text.encode()))


HEADER = "Metadata-Version: 2.1\n"

# id -> (builder, a substring of the refusal)
HOSTILE_WHEELS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "not-a-zip": (lambda folder: b"This is a README, not a wheel.\n" * 4, "not a zip archive"),
    "ten-random-bytes": (lambda folder: noise(10), "not a zip archive"),
    "sdist-named-whl": (good_sdist_bytes, "not a zip archive"),
    "missing-metadata": (lambda folder: _without("/METADATA"), "METADATA is missing"),
    "missing-wheel": (lambda folder: _without("/WHEEL"), "WHEEL is missing"),
    "two-dist-info": (_extra_member("bar-1.0.dist-info/METADATA"), "exactly one .dist-info"),
    "second-dist-info-no-metadata": (
        _extra_member("bar-1.0.dist-info/RECORD"),
        "exactly one .dist-info",
    ),
    "dist-info-misnamed": (_renamed_dist_info, "does not match the filename"),
    "dist-info-other-version": (
        _extra_member("foo-2.0.dist-info/x"),
        "exactly one .dist-info",
    ),
    "duplicate-entries": (_duplicate_metadata, "duplicate entries"),
    "lzma-member": (_with_compression(zipfile.ZIP_LZMA), "only stored and deflated"),
    "bzip2-member": (_with_compression(zipfile.ZIP_BZIP2), "only stored and deflated"),
    "encrypted-member": (lambda folder: _flagged(0x1), "encrypted"),
    "invalid-utf8-member-name": (_invalid_utf8_name, "codec can't decode"),
    "member-dotdot": (_extra_member("foo/../../evil.py"), "unsafe member name"),
    "member-absolute": (_extra_member("/etc/evil.py"), "unsafe member name"),
    "member-backslash": (_extra_member("foo\\..\\evil.py"), "unsafe member name"),
    "zip-bomb-member": (_member_bomb, "zip bomb"),
    "zip-bomb-metadata": (_metadata_bomb, "zip bomb"),
    "metadata-bomb-lying-size": (_metadata_bomb_lying, "Bad CRC-32"),
    "metadata-declared-huge": (
        _metadata_declared_huge,
        "METADATA is larger than the server accepts",
    ),
    "overlapping-members": (_overlapping, "overlapping"),
    "tar-zip-polyglot": (_tar_zip_polyglot, "also a tar archive"),
    "prepended-junk": (lambda folder: b"MZ" + bytes(100) + good_wheel_bytes(), "data before"),
    "trailing-data": (lambda folder: good_wheel_bytes() + b"junk", "data after the zip"),
    # zipfile shifts every member by the lie: a negative seek (OSError) on opening one.
    "central-directory-offset-lie": (
        lambda folder: raw_zip(foo_wheel_members(), central_offset_lie=0x7000_0000),
        "Invalid argument",
    ),
    "zip-comment": (lambda folder: raw_zip(foo_wheel_members(), b"hello"), "zip comment"),
    "metadata-name-mismatch": (
        _metadata_text(HEADER + "Name: bar\nVersion: 1.0\n"),
        "Metadata name 'bar' does not match",
    ),
    "metadata-name-prefix": (
        _metadata_text(HEADER + "Name: foobar\nVersion: 1.0\n"),
        "Metadata name 'foobar' does not match",
    ),
    "metadata-version-mismatch": (
        _metadata_text(HEADER + "Name: foo\nVersion: 2.0\n"),
        "Metadata version 2.0 does not match",
    ),
    "metadata-invalid-version": (
        _metadata_text(HEADER + "Name: foo\nVersion: 1.0-beta_final!!\n"),
        "is invalid for 'version'",
    ),
    "metadata-missing-name": (
        _metadata_text(HEADER + "Version: 1.0\n"),
        "'name' is a required field",
    ),
    "metadata-unknown-metadata-version": (
        _metadata_text("Metadata-Version: 9.9\nName: foo\nVersion: 1.0\n"),
        "not a valid metadata version",
    ),
    "metadata-empty": (_metadata_text(""), "Invalid core metadata"),
}


# --- hostile sdists: every one is named foo-1.0.tar.gz ------------------------------------


def tar_gz(entries: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w", format=fmt) as archive,
    ):
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def entry(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = link
    info.mtime = 1_577_836_800
    return info, data


def good_entries(pkg_info: bytes | None = None) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [entry(name, data) for name, data in sdist_members(FOO, pkg_info).items()]


def _sdist(*extra: tuple[tarfile.TarInfo, bytes], drop: str = "") -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        kept = [item for item in good_entries() if not (drop and item[0].name.endswith(drop))]
        return tar_gz([*kept, *extra])

    return build


def _pkg_info_as(kind: bytes, link: str) -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        kept = [item for item in good_entries() if not item[0].name.endswith("PKG-INFO")]
        return tar_gz([*kept, entry(f"{TOP}/PKG-INFO", kind=kind, link=link)])

    return build


def _gnu_sparse(folder: Path) -> bytes:
    info, _ = entry(f"{TOP}/holes.bin", kind=tarfile.GNUTYPE_SPARSE)
    return tar_gz([*good_entries(), (info, b"")], fmt=tarfile.GNU_FORMAT)


def _pax_sparse(major: str) -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        info, _ = entry(f"{TOP}/holes.bin")
        headers = {"GNU.sparse.name": f"{TOP}/holes.bin", "GNU.sparse.realsize": "10"}
        if major == "0.1":
            headers.update({"GNU.sparse.map": "0,10", "GNU.sparse.size": "10"})
        else:
            headers.update({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"})
        info.pax_headers = headers
        return tar_gz([*good_entries(), (info, b"")])

    return build


def _tar_bomb(folder: Path) -> bytes:
    """A member of 256 MiB of zeros, gzipped to a few hundred kB."""
    pkg_info, data = good_entries()[0]
    big, _ = entry(f"{TOP}/zeros.bin")
    big.size = BOMB_BYTES
    prefix = pkg_info.tobuf() + data + bytes(-len(data) % 512) + big.tobuf()
    stream, _crc = zeros_stream(prefix, BOMB_BYTES)
    # The trailer's CRC and size are never reached: the reader stops at its cap first.
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + bytes(8)


def _pkg_info_text(text: str) -> Callable[[Path], bytes]:
    return lambda folder: tar_gz(good_entries(text.encode()))


def _plain_tar(folder: Path) -> bytes:
    return gzip.decompress(tar_gz(good_entries()))


HOSTILE_SDISTS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "not-gzip": (lambda folder: b"This is a README, not an sdist.\n" * 4, "gzip-compressed"),
    "ten-random-bytes": (lambda folder: noise(10), "gzip-compressed"),
    "uncompressed-tar": (_plain_tar, "gzip-compressed"),
    "zip-named-tar-gz": (lambda folder: good_wheel_bytes(), "gzip-compressed"),
    "gzip-not-tar": (lambda folder: gzip.compress(b"hello " * 200), "invalid header"),
    "gzip-empty": (lambda folder: gzip.compress(b""), "empty file"),
    "gzip-truncated": (
        lambda folder: good_sdist_bytes(folder)[:-20],
        "not a valid gzip-compressed tar",
    ),
    "trailing-zip": (
        lambda folder: good_sdist_bytes(folder) + good_wheel_bytes(),
        "not a valid gzip-compressed tar",
    ),
    "tar-bomb": (_tar_bomb, "inflates too much"),
    "gnu-sparse-member": (_gnu_sparse, "sparse"),
    "pax-sparse-0.1-member": (_pax_sparse("0.1"), "sparse"),
    "pax-sparse-1.0-member": (_pax_sparse("1.0"), "Invalid sdist"),
    "pkg-info-symlink": (
        _pkg_info_as(tarfile.SYMTYPE, "../../../etc/passwd"),
        "PKG-INFO is not a regular file",
    ),
    "pkg-info-hardlink": (
        _pkg_info_as(tarfile.LNKTYPE, f"{TOP}/pyproject.toml"),
        "PKG-INFO is not a regular file",
    ),
    "pkg-info-directory": (_pkg_info_as(tarfile.DIRTYPE, ""), "PKG-INFO is not a regular file"),
    "fifo-member": (_sdist(entry(f"{TOP}/pipe", kind=tarfile.FIFOTYPE)), "special member"),
    "device-member": (_sdist(entry(f"{TOP}/dev", kind=tarfile.CHRTYPE)), "special member"),
    "absolute-member": (_sdist(entry("/etc/cron.d/evil", b"x")), "unsafe member name"),
    "dotdot-member": (_sdist(entry(f"{TOP}/../../evil", b"x")), "unsafe member name"),
    "two-top-level-dirs": (_sdist(entry("other-1.0/setup.py", b"x")), "one top-level"),
    "missing-pkg-info": (_sdist(drop="PKG-INFO"), "PKG-INFO is missing"),
    "nested-pkg-info-only": (
        _sdist(entry(f"{TOP}/sub/PKG-INFO", FOO.metadata()), drop="/PKG-INFO"),
        "PKG-INFO is missing",
    ),
    "two-pkg-info": (_sdist(entry(f"./{TOP}/PKG-INFO", FOO.metadata())), "more than one"),
    "metadata-name-mismatch": (
        _pkg_info_text(HEADER + "Name: bar\nVersion: 1.0\n"),
        "Metadata name 'bar' does not match",
    ),
    "metadata-version-mismatch": (
        _pkg_info_text(HEADER + "Name: foo\nVersion: 1.1\n"),
        "Metadata version 1.1 does not match",
    ),
    "metadata-missing-name": (
        _pkg_info_text(HEADER + "Version: 1.0\n"),
        "'name' is a required field",
    ),
}


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# --- parse_filename ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "normalized", "version", "packagetype", "python_version"),
    [
        ("foo-1.0-py3-none-any.whl", "foo", "1.0", "bdist_wheel", "py3"),
        ("Mini_Pkg-0.1.0-py3-none-any.whl", "mini-pkg", "0.1.0", "bdist_wheel", "py3"),
        ("foo-1.0-1-cp311-cp311-manylinux_2_17_x86_64.whl", "foo", "1.0", "bdist_wheel", "cp311"),
        ("foo-1.0-py2.py3-none-any.whl", "foo", "1.0", "bdist_wheel", "py2"),
        ("foo-1.0+local-py3-none-any.whl", "foo", "1.0+local", "bdist_wheel", "py3"),
        (
            "foo-2!1.0rc1.post2.dev3-py3-none-any.whl",
            "foo",
            "2!1.0rc1.post2.dev3",
            "bdist_wheel",
            "py3",
        ),
        ("foo-1.0.tar.gz", "foo", "1.0", "sdist", "source"),
        ("mini_pkg-0.1.0.tar.gz", "mini-pkg", "0.1.0", "sdist", "source"),
        ("Foo.Bar-1.0.tar.gz", "foo-bar", "1.0", "sdist", "source"),
        ("foo-1.0.0.tar.gz", "foo", "1.0.0", "sdist", "source"),
    ],
)
def test_parse_filename_accepts(
    filename: str, normalized: str, version: str, packagetype: str, python_version: str
) -> None:
    dist = dists.parse_filename(filename)
    assert dist.filename == filename
    assert dist.normalized == normalized
    assert dist.version == Version(version)
    assert dist.packagetype == packagetype
    assert dist.python_version == python_version


def test_equivalent_versions_are_one_release() -> None:
    short = dists.parse_filename("foo-1.0-py3-none-any.whl")
    long = dists.parse_filename("foo-1.0.0.tar.gz")
    assert short.version == long.version


BAD_FILENAMES = {
    "empty": ("", "no filename"),
    "dotdot-slash": ("../../x.whl", "path or control"),
    "dotdot-backslash": ("..\\x.whl", "path or control"),
    "absolute": ("/abs.whl", "path or control"),
    "subdir": ("a/b-1.0.tar.gz", "path or control"),
    "windows-path": ("C:\\dist\\foo-1.0.tar.gz", "path or control"),
    "hidden": (".foo-1.0.tar.gz", "path or control"),
    "percent-00": ("foo%00-1.0.tar.gz", "Invalid project name"),
    "zip": ("foo-1.0.zip", "only .whl and .tar.gz"),
    "exe": ("foo-1.0.win32.exe", "only .whl and .tar.gz"),
    "egg": ("foo-1.0-py3.11.egg", "only .whl and .tar.gz"),
    "tar-bz2": ("foo-1.0.tar.bz2", "only .whl and .tar.gz"),
    "uppercase-whl": ("foo-1.0-py3-none-any.WHL", "only .whl and .tar.gz"),
    "no-extension": ("foo-1.0", "only .whl and .tar.gz"),
    "too-long": ("f" * 250 + "-1.0.tar.gz", "too long"),
    "too-long-multibyte": ("é" * 130 + "-1.0.tar.gz", "too long"),
    "name-over-cap": ("f" * 201 + "-1.0-py3-none-any.whl", "Invalid project name"),
    "version-over-cap": ("foo-1" + ".0" * 60 + ".tar.gz", "version is too long"),
    "wheel-too-few-parts": ("foo-1.0.whl", "Invalid distribution filename"),
    "wheel-bad-version": ("foo-1.0-beta_final!!-py3-none-any.whl", "Invalid distribution"),
    "wheel-empty-version": ("foo--py3-none-any.whl", "Invalid distribution filename"),
    "sdist-bad-version": ("foo-1.0beta_final!!.tar.gz", "Invalid distribution filename"),
    "sdist-no-version": ("foo.tar.gz", "Invalid distribution filename"),
    "wheel-name-nonascii": ("fóo-1.0-py3-none-any.whl", "Invalid project name"),
    "sdist-name-nonascii": ("fóo-1.0.tar.gz", "Invalid project name"),
    "sdist-name-fullwidth": ("\uff46\uff4f\uff4f-1.0.tar.gz", "Invalid project name"),
    "sdist-name-html": ("<b>foo</b>-1.0.tar.gz", "path or control"),
    "sdist-name-trailing-dash": ("foo--1.0.tar.gz", "Invalid project name"),
    "space": ("foo 1.0.tar.gz", "Invalid distribution filename"),
}


@pytest.mark.parametrize(
    ("filename", "reason"), list(BAD_FILENAMES.values()), ids=list(BAD_FILENAMES)
)
def test_parse_filename_refuses(filename: str, reason: str) -> None:
    with pytest.raises(InvalidUpload, match=reason) as caught:
        dists.parse_filename(filename)
    assert "\n" not in caught.value.reason


@pytest.mark.parametrize("code", [*range(32), 127], ids=lambda code: f"chr{code}")
@pytest.mark.parametrize("template", ["foo-1.0{}-py3-none-any.whl", "{}foo-1.0.tar.gz"])
def test_parse_filename_refuses_control_characters(template: str, code: int) -> None:
    with pytest.raises(InvalidUpload, match="path or control characters"):
        dists.parse_filename(template.format(chr(code)))


# --- validate_project_name -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("foo", "foo"),
        ("Mini_Pkg", "mini-pkg"),
        ("Foo.Bar--baz", "foo-bar-baz"),
        ("a", "a"),
        ("0", "0"),
        ("x" * dists.MAX_NAME_LENGTH, "x" * dists.MAX_NAME_LENGTH),
    ],
)
def test_validate_project_name_accepts(name: str, normalized: str) -> None:
    assert dists.validate_project_name(name) == normalized


@pytest.mark.parametrize(
    "name",
    [
        "",
        "ｆｏｏ",  # noqa: RUF001 - fullwidth letters on purpose
        "fοο",  # noqa: RUF001 - Greek omicrons on purpose
        "fоо",  # noqa: RUF001 - Cyrillic o on purpose
        "foo\u200bbar",
        "foo\u200d",
        "-foo",
        "foo-",
        ".foo",
        "foo.",
        "_foo",
        "foo_",
        "foo bar",
        "foo/bar",
        "foo<script>",
        "foo\x00",
        "foo\n",
        "x" * 300,
        "x" * (dists.MAX_NAME_LENGTH + 1),
    ],
    ids=lambda name: repr(name)[:20],
)
def test_validate_project_name_refuses(name: str) -> None:
    with pytest.raises(InvalidUpload, match="Invalid project name"):
        dists.validate_project_name(name)


# --- parse_metadata ------------------------------------------------------------------------


def metadata(version: str, *extra: str) -> bytes:
    dist = Dist("foo", "1.0", metadata_version=version, extra_headers=extra)
    return dist.metadata()


@pytest.mark.parametrize(
    ("raw", "expected_fields"),
    [
        (metadata("2.1"), {}),
        (metadata("2.2", "Dynamic: Requires-Dist"), {}),
        (metadata("2.3"), {}),
        (metadata("2.4", "License-Expression: MIT"), {"license_expression": "MIT"}),
        (
            metadata("2.5", "License-Expression: MIT OR Apache-2.0", "Import-Name: foo"),
            {"license_expression": "MIT OR Apache-2.0"},
        ),
        (metadata("2.5", "Import-Name: foo", "Import-Name: foo.bar"), {}),
        (metadata("2.1", "Requires-Dist: bar>=1"), {"requires_dist": ["bar>=1"]}),
    ],
    ids=["2.1", "2.2", "2.3", "2.4-license", "2.5-license-import", "2.5-imports", "2.1-reqs"],
)
def test_parse_metadata_versions(raw: bytes, expected_fields: dict[str, object]) -> None:
    parsed = dists.parse_metadata(raw)
    assert parsed.name == "foo"
    assert parsed.version == Version("1.0")
    assert parsed.raw == raw
    assert parsed.metadata_version == raw.split(b"\n")[0].split(b": ")[1].decode()
    assert parsed.summary == "A test package"
    for key, value in expected_fields.items():
        assert parsed.fields[key] == value


def test_parse_metadata_keeps_requires_python() -> None:
    parsed = dists.parse_metadata(Dist("foo", "1.0", requires_python=">=3.8").metadata())
    assert parsed.requires_python == ">=3.8"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"Metadata-Version: 2.1\nVersion: 1.0\n", "'name' is a required field"),
        (b"Metadata-Version: 2.1\nName: foo\n", "'version' is a required field"),
        (b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0-beta_final!!\n", "'version'"),
        (b"Metadata-Version: 2.1\nName: foo\nVersion: \n", "'version'"),
        (b"Metadata-Version: 2.1\nName: f\xc3\xb3o\nVersion: 1.0\n", "'name'"),
        (b"Metadata-Version: 2.1\nName: foo-\nVersion: 1.0\n", "'name'"),
        (b"Metadata-Version: 9.9\nName: foo\nVersion: 1.0\n", "not a valid metadata version"),
        (b"Name: foo\nVersion: 1.0\n", "metadata version"),
        (b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\nSummary: \xff\xfe\n", "'summary'"),
        (metadata("2.1", "Import-Name: foo"), "import-name introduced in metadata version 2.5"),
        (metadata("2.3", "License-Expression: MIT"), "license-expression introduced"),
        (b"", "Invalid core metadata"),
        (b"\x00\x01\x02\xff" * 50, "Invalid core metadata"),
    ],
    ids=[
        "missing-name",
        "missing-version",
        "invalid-version",
        "empty-version",
        "nonascii-name",
        "name-trailing-dash",
        "unknown-metadata-version",
        "no-metadata-version",
        "summary-not-utf8",
        "import-name-in-2.1",
        "license-expression-in-2.3",
        "empty",
        "binary",
    ],
)
def test_parse_metadata_refuses(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidUpload, match=reason) as caught:
        dists.parse_metadata(raw)
    assert caught.value.reason.startswith("Invalid core metadata: ")
    assert "\n" not in caught.value.reason


# --- read_core_metadata on good archives ---------------------------------------------------


def test_read_wheel_metadata(tmp_path: Path) -> None:
    path = write_zip(tmp_path / WHEEL_NAME, wheel_members(FOO))
    parsed = dists.read_core_metadata(path, dists.parse_filename(WHEEL_NAME), CAP)
    assert parsed.raw == FOO.metadata()
    assert parsed.name == "foo"


def test_read_sdist_metadata(tmp_path: Path) -> None:
    path = write_tar_gz(tmp_path / SDIST_NAME, sdist_members(FOO))
    parsed = dists.read_core_metadata(path, dists.parse_filename(SDIST_NAME), CAP)
    assert parsed.raw == FOO.metadata()


def test_read_sdist_with_dot_slash_members(tmp_path: Path) -> None:
    members = {f"./{name}": data for name, data in sdist_members(FOO).items()}
    path = write_tar_gz(tmp_path / SDIST_NAME, members)
    parsed = dists.read_core_metadata(path, dists.parse_filename(SDIST_NAME), CAP)
    assert parsed.raw == FOO.metadata()


def test_read_sdist_with_symlink_elsewhere(tmp_path: Path) -> None:
    """Links are harmless when nothing is extracted; only PKG-INFO must be a file."""
    link = entry(f"{TOP}/link", kind=tarfile.SYMTYPE, link="/etc/passwd")
    path = write(tmp_path, SDIST_NAME, tar_gz([*good_entries(), link]))
    dists.read_core_metadata(path, dists.parse_filename(SDIST_NAME), CAP)


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_metadata_version_equivalent_to_filename_version(tmp_path: Path, kind: str) -> None:
    """`1.0.0` inside a `1.0` file is the same release (Version('1.0') == Version('1.0.0'))."""
    inner = Dist("foo", "1.0.0").metadata()
    if kind == "wheel":
        path = write_zip(tmp_path / WHEEL_NAME, wheel_members(FOO, inner))
    else:
        path = write_tar_gz(tmp_path / SDIST_NAME, sdist_members(FOO, inner))
    parsed = dists.read_core_metadata(path, dists.parse_filename(path.name), CAP)
    assert parsed.version == Version("1.0")


def test_metadata_name_compared_normalized(tmp_path: Path) -> None:
    dist = Dist("Mini_Pkg", "0.1.0")
    path = write_zip(tmp_path / dist.wheel_name, wheel_members(dist))
    parsed = dists.read_core_metadata(path, dists.parse_filename(dist.wheel_name), CAP)
    assert parsed.name == "Mini_Pkg"


def test_wheel_metadata_at_cap_is_accepted(tmp_path: Path) -> None:
    raw = FOO.metadata()
    padded = dataclasses.replace(FOO, description="x" * (CAP - len(raw) + len(FOO.description)))
    assert len(padded.metadata()) == CAP
    path = write(tmp_path, WHEEL_NAME, raw_zip(foo_wheel_members(padded)))
    parsed = dists.read_core_metadata(path, dists.parse_filename(WHEEL_NAME), CAP)
    assert len(parsed.raw) == CAP


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_metadata_over_cap_is_refused(tmp_path: Path, kind: str) -> None:
    big = dataclasses.replace(FOO, description="x" * CAP)
    if kind == "wheel":
        path = write(tmp_path, WHEEL_NAME, raw_zip(foo_wheel_members(big)))
        reason = "METADATA is larger than the server accepts"
    else:
        path = write_tar_gz(tmp_path / SDIST_NAME, sdist_members(FOO, big.metadata()))
        reason = "PKG-INFO is larger than the server accepts"
    with pytest.raises(InvalidUpload, match=reason):
        dists.read_core_metadata(path, dists.parse_filename(path.name), CAP)


# --- read_core_metadata on hostile archives ------------------------------------------------


@pytest.mark.parametrize(
    ("build", "reason"), list(HOSTILE_WHEELS.values()), ids=list(HOSTILE_WHEELS)
)
def test_hostile_wheel_refused(tmp_path: Path, build: Callable[[Path], bytes], reason: str) -> None:
    path = write(tmp_path, WHEEL_NAME, build(tmp_path))
    with pytest.raises(InvalidUpload) as caught:
        dists.read_core_metadata(path, dists.parse_filename(WHEEL_NAME), CAP)
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason


@pytest.mark.parametrize(
    ("build", "reason"), list(HOSTILE_SDISTS.values()), ids=list(HOSTILE_SDISTS)
)
def test_hostile_sdist_refused(tmp_path: Path, build: Callable[[Path], bytes], reason: str) -> None:
    path = write(tmp_path, SDIST_NAME, build(tmp_path))
    with pytest.raises(InvalidUpload) as caught:
        dists.read_core_metadata(path, dists.parse_filename(SDIST_NAME), CAP)
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_zero_byte_archive_refused(tmp_path: Path, kind: str) -> None:
    name = WHEEL_NAME if kind == "wheel" else SDIST_NAME
    path = write(tmp_path, name, b"")
    with pytest.raises(InvalidUpload, match="Invalid"):
        dists.read_core_metadata(path, dists.parse_filename(name), CAP)


def test_raw_zip_builder_makes_a_valid_wheel(tmp_path: Path) -> None:
    """The hostile wheels differ from this one only in the defect they are named after."""
    path = write(tmp_path, WHEEL_NAME, good_wheel_bytes())
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
    parsed = dists.read_core_metadata(path, dists.parse_filename(WHEEL_NAME), CAP)
    assert parsed.raw == FOO.metadata()


def test_zero_stream_builder_inflates_to_what_it_claims() -> None:
    data, crc = zeros_stream(b"head", 3 * MiB)
    inflated = zlib.decompress(data, -15)
    assert inflated == b"head" + bytes(3 * MiB)
    assert zlib.crc32(inflated) == crc


def test_member_bomb_is_refused_from_the_directory_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bomb is judged on declared sizes: no member but METADATA is ever inflated."""
    path = write(tmp_path, WHEEL_NAME, _member_bomb(tmp_path))
    inflated: list[int] = []
    real = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: str | zipfile.ZipInfo, *args: object) -> object:
        inflated.append(1)
        return real(self, name, *args)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(InvalidUpload, match="zip bomb"):
        dists.read_core_metadata(path, dists.parse_filename(WHEEL_NAME), CAP)
    assert inflated == []


def test_lying_metadata_is_read_no_further_than_declared(tmp_path: Path) -> None:
    """A 256 MiB METADATA declared as 200 bytes: refused after inflating 200 bytes.

    The CRC in the headers is that of all 256 MiB, so "Bad CRC-32" proves the reader
    stopped at the declared size: had it inflated everything, the CRC would have matched.
    """
    path = write(tmp_path, WHEEL_NAME, _metadata_bomb_lying(tmp_path))
    assert path.stat().st_size < 1 * MiB
    with pytest.raises(InvalidUpload, match="Bad CRC-32"):
        dists.read_core_metadata(path, dists.parse_filename(WHEEL_NAME), CAP)


def test_tar_bomb_stops_at_the_inflate_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sdist reader counts inflated bytes and stops at max(BOMB_SIZE, ratio * size)."""
    monkeypatch.setattr(archives, "BOMB_SIZE", 2 * MiB)
    info, _ = entry(f"{TOP}/zeros.bin", bytes(8 * MiB))
    data = tar_gz([*good_entries(), (info, bytes(8 * MiB))])
    path = write(tmp_path, SDIST_NAME, data)
    assert len(data) * archives.BOMB_RATIO < 2 * MiB
    seen: list[int] = []
    real_read = archives._CappedReader.read

    def counting(self: archives._CappedReader, size: int = -1) -> bytes:
        chunk = real_read(self, size)
        seen.append(self.seen)
        return chunk

    monkeypatch.setattr(archives._CappedReader, "read", counting)
    with pytest.raises(InvalidUpload, match="inflates too much"):
        dists.read_core_metadata(path, dists.parse_filename(SDIST_NAME), CAP)
    assert max(seen) <= 2 * MiB


def test_big_honest_wheel_is_not_a_bomb(tmp_path: Path) -> None:
    """Large but incompressible members are fine: the ratio, not the size, marks a bomb."""
    members = [*foo_wheel_members(), stored("foo/data.bin", noise(2 * MiB))]
    path = write(tmp_path, WHEEL_NAME, raw_zip(members))
    dists.read_core_metadata(path, dists.parse_filename(WHEEL_NAME), CAP)


# --- advertises_metadata -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "metadata_version", "advertised"),
    [
        (WHEEL_NAME, "2.1", True),
        (SDIST_NAME, "2.1", False),
        (SDIST_NAME, "2.2", True),
        (SDIST_NAME, "2.5", True),
    ],
)
def test_advertises_metadata(filename: str, metadata_version: str, advertised: bool) -> None:
    parsed = dists.parse_metadata(metadata(metadata_version))
    assert dists.advertises_metadata(dists.parse_filename(filename), parsed) is advertised
