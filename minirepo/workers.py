"""`serve --workers N`: a parent that holds the data folder, N forked workers that answer.

One Python process answers with one core at a time (the GIL), so every core of a box
takes several processes. The parent does what must happen once (the data folder's lock,
migrations, the `tmp/` sweep, the first admin, binding the port: `minirepo.server`) and
then only supervises; the workers inherit the listening sockets by `fork` and the kernel
hands each connection to one of them. Each worker opens its own database connection after
the fork: an SQLite or psycopg connection that crossed a fork would be one file or socket
spoken to by two processes.

Signals. The parent blocks SIGTERM, SIGINT and SIGCHLD and takes them in its loop
(`sigtimedwait`), so no handler runs in the middle of its bookkeeping. Workers ignore
SIGTERM and SIGINT from outside (systemd's KillMode=control-group signals every process of
the unit, a terminal's Ctrl-C the whole process group) and stop on the parent's
`WORKER_STOP` alone, sent once for each stop signal the parent takes: the first drains
(`minirepo.shutdown`, each worker within `stop_timeout`), a second cuts, as with one
process. A worker whose parent vanished (kill -9) stops itself within a second.

Restarts. A worker that dies is started again at once. One that dies within
`QUICK_DEATH` seconds of its start counts as a crash at start: each in a row doubles the
wait before the next start (0.5 s up to 30 s), and after `MAX_QUICK_DEATHS` in a row the
parent stops the others and gives up, so the log and systemd's `Restart=` see a failure
instead of a loop that burns a core.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from minirepo.shutdown import THREAD_EXIT_SECONDS

log = logging.getLogger(__name__)

WORKER_STOP = signal.SIGUSR1
PARENT_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
QUICK_DEATH = 10.0  # seconds: a worker that dies sooner crashed at start
MAX_QUICK_DEATHS = 5
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# Past the workers' own grace, how long the parent waits before it kills what is left.
KILL_MARGIN = 5.0
PARENT_CHECK = 1.0  # seconds between a worker's looks at its parent
LOOK_EVERY = 1.0  # the parent's loop wakes at least this often


class GaveUp(Exception):
    """Workers kept crashing at start."""


@dataclasses.dataclass
class _Slot:
    index: int
    pid: int = 0
    started: float = 0.0
    due: float = 0.0  # when to start it (again)
    quick_deaths: int = 0


class Supervisor:
    """Forks `count` workers running `work(index)` and keeps them running until a stop
    signal; `run` returns once every worker has exited."""

    def __init__(
        self,
        count: int,
        work: Callable[[int], None],
        grace: float,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        """`work(index)` runs in a worker and returns when it stopped; `grace` is the time
        a worker's drain may take (its stop_timeout); `on_exit(pid)` hears of each worker
        that ended (the metrics forget its live gauges)."""
        self.work = work
        self.grace = grace
        self.on_exit = on_exit
        self.slots = [_Slot(index) for index in range(count)]
        self.parent = os.getpid()

    @property
    def pids(self) -> list[int]:
        return [slot.pid for slot in self.slots if slot.pid]

    def run(self) -> None:
        """Raises GaveUp when workers kept crashing at start (after stopping the rest).

        The signals stay blocked when it returns: the process is ending, and a late stop
        signal must not kill it in the middle of its cleanup."""
        signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS)
        self._supervise()

    def _supervise(self) -> None:
        while True:
            self._start_due()
            info = signal.sigtimedwait(PARENT_SIGNALS, self._wait())
            self._reap()
            if info is not None and info.si_signo != signal.SIGCHLD:
                self._drain(signal.Signals(info.si_signo).name)
                return
            crashed = [slot for slot in self.slots if slot.quick_deaths >= MAX_QUICK_DEATHS]
            if crashed:
                log.error(
                    "worker %d crashed at start %d times in a row: stopping",
                    crashed[0].index,
                    crashed[0].quick_deaths,
                )
                self._drain("crashes at start")
                raise GaveUp(f"worker {crashed[0].index} kept crashing at start")

    def _wait(self) -> float:
        """Until the next start that is due, at most LOOK_EVERY."""
        waiting = [slot.due for slot in self.slots if not slot.pid]
        now = time.monotonic()
        return max(min([LOOK_EVERY, *(due - now for due in waiting)]), 0.01)

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if not slot.pid and slot.due <= now:
                self._start(slot)

    def _start(self, slot: _Slot) -> None:
        _flush()  # else the child would print what the parent had buffered, twice
        pid = os.fork()
        if pid == 0:
            self._be_worker(slot.index)
        slot.pid, slot.started = pid, time.monotonic()
        log.info("worker %d started (pid %d)", slot.index, pid)

    def _be_worker(self, index: int) -> None:
        """The child's whole life; it never returns into the parent's stack."""
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS)
            _watch_parent(self.parent)
            self.work(index)
            code = 0
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            _flush()
            os._exit(code)

    def _reap(self) -> None:
        """Collect every worker that ended, and plan its restart."""
        for slot in self.slots:
            if not slot.pid:
                continue
            try:
                pid, status = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:  # collected already: gone all the same
                pid, status = slot.pid, 0
            if pid:
                self._ended(slot, os.waitstatus_to_exitcode(status))

    def _ended(self, slot: _Slot, code: int) -> None:
        pid, slot.pid = slot.pid, 0
        self.on_exit(pid)
        lived = time.monotonic() - slot.started
        slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH else 0
        wait = (
            min(FIRST_BACKOFF * 2 ** (slot.quick_deaths - 1), MAX_BACKOFF)
            if slot.quick_deaths
            else 0.0
        )
        slot.due = time.monotonic() + wait
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        log.warning(
            "worker %d (pid %d) %s after %.1f s: starting it again in %.1f s",
            slot.index,
            pid,
            how,
            lived,
            wait,
        )

    def _drain(self, reason: str) -> None:
        """Stop every worker: each drains within its grace; a second stop signal to the
        parent cuts them; past the grace and a margin, what is left is killed."""
        log.info("stopping on %s: asking %d worker(s) to finish", reason, len(self.pids))
        self._signal_all(WORKER_STOP)
        deadline = time.monotonic() + self.grace + THREAD_EXIT_SECONDS + KILL_MARGIN
        while self.pids and (left := deadline - time.monotonic()) > 0:
            info = signal.sigtimedwait(PARENT_SIGNALS, min(left, LOOK_EVERY))
            if info is not None and info.si_signo != signal.SIGCHLD:
                self._signal_all(WORKER_STOP)  # the second: they cut what is left
            self._collect()
        if self.pids:
            log.warning("killing %d worker(s) that did not stop in time", len(self.pids))
            self._signal_all(signal.SIGKILL)
            for slot in self.slots:
                if slot.pid:
                    os.waitpid(slot.pid, 0)
                    self.on_exit(slot.pid)
                    slot.pid = 0

    def _collect(self) -> None:
        """While stopping: note the workers that ended, start none."""
        for slot in self.slots:
            if slot.pid and os.waitpid(slot.pid, os.WNOHANG)[0]:
                self.on_exit(slot.pid)
                slot.pid = 0

    def _signal_all(self, signum: int) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _watch_parent(parent: int) -> None:
    """A worker stops itself once its parent is gone (killed with -9, say): nobody would
    stop or restart it any more."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
        log.warning("the parent process %d is gone: stopping", parent)
        os.kill(os.getpid(), WORKER_STOP)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):
            stream.flush()
    for handler in logging.getLogger().handlers:
        handler.flush()
