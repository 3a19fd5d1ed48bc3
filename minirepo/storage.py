"""The blob store: immutable, content-addressed files published atomically.

Keys look like `ab/<sha256>/<filename>`: the same bytes always land at the same place, so
two identical uploads converge and a file's path can never change under a URL.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Protocol

from minirepo.errors import StorageError


class BlobStore(Protocol):
    def put(self, source: Path, key: str) -> bool:
        """Publish `source` under `key` without clobbering; False if it was already there."""

    def open(self, key: str) -> BinaryIO:
        """The caller closes the handle."""

    def local_path(self, key: str) -> Path:
        """A path the server may hand to sendfile."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


def blob_key(sha256: str, filename: str) -> str:
    return f"{sha256[:2]}/{sha256}/{filename}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_error(exc: OSError, what: str) -> StorageError:
    """Name the usual operator problems (disk full, file too large) in the reason."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StorageError(f"Server storage is full; could not store {what}")
    return StorageError(f"Server could not store {what}: {exc.strerror or exc}")


class LocalBlobStore:
    """Blobs below `<data>/files`, temp files in `<data>/tmp` on the same filesystem."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp

    def ensure_dirs(self) -> None:
        for path in (self.root, self.tmp):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def local_path(self, key: str) -> Path:
        parts = key.split("/")
        if len(parts) != 3 or any(part in ("", ".", "..") for part in parts):
            raise StorageError(f"Invalid storage key {key!r}")
        return self.root.joinpath(*parts)

    def new_temp(self) -> tuple[int, Path]:
        """An exclusive temp file in `<data>/tmp`; the caller closes and removes it."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-", suffix=".part")
        return fd, Path(name)

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
        except OSError as exc:
            self._remove_empty_parents(target)
            raise storage_error(exc, target.name) from exc
        return True

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

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def delete(self, key: str) -> None:
        target = self.local_path(key)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        self._remove_empty_parents(target)

    def sweep_tmp(self, older_than: float = 0.0) -> int:
        """Remove uploads left in flight by a crash; returns how many were removed."""
        removed = 0
        limit = time.time() - older_than
        for entry in self.tmp.iterdir() if self.tmp.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                if entry.lstat().st_mtime <= limit:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                    removed += 1
        return removed
