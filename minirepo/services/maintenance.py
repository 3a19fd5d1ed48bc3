"""Opening the data folder: first start, the default repository, the secret, tmp sweep."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import tempfile
from pathlib import Path

from minirepo import db, models
from minirepo.config import Settings
from minirepo.services import accounts, integrity
from minirepo.storage import LocalBlobStore

log = logging.getLogger(__name__)

ADMIN_NAME = "admin"
SECRET_BYTES = 32


@dataclasses.dataclass(frozen=True)
class DataFolder:
    settings: Settings
    store: LocalBlobStore
    secret: bytes


def blob_store(settings: Settings) -> LocalBlobStore:
    return LocalBlobStore(settings.data / "files", settings.data / "tmp")


def _load_secret(path: Path) -> bytes:
    """The signing key for sessions and credential caches, made once with mode 0600.

    It is written to a temp file and linked into place, so a crash never leaves an empty
    or short key behind, and two processes starting at once agree on one key.
    """
    with contextlib.suppress(FileNotFoundError):
        secret = path.read_bytes()
        if len(secret) >= SECRET_BYTES:
            return secret
        log.warning("%s is damaged (%d bytes); making a new one", path, len(secret))
        path.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(SECRET_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_bytes()


def open_data(settings: Settings, *, first_start: bool = False) -> DataFolder:
    """Make the folder usable; `first_start` is `minirepo serve` starting.

    Only the server applies the `read` setting to an existing default repository and
    sweeps `tmp/`: a `minirepo user add` run without the server's configuration must not
    turn a private repository public, nor delete the uploads the server has in flight.
    """
    settings.data.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = blob_store(settings)
    store.ensure_dirs()
    (settings.data / "quarantine").mkdir(mode=0o700, exist_ok=True)
    db.bind(db.open_sqlite(settings.database_path, settings.busy_timeout))
    models.create_schema()
    secret = _load_secret(settings.data / "secret")
    _ensure_default_repository(settings, apply_read=first_start)
    if first_start:
        removed = store.sweep_tmp()
        if removed:
            log.warning("removed %d unfinished upload(s) from %s", removed, store.tmp)
        integrity.quarantine_orphans(store, settings.data / "quarantine")
    return DataFolder(settings, store, secret)


def _ensure_default_repository(settings: Settings, *, apply_read: bool) -> None:
    with db.write_transaction():
        repo = models.Repository.get_or_none(models.Repository.name == settings.default_repository)
        if repo is None:
            models.Repository.create(name=settings.default_repository, read=settings.read)
        elif apply_read and repo.read != settings.read:
            log.warning(
                "repository %r: read access changed from %s to %s",
                repo.name,
                repo.read,
                settings.read,
            )
            repo.read = settings.read
            repo.generation += 1
            repo.save()


def create_first_admin(settings: Settings) -> str | None:
    """The admin and their first token, if the folder has no account yet; else None.

    The server calls this once it holds its port, so a start that fails never makes a
    token nobody saw. One transaction: of two servers starting at once on one database,
    exactly one makes (and prints) them.
    """
    with db.write_transaction():
        if models.User.select().exists():
            return None
        accounts.add_user(ADMIN_NAME, None, method=settings.password_hash, admin=True)
        token = accounts.create_token(ADMIN_NAME, permission="admin", description="first start")
    return token.secret
