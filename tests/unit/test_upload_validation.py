"""The upload endpoint refuses every bad input cleanly, and accepts what real clients send.

Every refusal in the table is checked the same way: the status, a one-line ASCII reason
phrase saying what is wrong, the same text as a plain-text body, and nothing left behind
(no row, no blob, no temp file, no file anywhere under the test folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from minirepo import db, models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.services import accounts
from tests.conftest import basic, post_upload, snapshot, token_auth, upload_form
from tests.helpers.distfactory import Dist, make_sdist, make_wheel, sdist_members, write_tar_gz
from tests.helpers.serverproc import FAST_HASH
from tests.unit.test_dists import BAD_FILENAMES, FOO, HOSTILE_SDISTS, HOSTILE_WHEELS, noise

USER = "alice"
PASSWORD = "alice-password-1"
SMALL = 64 * 1024
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


# --- building and sending the form --------------------------------------------------------


def _quote_param(name: str, value: str) -> str:
    """`name="value"` as urllib3 writes it, or RFC 2231 `name*=` for what cannot be quoted.

    The `*=` form is how a hostile client gets a NUL, CR, LF or backslash past the
    multipart parser into the filename the server sees.
    """
    if not value.isascii() or any(ord(ch) < 32 or ch in '\\"\x7f' for ch in value):
        return f"{name}*=UTF-8''{quote(value, safe='')}"
    return f'{name}="{value}"'


def encode_multipart(
    form: dict[str, Any], file_type: str | None = "application/octet-stream"
) -> tuple[bytes, str]:
    """The body and Content-Type of a multipart form; a file is a (bytes, filename) pair."""
    boundary = "minirepo-test-boundary-7f3a9c"
    chunks: list[bytes] = []
    for key, value in form.items():
        for item in value if isinstance(value, list) else [value]:
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"'
            if isinstance(item, tuple):
                data, filename = item
                head += "; " + _quote_param("filename", filename)
                if file_type is not None:
                    head += f"\r\nContent-Type: {file_type}"
            else:
                data = str(item).encode()
            chunks.append(head.encode() + b"\r\n\r\n" + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def form_for(
    path: Path, filename: str | None = None, drop_content: bool = False, **fields: Any
) -> dict[str, Any]:
    """upload_form's fields, with the file as bytes (sent under `filename` if given).

    upload_form opens the file for its `content` tuple; it is closed here, never dropped
    open (a replaced `content` override would leak it: a ResourceWarning).
    """
    content = fields.pop("content", None)
    form = upload_form(path, **fields)
    handle, name = form.pop("content")
    with handle:
        data = handle.read()
    if content is not None:
        form["content"] = content
    elif not drop_content:
        form["content"] = (data, name if filename is None else filename)
    return form


def tree(folder: Path) -> frozenset[str]:
    """Every path below `folder` except the database's own files."""
    return frozenset(
        str(p.relative_to(folder)) for p in folder.rglob("*") if "minirepo.sqlite3" not in p.name
    )


# --- the app each row runs against ---------------------------------------------------------


# The credentials a row may use: a token of user alice (a plain uploader) made on demand.
TOKENS: dict[str, dict[str, Any]] = {
    "upload": {},
    "read": {"permission": "read"},
    "scoped": {"projects": ("other-project",)},
    "scoped-foo": {"projects": ("Foo",)},
}


@dataclasses.dataclass
class Server:
    settings: Settings
    app: Flask
    client: FlaskClient
    database: db.Database
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)

    def activated(self) -> contextlib.AbstractContextManager[db.Database]:
        """Models and services outside a request talk to this app's database inside this."""
        return self.database.activated()

    def token(self, kind: str) -> str:
        if kind not in self.tokens:
            self.tokens[kind] = accounts.create_token(USER, **TOKENS[kind]).secret
        return self.tokens[kind]

    def headers(self, auth: str) -> dict[str, str]:
        if auth == "none":
            return {}
        if auth == "password":
            return basic(USER, PASSWORD)
        if auth == "wrong-password":
            return basic(USER, "not-the-password")
        return token_auth(self.token(auth))


def start(base: Settings, **overrides: Any) -> Server:
    settings = dataclasses.replace(base, **overrides)
    app = create_app(settings)
    server = Server(settings, app, app.test_client(), app.extensions["minirepo"].folder.database)
    with server.activated():
        accounts.add_user(USER, PASSWORD, method=FAST_HASH)
    return server


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    """The app, with its database active for the test's own calls (models, tokens)."""
    server = start(settings)
    with server.activated():
        yield server
    server.database.close()


@pytest.fixture(scope="module")
def shared_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[dict[str, int]], Server]]:
    """One app per settings variant for the whole table, which is fine because every
    row asserts that it changed nothing; it keeps 150 rows from building 150 apps."""
    servers: dict[tuple[tuple[str, int], ...], Server] = {}

    def get(overrides: dict[str, int]) -> Server:
        key = tuple(sorted(overrides.items()))
        if key not in servers:
            base = Settings(
                data=tmp_path_factory.mktemp("server") / "data", password_hash=FAST_HASH
            )
            servers[key] = start(base, **overrides)
        return servers[key]

    yield get
    for server in servers.values():
        server.database.close()


@pytest.fixture
def shared(
    shared_servers: Callable[[dict[str, int]], Server],
) -> Iterator[Callable[[dict[str, int]], Server]]:
    """A shared app, with its database active for the rest of the test."""
    with contextlib.ExitStack() as stack:

        def get(overrides: dict[str, int]) -> Server:
            server = shared_servers(overrides)
            stack.enter_context(server.activated())
            return server

        yield get


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "dist"
    path.mkdir()
    return path


# --- the table of refusals -----------------------------------------------------------------


Build = Callable[[Path], Path]


def wheel(dist: Dist = FOO, filename: str | None = None) -> Build:
    return lambda folder: make_wheel(folder, dist, filename)


def sdist(dist: Dist = FOO) -> Build:
    return lambda folder: make_sdist(folder, dist)


def raw(filename: str, data: bytes | Callable[[Path], bytes]) -> Build:
    def build(folder: Path) -> Path:
        path = folder / filename
        path.write_bytes(data(folder) if callable(data) else data)
        return path

    return build


def big_wheel(size: int) -> Build:
    """A wheel that barely compresses: about `size` bytes on the wire."""
    text = noise(size).hex()
    return wheel(dataclasses.replace(FOO, payload=f"NOISE = {text!r}\n"))


@dataclasses.dataclass(frozen=True)
class Case:
    status: int
    reason: str
    build: Build = dataclasses.field(default_factory=wheel)
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    filename: str | None = None
    drop_content: bool = False
    auth: str = "upload"
    settings: dict[str, int] = dataclasses.field(default_factory=dict)
    content_length: str | None = None
    length_delta: int | None = None  # Content-Length = the real length + this
    url: str = "/"
    content_first: bool = False  # clients send the file last; a hostile one may not


def _filename_cases() -> dict[str, Case]:
    cases = {
        f"filename-{key}": Case(400, reason, filename=bad)
        for key, (bad, reason) in BAD_FILENAMES.items()
    }
    # A sample here; test_dists checks all 33 control characters in parse_filename.
    for code in (0, 1, 9, 10, 13, 27, 31, 127):
        bad = f"foo-1.0-py3-none-any{chr(code)}.whl"
        cases[f"filename-chr{code}"] = Case(400, "path or control characters", filename=bad)
    return cases


def _archive_cases() -> dict[str, Case]:
    cases = {
        f"wheel-{key}": Case(400, reason, raw(FOO.wheel_name, build))
        for key, (build, reason) in HOSTILE_WHEELS.items()
    }
    cases.update(
        {
            f"sdist-{key}": Case(400, reason, raw(FOO.sdist_name, build))
            for key, (build, reason) in HOSTILE_SDISTS.items()
        }
    )
    return cases


def _pkg_info(text: str) -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        path = write_tar_gz(folder / "x.tar.gz", sdist_members(FOO, text.encode()))
        return path.read_bytes()

    return build


CASES: dict[str, Case] = {
    **_filename_cases(),
    # The form disagrees with the file, or misses a part.
    "form-name-other": Case(400, "Form name 'bar' does not match", fields={"name": "bar"}),
    "form-name-prefix": Case(
        400,
        "Form name 'foo' does not match 'foobar-1.0-py3-none-any.whl'",
        wheel(Dist("foobar", "1.0")),
        fields={"name": "foo"},
    ),
    "form-name-longer": Case(400, "does not match", fields={"name": "foo-bar"}),
    "form-name-fullwidth": Case(400, "Invalid project name", fields={"name": "ｆｏｏ"}),  # noqa: RUF001
    "form-name-greek": Case(400, "Invalid project name", fields={"name": "fοο"}),  # noqa: RUF001
    "form-name-zero-width": Case(400, "Invalid project name", fields={"name": "f\u200boo"}),
    "form-name-html": Case(400, "Invalid project name", fields={"name": "foo<img src=x>"}),
    "form-name-trailing-dash": Case(400, "Invalid project name", fields={"name": "foo-"}),
    "form-name-300": Case(400, "Invalid project name", fields={"name": "f" * 300}),
    "form-name-missing": Case(400, "no 'name' field", fields={"name": None}),
    "form-name-empty": Case(400, "no 'name' field", fields={"name": ""}),
    "form-version-other": Case(400, "Form version '2.0' does not match", fields={"version": "2.0"}),
    "form-version-invalid": Case(
        400, "Invalid version '1.0-beta_final!!'", fields={"version": "1.0-beta_final!!"}
    ),
    "form-version-300": Case(400, "Invalid version", fields={"version": "1" + ".0" * 150}),
    "form-version-missing": Case(400, "no 'version' field", fields={"version": None}),
    "form-version-empty": Case(400, "no 'version' field", fields={"version": ""}),
    "form-filetype-sdist-for-wheel": Case(
        400, "Form filetype 'sdist'", fields={"filetype": "sdist"}
    ),
    "form-filetype-wheel-for-sdist": Case(
        400, "Form filetype 'bdist_wheel'", sdist(), fields={"filetype": "bdist_wheel"}
    ),
    "form-filetype-egg": Case(400, "Form filetype 'bdist_egg'", fields={"filetype": "bdist_egg"}),
    "content-missing": Case(400, "no file part named 'content'", drop_content=True),
    "content-as-text-field": Case(
        400, "no file part named 'content'", drop_content=True, fields={"content": "PK"}
    ),
    "action-missing": Case(400, "no ':action' field", fields={":action": None}),
    "action-submit": Case(410, "registration is not needed", fields={":action": "submit"}),
    "action-unknown": Case(
        400, "Unsupported action 'doc_upload'", fields={":action": "doc_upload"}
    ),
    "protocol-version-2": Case(
        400, "Unsupported protocol_version '2'", fields={"protocol_version": "2"}
    ),
    # Digests: each one sent is checked.
    "sha256-wrong": Case(
        400, "sha256_digest supplied does not match", fields={"sha256_digest": "0" * 64}
    ),
    "md5-wrong": Case(400, "md5_digest supplied does not match", fields={"md5_digest": "0" * 32}),
    "blake2-wrong": Case(
        400, "blake2_256_digest supplied does not match", fields={"blake2_256_digest": "0" * 64}
    ),
    "sha256-non-ascii": Case(
        400, "sha256_digest supplied does not match", fields={"sha256_digest": "é" * 64}
    ),
    "sha256-of-other-file": Case(
        400,
        "sha256_digest supplied does not match",
        fields={"sha256_digest": hashlib.sha256(b"other").hexdigest()},
    ),
    # Files that are not distributions.
    "empty-file": Case(400, "it is empty", raw(FOO.wheel_name, b"")),
    "empty-sdist": Case(400, "it is empty", raw(FOO.sdist_name, b"")),
    "ten-bytes-not-an-archive": Case(400, "not a zip archive", raw(FOO.wheel_name, b"0123456789")),
    **_archive_cases(),
    "wheel-metadata-over-cap": Case(
        400,
        "METADATA is larger than the server accepts (65536 bytes)",
        wheel(dataclasses.replace(FOO, description="x" * SMALL)),
        settings={"max_metadata_size": SMALL},
    ),
    "sdist-pkg-info-over-cap": Case(
        400,
        "PKG-INFO is larger than the server accepts (65536 bytes)",
        sdist(dataclasses.replace(FOO, description="x" * SMALL)),
        settings={"max_metadata_size": SMALL},
    ),
    "sdist-pkg-info-1.0.0-in-2.0": Case(
        400,
        "Metadata version 1.0.0 does not match",
        raw("foo-2.0.tar.gz", _pkg_info("Metadata-Version: 2.1\nName: foo\nVersion: 1.0.0\n")),
    ),
    # Sizes and form limits.
    "file-over-max-upload-size": Case(
        413,
        "File too large: the limit is 65536 bytes",
        big_wheel(2 * SMALL),
        settings={"max_upload_size": SMALL},
    ),
    "body-over-max-content-length": Case(
        413,
        "Request body too large",
        big_wheel(2 * 1024**2),
        settings={"max_upload_size": SMALL, "max_metadata_size": SMALL},
    ),
    "description-over-form-memory": Case(
        413,
        "Form fields too large",
        fields={"description": "x" * (SMALL + 1)},
        settings={"max_metadata_size": SMALL},
    ),
    "form-1001-parts": Case(413, "Request body too large", fields={"classifiers": ["x"] * 1001}),
    "content-then-description-over-form-memory": Case(
        413,
        "Form fields too large",
        fields={"description": "x" * (SMALL + 1)},
        settings={"max_metadata_size": SMALL},
        content_first=True,
    ),
    "content-then-1001-parts": Case(
        413, "Request body too large", fields={"classifiers": ["x"] * 1001}, content_first=True
    ),
    "content-leading-crlf-then-2mib": Case(
        400, "not a zip archive", raw(FOO.wheel_name, b"\r\n" + b"x" * 2 * 1024**2)
    ),
    # Credentials and scopes.
    "no-credentials": Case(401, "Authentication required", auth="none"),
    "no-credentials-bad-everything": Case(
        401,
        "Authentication required",
        raw(FOO.wheel_name, b""),
        filename="../../x.whl",
        fields={":action": "submit", "sha256_digest": "0"},
        auth="none",
    ),
    "wrong-password": Case(401, "Invalid username or password", auth="wrong-password"),
    "read-only-token": Case(403, "is read-only", auth="read"),
    "token-scoped-to-other-project": Case(403, "is scoped to project other-project", auth="scoped"),
    "unknown-repository": Case(404, "No repository named 'nope'", url="/nope/legacy/"),
    # a missing repository answers anonymous callers like a private one: the challenge
    "unknown-repository-anonymous": Case(401, "Authentication required", url="/nope/", auth="none"),
    # Content-Length games.
    "anonymous-content-length-2gib": Case(
        401, "Authentication required", auth="none", content_length=str(2 * 1024**3)
    ),
    "anonymous-content-length-negative": Case(
        401, "Authentication required", auth="none", content_length="-1"
    ),
    "content-length-2gib": Case(413, "Request body too large", content_length=str(2 * 1024**3)),
    "content-length-negative": Case(400, "no ':action' field", content_length="-1"),
    "content-length-plus-sign": Case(400, "no ':action' field", content_length="+10"),
    "content-length-garbage": Case(400, "no ':action' field", content_length="ten"),
    "content-length-short": Case(400, "no ':action' field", length_delta=-100),
    "content-length-long": Case(400, "shorter than its Content-Length", length_delta=100),
}


def send(server: Server, case: Case, headers: dict[str, str]) -> TestResponse:
    form = form_for(case.build(Path()), case.filename, case.drop_content, **case.fields)
    if case.content_first and "content" in form:
        form = {"content": form.pop("content"), **form}
    body, content_type = encode_multipart(form)
    environ: dict[str, str] = {}
    if case.content_length is not None:
        environ["CONTENT_LENGTH"] = case.content_length
    if case.length_delta is not None:
        environ["CONTENT_LENGTH"] = str(len(body) + case.length_delta)
    return server.client.post(
        case.url,
        data=body,
        content_type=content_type,
        headers=headers,
        environ_overrides=environ,
    )


def assert_refused(response: TestResponse, status: int, reason: str) -> None:
    assert response.status_code == status, response.status
    phrase = response.status.partition(" ")[2]
    assert reason in phrase
    assert phrase.isascii()
    assert phrase.isprintable()
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == phrase + "\n"


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_upload_is_refused(
    case: Case, shared: Callable[[dict[str, int]], Server], tmp_path: Path, folder: Path
) -> None:
    server = shared(case.settings)
    path = case.build(folder)  # built first, so the tree check sees it in "before"
    headers = server.headers(case.auth)
    root = server.settings.data.parent
    before, files_before = snapshot(server.settings), (tree(tmp_path), tree(root))
    response = send(server, dataclasses.replace(case, build=lambda _: path), headers)
    assert_refused(response, case.status, case.reason)
    if case.status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="minirepo"'
    assert snapshot(server.settings) == before
    assert (tree(tmp_path), tree(root)) == files_before


# --- what real clients send is accepted ----------------------------------------------------


def upload(
    server: Server,
    form: dict[str, Any],
    file_type: str | None = "application/octet-stream",
    auth: str = "upload",
) -> TestResponse:
    body, content_type = encode_multipart(form, file_type)
    headers = server.headers(auth)
    return server.client.post("/", data=body, content_type=content_type, headers=headers)


def assert_ok(response: TestResponse) -> None:
    assert response.status_code == 200, response.status
    assert response.get_data(as_text=True) == "OK\n"


def project_json(server: Server, name: str) -> dict[str, Any]:
    response = server.client.get(f"/simple/{name}/", headers=JSON)
    assert response.status_code == 200, response.status
    page: dict[str, Any] = response.get_json()
    return page


def file_entry(server: Server, name: str, filename: str) -> dict[str, Any]:
    entries = [f for f in project_json(server, name)["files"] if f["filename"] == filename]
    assert len(entries) == 1
    return entries[0]


def blobs(settings: Settings) -> list[Path]:
    return [p for p in (settings.data / "files").rglob("*") if p.is_file()]


def test_twine_style_name_is_compared_normalized(server: Server, folder: Path) -> None:
    """twine sends `Mini-Pkg` for `mini_pkg-0.1.0-…`: the same project once normalized."""
    path = make_wheel(folder, Dist("Mini_Pkg", "0.1.0"))
    assert path.name == "mini_pkg-0.1.0-py3-none-any.whl"
    assert_ok(upload(server, form_for(path, name="Mini-Pkg", metadata_version="2.1")))
    assert file_entry(server, "mini-pkg", path.name)["hashes"]["sha256"]


def test_pdm_style_empty_fields_are_absent(server: Server, folder: Path) -> None:
    path = make_wheel(folder, FOO)
    data = path.read_bytes()
    empty = dict.fromkeys(
        ["home_page", "author", "maintainer", "maintainer_email", "license", "keywords"], ""
    )
    form = form_for(
        path,
        download_url="",
        comment="",
        md5_digest=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        blake2_256_digest="",
        **empty,
    )
    assert_ok(upload(server, form))


def test_flit_style_sdist_without_optional_fields(server: Server, folder: Path) -> None:
    """flit: no pyversion for sdists, no md5, no blake2, metadata_version always 2.3."""
    path = make_sdist(folder, Dist("foo", "1.0", metadata_version="2.5"))
    form = form_for(path, pyversion=None, md5_digest=None, metadata_version="2.3")
    assert_ok(upload(server, form))


def test_uv_style_file_part_without_content_type(server: Server, folder: Path) -> None:
    path = make_wheel(folder, FOO)
    assert_ok(upload(server, form_for(path), file_type=None))
    assert file_entry(server, "foo", path.name)["size"] == path.stat().st_size


def test_every_digest_checked_and_accepted(server: Server, folder: Path) -> None:
    path = make_wheel(folder, FOO)
    data = path.read_bytes()
    form = form_for(
        path,
        sha256_digest=hashlib.sha256(data).hexdigest().upper(),
        md5_digest=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        blake2_256_digest=hashlib.blake2b(data, digest_size=32).hexdigest(),
    )
    assert_ok(upload(server, form))


def test_unknown_fields_and_attestations_are_ignored(server: Server, folder: Path) -> None:
    path = make_wheel(folder, FOO)
    form = form_for(
        path,
        attestations="[]",
        import_names=["foo"],
        requires_dist=["bar>=1", "baz; extra == 'x'"],
        project_urls=["Home, https://example.invalid/"],
        some_future_field="whatever",
    )
    assert_ok(upload(server, form))


def test_post_upload_helper_works(server: Server, folder: Path) -> None:
    """The shared conftest helper, with the werkzeug encoder, reaches the same endpoint."""
    assert_ok(post_upload(server.client, server.token("upload"), make_wheel(folder, FOO)))


def test_basic_password_upload(server: Server, folder: Path) -> None:
    assert_ok(upload(server, form_for(make_wheel(folder, FOO)), auth="password"))


def test_token_scoped_to_the_project_may_upload(server: Server, folder: Path) -> None:
    assert_ok(upload(server, form_for(make_wheel(folder, FOO)), auth="scoped-foo"))


def test_identical_reupload_is_idempotent(server: Server, folder: Path) -> None:
    path = make_wheel(folder, FOO)
    assert_ok(upload(server, form_for(path)))
    after_first = snapshot(server.settings)
    assert_ok(upload(server, form_for(path)))
    assert snapshot(server.settings) == after_first
    assert models.File.select().count() == 1
    assert len(blobs(server.settings)) == 1


def test_same_filename_other_bytes_is_409(server: Server, folder: Path) -> None:
    first = make_wheel(folder, FOO)
    assert_ok(upload(server, form_for(first)))
    before = snapshot(server.settings)
    other = folder / "other"
    other.mkdir()
    second = make_wheel(other, dataclasses.replace(FOO, payload="CHANGED = True\n"))
    assert second.name == first.name
    assert second.read_bytes() != first.read_bytes()
    response = upload(server, form_for(second))
    assert_refused(response, 409, "File already exists")
    assert snapshot(server.settings) == before
    assert [p.read_bytes() for p in blobs(server.settings)] == [first.read_bytes()]


def test_local_version_is_accepted(server: Server, folder: Path) -> None:
    """Decision: a private index accepts local versions (PyPI refuses them)."""
    path = make_wheel(folder, Dist("foo", "1.0+local"))
    assert_ok(upload(server, form_for(path)))
    assert project_json(server, "foo")["versions"] == ["1.0+local"]


def test_equivalent_version_lands_in_the_same_release(server: Server, folder: Path) -> None:
    assert_ok(upload(server, form_for(make_wheel(folder, Dist("foo", "1.0")))))
    sdist_path = make_sdist(folder, Dist("foo", "1.0.0"))
    assert_ok(upload(server, form_for(sdist_path, version="1.0")))
    assert models.Release.select().count() == 1
    assert models.File.select().count() == 2
    assert project_json(server, "foo")["versions"] == ["1.0"]


def test_metadata_version_inside_may_spell_the_version_differently(
    server: Server, folder: Path
) -> None:
    """A `1.0` file whose PKG-INFO says `1.0.0`: the same version, accepted."""
    inner = Dist("foo", "1.0.0", metadata_version="2.2").metadata()
    path = write_tar_gz(folder / FOO.sdist_name, sdist_members(FOO, inner))
    assert_ok(upload(server, form_for(path)))


@pytest.mark.parametrize(
    ("kind", "metadata_version", "advertised"),
    [
        ("sdist", "2.1", False),
        ("sdist", "2.2", True),
        ("sdist", "2.5", True),
        ("wheel", "2.1", True),
    ],
)
def test_core_metadata_advertised_from_2_2_for_sdists(
    server: Server, folder: Path, kind: str, metadata_version: str, advertised: bool
) -> None:
    dist = Dist("foo", "1.0", metadata_version=metadata_version)
    path = make_sdist(folder, dist) if kind == "sdist" else make_wheel(folder, dist)
    assert_ok(upload(server, form_for(path)))
    entry = file_entry(server, "foo", path.name)
    stored = models.File.get(models.File.filename == path.name)
    if advertised:
        digest = hashlib.sha256(dist.metadata()).hexdigest()
        assert entry["core-metadata"] == {"sha256": digest}
        assert stored.metadata_sha256 == digest
    else:
        assert entry["core-metadata"] is False
        assert stored.metadata_sha256 is None
    assert entry["hashes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_longest_project_name_is_stored(server: Server, folder: Path) -> None:
    """A 200-character name (the cap): stored, never an ENAMETOOLONG 500."""
    dist = Dist("f" * 200, "1.0")
    path = make_wheel(folder, dist)
    assert_ok(upload(server, form_for(path)))
    assert len(blobs(server.settings)) == 1


def test_refusal_leaves_earlier_uploads_alone(server: Server, folder: Path) -> None:
    """A bad upload into an existing project changes nothing there."""
    assert_ok(upload(server, form_for(make_wheel(folder, FOO))))
    before, page = snapshot(server.settings), project_json(server, "foo")
    bad = folder / "bad"
    bad.mkdir()
    path = make_wheel(bad, Dist("foo", "1.1"))
    response = upload(server, form_for(path, sha256_digest="0" * 64))
    assert_refused(response, 400, "sha256_digest supplied does not match")
    assert snapshot(server.settings) == before
    assert project_json(server, "foo") == page


def test_signature_part_is_spooled_then_discarded(server: Server, folder: Path) -> None:
    """A gpg_signature part is the second file part an upload may carry; it is not kept."""
    path = make_wheel(folder, FOO)
    form = form_for(path)
    form["gpg_signature"] = (b"-----BEGIN PGP SIGNATURE-----\n", path.name + ".asc")
    assert_ok(upload(server, form))
    assert list((server.settings.data / "tmp").iterdir()) == []
    assert [p.read_bytes() for p in blobs(server.settings)] == [path.read_bytes()]


def test_a_third_file_part_is_refused_and_leaves_no_temp_file(server: Server, folder: Path) -> None:
    """Issue 14 (finding 6): at most `content` and `gpg_signature`; no spool outlives it."""
    path = make_wheel(folder, FOO)
    form = form_for(path)
    form["content"] = [form["content"], (b"junk", "junk.whl")]
    form["gpg_signature"] = (b"-----BEGIN PGP SIGNATURE-----\n", path.name + ".asc")
    answer = upload(server, form)
    assert answer.status_code == 400
    assert "Too many file parts" in answer.status
    assert list((server.settings.data / "tmp").iterdir()) == []
    assert blobs(server.settings) == []


@pytest.mark.parametrize(
    "url", ["/", "/legacy", "/legacy/", "/main", "/main/", "/main/legacy", "/main/legacy/"]
)
def test_every_upload_url_spelling_accepts(server: Server, folder: Path, url: str) -> None:
    """Clients post to the URL exactly as configured; none of them may be redirected."""
    path = make_wheel(folder, FOO)
    body, content_type = encode_multipart(form_for(path))
    headers = server.headers("upload")
    response = server.client.post(url, data=body, content_type=content_type, headers=headers)
    assert_ok(response)
    assert file_entry(server, "foo", path.name)["size"] == path.stat().st_size
