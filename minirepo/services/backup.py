"""`minirepo backup` and `minirepo restore`: a copy of a data folder taken while it serves.

Consistency comes from the order. The database is copied first (SQLite's `VACUUM INTO`:
one read snapshot, which in WAL mode never holds up an upload), then the blobs that copy
names. An upload links its blob before its rows commit and blobs never change, so every
key in the copy is on disk when the copy is taken; uploads committed later are simply not
in this backup. A blob deleted by the live index before it could be copied (a proxy's
cache eviction, garbage collection) is forgotten by the copy too, as it was live. The
live database is only read, and no disk work happens inside any of its transactions.

Blobs are copied and fsynced, never hard-linked: a backup shares no inode with the store.
On PostgreSQL the rows are copied into a SQLite file in one REPEATABLE READ snapshot
(`rowcopy`), so a backup always holds its database, and a restore copies the rows into
whichever database the target's settings name (the staged SQLite file, or PostgreSQL's).
`MANIFEST.json` is written last, so a backup without one is unfinished and not restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

import peewee

from minirepo import __version__, migrations, models
from minirepo.config import Settings
from minirepo.db import Database, open_database, sqlite_path
from minirepo.errors import UserError
from minirepo.services import datafolder, migrate_data, rowcopy
from minirepo.services.datafolder import SECRET_BYTES, DataFolder
from minirepo.storage import LocalBlobStore, fsync_dir

log = logging.getLogger(__name__)

FORMAT = 1  # MANIFEST.json's own version: a restore refuses a format it does not know
MANIFEST = "MANIFEST.json"
DATABASE = "minirepo.sqlite3"
SIGNING_KEY_FILE = "secret"
FILES = "files"
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
CHUNK = 1024 * 1024
SMALL_LIMIT = 1024 * 1024  # the manifest and the secret; more is not a backup of ours

Progress = Callable[[list[str]], AbstractContextManager[Iterable[str]]]


def no_progress(keys: list[str]) -> AbstractContextManager[Iterable[str]]:
    return contextlib.nullcontext(keys)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a backup holds; `damaged` are keys whose blob was missing or wrong at backup."""

    minirepo_version: str
    schema_version: int
    created: str
    # SQLITE: the backup holds the rows as a SQLite file, whichever database they came
    # from; POSTGRESQL: made by 0.2 on PostgreSQL, it holds none (a pg_dump went with it).
    database: str
    files: int
    tombstones: int
    blobs: int
    blob_bytes: int
    damaged: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        data = {"format": FORMAT, **dataclasses.asdict(self), "damaged": list(self.damaged)}
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        """The manifest, refused with a reason when it is not one this release can restore."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise UserError(f"{MANIFEST} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise UserError(f"{MANIFEST} is not a JSON object")
        if data.get("format") != FORMAT:
            raise UserError(
                f"{MANIFEST} has format {data.get('format')!r}, this minirepo reads {FORMAT}: "
                "restore it with the minirepo that made it"
            )
        manifest = cls(
            minirepo_version=_get(data, "minirepo_version", str),
            schema_version=_get(data, "schema_version", int),
            created=_get(data, "created", str),
            database=_get(data, "database", str),
            files=_get(data, "files", int),
            tombstones=_get(data, "tombstones", int),
            blobs=_get(data, "blobs", int),
            blob_bytes=_get(data, "blob_bytes", int),
            damaged=tuple(_get(data, "damaged", list)),
        )
        if manifest.database not in (SQLITE, POSTGRESQL):
            raise UserError(f"{MANIFEST} names an unknown database kind {manifest.database!r}")
        if not all(isinstance(key, str) for key in manifest.damaged):
            raise UserError(f"{MANIFEST}: 'damaged' must list storage keys")
        check_schema(manifest.schema_version, MANIFEST)
        return manifest


def _get(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{MANIFEST}: {name!r} is missing or not a {kind.__name__}")
    return value


def check_schema(version: int | None, where: str) -> int:
    """An older schema is fine (the next `serve` upgrades it); a newer one is not."""
    if version is None or version < 1:
        raise UserError(f"{where} holds no minirepo database schema")
    if version > migrations.LATEST:
        raise UserError(
            f"{where} was made by a newer minirepo (schema {version}, this one knows up to "
            f"{migrations.LATEST}): restore it with that release or newer"
        )
    return version


# -- copying ------------------------------------------------------------------------------


def _create(path: Path) -> BinaryIO:
    """A new file, 0600 whatever the umask; never one that exists (nothing is clobbered)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _copy(source: IO[bytes], target: IO[bytes]) -> str:
    """Copy all of `source` into `target` and fsync it; returns the sha256 of the bytes."""
    digest = hashlib.sha256()
    for block in iter(lambda: source.read(CHUNK), b""):
        digest.update(block)
        target.write(block)
    target.flush()
    os.fsync(target.fileno())
    return digest.hexdigest()


def _write_file(path: Path, source: IO[bytes]) -> str:
    with _create(path) as target:
        return _copy(source, target)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _open_regular(path: Path) -> BinaryIO:
    """Only a regular file: never follow a planted symlink, never block on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{path} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def key_sha256(key: str) -> str:
    return key.split("/")[1]


def is_key(key: str) -> bool:
    """`ab/<sha256>/<filename>`, with no part that could climb out of `files/`."""
    parts = key.split("/")
    return (
        len(parts) == 3
        and all(part not in ("", ".", "..") for part in parts)
        and len(parts[1]) == 64
        and parts[0] == parts[1][:2]
    )


class _Hashing:
    """A reader that hashes what passes through it (for blobs streamed into a tar)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        block = self.handle.read(size)
        self.digest.update(block)
        return block


# -- writing a backup ---------------------------------------------------------------------


class _Writer(Protocol):
    work: Path  # scratch space on the backup's disk, for the database copy

    def add(self, name: str, source: IO[bytes], size: int) -> str:
        """Store `size` bytes of `source` as `name`; returns their sha256."""

    def move_in(self, name: str, path: Path) -> None:
        """Make a finished scratch file part of the backup as `name`."""

    def close(self) -> None:
        """Make the backup durable and complete."""

    def abort(self) -> None:
        """Remove everything this backup wrote."""


class _Tree:
    """Files written below `root`, private (0600 files, 0700 folders) and fsynced."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dirs = {root}

    def write(self, name: str, source: IO[bytes]) -> str:
        """Write `name` from `source`; returns the sha256 of what was written."""
        target = self.root / name
        for parent in reversed(target.relative_to(self.root).parents[:-1]):
            if self.root / parent not in self.dirs:
                (self.root / parent).mkdir(mode=0o700, exist_ok=True)
                self.dirs.add(self.root / parent)
        return _write_file(target, source)

    def remove(self, name: str) -> None:
        """Remove `name` and the folders it leaves empty (a blob's two)."""
        target = self.root / name
        target.unlink()
        for parent in (target.parent, target.parent.parent):
            with contextlib.suppress(OSError):
                parent.rmdir()
                self.dirs.discard(parent)

    def sync(self) -> None:
        """Make every entry durable: each folder after the ones inside it."""
        for directory in sorted(self.dirs, key=lambda path: len(path.parts), reverse=True):
            fsync_dir(directory)


class _FolderWriter:
    """A backup as a folder laid out like a data folder (files/, secret, the database)."""

    def __init__(self, dest: Path) -> None:
        self.created = not dest.exists()
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.tree = _Tree(dest)
        self.work = Path(tempfile.mkdtemp(dir=dest, prefix=".unfinished-"))

    def add(self, name: str, source: IO[bytes], size: int) -> str:
        return self.tree.write(name, source)

    def move_in(self, name: str, path: Path) -> None:
        _fsync_file(path)
        os.rename(path, self.tree.root / name)

    def close(self) -> None:
        self.work.rmdir()
        self.tree.sync()

    def abort(self) -> None:
        _undo(self.tree.root, created=self.created)


def _undo(folder: Path, *, created: bool) -> None:
    """Put back a folder this command found empty (or missing) as it was."""
    if created:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


class _TarWriter:
    """A backup as one tar file, written under a scratch name and linked into place last,
    so a backup cut short never leaves a truncated DEST behind."""

    def __init__(self, dest: Path) -> None:
        if not dest.parent.is_dir():
            raise UserError(f"No folder {dest.parent} to write {dest.name} into")
        self.dest = dest
        self.work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
        self.partial = self.work / dest.name
        self.raw = _create(self.partial)
        compressed = dest.name.endswith((".tar.gz", ".tgz"))
        self.tar = (  # closed by close or abort
            tarfile.open(fileobj=self.raw, mode="w:gz")  # noqa: SIM115
            if compressed
            else tarfile.open(fileobj=self.raw, mode="w")  # noqa: SIM115
        )

    def add(self, name: str, source: IO[bytes], size: int) -> str:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        info.mtime = int(time.time())
        reader = _Hashing(source)
        self.tar.addfile(info, reader)
        return reader.digest.hexdigest()

    def move_in(self, name: str, path: Path) -> None:
        with path.open("rb") as handle:
            self.add(name, handle, os.fstat(handle.fileno()).st_size)
        path.unlink()

    def close(self) -> None:
        self.tar.close()
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        try:
            os.link(self.partial, self.dest)
        except FileExistsError:
            raise UserError(f"{self.dest} appeared during the backup: nothing written") from None
        fsync_dir(self.dest.parent)
        shutil.rmtree(self.work)

    def abort(self) -> None:
        with contextlib.suppress(OSError, tarfile.TarError):
            self.tar.close()
        self.raw.close()
        shutil.rmtree(self.work, ignore_errors=True)


def check_dest(dest: Path, *, tar: bool, data: Path) -> None:
    """DEST is new (or an empty folder), and not where the store or a sweep would take it."""
    if tar:
        if not dest.name.endswith(TAR_SUFFIXES):
            raise UserError(f"With --tar, DEST must end in .tar or .tar.gz: {dest}")
        if dest.exists() or dest.is_symlink():
            raise UserError(f"{dest} exists: name a new file (nothing written)")
    elif dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise UserError(f"{dest} exists and is not an empty folder (nothing written)")
    resolved = dest.resolve()
    for inside in ("files", "tmp", "quarantine"):
        if resolved.is_relative_to((data / inside).resolve()):
            raise UserError(f"{dest} is inside the data folder's {inside}/: choose another place")


@dataclasses.dataclass
class _Snapshot:
    """The database as the backup holds it: the copy and the keys it names."""

    copy: Database
    path: Path
    schema: int
    keys: list[str]


def _open_copy(path: Path) -> Database:
    handle = peewee.SqliteDatabase(str(path), pragmas={"foreign_keys": 1})
    return Database(handle, 5.0, str(path))


def _storage_keys(database: Database) -> list[str]:
    """Every key a row names, in one statement (one snapshot, on PostgreSQL too); a
    tombstone whose blob garbage collection freed names none (its key is empty)."""
    query = models.File.select(models.File.storage_key) | models.Tombstone.select(
        models.Tombstone.storage_key
    ).where(models.Tombstone.storage_key != "")
    with database.activated():
        return sorted(str(row[0]) for row in query.tuples())


def _served(live: Database, key: str) -> bool:
    """Whether a live file row names `key`: its blob missing is damage. A blob only
    tombstones name may go at any time (garbage collection), as may an evicted one."""
    with live.activated():
        return bool(models.File.select().where(models.File.storage_key == key).exists())


def _export(live: Database, path: Path) -> None:
    """PostgreSQL's rows, copied into a new SQLite file of the same schema."""
    old_umask = os.umask(0o077)  # private from its first byte, as `copy_to` makes it
    try:
        copy = open_database("", path, 5.0, create=True)
    finally:
        os.umask(old_umask)
    try:
        migrations.prepare(copy, path.parent)
        rowcopy.copy_rows(live, copy)
    finally:
        copy.close()


def _snapshot(live: Database, work: Path) -> _Snapshot:
    if live.is_sqlite:
        path = live.copy_to(work / DATABASE)
    else:
        path = work / DATABASE
        _export(live, path)
    copy = _open_copy(path)
    try:
        version = check_schema(migrations.version_of(copy), str(path))
        return _Snapshot(copy, path, version, _storage_keys(copy))
    except BaseException:
        copy.close()
        raise


@dataclasses.dataclass
class _Copied:
    blobs: int = 0
    size: int = 0
    damaged: list[str] = dataclasses.field(default_factory=list)
    vanished: list[str] = dataclasses.field(default_factory=list)


def _copy_blobs(folder: DataFolder, keys: list[str], writer: _Writer, bar: Progress) -> _Copied:
    copied = _Copied()
    with bar(keys) as progress:
        for key in progress:
            info = folder.store.info(key)
            try:
                if info is None:
                    raise FileNotFoundError(key)
                handle = folder.store.open(key)
            except FileNotFoundError:
                missing = _served(folder.database, key)
                (copied.damaged if missing else copied.vanished).append(key)
                continue
            with handle:
                size = info.size
                digest = writer.add(f"{FILES}/{key}", handle, size)
            copied.blobs += 1
            copied.size += size
            if digest != key_sha256(key):
                copied.damaged.append(key)
    return copied


def _forget(copy: Database, keys: list[str]) -> None:
    """Do in the copy what the live index did while the backup ran: drop the file rows of
    blobs it deleted (their metadata rows cascade) and empty the keys of tombstones whose
    blob it freed, as garbage collection does. So the copy names no blob the backup lacks."""
    with copy.activated(), copy.write_transaction():
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            models.File.delete().where(models.File.storage_key.in_(batch)).execute()
            models.Tombstone.update(storage_key="").where(
                models.Tombstone.storage_key.in_(batch)
            ).execute()


def _counts(database: Database) -> tuple[int, int]:
    with database.activated():
        return int(models.File.select().count()), int(models.Tombstone.select().count())


def _write_backup(folder: DataFolder, writer: _Writer, bar: Progress) -> Manifest:
    snapshot = _snapshot(folder.database, writer.work)
    try:
        writer.add(SIGNING_KEY_FILE, io.BytesIO(folder.secret), len(folder.secret))
        copied = _copy_blobs(folder, snapshot.keys, writer, bar)
        if copied.vanished:
            log.info("%d file(s) were deleted while the backup ran", len(copied.vanished))
        if copied.vanished:
            _forget(snapshot.copy, copied.vanished)
        files, tombstones = _counts(snapshot.copy)
    finally:
        snapshot.copy.close()
    writer.move_in(DATABASE, snapshot.path)
    manifest = Manifest(
        minirepo_version=__version__,
        schema_version=snapshot.schema,
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        database=SQLITE,
        files=files,
        tombstones=tombstones,
        blobs=copied.blobs,
        blob_bytes=copied.size,
        damaged=tuple(copied.damaged),
    )
    raw = manifest.to_json()
    writer.add(MANIFEST, io.BytesIO(raw), len(raw))
    return manifest


def backup(folder: DataFolder, dest: Path, *, tar: bool, bar: Progress = no_progress) -> Manifest:
    """Write a backup of the open data folder to DEST (a folder, or a tar file)."""
    check_dest(dest, tar=tar, data=folder.settings.data)
    writer: _Writer = _TarWriter(dest) if tar else _FolderWriter(dest)
    try:
        manifest = _write_backup(folder, writer, bar)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return manifest


# -- reading a backup ---------------------------------------------------------------------


class _Source(Protocol):
    def open(self, name: str) -> IO[bytes] | None:
        """The member `name`, or None when the backup has none."""

    def blob_keys(self) -> list[str]:
        """The keys of the blobs the backup holds, in the order cheapest to read."""

    def close(self) -> None: ...


class _FolderSource:
    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, name: str) -> IO[bytes] | None:
        try:
            return _open_regular(self.root / name)
        except FileNotFoundError:
            return None

    def blob_keys(self) -> list[str]:
        store = LocalBlobStore(self.root / FILES, self.root)  # lists, never descends a link
        return sorted(key for key in store.stored_keys() if is_key(key))

    def close(self) -> None:
        pass


class _TarSource:
    def __init__(self, path: Path) -> None:
        try:
            self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close
            self.members = {info.name: info for info in self.tar.getmembers() if info.isfile()}
        except (tarfile.TarError, EOFError) as exc:
            raise UserError(f"{path} is not a readable tar file: {exc}") from exc

    def open(self, name: str) -> IO[bytes] | None:
        info = self.members.get(name)
        return None if info is None else self.tar.extractfile(info)

    def blob_keys(self) -> list[str]:
        prefix = f"{FILES}/"
        return [
            name.removeprefix(prefix)
            for name in self.members  # archive order: reading forward never seeks back
            if name.startswith(prefix) and is_key(name.removeprefix(prefix))
        ]

    def close(self) -> None:
        self.tar.close()


@contextlib.contextmanager
def _opened(source: Path) -> Iterator[_Source]:
    if source.is_dir():
        opened: _Source = _FolderSource(source)
    elif source.is_file():
        opened = _TarSource(source)
    else:
        raise UserError(f"No backup at {source}")
    try:
        yield opened
    finally:
        opened.close()


def _read_small(source: _Source, name: str) -> bytes | None:
    handle = source.open(name)
    if handle is None:
        return None
    with handle:
        data = handle.read(SMALL_LIMIT + 1)
    if len(data) > SMALL_LIMIT:
        raise UserError(f"{name} in the backup is too large to be ours")
    return data


def read_manifest(source: _Source) -> Manifest:
    raw = _read_small(source, MANIFEST)
    if raw is None:
        raise UserError(f"No {MANIFEST}: not a minirepo backup, or one that did not finish")
    return Manifest.parse(raw)


@dataclasses.dataclass(frozen=True)
class Restored:
    manifest: Manifest
    schema: int | None  # of the restored SQLite database; None when it was on PostgreSQL
    blobs: int
    size: int
    skipped: tuple[str, ...]  # damaged before the backup, listed so in its manifest


def check_target(settings: Settings) -> None:
    """Restore only into a new or empty folder, and never over an existing database."""
    target = settings.data
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise UserError(f"{target} exists and is not an empty folder: nothing changed")
    database = sqlite_path(settings.database, settings.database_path)
    if database is not None and database.exists():
        raise UserError(f"The database {database} exists: nothing changed")
    if database is None:
        with _target_database(settings) as opened:
            migrate_data.refuse_used(opened)


@contextlib.contextmanager
def _target_database(settings: Settings) -> Iterator[Database]:
    opened = open_database(settings.database, settings.database_path, 5.0, create=False)
    try:
        yield opened
    finally:
        opened.close()


class _Restore:
    """One restore, staged in `tree` (a hidden folder inside the target)."""

    def __init__(self, source: _Source, manifest: Manifest, tree: _Tree) -> None:
        self.source = source
        self.manifest = manifest
        self.tree = tree
        self.restored: list[str] = []
        self.size = 0
        self.skipped: list[str] = []

    def database(self) -> list[str] | None:
        """Stage the database and check its schema; the keys it names (None: PostgreSQL)."""
        if self.manifest.database == POSTGRESQL:
            return None
        handle = self.source.open(DATABASE)
        if handle is None:
            raise UserError(f"The backup lacks {DATABASE}")
        with handle:
            self.tree.write(DATABASE, handle)
        copy = _open_copy(self.tree.root / DATABASE)
        try:
            version = check_schema(migrations.version_of(copy), DATABASE)
            if version != self.manifest.schema_version:
                raise UserError(
                    f"{DATABASE} is at schema {version}, its {MANIFEST} says "
                    f"{self.manifest.schema_version}: the backup is damaged"
                )
            return _storage_keys(copy)
        finally:
            copy.close()

    def signing_key(self) -> None:
        secret = _read_small(self.source, SIGNING_KEY_FILE)
        if secret is None or len(secret) < SECRET_BYTES:
            raise UserError(f"The backup's {SIGNING_KEY_FILE} is missing or short")
        self.tree.write(SIGNING_KEY_FILE, io.BytesIO(secret))

    def blobs(self, wanted: set[str] | None, bar: Progress) -> None:
        """Stage each blob (only those `wanted`, when known), checking its sha256 against
        its key; one damaged before the backup (so listed in the manifest) is skipped."""
        keys = [key for key in self.source.blob_keys() if wanted is None or key in wanted]
        with bar(keys) as progress:
            for key in progress:
                self._blob(key)

    def _blob(self, key: str) -> None:
        name = f"{FILES}/{key}"
        handle = self.source.open(name)
        if handle is None:
            raise UserError(f"{name} vanished from the backup")
        with handle:
            digest = self.tree.write(name, handle)
        if digest == key_sha256(key):
            self.restored.append(key)
            self.size += (self.tree.root / name).stat().st_size
        elif key in self.manifest.damaged:
            self.tree.remove(name)
            self.skipped.append(key)
        else:
            raise UserError(f"{name} in the backup does not match its sha256")

    def run(self, bar: Progress) -> Restored:
        named = self.database()
        self.signing_key()
        self.blobs(None if named is None else set(named), bar)
        if named is not None:
            missing = sorted(set(named) - set(self.restored) - set(self.manifest.damaged))
            if missing:
                raise UserError(
                    f"The backup lacks {len(missing)} file(s) its database names, e.g. "
                    + ", ".join(missing[:3])
                )
        self.tree.sync()
        schema = None if named is None else self.manifest.schema_version
        return Restored(self.manifest, schema, len(self.restored), self.size, tuple(self.skipped))


def _place(staging: Path, settings: Settings) -> None:
    """Move the staged folder into place: the files, the secret, the database last."""
    target = settings.data
    if (staging / FILES).is_dir():
        _place_files(staging, settings)
    os.rename(staging / SIGNING_KEY_FILE, target / SIGNING_KEY_FILE)
    database = sqlite_path(settings.database, settings.database_path)
    staged = staging / DATABASE
    if database is None and staged.exists():
        _rows_into(staged, settings)
    elif database is not None and staged.exists():
        if database.parent.resolve() == target.resolve():
            os.rename(staged, database)
        else:
            with staged.open("rb") as handle:
                _write_file(database, handle)
            fsync_dir(database.parent)
    shutil.rmtree(staging)
    fsync_dir(target)


def _place_files(staging: Path, settings: Settings) -> None:
    """Into the folder's files/ by a rename; into another store (S3) blob by blob."""
    store = datafolder.blob_store(settings)
    if isinstance(store, LocalBlobStore):
        os.rename(staging / FILES, settings.data / FILES)
        return
    staged = LocalBlobStore(staging / FILES, staging)
    sizes = {key: staged.local_path(key).stat().st_size for key in staged.stored_keys()}
    migrate_data.copy_blobs(staged, store, sizes, migrate_data.Copied(), lambda _count: None)


def _rows_into(staged: Path, settings: Settings) -> None:
    """The staged SQLite file's rows into the (empty) database the settings name,
    after upgrading the staged copy if the backup is of an older schema."""
    copy = _open_copy(staged)
    try:
        migrations.prepare(copy, staged.parent)
        with _target_database(settings) as target:
            migrate_data.prepare_target(target, staged.parent)
            rowcopy.copy_rows(copy, target)
    finally:
        copy.close()


def restore(settings: Settings, source: Path, *, bar: Progress = no_progress) -> Restored:
    """Restore the backup at `source` into the (new or empty) data folder of `settings`.

    Everything is staged in a hidden folder inside the target and moved into place only
    once every blob matched its sha256: a failed restore leaves the target as it was.
    """
    check_target(settings)
    with _opened(source) as opened:
        manifest = read_manifest(opened)
        target = settings.data
        created = not target.exists()
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target, prefix=".restoring-"))
        try:
            restored = _Restore(opened, manifest, _Tree(staging)).run(bar)
            _place(staging, settings)
        except BaseException:
            _undo(target, created=created)
            raise
    return restored
