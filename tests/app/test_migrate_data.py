"""`minirepo migrate-data`: the newest one-box upgrade fixture (repositories, grants, tokens,
yanks, tombstones, the audit log, proxies' caches) copied into PostgreSQL and an S3 bucket
(SeaweedFS), then served from the copy; the old folder is only read."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
from click.testing import CliRunner
from flask import Flask
from packaging.version import Version

from minirepo import models
from minirepo.cli import main
from minirepo.config import Settings
from minirepo.db import Database, open_database
from minirepo.services import migrate_data, rowcopy
from tests.app.test_upgrade import FIXTURES, copy_fixture
from tests.conftest import post_upload, token_auth
from tests.helpers.backends import served
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.seaweed import REGION, S3Storage
from tests.helpers.serverproc import FAST_HASH

NEWEST = max(
    (path.name for path in FIXTURES.iterdir() if path.is_dir() and "-" not in path.name),
    key=Version,
)


def counts(url: str, default: Path) -> dict[str, int]:
    database = open_database(url, default, 5.0, create=False)
    try:
        return rowcopy.row_counts(database)
    finally:
        database.close()


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def one_box(tmp_path: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """The newest fixture, upgraded by a first `serve`, as a one-box install has it."""
    data, secrets = copy_fixture(NEWEST, tmp_path)
    with served(Settings(data=data, password_hash=FAST_HASH)):
        pass
    return data, secrets


@pytest.fixture
def migrated(
    one_box: tuple[Path, dict[str, dict[str, str]]], postgres_url: str
) -> Iterator[tuple[Flask, dict[str, dict[str, str]]]]:
    data, secrets = one_box
    before = tree_digest(data)
    result = CliRunner().invoke(
        main, ["migrate-data", "--data", str(data), "--to-database", postgres_url]
    )
    assert result.exit_code == 0, result.output
    assert "Copied" in result.output
    assert tree_digest(data) == before  # only read
    source = counts("", data / "minirepo.sqlite3")
    assert counts(postgres_url, data / "unused") == source
    assert all(source[table] for table in ("file", "tombstone", "event", "token", "grant"))
    with served(Settings(data=data, database=postgres_url, password_hash=FAST_HASH)) as app:
        yield app, secrets


def test_the_copy_serves_what_the_folder_served(
    migrated: tuple[Flask, dict[str, dict[str, str]]], dist_folder: Path
) -> None:
    app, secrets = migrated
    client = app.test_client()
    tokens = secrets["tokens"]
    page = client.get("/simple/alicepkg/", headers=token_auth(tokens["admin"]))
    assert page.status_code == 200
    assert b"alicepkg-1.0-py3-none-any.whl" in page.data
    stored = models.File.get(models.File.filename == "alicepkg-1.0-py3-none-any.whl")
    href = re.search(rb'href="([^"#]*alicepkg-1.0-py3-none-any.whl)', page.data)
    assert href
    url = urljoin("/simple/alicepkg/", href.group(1).decode())
    with client.get(url, headers=token_auth(tokens["admin"])) as download:
        assert download.status_code == 200
        assert hashlib.sha256(download.data).hexdigest() == stored.sha256
    assert client.get("/simple/", headers=token_auth(tokens["bob_revoked"])).status_code == 401
    # New rows take ids after the copied ones (PostgreSQL's sequences were moved on).
    wheel = make_wheel(dist_folder, Dist("after-migration", "1.0"))
    answer = post_upload(client, tokens["admin"], wheel, url="/main/")
    assert answer.status_code == 200, answer.data


def test_a_second_copy_into_the_same_database_is_refused(
    migrated: tuple[Flask, dict[str, dict[str, str]]], tmp_path: Path, postgres_url: str
) -> None:
    result = CliRunner().invoke(
        main,
        ["migrate-data", "--data", str(tmp_path / "data"), "--to-database", postgres_url],
    )
    assert result.exit_code == 1
    assert "already holds rows" in result.output


def test_a_copy_cut_short_leaves_the_target_empty(
    one_box: tuple[Path, dict[str, dict[str, str]]],
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, _ = one_box
    real_insert = rowcopy._insert

    def insert(target: Database, model: type[models.BaseModel], batch: list) -> None:
        if model is models.File:
            raise OSError("the connection went away")
        real_insert(target, model, batch)

    monkeypatch.setattr(rowcopy, "_insert", insert)
    result = CliRunner().invoke(
        main, ["migrate-data", "--data", str(data), "--to-database", postgres_url]
    )
    assert result.exit_code != 0
    assert set(counts(postgres_url, data / "unused").values()) == {0}
    monkeypatch.setattr(rowcopy, "_insert", real_insert)
    again = CliRunner().invoke(
        main, ["migrate-data", "--data", str(data), "--to-database", postgres_url]
    )
    assert again.exit_code == 0, again.output


def test_a_target_is_required(one_box: tuple[Path, dict[str, dict[str, str]]]) -> None:
    data, _ = one_box
    result = CliRunner().invoke(main, ["migrate-data", "--data", str(data)])
    assert result.exit_code == 1
    assert "Name a target" in result.output


def endpoint(storage: S3Storage) -> dict[str, str]:
    """The bucket's endpoint and region come from the settings, as for `serve`."""
    return {"MINIREPO_S3_ENDPOINT_URL": storage.endpoint, "MINIREPO_S3_REGION": REGION}


def test_files_go_into_the_bucket_and_are_verified(
    one_box: tuple[Path, dict[str, dict[str, str]]], postgres_url: str, s3_storage: S3Storage
) -> None:
    data, secrets = one_box
    args = ["migrate-data", "--data", str(data), "--to-database", postgres_url]
    runner = CliRunner(env=endpoint(s3_storage))
    result = runner.invoke(main, [*args, "--to-storage", s3_storage.url, "--verify"])
    assert result.exit_code == 0, result.output
    assert "read back and verified" in result.output
    target = open_database(postgres_url, data / "unused", 5.0, create=False)
    try:
        named = sorted(migrate_data.named_blobs(target))
    finally:
        target.close()
    objects = sorted(key.removeprefix(s3_storage.prefix + "/") for key in s3_storage.object_keys())
    assert objects == named
    again = runner.invoke(main, [*args, "--to-storage", s3_storage.url])
    assert again.exit_code == 1  # the database holds the rows now; the files were there
    settings = Settings(
        data=data,
        database=postgres_url,
        storage=s3_storage.url,
        s3_endpoint_url=s3_storage.endpoint,
        s3_region=REGION,
        password_hash=FAST_HASH,
    )
    shutil.rmtree(data / "files")  # served from the bucket alone
    with served(settings) as app:
        client = app.test_client()
        admin = token_auth(secrets["tokens"]["admin"])
        stored = models.File.get(models.File.filename == "alicepkg-1.0-py3-none-any.whl")
        with client.get("/files/alicepkg/alicepkg-1.0-py3-none-any.whl", headers=admin) as download:
            assert download.status_code == 200
            assert hashlib.sha256(download.data).hexdigest() == stored.sha256


def test_a_damaged_file_stops_the_copy_before_the_rows(
    one_box: tuple[Path, dict[str, dict[str, str]]], postgres_url: str, s3_storage: S3Storage
) -> None:
    data, _ = one_box
    blob = next(path for path in (data / "files").rglob("alicepkg-1.0-py3-none-any.whl"))
    blob.write_bytes(blob.read_bytes()[:-5])
    result = CliRunner(env=endpoint(s3_storage)).invoke(
        main,
        [
            "migrate-data",
            "--data",
            str(data),
            "--to-database",
            postgres_url,
            "--to-storage",
            s3_storage.url,
        ],
    )
    assert result.exit_code == 1
    assert "alicepkg-1.0-py3-none-any.whl" in result.output
    assert "minirepo fsck" in result.output
    assert set(counts(postgres_url, data / "unused").values()) == {0}
