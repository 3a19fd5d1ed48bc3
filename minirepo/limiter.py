"""Failed logins counted per key in a sliding window, in memory (per process by design).

Bounded, so random user names or addresses cannot grow it; no lock on the common path
(a key with no failures), since every authenticated request asks.

With `serve --workers N` each worker counts alone, and the kernel hands a connection to
any of them. So each allows its share, `ceil(limit / N)`: the server as a whole allows at
most `N * ceil(limit / N)` failures per window (10 with the defaults and 2 workers), never
N times the limit. The price: failures that all land on one worker lock that worker out
after its share, while the others still count theirs; a shared store would cost a write
per failure, which an attacker could then make at will.
"""

from __future__ import annotations

import collections
import math
import threading
import time

from minirepo.errors import TooManyRequests

MAX_LIMITER_KEYS = 10_000


class FailureLimiter:
    """Counts failed logins per key in a sliding window, in memory (per process by design).

    Times are wall-clock, so `minirepo user unlock` (a time stored on the account) can tell
    which failures it forgave.
    """

    def __init__(self, limit: int, window: float, processes: int = 1) -> None:
        """`processes`: the server's workers, which share every limit out (module doc)."""
        self.limit = limit
        self.window = window
        self.processes = processes
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def share(self, limit: int) -> int:
        """What this process allows of a server-wide `limit`."""
        return math.ceil(limit / self.processes)

    def check(self, key: str, limit: int, since: float = 0.0) -> None:
        """Raise 429 when `key` failed this process's share of the server-wide `limit` in
        the window (and after `since`)."""
        if key not in self._failures:
            return  # the common case, on every authenticated request: no lock needed
        limit = self.share(limit)
        now = time.time()
        with self._lock:
            times = self._prune(key, now)
            recent = [moment for moment in times if moment > since]
            if len(recent) >= limit:
                retry = max(1, int(recent[-limit] + self.window - now) + 1)
                raise TooManyRequests("Too many failed logins; try again later", retry)

    def record(self, key: str) -> bool:
        """Count a failure; True when it is the first of its window (worth an audit line)."""
        now = time.time()
        with self._lock:
            if len(self._failures) >= MAX_LIMITER_KEYS:
                self._sweep(now)
            times = self._prune(key, now)
            times.append(now)
            return len(times) == 1

    def count(self, key: str) -> int:
        """Failures of `key` in the window (for the lockout's log line)."""
        with self._lock:
            return len(self._prune(key, time.time())) if key in self._failures else 0

    def _prune(self, key: str, now: float) -> collections.deque[float]:
        times = self._failures.setdefault(key, collections.deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def _sweep(self, now: float) -> None:
        """Forget keys whose failures all left the window; if still full, the oldest half."""
        for key in list(self._failures):
            if not self._prune(key, now):
                del self._failures[key]
        if len(self._failures) >= MAX_LIMITER_KEYS:
            by_age = sorted(self._failures, key=lambda key: self._failures[key][-1])
            for key in by_age[: len(by_age) // 2]:
                del self._failures[key]
