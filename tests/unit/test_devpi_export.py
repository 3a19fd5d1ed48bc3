"""Reading a devpi-export folder (`services.devpi_export`): the format devpi-server 6.20
writes, what an old export lacks, and the folders that are not an export at all."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest

from minirepo.errors import UserError
from minirepo.services.devpi_export import ANONYMOUS, AUTHENTICATED, read_export
from tests.helpers.devpirig import (
    ARGON2_HASH,
    file_entry,
    log_entry,
    mirror,
    stage,
    write_export,
)

UTC = datetime.timezone.utc
UPLOADED = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
PUSHED = datetime.datetime(2026, 3, 5, 0, 0, 1, tzinfo=UTC)
WHEEL = "alice/dev/app/1.0/app-1.0-py3-none-any.whl"


def test_users_indexes_and_files_as_devpi_writes_them(tmp_path: Path) -> None:
    upload = log_entry("upload", "alice", UPLOADED, dst="alice/dev")
    files = [
        # An overwrite (devpi records nobody for it) after the upload that counts.
        file_entry(
            WHEEL, "app", "1.0", log=[log_entry("overwrite", None, PUSHED, count=1), upload]
        ),
        file_entry("alice/dev/app-1.0.doc.zip", "app", "1.0", kind="doczip", log=[upload]),
        file_entry(
            "alice/dev/app/sha256=ab/app-1.0.tar.gz.toxresult-20260304050607-0",
            "app",
            "1.0",
            kind="toxresult",
            log=[log_entry("upload", None, UPLOADED, dst="alice/dev")],
        ),
    ]
    pushed = file_entry(
        "alice/stable/app/1.0/app-1.0-py3-none-any.whl",
        "app",
        "1.0",
        log=[upload, log_entry("push", "bob", PUSHED, src="alice/dev", dst="alice/stable")],
    )
    folder = write_export(
        tmp_path,
        users={
            "alice": {"pwhash": ARGON2_HASH, "email": "a@example.org"},
            "old": {"pwhash": "ab" * 32, "pwsalt": "c2FsdA=="},
            "ldap": {},
        },
        indexes={
            "alice/dev": stage(files, bases=["root/pypi"], acl_upload=["alice", "bob"]),
            "alice/stable": stage([pushed], bases=["alice/dev"], title="Stable"),
            "root/pypi": mirror(),
        },
    )
    export = read_export(folder)
    assert (export.dumpversion, export.server_version) == (2, "6.20.3")
    users = {user.name: user for user in export.users}
    assert users["alice"].pwhash == ARGON2_HASH
    assert users["alice"].pwsalt is None
    assert users["old"].pwsalt == "c2FsdA=="
    assert users["ldap"].pwhash is None

    dev, stable, pypi = export.indexes
    assert (dev.name, dev.owner, dev.kind, dev.is_mirror) == ("alice/dev", "alice", "stage", False)
    assert dev.bases == ("root/pypi",)
    assert dev.acl_upload == ("alice", "bob")
    assert dev.is_public  # devpi-server itself restricts no reads
    wheel, docs, tox = dev.files
    assert (wheel.kind, wheel.project, wheel.is_distribution) == ("releasefile", "app", True)
    assert wheel.path == (folder / WHEEL).resolve()
    assert (wheel.upload_time, wheel.uploader) == (UPLOADED, "alice")
    assert (docs.kind, docs.is_distribution, tox.kind) == ("doczip", False, "toxresult")
    assert tox.uploader is None
    # A pushed file came into alice/stable when bob pushed it, not at its first upload.
    (copy,) = stable.files
    assert (copy.upload_time, copy.uploader) == (PUSHED, "bob")
    assert stable.title == "Stable"
    assert (pypi.is_mirror, pypi.mirror_url, pypi.files) == (True, "https://pypi.org/simple/", ())


def test_times_without_a_log(tmp_path: Path) -> None:
    """An old export may lack the log (then devpi's date of the file counts), or the date
    too (then the file's own mtime)."""
    dated = file_entry(WHEEL, "app", "1.0", last_modified="Fri, 06 Mar 2026 10:11:12 GMT")
    bare = file_entry("alice/dev/app/1.0/app-1.0.tar.gz", "app", "1.0", last_modified=None)
    sdist = tmp_path / "alice/dev/app/1.0/app-1.0.tar.gz"
    sdist.parent.mkdir(parents=True)
    sdist.write_bytes(b"")
    os.utime(sdist, (UPLOADED.timestamp(), UPLOADED.timestamp()))
    export = read_export(write_export(tmp_path, {"alice": {}}, {"alice/dev": stage([dated, bare])}))
    first, second = export.indexes[0].files
    assert (first.upload_time, first.uploader) == (
        datetime.datetime(2026, 3, 6, 10, 11, 12, tzinfo=UTC),
        None,
    )
    assert second.upload_time == UPLOADED


def test_acls_in_every_spelling_devpi_kept(tmp_path: Path) -> None:
    """A comma-separated string (older devpi), lower-case special principals, and a
    plugin's read restriction (`acl_read`)."""
    indexes = {
        "alice/dev": stage(acl_upload="alice, :authenticated:", acl_read=["alice", ":ldap"]),
        "bob/open": stage(acl_upload=[":anonymous:"], acl_read=[":ANONYMOUS:"]),
    }
    dev, open_ = read_export(write_export(tmp_path, {}, indexes)).indexes
    assert dev.acl_upload == ("alice", AUTHENTICATED)
    assert dev.acl_read == ("alice", ":ldap")
    assert not dev.is_public
    assert open_.acl_upload == (ANONYMOUS,)
    assert open_.is_public


def test_dumpversion_1_is_read(tmp_path: Path) -> None:
    entry = file_entry(WHEEL, "app", "1.0")
    del entry["version"]  # devpi-server before 4 wrote none
    export = read_export(write_export(tmp_path, {}, {"alice/dev": stage([entry])}, "1"))
    assert export.dumpversion == 1
    assert export.indexes[0].files[0].project == "app"


def test_a_folder_that_is_no_export(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"is not a devpi export: it has no dataindex.json"):
        read_export(tmp_path)
    (tmp_path / "dataindex.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot be read as devpi's JSON"):
        read_export(tmp_path)
    (tmp_path / "dataindex.json").write_text(json.dumps({"users": {}}))
    with pytest.raises(UserError, match="it has no dumpversion"):
        read_export(tmp_path)


@pytest.mark.parametrize("version", ["3", "0", "two", True])
def test_an_export_format_this_does_not_read(tmp_path: Path, version: object) -> None:
    (tmp_path / "dataindex.json").write_text(json.dumps({"dumpversion": version}))
    with pytest.raises(UserError, match=r"is not one minirepo reads \(1 and 2, written by"):
        read_export(tmp_path)


@pytest.mark.parametrize(
    ("indexes", "reason"),
    [
        ({"alice": stage()}, "index 'alice' is not named user/index"),
        ({"alice/dev": {"projects": {}}}, "index 'alice/dev''s indexconfig is not a JSON object"),
        (
            {"alice/dev": stage([file_entry("../../etc/passwd", "x", "1")])},
            "points outside",
        ),
        (
            {"alice/dev": stage([file_entry(WHEEL, "app", "1", log=[{"what": "upload"}])])},
            "log has a time that is not 6 numbers",
        ),
        ({"alice/dev": stage(bases="alice/x", acl_upload=7)}, "acl_upload is not a list"),
    ],
)
def test_damaged_entries_are_named(tmp_path: Path, indexes: dict[str, object], reason: str) -> None:
    with pytest.raises(UserError, match=reason):
        read_export(write_export(tmp_path, {}, indexes))  # type: ignore[arg-type]
