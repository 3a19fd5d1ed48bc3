"""Opening the data folder: first start, the default repository, the secret, tmp sweep."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from pathlib import Path

from minirepo import db, models
from minirepo.config import Settings
from minirepo.services import accounts
from minirepo.storage import LocalBlobStore

log = logging.getLogger(__name__)

ADMIN_NAME = "admin"


@dataclasses.dataclass(frozen=True)
class DataFolder:
    settings: Settings
    store: LocalBlobStore
    secret: bytes
    admin_token: str | None


def blob_store(settings: Settings) -> LocalBlobStore:
    return LocalBlobStore(settings.data / "files", settings.data / "tmp")


def _load_secret(path: Path) -> bytes:
    """The signing key for sessions and credential caches, made once with mode 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def open_data(settings: Settings, *, first_start: bool = False) -> DataFolder:
    """Make the folder usable; on `first_start` with no accounts, create the admin."""
    settings.data.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = blob_store(settings)
    store.ensure_dirs()
    (settings.data / "quarantine").mkdir(mode=0o700, exist_ok=True)
    db.bind(db.open_sqlite(settings.database_path, settings.busy_timeout))
    models.create_schema()
    secret = _load_secret(settings.data / "secret")
    _ensure_default_repository(settings)
    admin_token = None
    if first_start and not models.User.select().exists():
        admin_token = _create_admin(settings)
    if first_start:
        removed = store.sweep_tmp()
        if removed:
            log.warning("removed %d unfinished upload(s) from %s", removed, store.tmp)
    return DataFolder(settings, store, secret, admin_token)


def _ensure_default_repository(settings: Settings) -> None:
    with db.write_transaction():
        repo = models.Repository.get_or_none(models.Repository.name == settings.default_repository)
        if repo is None:
            models.Repository.create(name=settings.default_repository, read=settings.read)
        elif repo.read != settings.read:
            repo.read = settings.read
            repo.generation += 1
            repo.save()


def _create_admin(settings: Settings) -> str:
    accounts.add_user(
        ADMIN_NAME, secrets.token_urlsafe(24), method=settings.password_hash, admin=True
    )
    token = accounts.create_token(ADMIN_NAME, permission="admin", description="first start")
    return token.secret
