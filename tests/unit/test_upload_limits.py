"""Limits an authenticated uploader must not get around (issue 14, findings 5, 6 and 8).

An upload token is not a licence to exhaust the server: text fields are capped in total
while they are parsed, file parts (each a spool file, a descriptor) are capped at the two
the upload API has, running out of descriptors is told apart from a missing file, and a
token revoked while its upload streamed stores nothing.
"""

from __future__ import annotations

import errno
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import TestResponse, encode_multipart

from minirepo import models, storage
from minirepo.config import Settings
from minirepo.credentials import token_digest
from minirepo.db import write_transaction
from minirepo.services import accounts, repos
from minirepo.services.container import Services
from minirepo.views import upload as upload_view
from tests.conftest import Snapshot, basic, post_upload, snapshot, token_auth
from tests.helpers.distfactory import Dist, make_wheel, upload_form
from tests.helpers.serverproc import FAST_HASH

USER = "alice"
PASSWORD = "alice-password-1"
FIELDS_LIMIT = 256 * 1024


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data=tmp_path / "data", password_hash=FAST_HASH, max_metadata_size=FIELDS_LIMIT)


@pytest.fixture
def token(app: Flask) -> str:
    """An upload token of a plain account (uploader by the default repository's role)."""
    accounts.add_user(USER, PASSWORD, method=FAST_HASH)
    return accounts.create_token(USER).secret


@pytest.fixture
def services(app: Flask) -> Services:
    value: Services = app.extensions["minirepo"]
    return value


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    folder.mkdir()
    return make_wheel(folder, Dist("foo", "1.0"))


def multipart(path: Path, extra: list[tuple[str, Any]]) -> tuple[bytes, str]:
    """An upload of `path` as twine sends it, with `extra` parts before the file."""
    values: MultiDict[str, Any] = MultiDict()
    for key, value in upload_form(path).items():
        if key != "content":
            values.add(key, value)
    for key, value in extra:
        values.add(key, value)
    values.add("content", FileStorage(io.BytesIO(path.read_bytes()), path.name))
    boundary, body = encode_multipart(values)
    return body, f"multipart/form-data; boundary={boundary}"


def send(
    client: FlaskClient, token: str, body: bytes, content_type: str
) -> tuple[TestResponse, io.BytesIO]:
    """Post `body`; the stream is returned so a test can see how much of it was read."""
    stream = io.BytesIO(body)
    response = client.post(
        "/",
        input_stream=stream,
        content_length=len(body),
        content_type=content_type,
        headers=token_auth(token),
    )
    return response, stream


def reason(response: TestResponse) -> str:
    return response.status.partition(" ")[2]


# --- finding 5: text fields are capped in total, while they are parsed -------------------


def test_text_fields_are_capped_in_total_before_the_body_is_read(
    client: FlaskClient, token: str, dist: Path, settings: Settings
) -> None:
    """64 fields of an eighth of the limit each: every one is under Flask's per-field cap
    (MAX_FORM_MEMORY_SIZE), their sum is 8 times max_metadata_size."""
    extra = [("keywords", "k" * (FIELDS_LIMIT // 8)) for _ in range(64)]
    body, content_type = multipart(dist, extra)
    before = snapshot(settings)
    response, stream = send(client, token, body, content_type)
    assert response.status_code == 413, response.status
    assert f"{FIELDS_LIMIT} bytes" in reason(response)
    assert "max_metadata_size" in reason(response)
    # Refused as the limit was crossed: at most the limit and a read buffer more was read.
    assert stream.tell() < FIELDS_LIMIT + 2 * 64 * 1024 < len(body) // 2
    assert snapshot(settings) == before


def test_text_fields_under_the_total_are_accepted(
    client: FlaskClient, token: str, dist: Path
) -> None:
    extra = [("keywords", "k" * (FIELDS_LIMIT // 8)) for _ in range(4)]
    response, _ = send(client, token, *multipart(dist, extra))
    assert response.status_code == 200, response.status


def test_field_names_count_toward_the_total(client: FlaskClient, token: str, dist: Path) -> None:
    """A name is kept as long as its value: empty values with huge names are no way out."""
    extra = [("n" * (FIELDS_LIMIT // 8) + str(i), "") for i in range(16)]
    response, _ = send(client, token, *multipart(dist, extra))
    assert response.status_code == 413, response.status
    assert "max_metadata_size" in reason(response)


def test_urlencoded_body_is_capped_too(client: FlaskClient, token: str) -> None:
    """A urlencoded form is all text fields, read in one go: refused by its length."""
    body = b"description=" + b"x" * (2 * FIELDS_LIMIT)
    response, stream = send(client, token, body, "application/x-www-form-urlencoded")
    assert response.status_code == 413, response.status
    assert "max_metadata_size" in reason(response)
    assert stream.tell() <= FIELDS_LIMIT + 1


# --- finding 6: file parts are counted, descriptors running out is not a missing file ----


def spy_new_temp(monkeypatch: pytest.MonkeyPatch, services: Services) -> list[int]:
    """How many spool files each call found in <data>/tmp, one entry per spool opened."""
    store = services.folder.store
    real = store.new_temp
    seen: list[int] = []

    def counting() -> tuple[int, Path]:
        made = real()
        seen.append(len(list(services.settings.data.joinpath("tmp").iterdir())))
        return made

    monkeypatch.setattr(store, "new_temp", counting)
    return seen


def test_third_file_part_is_refused_before_its_spool_is_opened(
    client: FlaskClient,
    token: str,
    dist: Path,
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spools = spy_new_temp(monkeypatch, services)
    signature = FileStorage(io.BytesIO(b"-----BEGIN PGP SIGNATURE-----\n"), dist.name + ".asc")
    extra = FileStorage(io.BytesIO(b"junk"), "junk.bin")
    values: MultiDict[str, Any] = MultiDict(
        [(key, value) for key, value in upload_form(dist).items() if key != "content"]
    )
    values.add("content", FileStorage(io.BytesIO(dist.read_bytes()), dist.name))
    values.add("gpg_signature", signature)
    values.add("junk", extra)
    boundary, body = encode_multipart(values)
    before = snapshot(settings)
    response, _ = send(client, token, body, f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 400, response.status
    assert "file parts" in reason(response)
    assert spools == [1, 2]  # the content and the signature: never a third
    assert snapshot(settings) == before


def test_content_and_signature_are_accepted(
    client: FlaskClient, token: str, dist: Path, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    spools = spy_new_temp(monkeypatch, services)
    signature = FileStorage(io.BytesIO(b"-----BEGIN PGP SIGNATURE-----\n"), dist.name + ".asc")
    response, _ = send(client, token, *multipart(dist, [("gpg_signature", signature)]))
    assert response.status_code == 200, response.status
    assert len(spools) == 2


def emfile(*args: object, **kwargs: object) -> Any:
    raise OSError(errno.EMFILE, "Too many open files")


def assert_out_of_descriptors(response: TestResponse, caplog: pytest.LogCaptureFixture) -> None:
    assert response.status_code == 503, response.status
    assert response.headers["Retry-After"]
    assert reason(response) == "Server is out of file descriptors; retry shortly"
    messages = [record.getMessage() for record in caplog.records]
    assert any("out of file descriptors" in message for message in messages), messages
    assert not any("missing" in message for message in messages), messages


def test_download_out_of_descriptors_is_503_not_a_missing_file(
    client: FlaskClient,
    token: str,
    dist: Path,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert post_upload(client, token, dist).status_code == 200
    monkeypatch.setattr(services.folder.store, "open", emfile)
    with caplog.at_level(logging.INFO):
        response = client.get(f"/files/foo/{dist.name}", headers=token_auth(token))
    assert_out_of_descriptors(response, caplog)


def test_upload_out_of_descriptors_is_503(
    client: FlaskClient,
    token: str,
    dist: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(storage.tempfile, "mkstemp", emfile)  # the spool file's open
    before = snapshot(settings)
    with caplog.at_level(logging.INFO):
        response = post_upload(client, token, dist)
    assert_out_of_descriptors(response, caplog)
    assert snapshot(settings) == before


# --- finding 8: credentials are checked again at commit -----------------------------------


def between_read_and_commit(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Run `change` once the body is in and checked, before the upload's transaction."""
    real = upload_view.check_form

    def checking(*args: Any) -> Any:
        checked = real(*args)
        change()
        return checked

    monkeypatch.setattr(upload_view, "check_form", checking)


def elsewhere(change: Callable[[], None]) -> None:
    """Commit `change` and bump the auth counter as another process (the CLI) would: this
    process's counter cache is not told, so only a fresh read sees the change."""
    with write_transaction():
        change()
        models.bump_counter(models.AUTH_COUNTER)


def revoke(secret: str) -> Callable[[], None]:
    def change() -> None:
        models.Token.update(revoked=True).where(
            models.Token.secret_sha256 == token_digest(secret)
        ).execute()

    return lambda: elsewhere(change)


def assert_nothing_stored(settings: Settings, before: Snapshot) -> None:
    after = snapshot(settings)
    assert after == before
    assert models.Release.select().count() == 0
    assert not [p for p in (settings.data / "files").rglob("*") if p.is_file()]


def test_token_revoked_during_upload_stores_nothing(
    client: FlaskClient, token: str, dist: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    between_read_and_commit(monkeypatch, revoke(token))
    before = snapshot(settings)
    response = post_upload(client, token, dist)
    assert response.status_code == 401, response.status
    assert reason(response) == "Invalid or expired API token"
    assert_nothing_stored(settings, before)


def test_password_changed_during_upload_stores_nothing(
    client: FlaskClient, token: str, dist: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    between_read_and_commit(
        monkeypatch, lambda: accounts.set_password(USER, "a-new-password-2", method=FAST_HASH)
    )
    before = snapshot(settings)
    response = client.post(
        "/",
        data=upload_form(dist),
        headers=basic(USER, PASSWORD),
        content_type="multipart/form-data",
    )
    assert response.status_code == 401, response.status
    assert_nothing_stored(settings, before)


def test_upload_right_lost_during_upload_stores_nothing(
    client: FlaskClient, token: str, dist: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    between_read_and_commit(monkeypatch, lambda: repos.grant(USER, "main", "reader"))
    before = snapshot(settings)
    response = post_upload(client, token, dist)
    assert response.status_code == 403, response.status
    assert_nothing_stored(settings, before)


def test_unrelated_auth_change_during_upload_is_harmless(
    client: FlaskClient, token: str, dist: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another token of the same account is revoked: the counter moves, this one still holds."""
    other = accounts.create_token(USER).secret
    between_read_and_commit(monkeypatch, revoke(other))
    response = post_upload(client, token, dist)
    assert response.status_code == 200, response.status
    assert models.File.select().count() == 1
