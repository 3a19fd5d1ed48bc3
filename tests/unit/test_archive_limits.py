"""Archive member counts are bounded before they cost memory (issue 14, finding 7).

`zipfile` builds a ZipInfo for every central directory entry, as many as the uploader's
end record makes it walk, and a stream-mode `tarfile` keeps every TarInfo: a 34 MiB wheel
of 400 000 entries cost 221 MiB. The member limit (`max_archive_members`) is checked from
the end records, then while walking, before `zipfile` reads anything.
"""

from __future__ import annotations

import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import dists
from minirepo.config import Settings
from minirepo.errors import InvalidUpload
from minirepo.services import accounts
from tests.conftest import post_upload, snapshot
from tests.helpers.distfactory import (
    Dist,
    sdist_members,
    wheel_members,
    write_tar_gz,
    write_zip,
)
from tests.helpers.serverproc import FAST_HASH

FOO = Dist("foo", "1.0")
LIMIT = 1000
CAP = 64 * 1024
EOCD = struct.Struct("<4s4H2LH")
ZIP64_END = struct.Struct("<4sQ2H2L4Q")
ZIP64_LOCATOR = struct.Struct("<4sLQL")
Build = Callable[[Path, int], Path]


def wheel_of(folder: Path, count: int) -> Path:
    """A valid foo wheel of exactly `count` members, the extra ones empty modules."""
    members = wheel_members(FOO)
    members.update({f"foo/m{i}.py": b"" for i in range(count - len(members))})
    return write_zip(folder / FOO.wheel_name, members)


def sdist_of(folder: Path, count: int) -> Path:
    members = sdist_members(FOO)
    top = next(iter(members)).split("/")[0]
    members.update({f"{top}/foo/m{i}.py": b"" for i in range(count - len(members))})
    return write_tar_gz(folder / FOO.sdist_name, members)


def read(path: Path, limit: int = LIMIT) -> dists.CoreMetadata:
    return dists.read_core_metadata(path, dists.parse_filename(path.name), CAP, max_members=limit)


@pytest.mark.parametrize("build", [wheel_of, sdist_of], ids=["wheel", "sdist"])
def test_archive_at_the_limit_is_accepted(tmp_path: Path, build: Build) -> None:
    assert read(build(tmp_path, LIMIT)).name == "foo"


@pytest.mark.parametrize("build", [wheel_of, sdist_of], ids=["wheel", "sdist"])
def test_archive_over_the_limit_is_refused(tmp_path: Path, build: Build) -> None:
    with pytest.raises(InvalidUpload) as caught:
        read(build(tmp_path, LIMIT + 1))
    assert f"more than {LIMIT} members" in caught.value.reason
    assert "max_archive_members" in caught.value.reason


def end_record(data: bytes) -> tuple[int, int, int]:
    """(entries, central directory size, its offset) from a comment-less zip's end."""
    _sig, _disk, _cd_disk, _here, entries, size, offset, _comment = EOCD.unpack(data[-22:])
    return entries, size, offset


def with_junk_directory(data: bytes, junk: int) -> bytes:
    """The zip with `junk` zero bytes put before its central directory and counted in its
    size: what zipfile would read in one go (and then walk) before refusing it."""
    entries, size, offset = end_record(data)
    body, directory = data[:offset], data[offset:-22]
    end = EOCD.pack(b"PK\x05\x06", 0, 0, entries, entries, size + junk, offset, 0)
    return body + bytes(junk) + directory + end


def as_zip64(data: bytes, size: int, entries: int) -> bytes:
    """The zip with zip64 end records claiming `entries` and a directory of `size` bytes."""
    _entries, _size, offset = end_record(data)
    record_at = len(data) - 22
    record = ZIP64_END.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, size, offset)
    locator = ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, record_at, 1)
    end = EOCD.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:-22] + record + locator + end


def refuse_zipfile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if zipfile is asked to read an archive from here on."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("zipfile read an archive that should have been refused")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)


def test_huge_central_directory_is_refused_from_the_end_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / FOO.wheel_name
    path.write_bytes(with_junk_directory(wheel_of(tmp_path, 10).read_bytes(), 8 * 1024**2))
    refuse_zipfile(monkeypatch)
    with pytest.raises(InvalidUpload) as caught:
        read(path)
    assert "central directory" in caught.value.reason
    assert "max_archive_members" in caught.value.reason


def test_entry_count_claimed_by_the_end_record_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = wheel_of(tmp_path, 10).read_bytes()
    _entries, size, offset = end_record(data)
    claimed = EOCD.pack(b"PK\x05\x06", 0, 0, LIMIT + 1, LIMIT + 1, size, offset, 0)
    path = tmp_path / FOO.wheel_name
    path.write_bytes(data[:-22] + claimed)
    refuse_zipfile(monkeypatch)
    with pytest.raises(InvalidUpload, match=f"more than {LIMIT} members"):
        read(path)


@pytest.mark.parametrize(
    ("size", "entries"), [(2**40, 10), (100, 2**40)], ids=["directory-size", "entry-count"]
)
def test_zip64_end_record_claims_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, entries: int
) -> None:
    path = tmp_path / FOO.wheel_name
    path.write_bytes(as_zip64(wheel_of(tmp_path, 10).read_bytes(), size, entries))
    refuse_zipfile(monkeypatch)
    with pytest.raises(InvalidUpload, match="max_archive_members"):
        read(path)


def test_zip64_wheel_is_read(tmp_path: Path) -> None:
    """Honest zip64 end records (zipfile writes them past 65 535 entries) are followed."""
    data = wheel_of(tmp_path, 10).read_bytes()
    entries, size, _offset = end_record(data)
    path = tmp_path / FOO.wheel_name
    path.write_bytes(as_zip64(data, size, entries))
    with zipfile.ZipFile(path) as archive:
        assert len(archive.infolist()) == 10
    assert read(path).name == "foo"


def test_entries_past_the_end_record_count_are_counted_while_walking(tmp_path: Path) -> None:
    """The end record says 10, the directory holds 1001: the walk counts what is there."""
    data = wheel_of(tmp_path, LIMIT + 1).read_bytes()
    _entries, size, offset = end_record(data)
    path = tmp_path / FOO.wheel_name
    path.write_bytes(data[:-22] + EOCD.pack(b"PK\x05\x06", 0, 0, 10, 10, size, offset, 0))
    with pytest.raises(InvalidUpload, match=f"more than {LIMIT} members"):
        read(path)


def test_tar_members_are_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stream-mode tarfile appends every TarInfo to `members`: the walk must not let it."""
    path = sdist_of(tmp_path, 500)
    kept: list[int] = []
    real = tarfile.TarFile.next

    def spying(self: tarfile.TarFile) -> tarfile.TarInfo | None:
        kept.append(len(self.members))
        return real(self)

    monkeypatch.setattr(tarfile.TarFile, "next", spying)
    dists.read_core_metadata(path, dists.parse_filename(path.name), CAP)
    assert max(kept) <= 1


# --- the limit comes from the settings --------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data=tmp_path / "data", password_hash=FAST_HASH, max_archive_members=LIMIT)


@pytest.mark.parametrize("build", [wheel_of, sdist_of], ids=["wheel", "sdist"])
def test_upload_over_the_member_limit_is_refused(
    app: Flask, client: FlaskClient, settings: Settings, tmp_path: Path, build: Build
) -> None:
    accounts.add_user("alice", "alice-password-1", method=FAST_HASH)
    token = accounts.create_token("alice").secret
    before = snapshot(settings)
    response = post_upload(client, token, build(tmp_path, LIMIT + 1))
    assert response.status_code == 400, response.status
    assert "max_archive_members" in response.status
    assert snapshot(settings) == before
    assert post_upload(client, token, build(tmp_path, LIMIT)).status_code == 200


def test_helpers_build_what_they_claim(tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel_of(tmp_path, 7)) as archive:
        assert len(archive.infolist()) == 7
    with tarfile.open(sdist_of(tmp_path, 7)) as archive:
        assert len(archive.getmembers()) == 7
