"""SQLite's writer queue across the processes of one server (`serve --workers N`), which
`db.Database.write_transaction` takes after its own process's queue."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

# How long a process that just let go of the writer lock leaves it to the others' waiters.
YIELD_SECONDS = 0.002


class WriterFile:
    """SQLite's writer queue across processes: an exclusive `flock` on a file beside the
    database, taken after the process's own queue, so at most one thread per process waits.

    SQLite's busy handler polls (sleeping up to 100 ms between tries) and keeps no queue:
    workers under steady uploads answered 503 "database is locked" again, as one process
    did before it queued its writers. Every process blocks in `flock` instead, and the
    kernel wakes the waiters as the lock is released; the lock goes with a process that
    dies (kill -9 included). But the kernel wakes waiters, it does not hand the lock over:
    the process that just let it go, already running, would take it again before a woken
    waiter is scheduled, and starve the other processes as SQLite's polling did. So a
    process that let go less than `YIELD_SECONDS` ago waits out the rest before it asks
    again. `flock` has no timeout, so a helper thread blocks in it while the writer waits for
    the helper at most `busy_timeout`; a grant nobody waits for any more is let go at once.

    Opened per process (a `flock` belongs to an open file, which a fork would share).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pid = 0
        self._fd = -1
        self._reset()

    def _reset(self) -> None:
        self._state = threading.Condition()
        self._serial = 0
        self._wanted = 0  # the serial of the writer waiting for the helper; 0: none
        self._granted = 0
        self._helper: threading.Thread | None = None
        self._released = 0.0  # when this process last let go (monotonic)

    def acquire(self, timeout: float) -> bool:
        """Take the lock within `timeout` seconds; False if it did not come. The caller
        holds its process's writer lock, so one thread at a time asks."""
        fd = self._open()
        with self._state:
            self._serial += 1
            serial = self._wanted = self._serial
            if self._helper is None:
                self._helper = threading.Thread(
                    target=self._wait_in_kernel, args=(fd,), name="writer-lock", daemon=True
                )
                self._helper.start()
            self._state.notify_all()
            granted = self._state.wait_for(lambda: self._granted == serial, timeout)
            self._wanted = 0
            return granted

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._released = time.monotonic()

    def _open(self) -> int:
        if self._pid != os.getpid():  # first use, or a forked child: an open file of its own
            self._reset()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def _wait_in_kernel(self, fd: int) -> None:
        """The helper: takes the lock for each writer that asks, blocking in the kernel."""
        while True:
            with self._state:
                self._state.wait_for(lambda: self._wanted != 0)
            polite = self._released + YIELD_SECONDS - time.monotonic()
            if polite > 0:
                time.sleep(polite)
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._state:
                if self._wanted:
                    self._granted = self._wanted
                    self._state.notify_all()
                else:  # the writer gave up meanwhile
                    fcntl.flock(fd, fcntl.LOCK_UN)
