"""What `/-/health` reports: whether this server can do its work, and what to watch.

It *works* while the database answers, the data folder takes new files (its `tmp/`,
where every upload and fetch starts, is writable) and the blob store answers (`files/`
writable, or a HEAD of the S3 bucket at most once a second); the probe's status code says
only that.
It is *degraded* while it works but an upstream fails (local packages still install), the
advisories are older than `advisories_max_age` (blocking goes on with old data), or the
disk runs low: below `DISK_FLOOR`, or below the smallest `min_free_disk` of the
proxies, where none of them keeps what it fetches any more and every install goes upstream
again. A proxy with a larger floor chose to stop caching early: that is its cap, no alarm.
A share of the disk would alarm at 100 GB free on a large disk and never on an SD card.

Probes poll this every 100 ms (the benchmarks do): one query, two system calls, no scan.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
from pathlib import Path
from typing import Protocol

import peewee

from minirepo import models
from minirepo.db import rows
from minirepo.services.proxy_options import options_of
from minirepo.services.upstream_health import UpstreamBook
from minirepo.storage import BlobStore
from minirepo.units import format_size

log = logging.getLogger(__name__)

# Below this the disk is low whatever the proxies say: room for the database's WAL, an
# upload or two, a backup's copy of the database.
DISK_FLOOR = 100 * 1024**2


class Spool(Protocol):
    """The server's budget of spooled request bodies (`waitress_fixes.SpoolBudget`)."""

    in_use: int
    limit: int


@dataclasses.dataclass(frozen=True)
class Health:
    database: bool
    folder: bool
    disk_free: int | None  # None: the data folder could not be asked
    disk_floor: int
    spool_in_use: int
    spool_limit: int
    upstreams: dict[str, dict[str, object]]
    store: bool = True  # the blob store answers
    storage: str = "local"  # its kind: "local" or "s3"
    # When the advisories in force were last known current (None: never imported), and
    # the age past which that is a problem.
    advisories: datetime.datetime | None = None
    advisories_max_age: float = float("inf")

    @property
    def works(self) -> bool:
        return self.database and self.folder and self.store

    @property
    def problems(self) -> list[str]:
        """Why the status is not `ok`, in words an operator acts on."""
        found = [] if self.database else ["the database does not answer"]
        if not self.folder:
            found.append("the data folder's tmp/ is not writable")
        if not self.store:
            found.append(f"the blob store ({self.storage}) does not answer")
        if self.disk_free is not None and self.disk_free < self.disk_floor:
            free, floor = format_size(self.disk_free), format_size(self.disk_floor)
            found.append(f"disk free {free} is below the floor of {floor}")
        if self.advisories is not None:
            age = (models.utcnow() - self.advisories).total_seconds()
            if age > self.advisories_max_age:
                found.append(
                    f"the advisories are {age / 86400:.0f} days old (advisories_max_age): "
                    "run minirepo advisories update"
                )
        found += [
            f"upstream of {name} is failing"
            for name, report in self.upstreams.items()
            if report.get("status") == "degraded"
        ]
        return found

    def report(self) -> dict[str, object]:
        problems = self.problems
        return {
            "status": "error" if not self.works else "degraded" if problems else "ok",
            "problems": problems,
            "database": "ok" if self.database else "error",
            "data_folder": "ok" if self.folder else "error",
            "store": "ok" if self.store else "error",
            "storage": self.storage,
            "disk_free": self.disk_free,
            "disk_floor": self.disk_floor,
            "spool_in_use": self.spool_in_use,
            "spool_limit": self.spool_limit,
            "upstreams": self.upstreams,
            "advisories_checked": (
                self.advisories.strftime("%Y-%m-%dT%H:%M:%SZ") if self.advisories else None
            ),
        }


def check(
    data: Path,
    upstreams: UpstreamBook,
    spool: Spool,
    store: BlobStore,
    advisories: tuple[datetime.datetime | None, float] = (None, float("inf")),
) -> Health:
    """`advisories`: when they were last known current, and their allowed age."""
    database, floors, reports = _proxies(upstreams)
    disk_free = free_bytes(data)
    writable = os.access(data / "tmp", os.W_OK | os.X_OK)  # EROFS on a read-only mount too
    return Health(
        database=database,
        folder=disk_free is not None and writable,
        store=store.answers(),
        storage=store.kind,
        disk_free=disk_free,
        disk_floor=max(DISK_FLOOR, min(floors, default=0)),
        spool_in_use=spool.in_use,
        spool_limit=spool.limit,
        upstreams=reports,
        advisories=advisories[0],
        advisories_max_age=advisories[1],
    )


def free_bytes(data: Path) -> int | None:
    """Free bytes on the data folder's disk (for unprivileged users: what uploads get)."""
    try:
        return shutil.disk_usage(data).free
    except OSError:
        return None


def _proxies(upstreams: UpstreamBook) -> tuple[bool, list[int], dict[str, dict[str, object]]]:
    """(the database answered, the proxies' disk floors, their upstreams' health): the
    query of the proxy rows is also the database's check, a read of the real schema."""
    query = models.Repository.select(
        models.Repository.id, models.Repository.name, models.Repository.proxy_options
    ).where(models.Repository.kind == "proxy")
    try:
        found = rows(query.tuples())
    except peewee.PeeweeException as exc:
        # The reason is logged, never answered: a probe may be anyone on the LAN.
        log.warning("health: the database does not answer: %s", exc)
        return False, [], {}
    floors = [options_of(str(options)).min_free_disk for _, _, options in found]
    names = {int(repo_id): str(name) for repo_id, name, _ in found}
    return True, floors, upstreams.reports(names)
