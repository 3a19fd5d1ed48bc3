"""The whole app with `storage = "s3://…"` on a real SeaweedFS: upload, pages, downloads
(streamed, ranged, redirected), health, fsck, gc, the orphan sweep at start, backup and
restore."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from minirepo.cli import main
from minirepo.config import Settings
from minirepo.s3client import S3Location
from minirepo.services import accounts, integrity, projects
from minirepo.services.container import Services
from minirepo.storage import blob_key
from tests.conftest import post_upload
from tests.helpers.backends import run_cli, served
from tests.helpers.distfactory import Dist, make_sdist, make_wheel
from tests.helpers.seaweed import REGION, S3Storage
from tests.helpers.serverproc import FAST_HASH


def s3_settings(storage: S3Storage, tmp_path: Path, *, redirect: bool = False) -> Settings:
    return Settings(
        data=tmp_path / "data",
        password_hash=FAST_HASH,
        page_cache_seconds=0,
        upstream="",
        storage=storage.url,
        s3_endpoint_url=storage.endpoint,
        s3_region=REGION,
        s3_redirect=redirect,
    )


@pytest.fixture
def app(s3_storage: S3Storage, tmp_path: Path) -> Iterator[Flask]:
    with served(s3_settings(s3_storage, tmp_path)) as flask_app:
        yield flask_app


@pytest.fixture
def token(app: Flask) -> str:
    accounts.add_user("root", "a-password-1", method=FAST_HASH, admin=True)
    return accounts.create_token("root", permission="admin").secret


def wheel(tmp_path: Path, name: str = "demo-pkg", version: str = "1.0", **extra: object) -> Path:
    folder = tmp_path / "dists"
    folder.mkdir(parents=True, exist_ok=True)
    return make_wheel(folder, Dist(name, version, **extra))  # type: ignore[arg-type]


def key_of(path: Path) -> str:
    return blob_key(hashlib.sha256(path.read_bytes()).hexdigest(), path.name)


def test_upload_page_and_streamed_download(
    app: Flask, token: str, tmp_path: Path, s3_storage: S3Storage
) -> None:
    client = app.test_client()
    path = wheel(tmp_path)
    assert post_upload(client, token, path).status_code == 200
    assert post_upload(client, token, path).status_code == 200  # the same bytes again
    assert s3_storage.object_keys() == [f"{s3_storage.prefix}/{key_of(path)}"]
    assert not (tmp_path / "data" / "files").exists()
    assert os.listdir(tmp_path / "data" / "tmp") == []

    page = client.get("/simple/demo-pkg/")
    assert path.name in page.text
    content = path.read_bytes()
    with client.get(f"/files/demo-pkg/{path.name}") as answer:
        assert answer.status_code == 200
        assert answer.data == content
        assert answer.headers["Content-Length"] == str(len(content))
        assert answer.headers["ETag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    with client.get(f"/files/demo-pkg/{path.name}", headers={"Range": "bytes=10-19"}) as answer:
        assert answer.status_code == 206
        assert answer.data == content[10:20]
        assert answer.headers["Content-Range"] == f"bytes 10-19/{len(content)}"
    with client.get(f"/files/demo-pkg/{path.name}", headers={"Range": "bytes=-5"}) as answer:
        assert (answer.status_code, answer.data) == (206, content[-5:])
    with client.get(f"/files/demo-pkg/{path.name}", headers={"Range": "bytes=99999-"}) as answer:
        assert answer.status_code == 416
    with client.get(f"/files/demo-pkg/{path.name}", headers={"Range": "bytes=0-1,5-6"}) as answer:
        assert (answer.status_code, answer.data) == (200, content)  # several ranges: ignored
    with client.get(f"/files/demo-pkg/{path.name}", headers={"Range": "bytes=-999999"}) as answer:
        assert (answer.status_code, answer.data) == (206, content)


def test_project_page_reads_the_readme_from_the_bucket(
    app: Flask, token: str, tmp_path: Path
) -> None:
    """An old sdist's README comes from its PKG-INFO in the archive (no core metadata is
    kept for it), read from the bucket by seeking: ranged GETs."""
    client = app.test_client()
    path = make_sdist(tmp_path, Dist("demo-pkg", "1.0", description="Hello from the bucket."))
    assert post_upload(client, token, path).status_code == 200
    page = client.get("/project/demo-pkg/")
    assert page.status_code == 200
    assert "Hello from the bucket." in page.text


def test_other_bytes_under_a_used_name_are_refused(app: Flask, token: str, tmp_path: Path) -> None:
    client = app.test_client()
    first = wheel(tmp_path)
    assert post_upload(client, token, first).status_code == 200
    other = wheel(tmp_path / "b", summary="changed")
    assert other.name == first.name
    assert post_upload(client, token, other).status_code == 409


def test_damaged_object_is_refused_not_served(
    app: Flask, token: str, tmp_path: Path, s3_storage: S3Storage
) -> None:
    client = app.test_client()
    path = wheel(tmp_path)
    assert post_upload(client, token, path).status_code == 200
    s3_storage.server.client().put_object(
        Bucket=s3_storage.server.bucket,
        Key=f"{s3_storage.prefix}/{key_of(path)}",
        Body=b"not the wheel",
    )
    with client.get(f"/files/demo-pkg/{path.name}") as answer:
        assert answer.status_code == 500
        assert b"damaged" in answer.data
    assert path.name not in client.get("/simple/demo-pkg/").text  # withdrawn


def test_redirect_to_a_presigned_url_the_store_serves(
    s3_storage: S3Storage, tmp_path: Path
) -> None:
    with served(s3_settings(s3_storage, tmp_path, redirect=True)) as flask_app:
        accounts.add_user("root", "a-password-1", method=FAST_HASH, admin=True)
        token = accounts.create_token("root", permission="admin").secret
        client = flask_app.test_client()
        path = wheel(tmp_path)
        assert post_upload(client, token, path).status_code == 200
        answer = client.get(f"/files/demo-pkg/{path.name}")
        assert answer.status_code == 307
        assert answer.headers["Cache-Control"] == "no-store"
        location = answer.headers["Location"]
        assert location.startswith(s3_storage.endpoint)
        assert "X-Amz-Signature=" in location
        with urllib.request.urlopen(location, timeout=10) as fetched:  # noqa: S310 - loopback
            assert fetched.read() == path.read_bytes()
        head = client.head(f"/files/demo-pkg/{path.name}")  # presigned for GET only: served
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(path.stat().st_size)


def test_health_reports_the_store(app: Flask) -> None:
    report = app.test_client().get("/-/health").json
    assert report is not None
    assert (report["status"], report["store"], report["storage"]) == ("ok", "ok", "s3")


def test_health_fails_when_the_bucket_stops_answering(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    services: Services = app.extensions["minirepo"]
    store = services.folder.store
    monkeypatch.setattr(store, "location", S3Location("no-such-bucket", ""))
    monkeypatch.setattr(store, "_health", (-10.0, True))  # no cached answer
    answer = app.test_client().get("/-/health")
    assert answer.status_code == 503
    assert "the blob store (s3) does not answer" in answer.json["problems"]  # type: ignore[index]


def test_fsck_finds_missing_and_damaged_blobs(
    app: Flask, token: str, tmp_path: Path, s3_storage: S3Storage
) -> None:
    client = app.test_client()
    good, gone = wheel(tmp_path, "good"), wheel(tmp_path, "gone")
    for path in (good, gone):
        assert post_upload(client, token, path).status_code == 200
    assert run_cli(app, "fsck").exit_code == 0
    services: Services = app.extensions["minirepo"]
    services.folder.store.delete(key_of(gone))
    result = run_cli(app, "fsck")
    assert result.exit_code == 1
    assert f"missing: {key_of(gone)}" in result.output
    assert f"{key_of(good)}" not in result.output


def test_gc_frees_blobs_in_the_bucket(
    app: Flask, token: str, tmp_path: Path, s3_storage: S3Storage
) -> None:
    client = app.test_client()
    old = wheel(tmp_path, "old")
    assert post_upload(client, token, old).status_code == 200
    projects.delete("main", "old")
    result = run_cli(app, "gc", "--grace", "0")
    assert result.exit_code == 0, result.output
    assert "Freed 1 file(s)" in result.output
    assert s3_storage.object_keys() == []
    assert os.listdir(tmp_path / "data" / "tmp") == []


def test_orphans_are_quarantined_at_start_by_their_age(
    s3_storage: S3Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = s3_settings(s3_storage, tmp_path)
    with served(settings) as flask_app:
        store = flask_app.extensions["minirepo"].folder.store
        fd, temp = store.new_temp()
        with open(fd, "wb") as handle:
            handle.write(b"an upload cut short")
        orphan = blob_key(hashlib.sha256(b"an upload cut short").hexdigest(), "cut-1.0.tar.gz")
        assert store.put(temp, orphan)
        temp.unlink()
    with served(settings):  # young: a writer elsewhere may be about to commit it
        assert store.info(orphan) is not None
    monkeypatch.setattr(integrity, "ORPHAN_MIN_AGE", -60.0)
    with served(settings):
        assert store.info(orphan) is None
    moved = list((tmp_path / "data" / "quarantine").iterdir())
    assert [path.read_bytes() for path in moved] == [b"an upload cut short"]


def test_backup_from_s3_restores_into_another_prefix(
    app: Flask, token: str, tmp_path: Path, s3_storage: S3Storage
) -> None:
    """`backup` reads the blobs from the bucket; `restore` into a folder whose `storage`
    is another prefix puts them there, and the restored folder serves them."""
    path = wheel(tmp_path)
    assert post_upload(app.test_client(), token, path).status_code == 200
    assert run_cli(app, "backup", str(tmp_path / "bk")).exit_code == 0
    assert (tmp_path / "bk" / "files" / key_of(path)).read_bytes() == path.read_bytes()
    other = f"{s3_storage.url}-restored"
    restored = s3_settings(s3_storage, tmp_path / "restored")
    restored = dataclasses.replace(restored, storage=other)
    env = {
        "MINIREPO_DATA": str(restored.data),
        "MINIREPO_STORAGE": other,
        "MINIREPO_S3_ENDPOINT_URL": restored.s3_endpoint_url,
    }
    result = CliRunner().invoke(main, ["restore", str(tmp_path / "bk")], env=env)
    assert result.exit_code == 0, result.output
    assert not (restored.data / "files").exists()
    with served(restored) as copy:
        services: Services = copy.extensions["minirepo"]
        assert services.folder.store.sha256(key_of(path)) == key_of(path).split("/")[1]
        page = copy.test_client().get("/simple/demo-pkg/")
        assert path.name in page.text
