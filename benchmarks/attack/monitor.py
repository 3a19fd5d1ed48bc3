"""What the server holds, sampled from /proc while the run goes: its RSS, its open fds and
its spool (the bytes of the request bodies waitress and minirepo keep on disk)."""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from benchmarks.attack.target import Server

SERVER_FIGURES = ("rss_mib", "fds", "spool_bytes")
SAMPLE_EVERY = 0.1
JOIN_TIMEOUT = 10.0


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def fds_and_spool(pid: int, dirs: Iterable[Path]) -> tuple[int, int]:
    """The open fds, and the bytes of the spool files: every file under `dirs` plus those
    held open there after being unlinked (through /proc/<pid>/fd), each inode once."""
    prefixes = tuple(f"{folder}/" for folder in dirs)
    sizes: dict[tuple[int, int], int] = {}
    count = 0
    for entry in os.scandir(f"/proc/{pid}/fd"):
        count += 1
        with contextlib.suppress(OSError):  # closed between the listing and the look
            if os.readlink(entry.path).startswith(prefixes):
                info = os.stat(entry.path)
                sizes[(info.st_dev, info.st_ino)] = info.st_size
    for folder in dirs:
        for root, _, names in os.walk(folder):
            for name in names:
                with contextlib.suppress(OSError):
                    info = os.stat(os.path.join(root, name))
                    sizes[(info.st_dev, info.st_ino)] = info.st_size
    return count, sum(sizes.values())


class Monitor:
    """Samples the server's RSS, fds and spool bytes; keeps each phase's peaks (the phase
    is set by the main thread as the run goes)."""

    def __init__(self, server: Server, interval: float, limit: float, phase: str) -> None:
        self.server = server
        self.interval = interval
        self.limit = limit  # seconds: a forgotten monitor still stops
        self.phase = phase
        self.peaks: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)

    def sample(self) -> None:
        pid = self.server.proc.pid
        rss = rss_mib(pid)
        fds, spool = fds_and_spool(pid, self.server.spool_dirs)
        peaks = self.peaks.setdefault(self.phase, dict.fromkeys(SERVER_FIGURES, 0.0))
        for name, value in zip(SERVER_FIGURES, (rss, fds, spool), strict=True):
            peaks[name] = max(peaks[name], float(value))

    def _run(self) -> None:
        for _ in range(math.ceil(self.limit / self.interval)):
            if self._stop.wait(self.interval):
                return
            try:
                self.sample()
            except (FileNotFoundError, ProcessLookupError):
                return  # the server is gone; the report says so

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(JOIN_TIMEOUT)
