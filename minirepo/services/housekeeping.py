"""The work a serving process does by itself, off the request path: today, repositories'
retention rules, once a day each.

One daemon thread per `minirepo serve`, started after the server listens (so start-up
pays nothing) and looking once at start, then hourly: the rules are daily per
repository (`retention.apply_due` claims each in the database), so a restart, a second
process or a rule changed by `repo set` never makes one run twice in a day, and a rule
never waits more than an hour past its day.
"""

from __future__ import annotations

import logging
import threading

from minirepo.db import Database
from minirepo.services import retention

log = logging.getLogger(__name__)

LOOK_EVERY = 3600.0  # seconds


class Housekeeping:
    def __init__(self, database: Database, interval: float = LOOK_EVERY) -> None:
        self._database = database
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Wait for a run under way to end (its prune is one transaction either way)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def run_once(self) -> None:
        """One look; a failure is logged and the next look tries again."""
        with self._database.activated():
            try:
                retention.apply_due()
            except Exception:
                log.exception("housekeeping failed; trying again in %g s", self._interval)
            finally:
                self._database.close()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self.run_once()
            self._stopped.wait(self._interval)
