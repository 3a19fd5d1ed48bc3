"""SECURITY.md §6 (cases 1-40) and its extra cases: what no other test file covered fully.

docs/security-cases.md maps every case to the tests that prove it, here and elsewhere; the
last test below keeps that map honest. This file holds the rows that were missing or only
partly covered, driven through the Flask test client.

Every refusal row asserts three things: the status, the reason (a one-line ASCII reason
phrase, repeated as the plain-text body), and that nothing was left behind: no row (every
table `tests.conftest.snapshot` counts), no blob, no temp file, and every other path under
the data folder unchanged (`folder_state`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import html.parser
import logging
import os
import re
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import peewee
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from minirepo import auth, credentials, models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.services import accounts
from minirepo.services.datafolder import open_for_serving
from minirepo.services.upload import SpoolFile, UploadService
from minirepo.storage import blob_key
from tests.conftest import Snapshot, basic, snapshot, token_auth
from tests.helpers.distfactory import (
    Dist,
    make_sdist,
    make_wheel,
    sdist_members,
    wheel_members,
    write_tar_gz,
    write_zip,
)
from tests.helpers.serverproc import FAST_HASH
from tests.unit.test_dists import FOO, MiB, foo_wheel_members, raw_zip, zero_bomb
from tests.unit.test_upload_validation import assert_refused, encode_multipart, form_for

ROOT = Path(__file__).resolve().parents[2]
USER = "alice"
PASSWORD = "alice-password-1"
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
GREEK = "f\u03bf\u03bf"  # "foo" with Greek omicrons
CYRILLIC = "f\u043e\u043e"  # "foo" with Cyrillic o
KELVIN = "\u212a"  # KELVIN SIGN: lower() is ASCII "k", so canonicalize_name() makes it ASCII
# What a client behind no proxy at all may claim about itself: none of it is believed.
PROXY_CLAIMS = {
    "X-Forwarded-For": "127.0.0.1",
    "Forwarded": "for=127.0.0.1;proto=https;host=localhost",
    "X-Real-IP": "127.0.0.1",
    "X-Forwarded-Host": "localhost",
    "X-Forwarded-Proto": "https",
}
OUTSIDE_ADDR = "10.0.0.7"


# --- "nothing left behind" -----------------------------------------------------------------

# SQLite's own side files come and go with every read; the database's rows are compared
# through `snapshot` instead of its bytes, which change whenever SQLite checkpoints.
DATABASE = "minirepo.sqlite3"
SIDE_FILES = (f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal")


def folder_state(folder: Path) -> dict[str, str]:
    """Every path below `folder` (SQLite's side files excepted) and what it holds.

    Symlinks are recorded, never followed; files by the sha256 of their bytes.
    """
    state: dict[str, str] = {}
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(top, name)
            relative = path.relative_to(folder).as_posix()
            if name in SIDE_FILES:
                continue
            if path.is_symlink():
                state[relative] = "symlink -> " + os.readlink(path)
            elif path.is_dir():
                state[relative] = "dir"
            elif name == DATABASE:
                state[relative] = "database"
            else:
                state[relative] = "file " + hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@dataclasses.dataclass(frozen=True)
class State:
    rows: Snapshot
    paths: dict[str, str]


def state(settings: Settings) -> State:
    return State(snapshot(settings), folder_state(settings.data))


def test_folder_state_sees_every_kind_of_change(tmp_path: Path) -> None:
    """The helper itself: a new, changed or removed path, or a symlink, is a difference."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"1")
    (tmp_path / DATABASE).write_bytes(b"db")
    (tmp_path / f"{DATABASE}-wal").write_bytes(b"wal")
    first = folder_state(tmp_path)
    assert first == {
        "a": "dir",
        "a/f": "file " + hashlib.sha256(b"1").hexdigest(),
        DATABASE: "database",
    }
    (tmp_path / f"{DATABASE}-wal").write_bytes(b"more wal")
    (tmp_path / DATABASE).write_bytes(b"checkpointed")
    assert folder_state(tmp_path) == first
    (tmp_path / "a" / "f").write_bytes(b"2")
    assert folder_state(tmp_path) != first
    (tmp_path / "a" / "f").write_bytes(b"1")
    (tmp_path / "a" / "empty").mkdir()
    assert folder_state(tmp_path) != first
    (tmp_path / "a" / "empty").rmdir()
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert folder_state(tmp_path)["link"].startswith("symlink -> ")


# --- the app each row runs against --------------------------------------------------------


@dataclasses.dataclass
class Env:
    settings: Settings
    app: Flask
    client: FlaskClient
    folder: Path
    token: str

    def credentials(self, kind: str) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, environ) for the caller a row names."""
        environ = {"REMOTE_ADDR": OUTSIDE_ADDR}
        if kind == "token":
            return token_auth(self.token), environ
        if kind == "password":
            return basic(USER, PASSWORD), environ
        if kind == "none":
            return {}, environ
        if kind == "proxy-claims":
            return dict(PROXY_CLAIMS), environ
        if kind == "session-cookie":
            self.client.set_cookie(self.app.config["SESSION_COOKIE_NAME"], session_cookie(self.app))
            return {}, environ
        token = accounts.create_token(USER).secret
        if kind == "revoked":
            accounts.revoke_token(token[:11])
        elif kind == "expired":
            past = models.utcnow() - datetime.timedelta(seconds=1)
            models.Token.update(expires=past).where(
                models.Token.secret_sha256 == credentials.token_digest(token)
            ).execute()
        elif kind == "truncated":
            token = token[:-1]
        elif kind == "wrong-prefix":
            token = "pypi-" + token.removeprefix("mr-")
        elif kind == "trailing-space":
            token += " "
        else:
            raise AssertionError(kind)
        return token_auth(token), environ


def session_cookie(app: Flask) -> str:
    """A session cookie correctly signed with the app's own key, claiming an admin login."""
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    claims = {"user": "root", "user_id": 1, "_user_id": "1", "is_admin": True, "_fresh": True}
    return str(serializer.dumps(claims))


# Databases made active by `make_env` for the rest of the test (see `_active_databases`).
_ACTIVE: list[contextlib.ExitStack] = []


@pytest.fixture(autouse=True)
def _active_databases() -> Iterator[None]:
    """Each env's database stays active (and open) until its test ends."""
    with contextlib.ExitStack() as stack:
        _ACTIVE.append(stack)
        try:
            yield
        finally:
            _ACTIVE.remove(stack)


def make_env(tmp_path: Path, **overrides: Any) -> Env:
    """An app on a new folder; its database is active for the test's own calls."""
    settings = Settings(
        data=tmp_path / "data",
        password_hash=FAST_HASH,
        explicit=frozenset(overrides),
        **overrides,
    )
    app = create_app(settings)
    database = app.extensions["minirepo"].folder.database
    _ACTIVE[-1].callback(database.close)
    _ACTIVE[-1].enter_context(database.activated())
    accounts.add_user(USER, PASSWORD, method=FAST_HASH)
    folder = tmp_path / "dist"
    folder.mkdir()
    return Env(settings, app, app.test_client(), folder, accounts.create_token(USER).secret)


def open_data(settings: Settings) -> None:
    """What `minirepo serve` does when it starts (schema, default repository, sweeps)."""
    open_for_serving(settings).database.close()


def age(path: Path) -> None:
    """Make a planted blob look old: younger orphans may be an upload about to commit."""
    old = time.time() - 7200
    os.utime(path, (old, old))


def post(
    env: Env,
    path: Path,
    auth_kind: str = "token",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> TestResponse:
    body, content_type = encode_multipart(form_for(path, **fields))
    default_headers, environ = env.credentials(auth_kind)
    headers = default_headers if headers is None else headers
    return env.client.post(
        "/", data=body, content_type=content_type, headers=headers, environ_base=environ
    )


# --- faults: a disk that fills up, a failing fsync, a full database ------------------------


class FillingFile:
    """A file that accepts `room` bytes, writes part of the next chunk, then fails."""

    def __init__(self, inner: IO[bytes], room: int, code: int) -> None:
        self._inner = inner
        self._room = room
        self._code = code

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            self._inner.write(data[: self._room])  # a partial file, as on a real full disk
            self._room = 0
            raise OSError(self._code, os.strerror(self._code))
        self._room -= len(data)
        return self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _fill_spool(code: int) -> Callable[[pytest.MonkeyPatch], None]:
    def apply(monkeypatch: pytest.MonkeyPatch) -> None:
        real_init = SpoolFile.__init__

        def init(self: SpoolFile, *args: Any) -> None:
            real_init(self, *args)
            self._file = FillingFile(self._file, 100, code)  # type: ignore[assignment]

        monkeypatch.setattr(SpoolFile, "__init__", init)

    return apply


def _raise(code: int) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


def _fsync_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", _raise(errno.EIO))


def _link_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "link", _raise(errno.ENOSPC))


def _database_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLITE_FULL while the rows are inserted, after the blob was linked into place."""

    def insert(*args: Any, **kwargs: Any) -> None:
        raise peewee.OperationalError("database or disk is full")

    monkeypatch.setattr(UploadService, "_insert_rows", insert)


FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "spool-enospc": _fill_spool(errno.ENOSPC),
    "spool-efbig": _fill_spool(errno.EFBIG),
    "fsync-eio": _fsync_fails,
    "link-enospc": _link_fails,
    "database-full": _database_full,
}


# --- setups: state a row needs before it runs ---------------------------------------------


def burn(filename: str) -> Callable[[Env], None]:
    """A deleted file's name: what the upload service checks (`UsedFilename`), alone."""

    def setup(env: Env) -> None:
        repo = models.Repository.get(models.Repository.name == "main")
        models.UsedFilename.create(repository=repo, filename=filename)

    return setup


def upload_then_delete(env: Env) -> None:
    """What a delete command would do: drop the rows and the blob, keep the name burned.

    The row then uploads the very same bytes again (the wheel `wheel()` builds is
    byte-for-byte this one).
    """
    response = post(env, make_wheel(subfolder(env.folder, "first"), FOO))
    assert response.status_code == 200, response.status
    row = models.File.get(models.File.filename == FOO.wheel_name)
    blob = env.settings.data / "files" / row.storage_key
    models.File.delete().where(models.File.id == row.id).execute()
    models.Release.delete().execute()
    models.Project.delete().execute()
    models.Repository.update(generation=models.Repository.generation + 1).execute()
    blob.unlink()
    blob.parent.rmdir()
    blob.parent.parent.rmdir()
    assert models.UsedFilename.select().count() == 1


def subfolder(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir()
    return path


# --- builders -------------------------------------------------------------------------------

Build = Callable[[Path], Path]


def wheel(dist: Dist = FOO) -> Build:
    return lambda folder: make_wheel(folder, dist)


def sdist(dist: Dist = FOO) -> Build:
    return lambda folder: make_sdist(folder, dist)


def wheel_holding(outer: Dist, metadata: bytes) -> Build:
    """A wheel named (and with a .dist-info) for `outer`, whose METADATA says `metadata`."""
    return lambda folder: write_zip(folder / outer.wheel_name, wheel_members(outer, metadata))


def sdist_holding(outer: Dist, metadata: bytes) -> Build:
    return lambda folder: write_tar_gz(folder / outer.sdist_name, sdist_members(outer, metadata))


def raw(filename: str, make: Callable[[], bytes]) -> Build:
    def build(folder: Path) -> Path:
        path = folder / filename
        path.write_bytes(make())
        return path

    return build


def metadata_text(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _one_gib_member_bomb() -> bytes:
    return raw_zip([*foo_wheel_members(), zero_bomb("foo/zeros.bin", b"", 1024 * MiB)])


def _one_gib_metadata_bomb() -> bytes:
    members = [m for m in foo_wheel_members() if not m.name.endswith(b"METADATA")]
    return raw_zip(
        [*members, zero_bomb(f"{FOO.name}-1.0.dist-info/METADATA", FOO.metadata(), 1024 * MiB)]
    )


def _fifty_mb_metadata() -> bytes:
    return raw_zip(foo_wheel_members(dataclasses.replace(FOO, description="x" * 50 * 10**6)))


# --- the table --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    case: str
    status: int
    reason: str
    build: Build = dataclasses.field(default_factory=wheel)
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    filename: str | None = None  # the multipart filename, when not the built file's name
    auth: str = "token"
    setup: Callable[[Env], None] | None = None
    fault: str | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    not_in_reason: tuple[str, ...] = ()
    max_seconds: float | None = None
    max_rss_growth_mib: int | None = None


KOO = Dist("koo", "1.0")
ROWS: list[Any] = [
    # 3: confusable and malformed names, in the form, the filename and the metadata.
    pytest.param(
        Row("03", 400, "Invalid project name", fields={"name": CYRILLIC}),
        id="case03-form-name-cyrillic",
    ),
    pytest.param(
        Row("03", 400, "Invalid project name", fields={"name": "foo\u200d"}),
        id="case03-form-name-zwj",
    ),
    pytest.param(
        Row("03", 400, "Invalid project name", fields={"name": "-foo"}),
        id="case03-form-name-leading-dash",
    ),
    pytest.param(
        Row("03", 400, "Invalid project name", fields={"name": ".foo"}),
        id="case03-form-name-leading-dot",
    ),
    pytest.param(
        Row("03", 400, "Invalid project name", fields={"name": "foo."}),
        id="case03-form-name-trailing-dot",
    ),
    pytest.param(
        Row("03", 400, "Invalid project name", fields={"name": "_foo"}),
        id="case03-form-name-leading-underscore",
    ),
    pytest.param(
        Row("03", 400, "Invalid project name", filename=GREEK + "-1.0-py3-none-any.whl"),
        id="case03-filename-greek",
    ),
    pytest.param(
        Row("03", 400, "Invalid project name", sdist(), filename=CYRILLIC + "-1.0.tar.gz"),
        id="case03-filename-cyrillic-sdist",
    ),
    pytest.param(
        Row("03", 400, "Invalid core metadata", wheel_holding(FOO, Dist(GREEK, "1.0").metadata())),
        id="case03-metadata-name-greek",
    ),
    pytest.param(
        Row(
            "03",
            400,
            "Invalid core metadata",
            wheel_holding(KOO, Dist(KELVIN + "oo", "1.0").metadata()),
        ),
        id="case03-metadata-name-kelvin-sign",
    ),
    pytest.param(
        Row("03", 400, "ASCII", wheel(KOO), filename=KELVIN + "oo-1.0-py3-none-any.whl"),
        id="case03-filename-kelvin-sign-wheel",
    ),
    pytest.param(
        Row("03", 400, "ASCII", sdist(KOO), filename=KELVIN + "oo-1.0.tar.gz"),
        id="case03-filename-kelvin-sign-sdist",
    ),
    pytest.param(
        Row("03", 400, "ASCII", filename=f"foo-1.0-py3-none-{KELVIN}.whl"),
        id="case03-filename-kelvin-sign-platform-tag",
    ),
    # 4: the metadata names one project, the filename another.
    pytest.param(
        Row(
            "04",
            400,
            "Metadata name 'foo' does not match",
            wheel_holding(Dist("bar", "1.0"), FOO.metadata()),
        ),
        id="case04-metadata-foo-in-bar-wheel",
    ),
    pytest.param(
        Row(
            "04",
            400,
            "Metadata name 'foo' does not match",
            wheel_holding(Dist("foo_bar", "1.0"), FOO.metadata()),
        ),
        id="case04-metadata-foo-in-foo_bar-wheel",
    ),
    pytest.param(
        Row(
            "04",
            400,
            "Metadata name 'foo' does not match",
            sdist_holding(Dist("foo_bar", "1.0"), FOO.metadata()),
        ),
        id="case04-metadata-foo-in-foo_bar-sdist",
    ),
    pytest.param(
        Row(
            "04",
            400,
            "Form name 'foo' does not match",
            wheel(Dist("foo_bar", "1.0")),
            fields={"name": "foo"},
        ),
        id="case04-form-foo-file-foo_bar",
    ),
    # 7 (decision): Metadata-Version 2.0 was never a real version; it is refused.
    pytest.param(
        Row(
            "07",
            400,
            "'2.0' is not a valid metadata version",
            wheel_holding(FOO, Dist("foo", "1.0", metadata_version="2.0").metadata()),
        ),
        id="case07-wheel-metadata-version-2.0",
    ),
    pytest.param(
        Row(
            "07",
            400,
            "'2.0' is not a valid metadata version",
            sdist_holding(FOO, Dist("foo", "1.0", metadata_version="2.0").metadata()),
        ),
        id="case07-sdist-metadata-version-2.0",
    ),
    # 15: a file part that starts with CR LF, then 20 MB without one (CVE-2023-46136).
    pytest.param(
        Row(
            "15",
            400,
            "not a zip archive",
            raw(FOO.wheel_name, lambda: b"\r\n" + b"x" * 20 * 10**6),
            max_seconds=20,
        ),
        id="case15-leading-crlf-then-20mb",
    ),
    # 16: 1 GiB of zeros deflated to about 1 MB: refused fast, never inflated.
    pytest.param(
        Row(
            "16",
            400,
            "zip bomb",
            raw(FOO.wheel_name, _one_gib_member_bomb),
            max_seconds=10,
            max_rss_growth_mib=256,
        ),
        id="case16-zip-bomb-1gib-member",
    ),
    pytest.param(
        Row(
            "16",
            400,
            "zip bomb",
            raw(FOO.wheel_name, _one_gib_metadata_bomb),
            max_seconds=10,
            max_rss_growth_mib=256,
        ),
        id="case16-zip-bomb-1gib-metadata",
    ),
    # 17: a 50 MB METADATA with the default cap (4 MiB).
    pytest.param(
        Row(
            "17",
            400,
            "METADATA is larger than the server accepts (4194304 bytes)",
            raw(FOO.wheel_name, _fifty_mb_metadata),
            max_seconds=10,
            max_rss_growth_mib=256,
        ),
        id="case17-metadata-50mb-default-cap",
    ),
    # 22 (decision): a deleted file's name stays burned, whatever the bytes.
    pytest.param(
        Row(
            "22",
            400,
            "File already exists: foo-1.0-py3-none-any.whl was used by a deleted file",
            setup=burn(FOO.wheel_name),
            not_in_reason=("ever registered",),
        ),
        id="case22-burned-filename",
    ),
    pytest.param(
        Row(
            "22",
            400,
            "was used by a deleted file",
            setup=upload_then_delete,
            not_in_reason=("ever registered",),
        ),
        id="case22-deleted-then-same-bytes-again",
    ),
    pytest.param(
        Row("22", 400, "was used by a deleted file", sdist(), setup=burn(FOO.sdist_name)),
        id="case22-burned-sdist-filename",
    ),
    # 25: storage failures at every step of the write path.
    pytest.param(
        Row("25", 507, "Server storage is full; could not store the upload", fault="spool-enospc"),
        id="case25-disk-full-while-spooling",
    ),
    pytest.param(
        Row("25", 507, "Server storage is full; could not store the upload", fault="spool-efbig"),
        id="case25-file-size-limit-while-spooling",
    ),
    pytest.param(
        Row("25", 507, "Server could not store the upload: Input/output error", fault="fsync-eio"),
        id="case25-fsync-fails",
    ),
    pytest.param(
        Row(
            "25",
            507,
            f"Server storage is full; could not store {FOO.wheel_name}",
            fault="link-enospc",
        ),
        id="case25-disk-full-while-publishing",
    ),
    pytest.param(
        Row("25", 507, "Server storage is full", fault="database-full"),
        id="case25-database-full-while-committing",
    ),
    # 32: every kind of bad token, on the upload endpoint.
    pytest.param(
        Row("32", 401, "Invalid or expired API token", auth="revoked"), id="case32-revoked-token"
    ),
    pytest.param(
        Row("32", 401, "Invalid or expired API token", auth="expired"), id="case32-expired-token"
    ),
    pytest.param(
        Row("32", 401, "Invalid or expired API token", auth="truncated"),
        id="case32-truncated-token",
    ),
    pytest.param(
        Row("32", 401, "Invalid or expired API token", auth="trailing-space"),
        id="case32-token-trailing-space",
    ),
    pytest.param(
        Row("32", 401, "Invalid username or password", auth="wrong-prefix"),
        id="case32-token-wrong-prefix",
    ),
    # 35: HTML where a version specifier belongs.
    pytest.param(
        Row(
            "35",
            400,
            "Invalid core metadata",
            wheel_holding(
                FOO,
                metadata_text(
                    "Metadata-Version: 2.1",
                    "Name: foo",
                    "Version: 1.0",
                    'Requires-Python: >=3.8"><script>alert(1)</script>',
                ),
            ),
        ),
        id="case35-requires-python-html",
    ),
    # Extra cases: what a client says about itself is not a credential.
    pytest.param(
        Row("extra", 401, "credentials in the Authorization header", auth="session-cookie"),
        id="extra-session-cookie-only",
    ),
    pytest.param(
        Row("extra", 401, "Authentication required", auth="proxy-claims"),
        id="extra-forwarded-for-localhost",
    ),
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@pytest.mark.parametrize("row", ROWS)
def test_refused_and_nothing_left_behind(
    row: Row, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(tmp_path, **row.settings)
    if row.setup is not None:
        row.setup(env)
    path = row.build(env.folder)
    body, content_type = encode_multipart(form_for(path, row.filename, **row.fields))
    headers, environ = env.credentials(row.auth)
    before, outside = state(env.settings), folder_state(tmp_path)
    with monkeypatch.context() as patch:
        if row.fault is not None:
            FAULTS[row.fault](patch)
        rss, started = peak_rss_mib(), time.monotonic()
        response = env.client.post(
            "/", data=body, content_type=content_type, headers=headers, environ_base=environ
        )
        elapsed = time.monotonic() - started
    assert_refused(response, row.status, row.reason)
    for text in row.not_in_reason:
        assert text not in response.status
    if row.status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="minirepo"'
    assert state(env.settings) == before
    assert folder_state(tmp_path) == outside  # nothing written anywhere else either
    if row.max_seconds is not None:
        assert elapsed < row.max_seconds
    if row.max_rss_growth_mib is not None:
        assert peak_rss_mib() - rss < row.max_rss_growth_mib
    # The refusal left the server usable: the same app stores a good file now.
    if row.fault is None and row.setup is None:
        good = make_wheel(subfolder(env.folder, "good"), FOO)
        assert post(env, good).status_code == 200


def test_twine_retry_after_disk_full_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Case 25: twine re-sends a 5xx'd upload; once there is room the retry is a plain 200."""
    env = make_env(tmp_path)
    path = make_wheel(env.folder, FOO)
    with monkeypatch.context() as patch:
        FAULTS["spool-enospc"](patch)
        assert post(env, path).status_code == 507
    assert post(env, path).status_code == 200
    assert models.File.select().count() == 1
    assert [p.name for p in (env.settings.data / "tmp").iterdir()] == []


# --- case 6: local versions (decision: accepted) ------------------------------------------


def test_case06_local_version_round_trips(tmp_path: Path) -> None:
    """Stored, listed with its `+` quoted, served back byte for byte; pip: see integration."""
    env = make_env(tmp_path)
    path = make_wheel(env.folder, Dist("foo", "1.0+local"))
    assert post(env, path).status_code == 200
    page = env.client.get("/simple/foo/", headers=JSON).get_json()
    assert page["versions"] == ["1.0+local"]
    (entry,) = page["files"]
    assert entry["url"] == "../../files/foo/foo-1.0%2Blocal-py3-none-any.whl"
    with env.client.get("/files/foo/foo-1.0%2Blocal-py3-none-any.whl") as response:
        assert response.status_code == 200
        assert response.get_data() == path.read_bytes()


# --- case 35: hostile metadata is never markup ---------------------------------------------

XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
MARKUP = ("<script", "<img", "onerror", "javascript:")
# The one script a page of the web UI loads: its copy buttons, from this server.
OWN_SCRIPT = "/-/static/copy.js"


def inert(page: str) -> list[str]:
    """What in an HTML page could run script: an element that runs or embeds code (but the
    page's own script), an event attribute, a `javascript:`/`data:` URL. Empty: none."""
    found: list[str] = []

    class Checker(html.parser.HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = dict(attrs)
            if tag == "script" and values.get("src") == OWN_SCRIPT:
                return
            active = ("script", "iframe", "object", "embed", "frame", "base")
            if tag in active or (tag == "meta" and "http-equiv" in values):
                found.append(f"<{tag}>")
            for name, value in attrs:
                url = (value or "").strip().lower().replace("\t", "").replace("\n", "")
                if name.startswith("on"):
                    found.append(f"{tag} {name}")
                elif name in ("href", "src", "action", "formaction") and url.startswith(
                    ("javascript:", "data:", "vbscript:")
                ):
                    found.append(f"{tag} {name}={value}")

    checker = Checker()
    checker.feed(page)
    checker.close()
    return found


def hostile_metadata(content_type: str) -> bytes:
    description = {
        "text/markdown": f"# Title\n\n{XSS}\n\n[click](javascript:alert(3))\n",
        "text/x-rst": (
            f"Title\n=====\n\n.. raw:: html\n\n   {XSS}\n\n`click <javascript:alert(3)>`_\n"
        ),
        "text/plain": f"{XSS}\njavascript:alert(3)\n",
    }[content_type]
    return metadata_text(
        "Metadata-Version: 2.1",
        "Name: foo",
        "Version: 1.0",
        f"Summary: {XSS}",
        f"Author: {XSS}",
        f"Author-email: {XSS} <a@example.invalid>",
        f"Maintainer: {XSS}",
        f"Keywords: {XSS}",
        f"License: {XSS}",
        "Home-page: javascript:alert(4)",
        "Download-URL: javascript:alert(5)",
        "Project-URL: Homepage, javascript:alert(6)",
        f"Project-URL: {XSS}, https://example.invalid/",
        f"Description-Content-Type: {content_type}",
        "",
        description,
    )


@pytest.mark.parametrize("content_type", ["text/markdown", "text/x-rst", "text/plain"])
def test_case35_hostile_metadata_is_never_markup(tmp_path: Path, content_type: str) -> None:
    env = make_env(tmp_path)
    raw_metadata = hostile_metadata(content_type)
    wheel_path = wheel_holding(FOO, raw_metadata)(env.folder)
    sdist_path = sdist_holding(FOO, raw_metadata)(env.folder)
    for path in (wheel_path, sdist_path):
        response = post(env, path)
        assert response.status_code == 200, response.status
    pages = ["/", "/main/", "/simple/", "/main/simple/", "/simple/foo/", "/main/simple/foo/"]
    # The web UI's pages too (issue 17): the README rendered, the search, the JSON API.
    pages += ["/main/project/foo/", "/main/project/foo/1.0/", "/-/search?q=foo", "/pypi/foo/json"]
    for url in pages:
        for accept in ({}, JSON, {"Accept": "application/vnd.pypi.simple.v1+html"}):
            with env.client.get(url, headers=accept) as response:
                assert response.status_code == 200, (url, response.status)
                text = response.get_data(as_text=True)
                if response.mimetype == "application/json":
                    continue  # data, never rendered (nosniff): JSON escapes what it must
                if url.startswith(("/main/project/", "/-/search")) or url in ("/", "/main/"):
                    # A page of the web UI shows the hostile text, escaped: it must not act.
                    assert inert(text) == [], (url, accept)
                    continue
                for needle in MARKUP:
                    assert needle not in text, (url, accept, needle)
    # The metadata file is served as it was uploaded, but never as something a browser renders.
    with env.client.get(f"/files/foo/{FOO.wheel_name}.metadata") as response:
        assert response.status_code == 200
        assert response.get_data() == raw_metadata
        assert response.mimetype == "text/plain"


# --- extra cases -----------------------------------------------------------------------------


def test_extra_proxy_headers_grant_no_read_access(tmp_path: Path) -> None:
    """A20: `X-Forwarded-For: 127.0.0.1` (and friends) never turn a caller into localhost."""
    env = make_env(tmp_path, read="authenticated")
    assert post(env, make_wheel(env.folder, FOO)).status_code == 200
    urls = ["/simple/", "/simple/foo/", f"/files/foo/{FOO.wheel_name}", "/main/"]
    for url in urls:
        for addr in (OUTSIDE_ADDR, "127.0.0.1"):  # not even a real loopback caller is trusted
            with env.client.get(
                url, headers=PROXY_CLAIMS, environ_base={"REMOTE_ADDR": addr}
            ) as response:
                assert response.status_code == 401, (url, addr, response.status)
                assert b"PK" not in response.get_data()


def test_extra_proxy_headers_do_not_dodge_the_lockout(tmp_path: Path) -> None:
    """The failure limiter counts the socket's address, not what a header claims.

    Failures spread across users lock the address out at 3x the per-user limit."""
    env = make_env(tmp_path, read="authenticated")
    for attempt in range(env.settings.login_failure_limit * auth.ADDRESS_LIMIT_FACTOR):
        claims = {**PROXY_CLAIMS, "X-Forwarded-For": f"10.9.0.{attempt}"}
        response = env.client.get(
            "/simple/",
            headers={**basic(f"user{attempt}", "wrong-password"), **claims},
            environ_base={"REMOTE_ADDR": OUTSIDE_ADDR},
        )
        assert response.status_code == 401
    response = env.client.get(
        "/simple/",
        headers={**basic(USER, PASSWORD), "X-Forwarded-For": "10.200.0.1"},
        environ_base={"REMOTE_ADDR": OUTSIDE_ADDR},
    )
    assert response.status_code == 429


def test_extra_session_cookie_reads_nothing_private(tmp_path: Path) -> None:
    """A16: no cookie session exists; a validly signed one is ignored, on reads too."""
    env = make_env(tmp_path, read="authenticated")
    env.client.set_cookie(env.app.config["SESSION_COOKIE_NAME"], session_cookie(env.app))
    for url in ("/simple/", "/main/"):
        response = env.client.get(url)
        assert response.status_code == 401
        assert "Set-Cookie" not in response.headers


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o000], ids=["umask022", "umask002", "umask000"])
def test_extra_database_and_data_folder_are_private(tmp_path: Path, mask: int) -> None:
    """A18: the DB (and its -wal/-shm) is 0600 and nothing below data/ is group/world
    readable, whatever the umask of the process that created it."""
    with umask(mask):
        env = make_env(tmp_path)
        assert post(env, make_wheel(env.folder, FOO)).status_code == 200
        data = env.settings.data
        for name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", "secret"):
            assert (data / name).stat().st_mode & 0o777 == 0o600, name
        assert data.stat().st_mode & 0o777 == 0o700
        for path in data.rglob("*"):
            assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))


def test_extra_upload_logs_hold_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A17: every upload outcome, logged at DEBUG, names no password, token or header."""
    caplog.set_level(logging.DEBUG)
    env = make_env(tmp_path, login_failure_limit=3)
    good = make_wheel(env.folder, FOO)
    other_folder = env.folder / "other"
    other_folder.mkdir()
    other = make_wheel(other_folder, dataclasses.replace(FOO, payload="X = 1\n"))
    sent = [env.token, PASSWORD, "wrong-password-xyz", "mr-not-a-real-token-xyz"]
    assert post(env, good, "password").status_code == 200
    assert post(env, good).status_code == 200
    assert post(env, other).status_code == 409
    assert post(env, other, sha256_digest="0" * 64).status_code == 400
    with monkeypatch.context() as patch:
        FAULTS["spool-enospc"](patch)
        assert post(env, other).status_code == 507
    with monkeypatch.context() as patch:
        FAULTS["database-full"](patch)
        assert post(env, make_wheel(other_folder, Dist("bar", "1.0"))).status_code >= 500
    for headers in (basic(USER, sent[2]), token_auth(sent[3])):
        for _ in range(env.settings.login_failure_limit):
            response = post(env, other, headers=headers)
            assert response.status_code in (401, 429)
    assert "stored foo-1.0-py3-none-any.whl" in caplog.text  # we did capture the log
    assert "locked out" in caplog.text
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    for secret in sent:
        assert secret not in logged
        assert secret[:12] not in logged
    assert "Authorization" not in logged
    assert "Basic " not in logged


def _plant_outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "victim.whl").write_bytes(b"precious bytes outside the data folder")
    return outside


def test_extra_planted_directory_symlink_is_not_followed_at_start(tmp_path: Path) -> None:
    """The startup sweep (quarantine of orphan blobs) must not reach through a symlink."""
    env = make_env(tmp_path)
    outside = _plant_outside(tmp_path)
    os.symlink(outside, env.settings.data / "files" / "zz")
    before = folder_state(outside)
    open_data(env.settings)  # what `minirepo serve` does when it starts
    assert folder_state(outside) == before


def test_extra_upload_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    path = make_wheel(env.folder, FOO)
    prefix = hashlib.sha256(path.read_bytes()).hexdigest()[:2]
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, env.settings.data / "files" / prefix)
    post(env, path)
    assert list(outside.iterdir()) == []


def test_extra_planted_symlinks_never_serve_outside_bytes(tmp_path: Path) -> None:
    """A symlinked blob is refused (O_NOFOLLOW); through a symlinked directory only bytes
    with the recorded sha256 could ever be served, so other bytes there are refused too."""
    env = make_env(tmp_path)
    path = make_wheel(env.folder, FOO)
    assert post(env, path).status_code == 200
    data = path.read_bytes()
    key = blob_key(hashlib.sha256(data).hexdigest(), FOO.wheel_name)
    top = env.settings.data / "files" / key.split("/")[0]
    outside = tmp_path / "outside"
    top.rename(outside)
    os.symlink(outside, top)
    planted = outside / key.split("/")[1] / FOO.wheel_name
    planted.write_bytes(b"Z" * len(data))  # same size, other bytes
    url = f"/files/foo/{FOO.wheel_name}"
    for method in (env.client.get, env.client.head):
        with method(url) as response:
            assert response.status_code >= 500, response.status
            assert b"Z" * 64 not in response.get_data()
    planted.unlink()
    os.symlink(Path("/etc/passwd"), planted)
    with env.client.get(url) as response:
        assert response.status_code >= 500
        assert b"root:" not in response.get_data()


# --- case 26 (and 8): recovery of an orphan with the longest legal filename ----------------


def test_case26_orphan_with_a_long_filename_is_quarantined_at_start(tmp_path: Path) -> None:
    """A crash between publishing a blob and committing its row leaves an orphan; its
    filename may be as long as parse_filename allows (255 bytes). Start must survive it."""
    env = make_env(tmp_path)
    filename = "f" * 200 + "-1.0-py3-none-any.whl"
    data = b"an upload whose rows never committed"
    key = blob_key(hashlib.sha256(data).hexdigest(), filename)
    blob = env.settings.data / "files" / key
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    age(blob)
    open_data(env.settings)  # what `minirepo serve` does when it starts
    assert not blob.exists()
    kept = [p for p in (env.settings.data / "quarantine").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in kept] == [data]


# --- case 28: a damaged file is refused with a log line naming it -------------------------


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_case28_damaged_file_is_logged_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    env = make_env(tmp_path)
    path = make_wheel(env.folder, FOO)
    assert post(env, path).status_code == 200
    key = models.File.get().storage_key
    blob = env.settings.data / "files" / key
    data = blob.read_bytes()
    if damage == "flip":
        blob.write_bytes(data[:50] + bytes([data[50] ^ 0xFF]) + data[51:])
    elif damage == "truncate":
        blob.write_bytes(data[:-1])
    else:
        blob.unlink()
    caplog.set_level(logging.ERROR)
    with env.client.get(f"/files/foo/{FOO.wheel_name}") as response:
        assert response.status_code == 500
        assert response.get_data() != data
        assert "Stored file foo-1.0-py3-none-any.whl is" in response.status
    assert key in caplog.text


# --- extra: a database file left readable by others ---------------------------------------


def test_extra_database_left_world_readable_is_fixed_or_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env(tmp_path)
    database = env.settings.data / DATABASE
    database.chmod(0o644)
    caplog.set_level(logging.WARNING)
    open_data(env.settings)  # what `minirepo serve` does when it starts
    assert database.stat().st_mode & 0o077 == 0 or DATABASE in caplog.text


# --- the map --------------------------------------------------------------------------------


def test_docs_map_covers_every_case_with_existing_tests() -> None:
    """docs/security-cases.md has a row per case 1-40 and per finding L1-L11 of issue 14,
    and every test it names exists."""
    text = (ROOT / "docs" / "security-cases.md").read_text(encoding="utf-8")
    numbered = {int(number) for number in re.findall(r"^\| (\d+) \|", text, re.MULTILINE)}
    assert numbered == set(range(1, 41))
    findings = {int(number) for number in re.findall(r"^\| L(\d+) \|", text, re.MULTILINE)}
    assert findings == set(range(1, 12)), "issue 14's eleven findings"
    nodes = re.findall(r"`(tests/[\w/]+\.py)::(\w+)(?:\[([^\]`]+)\])?`", text)
    assert len(nodes) > 40
    sources: dict[str, str] = {}
    for path, function, _param in nodes:
        if path not in sources:
            sources[path] = (ROOT / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {function}\(", sources[path], re.MULTILINE), f"{path}::{function}"
    own = sources.get("tests/unit/test_security_cases.py", "")
    for _path, _function, param in nodes:
        if _path == "tests/unit/test_security_cases.py" and param:
            assert f'id="{param}"' in own or param in own, param
