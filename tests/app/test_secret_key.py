"""`secret_key`: one session secret for every server sharing a database. Set, it replaces
the data folder's `secret` file; it is never shown; start-up refuses a shared database
whose stored fingerprint is another secret's, and on the folder's own SQLite file takes a
new secret file quietly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from minirepo import config, models
from minirepo.app import create_app
from minirepo.cli.config_cmd import describe
from minirepo.config import Settings
from minirepo.errors import UserError
from minirepo.services import accounts, instance
from tests.helpers.backends import served
from tests.helpers.serverproc import FAST_HASH
from tests.helpers.webui import login

KEY = "k" * 40
OTHER_KEY = "o" * 40
PASSWORD = "a-password-1"


def box(tmp_path: Path, name: str, database: str = "", secret_key: str = "") -> Settings:
    """One server's settings: its own data folder, maybe a shared database."""
    return Settings(
        data=tmp_path / name,
        database=database,
        secret_key=secret_key,
        password_hash=FAST_HASH,
        upstream="",
    )


def stored_fingerprint() -> str:
    return str(models.Instance.get(models.Instance.name == models.SECRET_FINGERPRINT).value)


def test_secret_key_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    toml = tmp_path / "minirepo.toml"
    toml.write_text(f'secret_key = "{KEY}"\n')
    assert config.load(toml, {}).secret_key == KEY
    assert config.load(toml, {"MINIREPO_SECRET_KEY": OTHER_KEY}).secret_key == OTHER_KEY
    with pytest.raises(UserError, match=r"'secret_key' must be at least 32 characters"):
        config.load(None, {"MINIREPO_SECRET_KEY": "short"})


def test_secret_key_is_never_shown(tmp_path: Path) -> None:
    settings = config.load(None, {"MINIREPO_SECRET_KEY": KEY})
    assert KEY not in repr(settings)
    shown = "\n".join(describe(settings))
    assert KEY not in shown
    assert 'secret_key = "***"' in shown
    assert 'secret_key = ""' in "\n".join(describe(config.load(None, {})))


def test_secret_key_replaces_the_secret_file_and_is_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = box(tmp_path, "a", secret_key=KEY)
    with served(settings) as app:
        assert app.secret_key == KEY.encode()
        assert not (settings.data / "secret").exists()
        stored = stored_fingerprint()
    assert stored == instance.fingerprint(KEY.encode())
    assert KEY not in stored
    assert KEY not in caplog.text


@pytest.fixture
def shared_database(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_boxes_with_one_secret_key_share_sessions(tmp_path: Path, shared_database: str) -> None:
    with served(box(tmp_path, "a", shared_database, KEY)) as first:
        accounts.add_user("alice", PASSWORD, method=FAST_HASH)
        client = first.test_client()
        login(client, "alice", PASSWORD)
        cookie = client.get_cookie("minirepo_session")
        assert cookie is not None
        assert client.get("/-/tokens").status_code == 200
    with served(box(tmp_path, "b", shared_database, KEY)) as second:
        other = second.test_client()
        other.set_cookie("minirepo_session", cookie.value)
        assert other.get("/-/tokens").status_code == 200  # signed in through the first box


@pytest.mark.parametrize(
    ("first_key", "second_key"),
    [(KEY, OTHER_KEY), ("", ""), ("", KEY), (KEY, "")],
    ids=["two-keys", "two-secret-files", "file-then-key", "key-then-file"],
)
def test_a_shared_database_refuses_another_secret(
    tmp_path: Path, shared_database: str, first_key: str, second_key: str
) -> None:
    with served(box(tmp_path, "a", shared_database, first_key)):
        first = stored_fingerprint()
    with pytest.raises(UserError, match=r"set the same secret_key .* on every server"):
        create_app(box(tmp_path, "b", shared_database, second_key))
    with served(box(tmp_path, "a", shared_database, first_key)):  # the first box still starts
        assert stored_fingerprint() == first


def test_two_first_starts_on_a_shared_database_store_one_fingerprint(
    tmp_path: Path, shared_database: str
) -> None:
    with served(box(tmp_path, "a", shared_database, KEY)):
        pass
    with served(box(tmp_path, "b", shared_database, KEY)):
        assert models.Instance.select().count() == 1
        assert stored_fingerprint() == instance.fingerprint(KEY.encode())


def test_a_sqlite_folder_takes_a_new_secret_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A restored folder whose `secret` was made anew: nobody else uses its database, so
    the new fingerprint is stored and the server starts (old sessions end)."""
    settings = box(tmp_path, "a")
    with served(settings):
        old = stored_fingerprint()
    (settings.data / "secret").unlink()
    with served(settings):
        new = stored_fingerprint()
    assert new != old
    assert new == instance.fingerprint((settings.data / "secret").read_bytes())
    assert "the session secret differs from the last start's" in caplog.text
    with served(box(tmp_path, "a", secret_key=KEY)):  # and a secret_key set later
        assert stored_fingerprint() == instance.fingerprint(KEY.encode())


def test_a_sqlite_database_outside_the_folder_counts_as_shared(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    with served(box(tmp_path, "a", url, KEY)):
        pass
    with pytest.raises(UserError, match="set the same secret_key"):
        create_app(box(tmp_path, "b", url, OTHER_KEY))
