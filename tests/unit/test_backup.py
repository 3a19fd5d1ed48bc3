"""`services.backup` in-process: the manifest and schema checks, where a backup may go, and
what a backup does with a blob that is damaged, or deleted while it runs."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from minirepo import migrations, models
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.errors import UserError
from minirepo.services import accounts
from minirepo.services import backup as backups
from minirepo.services.container import Services
from minirepo.services.datafolder import DataFolder
from tests.conftest import post_upload
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import FAST_HASH

MANIFEST = backups.Manifest(
    minirepo_version="0.2.0",
    schema_version=migrations.LATEST,
    created="2026-01-01T00:00:00Z",
    database=backups.SQLITE,
    files=2,
    tombstones=1,
    blobs=3,
    blob_bytes=1234,
)


def manifest_json(**changes: object) -> bytes:
    data = json.loads(MANIFEST.to_json())
    data.update(changes)
    return json.dumps({key: value for key, value in data.items() if value is not None}).encode()


# -- the manifest and the schema ------------------------------------------------------------


def test_manifest_round_trips() -> None:
    damaged = dataclasses.replace(MANIFEST, damaged=("ab/" + "ab" * 32 + "/x.whl",))
    assert backups.Manifest.parse(damaged.to_json()) == damaged
    assert json.loads(MANIFEST.to_json())["format"] == backups.FORMAT


def test_an_older_schema_is_accepted() -> None:
    older = backups.Manifest.parse(manifest_json(schema_version=migrations.LATEST - 1))
    assert older.schema_version == migrations.LATEST - 1


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"schema_version": migrations.LATEST + 1}, "newer minirepo"),
        ({"schema_version": 0}, "no minirepo database schema"),
        ({"format": backups.FORMAT + 1}, "has format"),
        ({"format": None}, "has format"),
        ({"files": None}, "'files' is missing"),
        ({"files": "2"}, "'files' is missing or not a int"),
        ({"schema_version": True}, "'schema_version' is missing or not a int"),
        ({"database": "mysql"}, "unknown database kind"),
        ({"damaged": [1]}, "'damaged' must list storage keys"),
    ],
)
def test_manifest_refusals(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(UserError, match=reason):
        backups.Manifest.parse(manifest_json(**changes))


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]"])
def test_manifest_that_is_no_object(raw: bytes) -> None:
    with pytest.raises(UserError, match=backups.MANIFEST):
        backups.Manifest.parse(raw)


def test_check_schema() -> None:
    assert backups.check_schema(1, "x") == 1
    with pytest.raises(UserError, match="holds no minirepo database schema"):
        backups.check_schema(None, "x")
    with pytest.raises(UserError, match=f"knows up to {migrations.LATEST}"):
        backups.check_schema(migrations.LATEST + 1, "x")


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("ab/ab" + "0" * 62 + "/pkg-1.0.tar.gz", True),
        ("ab/ab" + "0" * 62 + "/..", False),
        ("ab/cd" + "0" * 62 + "/pkg.whl", False),
        ("ab/ab/pkg.whl", False),
        ("files/ab/ab" + "0" * 62 + "/pkg.whl", False),
    ],
)
def test_is_key(key: str, valid: bool) -> None:
    assert backups.is_key(key) is valid


# -- where a backup goes, where a restore goes -------------------------------------------


def test_check_dest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "files").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    backups.check_dest(tmp_path / "new", tar=False, data=data)
    backups.check_dest(tmp_path / "empty", tar=False, data=data)
    backups.check_dest(tmp_path / "new.tar.gz", tar=True, data=data)
    with pytest.raises(UserError, match="not an empty folder"):
        backups.check_dest(tmp_path / "full", tar=False, data=data)
    with pytest.raises(UserError, match="not an empty folder"):
        backups.check_dest(tmp_path / "full" / "x", tar=False, data=data)
    (tmp_path / "taken.tar").mkdir()
    with pytest.raises(UserError, match="name a new file"):
        backups.check_dest(tmp_path / "taken.tar", tar=True, data=data)
    with pytest.raises(UserError, match=r"must end in \.tar"):
        backups.check_dest(tmp_path / "new.zip", tar=True, data=data)
    with pytest.raises(UserError, match="inside the data folder's files/"):
        backups.check_dest(data / "files" / "bk", tar=False, data=data)


def test_check_target(tmp_path: Path) -> None:
    backups.check_target(Settings(data=tmp_path / "new"))
    (tmp_path / "empty").mkdir()
    backups.check_target(Settings(data=tmp_path / "empty"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="not an empty folder"):
        backups.check_target(Settings(data=tmp_path / "full"))
    elsewhere = tmp_path / "elsewhere.sqlite3"
    elsewhere.write_bytes(b"")
    with pytest.raises(UserError, match="exists: nothing changed"):
        backups.check_target(Settings(data=tmp_path / "new", database=f"sqlite:///{elsewhere}"))


# -- backups of a live app ----------------------------------------------------------------


@pytest.fixture
def folder(app: Flask) -> DataFolder:
    services: Services = app.extensions["minirepo"]
    return services.folder


@pytest.fixture
def stored(client: FlaskClient, admin: str, dist_folder: Path) -> dict[str, str]:
    """Three uploaded wheels: filename -> sha256."""
    found = {}
    for version in ("1.0", "1.1", "1.2"):
        wheel = make_wheel(dist_folder, Dist("demo-pkg", version))
        assert post_upload(client, admin, wheel).status_code == 200
        found[wheel.name] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return found


def key_of(filename: str) -> str:
    return str(models.File.get(models.File.filename == filename).storage_key)


def restored_files(data: Path, database: str = "") -> dict[str, str]:
    """filename -> sha256 of what a restored folder's database lists, its blobs checked."""
    settings = Settings(data=data, password_hash=FAST_HASH, database=database)
    restored_app = create_app(settings)
    services: Services = restored_app.extensions["minirepo"]
    try:
        with services.folder.database.activated():
            rows = list(models.File.select())
            for row in rows:
                assert services.folder.store.sha256(row.storage_key) == row.sha256
            return {row.filename: row.sha256 for row in rows}
    finally:
        services.fetches.close()
        services.folder.database.close()


@pytest.mark.parametrize("name", ["backup", "backup.tar", "backup.tar.gz"])
def test_backup_and_restore_round_trip(
    folder: DataFolder, stored: dict[str, str], tmp_path: Path, name: str
) -> None:
    dest = tmp_path / name
    manifest = backups.backup(folder, dest, tar=name != "backup", bar=backups.no_progress)
    assert (manifest.files, manifest.blobs, manifest.damaged) == (3, 3, ())
    restored = backups.restore(Settings(data=tmp_path / "restored"), dest)
    assert (restored.blobs, restored.schema, restored.skipped) == (3, migrations.LATEST, ())
    assert (tmp_path / "restored" / "secret").read_bytes() == folder.secret
    assert sorted(path.name for path in (tmp_path / "restored").iterdir()) == [
        "files",
        "minirepo.sqlite3",
        "secret",
    ]
    assert restored_files(tmp_path / "restored") == stored


def test_a_damaged_blob_is_named_and_skipped(
    folder: DataFolder, stored: dict[str, str], tmp_path: Path
) -> None:
    key = key_of("demo_pkg-1.1-py3-none-any.whl")
    path = folder.settings.data / "files" / key
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    manifest = backups.backup(folder, tmp_path / "bk", tar=False)
    assert manifest.damaged == (key,)
    restored = backups.restore(Settings(data=tmp_path / "restored"), tmp_path / "bk")
    assert restored.skipped == (key,)
    assert not (tmp_path / "restored" / "files" / key).exists()
    assert not (tmp_path / "restored" / "files" / key).parent.exists()


def during_copy(action: Callable[[], None]) -> backups.Progress:
    """A progress bar that runs `action` on the live index as the blobs start to be copied."""

    @contextlib.contextmanager
    def bar(keys: list[str]) -> Iterator[Iterable[str]]:
        action()
        yield keys

    return bar


def test_a_file_deleted_during_the_backup_leaves_the_copy_too(
    folder: DataFolder, stored: dict[str, str], tmp_path: Path
) -> None:
    gone = "demo_pkg-1.0-py3-none-any.whl"
    key = key_of(gone)

    def evict() -> None:  # as a proxy's cache eviction: the rows, then the blob
        with folder.database.write_transaction():
            models.File.delete().where(models.File.storage_key == key).execute()
        folder.store.delete(key)

    manifest = backups.backup(folder, tmp_path / "bk", tar=False, bar=during_copy(evict))
    assert (manifest.files, manifest.blobs, manifest.damaged) == (2, 2, ())
    backups.restore(Settings(data=tmp_path / "restored"), tmp_path / "bk")
    assert restored_files(tmp_path / "restored") == {
        name: sha for name, sha in stored.items() if name != gone
    }


def test_tombstones_whose_blob_gc_frees_are_no_damage(
    folder: DataFolder, stored: dict[str, str], tmp_path: Path
) -> None:
    freed, freeing = (key_of(f"demo_pkg-{v}-py3-none-any.whl") for v in ("1.0", "1.1"))
    with folder.database.write_transaction():
        for key in (freed, freeing):
            models.bury(models.File.get(storage_key=key), "main", "demo-pkg", "deleted", "t")
        models.Tombstone.update(storage_key="").where(
            models.Tombstone.storage_key == freed
        ).execute()
    folder.store.delete(freed)

    def collect() -> None:  # as gc does: the blob first, the tombstone's key after
        folder.store.delete(freeing)

    manifest = backups.backup(folder, tmp_path / "bk", tar=False, bar=during_copy(collect))
    assert (manifest.files, manifest.tombstones, manifest.blobs) == (1, 2, 1)
    assert manifest.damaged == ()
    with contextlib.closing(sqlite3.connect(tmp_path / "bk" / backups.DATABASE)) as copy:
        assert copy.execute("SELECT storage_key FROM tombstone").fetchall() == [("",), ("",)]
    restored = backups.restore(Settings(data=tmp_path / "restored"), tmp_path / "bk")
    assert restored.blobs == 1


def test_a_missing_blob_still_named_live_is_damage(
    folder: DataFolder, stored: dict[str, str], tmp_path: Path
) -> None:
    key = key_of("demo_pkg-1.2-py3-none-any.whl")
    folder.store.delete(key)
    manifest = backups.backup(folder, tmp_path / "bk", tar=False)
    assert manifest.damaged == (key,)
    assert manifest.blobs == 2


def test_a_backup_without_manifest_is_refused(
    folder: DataFolder, stored: dict[str, str], tmp_path: Path
) -> None:
    backups.backup(folder, tmp_path / "bk", tar=False)
    (tmp_path / "bk" / backups.MANIFEST).unlink()
    with pytest.raises(UserError, match="did not finish"):
        backups.restore(Settings(data=tmp_path / "restored"), tmp_path / "bk")
    assert not (tmp_path / "restored").exists()


def test_a_database_newer_than_its_manifest_says_is_refused(
    folder: DataFolder, stored: dict[str, str], tmp_path: Path
) -> None:
    backups.backup(folder, tmp_path / "bk", tar=False)
    manifest = tmp_path / "bk" / backups.MANIFEST
    data = json.loads(manifest.read_bytes())
    data["schema_version"] = migrations.LATEST - 1
    manifest.write_text(json.dumps(data))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="the backup is damaged"):
        backups.restore(Settings(data=tmp_path / "empty"), tmp_path / "bk")
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_sqlite_backup_restores_into_postgresql(
    folder: DataFolder, stored: dict[str, str], tmp_path: Path, postgres_url: str
) -> None:
    backups.backup(folder, tmp_path / "bk", tar=False)
    settings = Settings(data=tmp_path / "restored", database=postgres_url)
    restored = backups.restore(settings, tmp_path / "bk")
    assert (restored.schema, restored.blobs) == (migrations.LATEST, 3)
    assert not (tmp_path / "restored" / backups.DATABASE).exists()
    assert restored_files(tmp_path / "restored", postgres_url) == stored


def test_a_restore_into_a_postgresql_database_in_use_is_refused(
    folder: DataFolder, stored: dict[str, str], tmp_path: Path, postgres_url: str
) -> None:
    backups.backup(folder, tmp_path / "bk", tar=False)
    settings = Settings(data=tmp_path / "first", database=postgres_url)
    backups.restore(settings, tmp_path / "bk")
    with pytest.raises(UserError, match="already holds rows"):
        backups.restore(dataclasses.replace(settings, data=tmp_path / "second"), tmp_path / "bk")
    assert not (tmp_path / "second").exists()


def test_on_postgresql_the_backup_holds_the_rows(
    postgres_url: str, tmp_path: Path, dist_folder: Path
) -> None:
    """The rows are exported into the backup's SQLite file, which restores anywhere."""
    settings = Settings(data=tmp_path / "data", password_hash=FAST_HASH, database=postgres_url)
    pg_app = create_app(settings)
    services: Services = pg_app.extensions["minirepo"]
    try:
        with services.folder.database.activated():
            accounts.add_user("root", "root-password-1", method=FAST_HASH, admin=True)
            token = accounts.create_token("root", permission="admin").secret
            wheel = make_wheel(dist_folder, Dist("pg-pkg", "1.0"))
            assert post_upload(pg_app.test_client(), token, wheel).status_code == 200
            manifest = backups.backup(services.folder, tmp_path / "bk.tar", tar=True)
    finally:
        services.fetches.close()
        services.folder.database.close()
    assert (manifest.database, manifest.files, manifest.blobs) == (backups.SQLITE, 1, 1)
    restored = backups.restore(Settings(data=tmp_path / "restored"), tmp_path / "bk.tar")
    assert (restored.schema, restored.blobs) == (migrations.LATEST, 1)
    assert (tmp_path / "restored" / "secret").read_bytes() == services.folder.secret
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert restored_files(tmp_path / "restored") == {wheel.name: sha256}
