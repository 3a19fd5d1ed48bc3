"""Opening the data folder: its modes, the serve lock, the schema, the secret, the first start.

`minirepo serve` creates or upgrades a data folder; every other command opens an existing
one and refuses an empty place, so a command run in the wrong directory never makes a
new, empty index that looks healthy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from minirepo import migrations, models
from minirepo.config import Settings
from minirepo.db import (
    Database,
    MissingDataFolder,
    open_database,
    sqlite_path,
    write_transaction,
)
from minirepo.errors import UserError
from minirepo.services import accounts, instance, integrity, repos
from minirepo.storage import BlobStore, LocalBlobStore

log = logging.getLogger(__name__)

ADMIN_NAME = "admin"
# Where a first start under systemd leaves the admin's token (README, "Running as a service").
FIRST_TOKEN_FILE = "first-admin-token"  # noqa: S105 - a file name
SECRET_BYTES = 32

# What minirepo keeps at the top of a data folder. Only these are made private: a folder
# named by mistake (a home directory) may hold the operator's own files.
_FOLDERS = ("files", "tmp", "backups", "quarantine")
_FILES = ("secret", "serve.lock")
_SQLITE_FILES = ("", "-wal", "-shm", "-journal")


@dataclasses.dataclass(frozen=True)
class DataFolder:
    settings: Settings
    store: BlobStore
    secret: bytes
    database: Database


def blob_store(settings: Settings) -> BlobStore:
    """The store `storage` names: the data folder's files/, or an S3 bucket (boto3 is
    imported only then). Uploads spool into the data folder's tmp/ either way."""
    tmp = settings.data / "tmp"
    if settings.storage:
        from minirepo.s3store import S3BlobStore

        return S3BlobStore(
            settings.storage,
            tmp,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            redirect=settings.s3_redirect,
        )
    return LocalBlobStore(settings.data / "files", tmp, settings.data / "verified.json")


def _load_secret(settings: Settings) -> bytes:
    """The signing key for sessions and credential caches: `secret_key` when set (several
    servers sharing a database), else the data folder's `secret` file."""
    if settings.secret_key:
        return settings.secret_key.encode()
    return _secret_file(settings.data / "secret")


def _secret_file(path: Path) -> bytes:
    """The data folder's signing key, made once with mode 0600.

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


def _owned_paths(data: Path, database: Path | None) -> Iterator[Path]:
    """The data folder, what minirepo keeps at its top, the database copies in backups/,
    and the SQLite files of `database` wherever it is.

    The package files below files/ are not listed: a store may hold tens of thousands on
    a Raspberry Pi's SD card, and files/ at 0700 (inside a 0700 data folder) already
    keeps every other user out of them.
    """
    yield data
    for name in (*_FOLDERS, *_FILES):
        yield data / name
    backups = data / "backups"
    if backups.is_dir() and not backups.is_symlink():
        yield from sorted(backups.iterdir())
    if database is not None:
        for suffix in _SQLITE_FILES:
            yield database.with_name(database.name + suffix)


def _make_private(settings: Settings) -> None:
    """Take group and other access off what minirepo keeps (0600 files, 0700 folders).

    An older version, a `cp -r`, a restore or a wide umask may have left the signing
    secret and the database (password hashes, token digests) readable by every local
    user. The data folder and the database file are followed if they are links (the
    operator named them); links found inside are not, so no file elsewhere changes mode.
    The data folder is narrowed first, so no other user can swap in a link meanwhile.
    One warning names all that changed; a folder already private logs nothing.
    """
    data = settings.data.resolve()
    database = sqlite_path(settings.database, settings.database_path)
    changed = []
    for path in _owned_paths(data, database.resolve() if database else None):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        old = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode) or not old & 0o077:
            continue
        path.chmod(old & 0o700)
        name = path.relative_to(data).as_posix() if path.is_relative_to(data) else str(path)
        slash = "/" if stat.S_ISDIR(info.st_mode) else ""
        changed.append(f"{name}{slash} {old:04o}->{old & 0o700:04o}")
    if changed:
        log.warning(
            "data folder %s was readable by other users; made private: %s",
            data,
            ", ".join(changed),
        )


def open_data(settings: Settings) -> DataFolder:
    """An existing data folder, for every command but `serve`: refuse an empty place, an
    old schema (only `serve` upgrades) and a newer one."""
    if settings.database == "" and not settings.data.is_dir():
        raise MissingDataFolder(settings.data)
    _make_private(settings)
    database = open_database(
        settings.database, settings.database_path, settings.busy_timeout, create=False
    )
    try:
        migrations.check(database)
    except BaseException:
        database.close()
        raise
    return DataFolder(settings, blob_store(settings), _load_secret(settings), database)


def open_for_serving(settings: Settings) -> DataFolder:
    """Make the folder usable for `serve` (which holds its lock): create or upgrade the
    schema, the default repository, sweep `tmp/` and quarantine old orphan blobs."""
    settings.data.mkdir(mode=0o700, parents=True, exist_ok=True)
    _make_private(settings)
    store = blob_store(settings)
    store.ensure_dirs()
    (settings.data / "quarantine").mkdir(mode=0o700, exist_ok=True)
    database = open_database(
        settings.database, settings.database_path, settings.busy_timeout, create=True
    )
    created = migrations.prepare(database, settings.data / "backups")
    secret = _load_secret(settings)
    own_file = sqlite_path(settings.database, settings.database_path)
    is_own = own_file is not None and own_file.resolve() == settings.database_path.resolve()
    try:
        instance.check_secret(database, secret, shared=not is_own)
    except BaseException:
        database.close()
        raise
    with database.activated():
        repos.ensure_default(
            settings.default_repository, settings.read if settings.is_set("read") else None
        )
        if created and settings.upstream:
            repos.create_pypi_defaults(settings.default_repository, settings.upstream)
        removed = store.sweep_tmp()
        if removed:
            log.warning("removed %d unfinished upload(s) from %s", removed, settings.data / "tmp")
        integrity.quarantine_orphans(store, settings.data / "quarantine")
    if created:
        database.checkpoint()
    return DataFolder(settings, store, secret, database)


class ServeLock:
    """One `serve` per data folder: an exclusive lock held while it runs.

    The start-up sweeps (tmp/, orphan blobs) assume no other server writes here. The
    CLI does not take it, so commands keep working beside a running server.
    """

    def __init__(self, data: Path) -> None:
        self.path = data / "serve.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask: nothing in the data folder is for others
        handle = os.fdopen(fd, "r+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(
                f"Another minirepo serve (pid {pid}) is running on {self.path.parent.resolve()}: "
                "stop it first, or pass another --data"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def create_first_admin(settings: Settings, token_file: Path | None = None) -> str | None:
    """The admin and their first token, if the folder has no account yet; else None.

    The server calls this once it holds its port, so a start that fails never makes a
    token nobody saw. One transaction: of two servers starting at once on one database,
    exactly one makes (and prints) them. With `token_file` (under systemd, whose journal
    would keep the token for the `adm` group) the token is written there in the same
    transaction: a file that cannot be made leaves no account, and the next start retries.
    """
    written = False
    try:
        with write_transaction():
            if models.User.select().exists():
                return None
            accounts.add_user(
                ADMIN_NAME, None, method=settings.password_hash, admin=True, actor="first start"
            )
            token = accounts.create_token(
                ADMIN_NAME, permission="admin", description="first start", actor="first start"
            )
            if token_file is not None:
                _write_token_file(token_file, token.secret)
                written = True
    except BaseException:
        if token_file is not None and written:  # its token was never committed
            token_file.unlink(missing_ok=True)
        raise
    return token.secret


def _write_token_file(path: Path, secret: str) -> None:
    """Create `path` for the owner only; never over an existing file or through a link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(
            f"{path} is left from an earlier first start (this data folder has no account): "
            "delete it and start again"
        ) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
        handle.flush()
        os.fsync(handle.fileno())
