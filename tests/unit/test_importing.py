"""The import core (`services.importing`), the htpasswd reader and the hashes it brings."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
from pathlib import Path

import bcrypt
import pytest
from flask import Flask

from minirepo import credentials, models
from minirepo.db import write_transaction
from minirepo.errors import UserError
from minirepo.services import accounts, import_pypiserver, importing, projects, repos
from minirepo.services.container import Services
from minirepo.services.importing import ImportedFile, ImportReport
from tests.conftest import basic
from tests.helpers.distfactory import Dist, make_sdist, make_wheel, write_zip
from tests.helpers.serverproc import FAST_HASH

PASSWORD = "old-password-1"
WHEN = datetime.datetime(2021, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)


def sha_hash(password: str) -> str:
    return (
        "{SHA}"
        + base64.b64encode(hashlib.sha1(password.encode(), usedforsecurity=False).digest()).decode()
    )


def bcrypt_hash(password: str, prefix: str = "$2y$") -> str:
    made = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    return prefix + made[4:]


# The hashes


@pytest.mark.parametrize("prefix", ["$2y$", "$2a$", "$2b$"])
def test_bcrypt_hashes_of_every_htpasswd_spelling_verify(prefix: str) -> None:
    stored = bcrypt_hash(PASSWORD, prefix)
    assert credentials.can_verify(stored)
    assert credentials.verify_password(stored, PASSWORD)
    assert not credentials.verify_password(stored, PASSWORD + "x")


def test_bcrypt_reads_72_bytes_as_htpasswd_does_and_refuses_damage() -> None:
    long = "p" * 100
    assert credentials.verify_password(bcrypt_hash(long[:72]), long)
    assert not credentials.verify_password("$2y$10$tooshort", PASSWORD)


def test_sha_hashes_verify_natively() -> None:
    stored = sha_hash(PASSWORD)
    assert credentials.can_verify(stored)
    assert credentials.verify_password(stored, PASSWORD)
    assert not credentials.verify_password(stored, "other-password")
    assert not credentials.verify_password("{SHA}not base64", PASSWORD)


def test_without_the_bcrypt_package_a_bcrypt_hash_is_kept_but_proves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(credentials, "has_bcrypt", lambda: False)
    stored = bcrypt_hash(PASSWORD)
    assert credentials.is_importable_hash(stored)
    assert not credentials.can_verify(stored)
    assert not credentials.verify_password(stored, PASSWORD)
    assert "minirepo-server[bcrypt]" in credentials.unverifiable_note(stored)


@pytest.mark.parametrize("stored", ["$apr1$x$y", "plain", "abCdE1234xyz.", ""])
def test_other_htpasswd_hashes_are_not_imported(stored: str) -> None:
    assert not credentials.is_importable_hash(stored)
    assert not credentials.can_verify(stored)


def test_only_foreign_hashes_are_replaced() -> None:
    assert credentials.needs_rehash(sha_hash(PASSWORD))
    assert credentials.needs_rehash(bcrypt_hash(PASSWORD))
    assert not credentials.needs_rehash(credentials.hash_password(PASSWORD, FAST_HASH))


# The htpasswd file and the packages folder


def test_read_htpasswd_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text("# users\n\nalice:{SHA}abc=\n  bob:$2y$05$x  \ncarol:\n")
    entries = import_pypiserver.read_htpasswd(path)
    assert [(e.name, e.password_hash) for e in entries] == [
        ("alice", "{SHA}abc="),
        ("bob", "$2y$05$x"),
        ("carol", ""),
    ]


@pytest.mark.parametrize("text", ["alice\n", ":{SHA}abc=\n"])
def test_read_htpasswd_refuses_what_is_no_htpasswd_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(text)
    with pytest.raises(UserError, match=r"htpasswd:1: not a 'name:hash' line"):
        import_pypiserver.read_htpasswd(path)


def test_read_htpasswd_refuses_binary(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not UTF-8"):
        import_pypiserver.read_htpasswd(path)


@pytest.mark.parametrize(
    ("stored", "words"),
    [
        ("$apr1$salt$hash", "MD5-apr1"),
        ("$6$salt$hash", "SHA-512-crypt"),
        ("abCdE1234xyz.", "crypt or plain-text"),
    ],
)
def test_unreadable_hashes_are_named(stored: str, words: str) -> None:
    assert words in import_pypiserver.unreadable_note(stored)


def test_find_files_walks_subfolders_as_pypiserver_lists_them(tmp_path: Path) -> None:
    root = tmp_path / "packages"
    (root / "team" / "old").mkdir(parents=True)
    (root / ".git").mkdir()
    top = make_wheel(root, Dist("top", "1.0"))
    deep = make_sdist(root / "team" / "old", Dist("deep", "0.1"))
    make_wheel(root / ".git", Dist("hidden", "1.0"))
    make_wheel(root, Dist("dotted", "1.0"), filename=".dotted-1.0-py3-none-any.whl")
    (root / "README.txt").write_text("not a distribution")
    (root / "legacy-1.0.zip").write_bytes(b"PK")
    os.utime(top, (WHEN.timestamp(), WHEN.timestamp()))

    found = import_pypiserver.find_files(root)

    assert [f.path for f in found.files] == [root / "legacy-1.0.zip", top, deep]
    assert found.ignored == ["README.txt"]
    assert found.files[1].upload_time == WHEN
    assert all(f.uploader is None for f in found.files)


# The core, on an app's database


@pytest.fixture
def services(app: Flask) -> Services:
    result: Services = app.extensions["minirepo"]
    return result


def import_into(services: Services, files: list[ImportedFile], repo: str = "main") -> ImportReport:
    report = ImportReport()
    ticks: list[int] = []
    importing.import_files(
        repo,
        files,
        store=services.folder.store,
        settings=services.settings,
        actor="import test",
        report=report,
        progress=ticks.append,
    )
    assert ticks == [1] * len(files)
    return report


def test_import_files_stores_keeps_the_time_and_audits(
    services: Services, dist_folder: Path
) -> None:
    accounts.add_user("alice", None, method=FAST_HASH)
    wheel = make_wheel(dist_folder, Dist("demo-pkg", "1.0"))
    sdist = make_sdist(dist_folder, Dist("demo-pkg", "1.0"))
    report = import_into(services, [ImportedFile(wheel, WHEN, "alice"), ImportedFile(sdist, WHEN)])
    assert report.imported == [wheel.name, sdist.name]
    rows = {row.filename: row for row in models.File.select()}
    assert rows[wheel.name].upload_time == WHEN.replace(tzinfo=None)
    assert rows[wheel.name].uploader.name == "alice"
    assert rows[sdist.name].uploader is None
    assert rows[wheel.name].sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert services.folder.store.info(rows[wheel.name].storage_key) is not None
    events = models.Event.select().where(models.Event.action == "import")
    assert sorted((e.actor, e.filename) for e in events) == [
        ("import test", wheel.name),
        ("import test", sdist.name),
    ]
    assert not list((services.settings.data / "tmp").iterdir())


def test_import_again_skips_the_same_bytes_and_refuses_other_bytes(
    services: Services, dist_folder: Path, tmp_path: Path
) -> None:
    wheel = make_wheel(dist_folder, Dist("demo-pkg", "1.0"))
    assert import_into(services, [ImportedFile(wheel, WHEN)]).imported == [wheel.name]
    report = import_into(services, [ImportedFile(wheel, WHEN)])
    assert (report.imported, report.skipped) == ([], [wheel.name])

    other = tmp_path / "other"
    other.mkdir()
    changed = make_wheel(other, Dist("demo-pkg", "1.0", summary="other bytes"))
    report = import_into(services, [ImportedFile(changed, WHEN)])
    assert report.refused == [(wheel.name, f"main already has {wheel.name} with other contents")]


def test_an_overwrite_repository_is_not_overwritten_by_an_import(
    services: Services, dist_folder: Path, tmp_path: Path
) -> None:
    repos.create("loose", overwrite="allow")
    wheel = make_wheel(dist_folder, Dist("demo-pkg", "1.0"))
    import_into(services, [ImportedFile(wheel, WHEN)], "loose")
    other = tmp_path / "other"
    other.mkdir()
    changed = make_wheel(other, Dist("demo-pkg", "1.0", summary="other bytes"))
    report = import_into(services, [ImportedFile(changed, WHEN)], "loose")
    assert [reason for _, reason in report.refused] == [
        f"loose already has {wheel.name} with other contents"
    ]
    stored = models.File.get(models.File.filename == wheel.name)
    assert stored.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_a_deleted_files_name_stays_burned(services: Services, dist_folder: Path) -> None:
    wheel = make_wheel(dist_folder, Dist("demo-pkg", "1.0"))
    import_into(services, [ImportedFile(wheel, WHEN)])
    projects.delete("main", "demo-pkg", "1.0", wheel.name)
    report = import_into(services, [ImportedFile(wheel, WHEN)])
    [(filename, reason)] = report.refused
    assert filename == wheel.name
    assert "was used by a deleted file" in reason


def test_bad_files_are_refused_one_by_one(
    services: Services, dist_folder: Path, tmp_path: Path
) -> None:
    good = make_wheel(dist_folder, Dist("good", "1.0"))
    mismatch = write_zip(
        dist_folder / "named-1.0-py3-none-any.whl", {"other-1.0.dist-info/METADATA": b"x"}
    )
    empty = dist_folder / "empty-1.0.tar.gz"
    empty.write_bytes(b"")
    egg = dist_folder / "old-1.0-py2.7.egg"
    egg.write_bytes(b"PK")
    gone = ImportedFile(dist_folder / "gone-1.0.tar.gz", WHEN)
    files = [ImportedFile(path, WHEN) for path in (mismatch, empty, egg)] + [gone]
    report = import_into(services, [*files, ImportedFile(good, WHEN)])
    assert report.imported == [good.name]
    reasons = dict(report.refused)
    assert set(reasons) == {mismatch.name, empty.name, egg.name, "gone-1.0.tar.gz"}
    assert "it is empty" in reasons[empty.name]
    assert "only .whl and .tar.gz accepted" in reasons[egg.name]
    assert "cannot read" in reasons["gone-1.0.tar.gz"]
    assert models.File.select().count() == 1


def test_an_unknown_uploader_is_noted_and_the_file_kept(
    services: Services, dist_folder: Path
) -> None:
    wheel = make_wheel(dist_folder, Dist("demo-pkg", "1.0"))
    report = import_into(services, [ImportedFile(wheel, WHEN, "nobody")])
    assert report.imported == [wheel.name]
    assert report.notes == ["nobody is not an account here: their files have no uploader"]


def test_ensure_hosted_repo_creates_and_refuses_proxies_and_groups(services: Services) -> None:
    importing.ensure_hosted_repo("imported", actor="import test")
    assert repos.get("imported").kind == "hosted"
    importing.ensure_hosted_repo("imported", actor="import test")  # again: nothing to do
    repos.create("mirror", kind="proxy", upstream="https://pypi.org/simple/")
    repos.create("everything", kind="group", members=["main", "mirror"])
    for name, kind in (("mirror", "proxy"), ("everything", "group")):
        with pytest.raises(UserError, match=f"is a {kind}: import into a hosted repository"):
            importing.ensure_hosted_repo(name, actor="import test")
    with pytest.raises(UserError, match="is a proxy"):
        import_into(services, [], "mirror")


def test_import_user_keeps_readable_hashes_and_lists_the_rest(services: Services) -> None:
    accounts.add_user("existing", PASSWORD, method=FAST_HASH)
    before = models.User.get(models.User.name == "existing").password_hash
    report = ImportReport()
    for name, stored in (
        ("alice", sha_hash(PASSWORD)),
        ("bob", bcrypt_hash(PASSWORD)),
        ("carol", "$apr1$salt$hash"),
        ("dave", None),
        ("existing", sha_hash("another-one")),
        ("bad name", sha_hash(PASSWORD)),
    ):
        importing.import_user(
            name, stored, actor="import test", report=report, note_if_unusable=f"{name}'s"
        )
    assert report.users_created == ["alice", "bob", "carol", "dave"]
    assert report.users_existing == ["existing"]
    assert [name for name, _ in report.users_refused] == ["bad name"]
    assert report.to_reset == [("carol", "carol's"), ("dave", "dave's")]
    hashes = {user.name: user.password_hash for user in models.User.select()}
    assert hashes["alice"] == sha_hash(PASSWORD)
    assert hashes["bob"].startswith("$2y$")
    assert hashes["carol"] == hashes["dave"] == credentials.NO_PASSWORD
    assert hashes["existing"] == before


def test_import_user_lists_bcrypt_users_when_bcrypt_is_missing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credentials, "has_bcrypt", lambda: False)
    report = ImportReport()
    stored = bcrypt_hash(PASSWORD)
    importing.import_user("bob", stored, actor="import test", report=report)
    assert models.User.get(models.User.name == "bob").password_hash == stored
    assert [name for name, _ in report.to_reset] == ["bob"]
    assert "minirepo-server[bcrypt]" in report.to_reset[0][1]


# The first login replaces the imported hash (the whole-app path: tests/app)


def test_a_failed_check_of_an_imported_hash_costs_the_dummy_kdf_run(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    importing.import_user("alice", sha_hash(PASSWORD), actor="t", report=ImportReport())
    checked: list[str] = []
    real = credentials.verify_password

    def spy(stored: str, password: str) -> bool:
        checked.append(stored.split(":", 1)[0])
        return real(stored, password)

    monkeypatch.setattr("minirepo.auth.verify_password", spy)
    client = app.test_client()
    assert client.get("/-/api/whoami", headers=basic("alice", "wrong-password")).status_code == 401
    assert checked == ["{SHA}" + sha_hash(PASSWORD)[5:], "pbkdf2"]


def test_no_rehash_inside_a_transaction(app: Flask) -> None:
    """An upload re-proving its caller does so inside its write transaction: the KDF
    and the write wait for the next login."""
    importing.import_user("alice", sha_hash(PASSWORD), actor="t", report=ImportReport())
    authenticator = app.extensions["minirepo.auth"]
    with write_transaction():
        authenticator.authenticate(basic("alice", PASSWORD)["Authorization"], "127.0.0.1")
    assert models.User.get(models.User.name == "alice").password_hash == sha_hash(PASSWORD)
    authenticator.authenticate(basic("alice", PASSWORD)["Authorization"], "127.0.0.1", fresh=True)
    stored = models.User.get(models.User.name == "alice").password_hash
    assert stored.startswith("pbkdf2:")
    assert credentials.verify_password(stored, PASSWORD)
