"""The OSV advisories in force: importing them (`minirepo advisories update`) and reading
them back for a project name.

An import never holds the write lock for long: a long write would 503 every upload
meanwhile (SQLite has one writer). Rows are staged under a new generation in transactions
of `BATCH` rows, unchanged records are copied across the same way, and one short
transaction marks the import finished, which is what switches readers over (the newest
finished import's generation is the one in force). A killed import leaves only staged rows
of an unfinished generation, which no reader looks at and the next import removes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import peewee

from minirepo import models, osv
from minirepo.db import current as active_database
from minirepo.db import rows, write_transaction
from minirepo.errors import UserError

log = logging.getLogger(__name__)

BATCH = 500
# After each batch an update rests as long as it worked: a server on the same machine keeps
# its speed while the (daily, background) import runs, which still takes well under a minute.
PACE = 1.0
STATUS_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an update did: `generation` is None when nothing changed (no new generation)."""

    generation: int | None
    records: int
    added: int
    changed: int
    removed: int
    bad: int
    dropped_ranges: int


@dataclasses.dataclass(frozen=True)
class Status:
    generation: int
    source: str
    finished: datetime.datetime
    checked: datetime.datetime  # when the data was last known current (an update ran)
    records: int
    bad: int
    dropped_ranges: int


def status() -> Status | None:
    """The import in force, None before the first."""
    row = (
        models.AdvisoryImport.select()
        .where(models.AdvisoryImport.finished.is_null(False))
        .order_by(models.AdvisoryImport.generation.desc())
        .first()
    )
    if row is None:
        return None
    return Status(
        row.generation,
        row.source,
        row.finished,
        max(row.finished, row.checked or row.finished),
        row.records,
        row.bad,
        row.dropped_ranges,
    )


def generation_in_force() -> int | None:
    found = status()
    return None if found is None else found.generation


def update(
    source: str,
    documents: Iterable[dict[str, Any]],
    *,
    prune: bool,
    unreadable: Callable[[], int] = lambda: 0,
) -> Outcome:
    """Import `documents` (OSV records) read from `source`; with `prune` (a full export),
    records in force that it does not hold are removed. Records are kept by id, replaced
    only by a newer `modified`; a `withdrawn` one is removed. `unreadable`: how many the
    reader skipped (not JSON), asked once it is done."""
    _drop_unfinished()
    current = generation_in_force()
    known = _modified_of(current)
    generation = _start(source)
    try:
        outcome = _fill(generation, current, known, documents, prune=prune, unreadable=unreadable)
    except BaseException:
        _drop_generation(generation)  # a cap breached mid-way: the old data stays
        raise
    if outcome.generation is not None:
        _drop_generations_before(outcome.generation)
    return outcome


def _fill(
    generation: int,
    current: int | None,
    known: dict[str, datetime.datetime],
    documents: Iterable[dict[str, Any]],
    *,
    prune: bool,
    unreadable: Callable[[], int],
) -> Outcome:
    """Stage the new and changed records, carry the rest, and switch (or abandon the new
    generation when nothing changed)."""
    staged: dict[str, datetime.datetime] = {}
    withdrawn: set[str] = set()
    seen: set[str] = set()
    bad = dropped = 0
    batch: list[osv.Record] = []
    pacer = _Pacer()
    for document in documents:
        osv_id = document.get("id")
        fresh = isinstance(osv_id, str) and osv_id not in staged
        if fresh and osv.unchanged(document, known.get(str(osv_id))):
            seen.add(str(osv_id))
            continue
        try:
            record = osv.parse(document)
        except ValueError as exc:
            bad += 1
            log.warning("advisories: skipped a record: %s", exc)
            continue
        if not record.affected:
            continue  # no PyPI package named: nothing to match
        seen.add(record.id)
        if record.withdrawn:
            withdrawn.add(record.id)
            if staged.pop(record.id, None) is not None:
                _unstage(generation, record.id)
                batch = [each for each in batch if each.id != record.id]
            continue
        previous = staged.get(record.id) or known.get(record.id)
        if previous is not None and record.modified <= previous:
            continue
        dropped += sum(entry.dropped_ranges for entry in record.affected)
        if record.id in staged:
            _unstage(generation, record.id)
            batch = [each for each in batch if each.id != record.id]
        staged[record.id] = record.modified
        batch.append(record)
        if len(batch) >= BATCH:
            _stage(generation, batch)
            batch = []
            pacer.rest()
    _stage(generation, batch)
    bad += unreadable()
    keep = [
        osv_id
        for osv_id in known
        if osv_id not in staged and osv_id not in withdrawn and (not prune or osv_id in seen)
    ]
    removed = len(known) - len(keep) - len(set(staged) & set(known))
    added = len(set(staged) - set(known))
    changed = len(staged) - added
    if current is not None and not (added or changed or removed):
        _abandon(generation, current)
        return Outcome(None, len(known), 0, 0, 0, bad, dropped)
    for start in range(0, len(keep), BATCH):
        _carry(current, generation, keep[start : start + BATCH])
        pacer.rest()
    outcome = Outcome(generation, len(keep) + len(staged), added, changed, removed, bad, dropped)
    _switch(generation, outcome)
    database = active_database()
    if database.is_sqlite:
        # Statistics for the planner, which tables this size need.
        database.handle.execute_sql("PRAGMA optimize")  # type: ignore[no-untyped-call]
    return outcome


class _Pacer:
    def __init__(self) -> None:
        self.since = time.monotonic()

    def rest(self) -> None:
        time.sleep((time.monotonic() - self.since) * PACE)
        self.since = time.monotonic()


def _drop_unfinished() -> None:
    """Staged rows of imports that never finished (killed, or failed on a cap)."""
    unfinished = [
        generation
        for (generation,) in rows(
            models.AdvisoryImport.select(models.AdvisoryImport.generation)
            .where(models.AdvisoryImport.finished.is_null())
            .tuples()
        )
    ]
    for generation in unfinished:
        _drop_generation(generation)


def _drop_generation(generation: int) -> None:
    """An import that will not finish: its staged rows, then its row."""
    _delete_generation(generation)
    with write_transaction():
        models.AdvisoryImport.delete().where(
            (models.AdvisoryImport.generation == generation)
            & models.AdvisoryImport.finished.is_null()
        ).execute()


def _modified_of(generation: int | None) -> dict[str, datetime.datetime]:
    if generation is None:
        return {}
    query = (
        models.Advisory.select(models.Advisory.osv_id, models.Advisory.modified)
        .where(models.Advisory.generation == generation)
        .tuples()
    )
    return {str(osv_id): modified for osv_id, modified in rows(query)}


def _start(source: str) -> int:
    """A new generation, above every one in use; the unique column makes two imports
    started at once fail rather than share one."""
    try:
        with write_transaction():
            highest = models.AdvisoryImport.select(
                peewee.fn.MAX(models.AdvisoryImport.generation)
            ).scalar()
            generation = int(highest or 0) + 1
            models.AdvisoryImport.create(generation=generation, source=source)
    except peewee.IntegrityError as exc:
        raise UserError(
            "Another advisories update started at the same time: let it finish, then run "
            "minirepo advisories status"
        ) from exc
    return generation


def _stage(generation: int, records: list[osv.Record]) -> None:
    if not records:
        return
    advisories = [
        {
            "generation": generation,
            "osv_id": record.id,
            "modified": record.modified,
            "severity": record.severity,
            "record": json.dumps(osv.to_dict(record), separators=(",", ":")),
        }
        for record in records
    ]
    packages = sorted(
        {(generation, entry.name, record.id) for record in records for entry in record.affected}
    )
    with write_transaction():
        models.Advisory.insert_many(advisories).execute()
        models.AdvisoryPackage.insert_many(
            packages,
            fields=[
                models.AdvisoryPackage.generation,
                models.AdvisoryPackage.normalized,
                models.AdvisoryPackage.osv_id,
            ],
        ).execute()


def _unstage(generation: int, osv_id: str) -> None:
    """A record given twice in one import (two files of one id): the newer one wins."""
    with write_transaction():
        for model in (models.Advisory, models.AdvisoryPackage):
            model.delete().where(
                (model.generation == generation) & (model.osv_id == osv_id)
            ).execute()


def _carry(source: int | None, target: int, ids: list[str]) -> None:
    """Copy unchanged records into the new generation, inside the database."""
    if source is None or not ids:
        return
    with write_transaction():
        for model, columns in (
            (models.Advisory, ("osv_id", "modified", "severity", "record")),
            (models.AdvisoryPackage, ("normalized", "osv_id")),
        ):
            fields = [getattr(model, name) for name in columns]
            chosen = model.select(peewee.Value(target), *fields).where(
                (model.generation == source) & model.osv_id.in_(ids)
            )
            model.insert_from(chosen, [model.generation, *fields]).execute()


def _switch(generation: int, outcome: Outcome) -> None:
    """The one short write that puts the new generation in force everywhere."""
    with write_transaction():
        updated = (
            models.AdvisoryImport.update(
                finished=models.utcnow(),
                records=outcome.records,
                added=outcome.added,
                changed=outcome.changed,
                removed=outcome.removed,
                bad=outcome.bad,
                dropped_ranges=outcome.dropped_ranges,
            )
            .where(
                (models.AdvisoryImport.generation == generation)
                & models.AdvisoryImport.finished.is_null()
            )
            .execute()
        )
        if not updated:
            raise UserError(
                "Another advisories update removed this one's staged rows while it ran: "
                "run minirepo advisories update again"
            )
        models.bump_counter(models.ADVISORY_COUNTER)
    models.forget_counters()


def _abandon(generation: int, current: int) -> None:
    """Nothing changed: the data in force is current as of now."""
    with write_transaction():
        models.AdvisoryImport.delete().where(
            models.AdvisoryImport.generation == generation
        ).execute()
        models.AdvisoryImport.update(checked=models.utcnow()).where(
            models.AdvisoryImport.generation == current
        ).execute()


def _drop_generations_before(generation: int) -> None:
    for old in rows(
        models.Advisory.select(models.Advisory.generation)
        .where(models.Advisory.generation < generation)
        .distinct()
        .tuples()
    ):
        _delete_generation(int(old[0]))


def _delete_generation(generation: int) -> None:
    """In batches: a generation holds tens of thousands of rows."""
    for model in (models.Advisory, models.AdvisoryPackage):
        while True:
            ids = [
                row_id
                for (row_id,) in rows(
                    model.select(model.id)
                    .where(model.generation == generation)
                    .limit(BATCH * 4)
                    .tuples()
                )
            ]
            if not ids:
                break
            with write_transaction():
                model.delete().where(model.id.in_(ids)).execute()


class Lookup:
    """The records in force for a name, kept per process until the advisory counter moves
    (an import switched, or an exception changed): pages ask once per render."""

    def __init__(self) -> None:
        self._counter = -1
        self._generation: int | None = None
        self._records: dict[str, tuple[osv.Record, ...]] = {}
        self._lock = threading.Lock()
        self._status: tuple[float, Status | None] = (-STATUS_SECONDS, None)

    def status(self) -> Status | None:
        """`status()`, re-read at most every STATUS_SECONDS: health probes poll often,
        and an update that changed nothing moves `checked` without the counter."""
        read_at, found = self._status
        if time.monotonic() - read_at >= STATUS_SECONDS:
            found = status()
            self._status = (time.monotonic(), found)
        return found

    def records(self, normalized: str) -> tuple[osv.Record, ...]:
        counter = models.read_counter(models.ADVISORY_COUNTER)
        with self._lock:
            if counter != self._counter:
                self._counter = counter
                self._generation = generation_in_force()
                self._records = {}
            found = self._records.get(normalized)
            generation = self._generation
        if found is not None:
            return found
        found = tuple(records_for(generation, normalized))
        with self._lock:
            if len(self._records) > 50_000:
                self._records.clear()
            if counter == self._counter:
                self._records[normalized] = found
        return found


def records_for(generation: int | None, normalized: str) -> Iterator[osv.Record]:
    if generation is None:
        return
    query = (
        models.Advisory.select(models.Advisory.record)
        .join(
            models.AdvisoryPackage,
            on=(
                (models.AdvisoryPackage.osv_id == models.Advisory.osv_id)
                & (models.AdvisoryPackage.generation == models.Advisory.generation)
            ),
        )
        .where(
            (models.Advisory.generation == generation)
            & (models.AdvisoryPackage.normalized == normalized)
        )
        # By the package row's id (equal through the join): ordering by advisory.osv_id
        # made SQLite walk the whole generation in that index, 1 000x slower per page.
        .order_by(models.AdvisoryPackage.osv_id)
        .tuples()
    )
    for (record,) in rows(query):
        yield osv.from_dict(json.loads(record))


def record(osv_id: str) -> osv.Record:
    """One record in force, by its id or one of its aliases (`advisories show`)."""
    generation = generation_in_force()
    if generation is None:
        raise UserError("No advisories yet: run minirepo advisories update")
    found = (
        models.Advisory.select(models.Advisory.record)
        .where((models.Advisory.generation == generation) & (models.Advisory.osv_id == osv_id))
        .tuples()
        .first()
    )
    if found is not None:
        return osv.from_dict(json.loads(found[0]))
    for (text,) in rows(
        models.Advisory.select(models.Advisory.record)
        .where(
            (models.Advisory.generation == generation)
            & models.Advisory.record.contains(json.dumps(osv_id))
        )
        .tuples()
    ):
        candidate = osv.from_dict(json.loads(text))
        if osv_id in candidate.aliases:
            return candidate
    raise UserError(f"No advisory {osv_id!r} in force (minirepo advisories status)")
