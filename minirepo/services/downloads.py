"""Download counts per file and day, for the project pages and their 30-day chart.

A write per download would wear a Pi's SD card with every `pip install` and queue behind
uploads for SQLite's one writer, so counts are kept in memory and written in one
transaction at most once a minute, by a daemon timer started at the first count, and
once more at a graceful stop (`close`). What a crash loses is at most that minute.
Readers see stored plus pending counts, so a page never lags behind its own process.
Other processes (the workers of `serve --workers N`) count apart and each flush adds its
counts to the stored ones (an upsert: count = count + new), so none is lost or counted
twice; another worker's counts show on a page once it has flushed them, and a worker's
kept UI pages (keyed by `epoch`) are made again at least once a flush interval.
"""

from __future__ import annotations

import collections
import datetime
import logging
import threading
import time
import weakref
from collections.abc import Iterable

import peewee

from minirepo import models
from minirepo.db import Database, rows

log = logging.getLogger(__name__)

FLUSH_SECONDS = 60.0
BATCH = 500  # rows per statement, well under SQLite's limit of bound variables

Key = tuple[int, datetime.date]  # (file id, day in UTC)


def today() -> datetime.date:
    return models.utcnow().date()


class DownloadCounter:
    def __init__(self, database: Database, interval: float = FLUSH_SECONDS) -> None:
        self._database = database
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: collections.Counter[Key] = collections.Counter()
        self._stopped = threading.Event()
        self._timer: threading.Thread | None = None
        self._flushes = 0
        self.writes = 0  # transactions written, for tests and benchmarks

    @property
    def epoch(self) -> int:
        """Part of the kept UI pages' key: bumped by each flush that wrote. Where other
        workers write counts too, also by each flush interval that passes, since their
        flushes do not bump ours."""
        if not self._database.shared:
            return self._flushes
        return self._flushes + int(time.monotonic() // self._interval)  # both only grow

    def count(self, file_id: int) -> None:
        """One download of the file, today; no I/O."""
        with self._lock:
            self._pending[(file_id, today())] += 1
            if self._timer is None and not self._stopped.is_set():
                self._timer = threading.Thread(
                    target=_tick,
                    args=(weakref.ref(self), self._interval, self._stopped),
                    name="download-counts",
                    daemon=True,
                )
                self._timer.start()

    def flush(self) -> None:
        """Write the pending counts in one transaction; those of files deleted meanwhile
        are dropped, and on a failure they are kept for the next flush."""
        with self._lock:
            pending, self._pending = self._pending, collections.Counter()
        if not pending:
            return
        try:
            with self._database.activated(), self._database.write_transaction():
                self._write(pending)
        except peewee.PeeweeException:  # InterfaceError too: a lost connection
            with self._lock:
                self._pending.update(pending)
            raise
        with self._lock:
            self._flushes += 1
            self.writes += 1

    def flush_from_timer(self) -> None:
        """One flush of the timer thread, which logs a failure and tries again later."""
        try:
            self.flush()
        except Exception:
            log.exception("writing download counts failed; trying again in %g s", self._interval)
        finally:
            self._database.close()  # this thread's connection: one write a minute

    def close(self) -> None:
        """At a graceful stop: no more timer, the last counts written."""
        self._stopped.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join()
        try:
            self.flush()
        except peewee.PeeweeException:
            log.exception("the last download counts could not be written")

    def totals(self, file_ids: Iterable[int]) -> dict[int, int]:
        """Each file's downloads so far, stored and pending (0 for none)."""
        wanted = sorted(set(file_ids))
        totals = dict.fromkeys(wanted, 0)
        if not wanted:
            return totals
        count = peewee.fn.SUM(models.DownloadCount.count)
        query = (
            models.DownloadCount.select(models.DownloadCount.file, count)
            .where(models.DownloadCount.file.in_(wanted))
            .group_by(models.DownloadCount.file)
            .tuples()
        )
        for file_id, stored in rows(query):
            totals[int(file_id)] += int(stored)
        with self._lock:
            for (file_id, _), pending in self._pending.items():
                if file_id in totals:
                    totals[file_id] += pending
        return totals

    def daily(self, file_ids: Iterable[int], days: int = 30) -> list[tuple[datetime.date, int]]:
        """Downloads of these files per day, the last `days` days up to today (UTC),
        oldest first, a day without any counted as 0."""
        wanted = sorted(set(file_ids))
        last = today()
        first = last - datetime.timedelta(days=days - 1)
        per_day = {first + datetime.timedelta(days=n): 0 for n in range(days)}
        if wanted:
            query = (
                models.DownloadCount.select(
                    models.DownloadCount.day, peewee.fn.SUM(models.DownloadCount.count)
                )
                .where(
                    models.DownloadCount.file.in_(wanted)
                    & (models.DownloadCount.day >= first)
                    & (models.DownloadCount.day <= last)
                )
                .group_by(models.DownloadCount.day)
                .tuples()
            )
            for day, stored in rows(query):
                per_day[_as_date(day)] += int(stored)
            chosen = set(wanted)
            with self._lock:
                for (file_id, day), pending in self._pending.items():
                    if file_id in chosen and day in per_day:
                        per_day[day] += pending
        return sorted(per_day.items())

    def _write(self, pending: collections.Counter[Key]) -> None:
        ids = sorted({file_id for file_id, _ in pending})
        alive = {
            int(file_id)
            for (file_id,) in rows(
                models.File.select(models.File.id).where(models.File.id.in_(ids)).tuples()
            )
        }
        values = [
            {"file": file_id, "day": day, "count": count}
            for (file_id, day), count in sorted(pending.items())
            if file_id in alive
        ]
        # Upserts: another process's flush of the same day adds up, never collides.
        for start in range(0, len(values), BATCH):
            models.DownloadCount.insert_many(values[start : start + BATCH]).on_conflict(
                conflict_target=[models.DownloadCount.file, models.DownloadCount.day],
                update={
                    models.DownloadCount.count: models.DownloadCount.count + peewee.EXCLUDED.count
                },
            ).execute()


def _tick(counter: weakref.ref[DownloadCounter], interval: float, stopped: threading.Event) -> None:
    """The timer: a flush every `interval` until `close`, or until the counter itself is
    gone (an app that was dropped, as tests drop theirs, takes its timer with it)."""
    while not stopped.wait(interval):
        alive = counter()
        if alive is None:
            return
        alive.flush_from_timer()
        del alive


def _as_date(value: datetime.date | str) -> datetime.date:
    """PostgreSQL gives a date; SQLite the text peewee stored."""
    return value if isinstance(value, datetime.date) else datetime.date.fromisoformat(value)
