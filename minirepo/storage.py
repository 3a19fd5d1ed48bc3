"""The blob store: immutable, content-addressed files published atomically.

Keys look like `ab/<sha256>/<filename>`: the same bytes always land at the same place, so
two identical uploads converge and a file's path can never change under a URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from minirepo.errors import Busy, DamagedFile, MinirepoError, StorageError
from minirepo.verified import VerifiedBlobs

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BlobInfo:
    size: int
    mtime: float


class BlobStore(Protocol):
    """Where distribution files live; every caller goes through this (`LocalBlobStore`
    below, `minirepo.s3store.S3BlobStore`). Uploads always spool into a local `tmp/`."""

    kind: str  # "local" or "s3", for /-/health

    def ensure_dirs(self) -> None:
        """Make the store usable at start: its local folders; an S3 store also checks that
        its bucket answers, refusing to start (UserError) with the setting to fix."""

    def answers(self) -> bool:
        """Whether the store takes work now, for `/-/health`: cheap, probes poll it."""

    def direct_url(self, key: str) -> str | None:
        """A short-lived URL at which a client fetches the blob from the store itself
        (`s3_redirect`), or None: the server streams it."""

    def new_temp(self) -> tuple[int, Path]:
        """An exclusive local temp file to spool an upload into; the caller closes and
        removes it (`sweep_tmp` removes what a crash left)."""

    def put(self, source: Path, key: str) -> bool:
        """Publish `source` under `key` without clobbering; False if it was already there."""

    def replace(self, source: Path, key: str) -> None:
        """Publish `source` (whose sha256 is the key's) in place of a damaged blob, atomically."""

    def open(self, key: str) -> BinaryIO:
        """The caller closes the handle."""

    def open_checked(self, key: str, size: int) -> BinaryIO:
        """`open`, refusing (DamagedFile) a blob whose size or sha256 is not its key's."""

    def info(self, key: str) -> BlobInfo | None:
        """Size and modification time, or None when the blob is not there."""

    def missing(self, keys: Iterable[str]) -> set[str]:
        """Of `keys`, those whose blob is not there: a page leaves their files out (the
        file is withdrawn), so this runs at every render and must be cheap."""

    def sha256(self, key: str) -> str:
        """The blob's sha256, read in full."""

    def stored_keys(self) -> Iterator[str]:
        """Every stored key (for fsck and the orphan sweep)."""

    def quarantine(self, key: str, folder: Path) -> Path:
        """Move the blob out of the store into `folder`; returns where it went."""

    def delete(self, key: str) -> None: ...

    def sweep_tmp(self, older_than: float = 0.0) -> int:
        """Remove uploads left in flight by a crash; returns how many were removed."""

    def flush(self) -> None:
        """Write down now what would otherwise wait for a batch (verified hashes)."""


def _matches(handle: BinaryIO, key: str) -> bool:
    """Whether the file's sha256 is the one its key names; leaves the handle at 0."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1024 * 1024), b""):
        digest.update(block)
    handle.seek(0)
    return digest.hexdigest() == key.split("/")[1]


def blob_key(sha256: str, filename: str) -> str:
    return f"{sha256[:2]}/{sha256}/{filename}"


def key_parts(key: str) -> list[str]:
    """`ab/<sha256>/<filename>` split, refusing anything else (no `..`, no empty part)."""
    parts = key.split("/")
    if len(parts) != 3 or any(part in ("", ".", "..") for part in parts):
        raise StorageError(f"Invalid storage key {key!r}")
    return parts


def quarantine_target(folder: Path, key: str) -> Path:
    """Where a blob moved out of the store lands: `<folder>/<time>-<key with dashes>`; a
    name too long for the filesystem gets a folder of its own, keeping the filename whole."""
    filename = key.rsplit("/", 1)[-1]
    target = folder / f"{int(time.time())}-{key.replace('/', '-')}"
    if len(target.name.encode()) > 255:  # NAME_MAX
        target = target.parent / target.name[: -len(filename) - 1] / filename
        target.parent.mkdir(mode=0o700, exist_ok=True)
    return target


def new_temp_in(tmp: Path) -> tuple[int, Path]:
    """An exclusive temp file in `tmp`; the caller closes and removes it."""
    try:
        fd, name = tempfile.mkstemp(dir=tmp, prefix="upload-", suffix=".part")
    except OSError as exc:
        raise storage_error(exc, "the upload") from exc
    return fd, Path(name)


def sweep_folder(tmp: Path, older_than: float = 0.0) -> int:
    """Remove what lies in `tmp` (uploads left in flight by a crash); returns how many."""
    removed = 0
    limit = time.time() - older_than
    for entry in tmp.iterdir() if tmp.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            if entry.lstat().st_mtime <= limit:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
    return removed


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The process (EMFILE) or the whole system (ENFILE) has no file descriptor left.
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def storage_error(exc: OSError, what: str) -> MinirepoError:
    """Name the usual operator problems (disk full, file too large, out of descriptors)
    in the reason."""
    if exc.errno in OUT_OF_DESCRIPTORS:
        return out_of_descriptors(exc, what)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StorageError(f"Server storage is full; could not store {what}")
    return StorageError(f"Server could not store {what}: {exc.strerror or exc}")


def out_of_descriptors(exc: OSError, what: str) -> Busy:
    """A moment's overload, not a problem of any file: the client is told to retry (503)
    and the log points at the descriptor limit instead of blaming the file."""
    log.warning(
        "out of file descriptors (%s) opening %s: answering 503; see `ulimit -n`",
        exc.strerror or exc,
        what,
    )
    return Busy("Server is out of file descriptors; retry shortly")


class LocalBlobStore:
    """Blobs below `<data>/files`, temp files in `<data>/tmp` on the same filesystem;
    `verified`: where the hashes already checked are remembered (`minirepo.verified`)."""

    kind = "local"

    def __init__(self, root: Path, tmp: Path, verified: Path | None = None) -> None:
        self.root = root
        self._root_text = str(root)
        self.tmp = tmp
        self._verified = VerifiedBlobs(verified)

    def ensure_dirs(self) -> None:
        for path in (self.root, self.tmp):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def answers(self) -> bool:
        """The blob folder takes new files (EROFS on a read-only mount too): one system call."""
        return os.access(self.root, os.W_OK | os.X_OK)

    def direct_url(self, key: str) -> str | None:
        return None

    def local_path(self, key: str) -> Path:
        """Where `key` lives on disk (this store only)."""
        return Path(self._local_text(key))

    def _local_text(self, key: str) -> str:
        """`local_path` as text: pathlib's own cost was most of a page render's stats."""
        return os.path.join(self._root_text, *key_parts(key))

    def new_temp(self) -> tuple[int, Path]:
        """An exclusive temp file in `<data>/tmp`; the caller closes and removes it."""
        return new_temp_in(self.tmp)

    def put(self, source: Path, key: str) -> bool:
        target = self.local_path(key)
        try:
            for attempt in range(3):
                try:
                    created_dirs = self._make_parents(target.parent)
                    os.link(source, target)
                    break
                except FileExistsError:
                    return False
                except FileNotFoundError:
                    # A failed upload's cleanup removed an empty parent under us: again.
                    if attempt == 2:
                        raise
            fsync_dir(target.parent)
            for directory in created_dirs:
                fsync_dir(directory.parent)
            # The caller hashed `source` into `key` as it wrote it: no need to re-read it.
            self._remember(key, target.stat())
        except OSError as exc:
            self._remove_empty_parents(target)
            raise storage_error(exc, target.name) from exc
        return True

    def replace(self, source: Path, key: str) -> None:
        """A hard link beside the damaged blob, renamed over it: a reader sees the old
        file or the new one, never none."""
        target = self.local_path(key)
        beside = target.with_name(f".{target.name[:200]}.{os.getpid()}.replace")
        try:
            self._make_parents(target.parent)
            with contextlib.suppress(FileNotFoundError):
                beside.unlink()
            os.link(source, beside)
            os.replace(beside, target)
            fsync_dir(target.parent)
            self._remember(key, target.stat())
        except OSError as exc:
            with contextlib.suppress(OSError):
                beside.unlink()
            raise storage_error(exc, target.name) from exc

    def _make_parents(self, directory: Path) -> list[Path]:
        created = []
        for path in (directory.parent, directory):
            try:
                path.mkdir(mode=0o700)
                created.append(path)
            except FileExistsError:
                if path.is_symlink() or not path.is_dir():
                    raise StorageError(f"Not a plain directory: {path}") from None
        return created

    def _remove_empty_parents(self, target: Path) -> None:
        for directory in (target.parent, target.parent.parent):
            try:
                directory.rmdir()
            except OSError:
                break

    def open(self, key: str) -> BinaryIO:
        """Only a regular file: never follow a planted symlink, never block on a FIFO."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(self.local_path(key), flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", key)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def open_checked(self, key: str, size: int) -> BinaryIO:
        """The size is checked on every call; the sha256 (the key's middle part) once for
        each version of the file on disk, remembered across restarts (`minirepo.verified`),
        so truncation or a damaged copy put in place is never served."""
        filename = key.rsplit("/", 1)[-1]
        try:
            handle = self.open(key)
        except OSError as exc:
            if exc.errno in OUT_OF_DESCRIPTORS:
                raise out_of_descriptors(exc, f"stored file {key}") from exc
            log.error("stored file %s is missing: %s", key, exc)
            raise DamagedFile(f"Stored file {filename} is missing on the server") from exc
        try:
            info = os.fstat(handle.fileno())
            identity = (info.st_ino, info.st_size, info.st_mtime_ns)
            if info.st_size != size or (
                not self._verified.matches(key, identity) and not _matches(handle, key)
            ):
                log.error("stored file %s does not match its size or sha256", key)
                raise DamagedFile(f"Stored file {filename} is damaged on the server")
        except BaseException:
            handle.close()
            raise
        self._remember(key, info)
        return handle

    def _remember(self, key: str, info: os.stat_result) -> None:
        self._verified.note(key, (info.st_ino, info.st_size, info.st_mtime_ns))

    def flush(self) -> None:
        self._verified.flush()

    def info(self, key: str) -> BlobInfo | None:
        try:
            stat_result = os.lstat(self._local_text(key))
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(stat_result.st_mode):
            return None
        return BlobInfo(stat_result.st_size, stat_result.st_mtime)

    def missing(self, keys: Iterable[str]) -> set[str]:
        """A stat each: cheap on a local disk, and it sees a blob deleted by hand."""
        return {key for key in keys if self.info(key) is None}

    def sha256(self, key: str) -> str:
        """Read in full, never from memory (fsck's check); a match is remembered, so the
        first download after an fsck need not read the file again."""
        with self.open(key) as handle:
            digest = hashlib.sha256()
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
            if digest.hexdigest() == key.split("/")[1]:
                self._remember(key, os.fstat(handle.fileno()))
        return digest.hexdigest()

    def stored_keys(self) -> Iterator[str]:
        """Keys of what lies at `files/<a>/<b>/<leaf>`; never descends through a symlink."""
        if not self.root.is_dir():
            return
        for first in _plain_dirs(self.root):
            for second in _plain_dirs(Path(first.path)):
                for leaf in os.scandir(second.path):
                    yield f"{first.name}/{second.name}/{leaf.name}"

    def quarantine(self, key: str, folder: Path) -> Path:
        """Never through a symlinked folder: what lies outside the store is not ours to move."""
        source = self.local_path(key)
        if any(path.is_symlink() for path in (source.parent, source.parent.parent)):
            raise OSError(errno.ELOOP, "a folder on the way is a symlink", str(source))
        target = quarantine_target(folder, key)
        os.replace(source, target)
        self._verified.forget(key)
        self._remove_empty_parents(source)
        return target

    def delete(self, key: str) -> None:
        target = self.local_path(key)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        self._verified.forget(key)
        self._remove_empty_parents(target)

    def sweep_tmp(self, older_than: float = 0.0) -> int:
        """Remove uploads left in flight by a crash; returns how many were removed."""
        return sweep_folder(self.tmp, older_than)


def _plain_dirs(folder: Path) -> list[os.DirEntry[str]]:
    entries = []
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            entries.append(entry)
        else:
            log.warning("unexpected entry in the blob store: %s (left alone)", entry.path)
    return entries
