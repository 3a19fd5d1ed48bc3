"""What one process knows of each proxy's upstream: its last success and error, and
whether it is being left alone after a failure.

A failing upstream is left alone for DOWN_SECONDS: a resolve of fifty names on a box
without internet then fails fast instead of fifty times slowly. `/-/health` reports the
same record, so an operator sees why installs of public packages fail.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time

from minirepo import models

DOWN_SECONDS = 30.0


@dataclasses.dataclass
class UpstreamHealth:
    upstream: str
    last_ok: datetime.datetime | None = None
    last_error: str = ""
    last_error_at: datetime.datetime | None = None
    down_until: float = 0.0  # monotonic
    timed_out: bool = False  # the last error was a timeout (504, not 502)

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def report(self) -> dict[str, object]:
        failing = self.last_error_at is not None and (
            self.last_ok is None or self.last_error_at > self.last_ok
        )
        report: dict[str, object] = {
            "upstream": self.upstream,
            "status": "degraded" if failing else "ok",
            "last_success": _iso(self.last_ok),
        }
        if self.last_error:
            report["last_error"] = self.last_error
            report["last_error_at"] = _iso(self.last_error_at)
        return report


def _iso(value: datetime.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


class UpstreamBook:
    """Each proxy's record, by repository id; a changed upstream URL starts a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[int, UpstreamHealth] = {}

    def of(self, repo_id: int, upstream: str) -> UpstreamHealth:
        with self._lock:
            record = self._records.get(repo_id)
            if record is None or record.upstream != upstream:
                record = self._records[repo_id] = UpstreamHealth(upstream)
            return record

    def ok(self, repo_id: int, upstream: str) -> None:
        record = self.of(repo_id, upstream)
        with self._lock:
            record.last_ok, record.down_until = models.utcnow(), 0.0

    def failed(
        self, repo_id: int, upstream: str, reason: str, *, timeout: bool, whole: bool
    ) -> None:
        """`whole`: the upstream itself failed (refused, 5xx, timed out), not one page of
        it: it is left alone for DOWN_SECONDS."""
        record = self.of(repo_id, upstream)
        with self._lock:
            record.last_error, record.last_error_at = reason, models.utcnow()
            record.timed_out = timeout
            if whole:
                record.down_until = time.monotonic() + DOWN_SECONDS

    def reports(self, names: dict[int, str]) -> dict[str, dict[str, object]]:
        """What this process knows of each proxy's upstream, by repository name."""
        with self._lock:
            known = dict(self._records)
        return {
            name: (known[repo_id].report() if repo_id in known else {"status": "unknown"})
            for repo_id, name in names.items()
        }
