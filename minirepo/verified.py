"""Which blobs' sha256 was checked, remembered across restarts in `<data>/verified.json`.

A download re-hashes a blob the first time it is served (`LocalBlobStore.open_checked`),
so that bit rot is never served. Kept in memory only, every restart paid that again: the
first `pip install` after an upgrade read every file twice. The entries are keyed by the
blob's (inode, size, mtime) as well, so a blob replaced or rewritten since is hashed again;
rot that changes none of the three is `minirepo fsck`'s to find, which always re-hashes.

Changes are written in one batch, `flush_seconds` after the first of them (a timer), to a
temp file renamed into place: a crash leaves the old file or the new one,
never half of one. Each write merges with what is on disk, so a CLI command that verified
files (fsck) and the server do not undo each other's work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

Identity = tuple[int, int, int]  # (inode, size, mtime in ns)

FORMAT = 1
FLUSH_SECONDS = 60.0
# About 100 bytes an entry: the file stays near 10 MB on the largest stores we expect.
LIMIT = 100_000


class VerifiedBlobs:
    """`path` None: memory only (a store nobody restarts, like a test's)."""

    def __init__(self, path: Path | None, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.path = path
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._known: dict[str, Identity] | None = None  # read lazily: most commands never ask
        self._pending: dict[str, Identity | None] = {}  # None: forgotten
        self._timer: threading.Timer | None = None
        self.writes = 0  # files written, for tests

    def matches(self, key: str, identity: Identity) -> bool:
        return self._entries().get(key) == identity

    def note(self, key: str, identity: Identity) -> None:
        known = self._entries()
        with self._lock:
            if len(known) >= LIMIT and key not in known:
                known.clear()
            known[key] = identity
            if self.path is not None:
                self._pending[key] = identity
        self._schedule()

    def forget(self, key: str) -> None:
        """An entry not written yet is simply dropped: a refused upload leaves no trace."""
        known = self._entries()
        with self._lock:
            if known.pop(key, None) is None or self.path is None:
                return
            if self._pending.get(key) is not None:
                del self._pending[key]
            else:
                self._pending[key] = None
        self._schedule()

    def flush(self) -> None:
        """Write the pending entries now (merged with the file as it is on disk)."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            if not pending or self.path is None:
                return
            entries = _read(self.path)
            for key, identity in pending.items():
                if identity is None:
                    entries.pop(key, None)
                else:
                    entries[key] = identity
            try:
                _write(self.path, dict(list(entries.items())[-LIMIT:]))
            except OSError as exc:
                log.warning("could not write %s (%s): will try again", self.path, exc)
                with self._lock:
                    self._pending = {**pending, **self._pending}
                return
            self.writes += 1

    def _entries(self) -> dict[str, Identity]:
        known = self._known
        if known is None:
            loaded = _read(self.path) if self.path is not None else {}
            with self._lock:
                if self._known is None:
                    self._known = loaded
                known = self._known
        return known

    def _schedule(self) -> None:
        """One timer, started by the first change after a write."""
        with self._lock:
            if not self._pending or self._timer is not None:
                return
            self._timer = threading.Timer(self.flush_seconds, self._flush_quietly)
            self._timer.daemon = True
            self._timer.start()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # a timer thread: nobody else would see the failure
            log.exception("could not write %s", self.path)


def _read(path: Path) -> dict[str, Identity]:
    """The entries on disk; none when the file is missing or not ours to trust."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s (%s): files are hashed again when first served", path, exc)
        return {}
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        log.warning("ignoring %s: not a format %d file", path, FORMAT)
        return {}
    blobs = document.get("blobs")
    if not isinstance(blobs, dict):
        log.warning("ignoring %s: not a format %d file", path, FORMAT)
        return {}
    entries: dict[str, Identity] = {}
    for key, value in blobs.items():
        if (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(part, int) and not isinstance(part, bool) for part in value)
        ):
            entries[key] = (value[0], value[1], value[2])
    return entries


def _write(path: Path, entries: dict[str, Identity]) -> None:
    document = {"format": FORMAT, "blobs": {key: list(value) for key, value in entries.items()}}
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".verified-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
