"""Every row of one database copied into another of the same schema, ids kept.

`minirepo migrate-data` moves a one-box install (SQLite) into PostgreSQL with it, and a
backup of a PostgreSQL database is its rows copied into a SQLite file (`services.backup`),
which a restore copies back: a logical export that needs no `pg_dump` of the server's
major version on the machine that runs minirepo.

The source is read in one read transaction (a snapshot: SQLite's WAL and PostgreSQL's
REPEATABLE READ both give one, and neither holds up the server's writers), in batches by
id, so memory stays flat however many files there are. Each batch is written in a short
write transaction of its own on the target; a failure empties the target again, so it is
never left half-written, and the source is never written at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import peewee

from minirepo import models
from minirepo.db import Database, rows
from minirepo.errors import UserError

BATCH = 500  # rows per insert: far below SQLite's limit of bound values at 20-odd columns

# In an order where every row's foreign keys are copied before it. Not copied: the schema
# version row, the target's own from its making; the instance values (the fingerprint of
# the key that signs sessions), which the target's first start writes for its own key.
COPIED: tuple[type[models.BaseModel], ...] = tuple(
    model
    for model in peewee.sort_models(models.MODELS)  # type: ignore[attr-defined]
    if model not in (models.SchemaVersion, models.Instance)
)

Progress = Callable[[str, int], None]


def _no_progress(table: str, count: int) -> None:
    """Progress reports go nowhere unless the caller shows them."""


def row_counts(database: Database) -> dict[str, int]:
    """The rows of every copied table (what `--verify` compares on both sides)."""
    with database.activated():
        return {model._meta.table_name: int(model.select().count()) for model in COPIED}


def refuse_rows(database: Database) -> None:
    """A copy goes into an empty schema only: it would otherwise merge two installs."""
    counts = row_counts(database)
    held = {table: count for table, count in counts.items() if count}
    if held:
        tables = ", ".join(f"{table} ({count})" for table, count in sorted(held.items())[:4])
        raise UserError(
            f"The database {database.label} already holds rows ({tables}): copy into an "
            "empty database (nothing changed)"
        )


@contextlib.contextmanager
def snapshot(database: Database) -> Iterator[None]:
    """One read transaction on `database`, every read inside it seeing the same moment."""
    with database.activated(), database.handle.atomic():
        if not database.is_sqlite:
            database.handle.execute_sql(  # type: ignore[no-untyped-call]
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
            )
        yield


def copy_rows(source: Database, target: Database, progress: Progress = _no_progress) -> int:
    """Copy every row of `source` into the empty `target`; returns how many were copied."""
    refuse_rows(target)
    copied = 0
    try:
        with snapshot(source):
            for model in COPIED:
                for batch in _batches(source, model):
                    _insert(target, model, batch)
                    copied += len(batch)
                    progress(model._meta.table_name, len(batch))
        _advance_sequences(target)
    except BaseException:
        _empty(target)
        raise
    return copied


def _batches(source: Database, model: type[models.BaseModel]) -> Iterator[list[tuple[object, ...]]]:
    """The model's rows in id order, BATCH at a time (keyset paging: no OFFSET scans)."""
    fields = model._meta.sorted_fields
    last = 0
    while True:
        with source.activated():
            query = (
                model.select(*fields)
                .where(model.id > last)
                .order_by(model.id)
                .limit(BATCH)
                .tuples()
            )
            batch = rows(query)
        if not batch:
            return
        yield batch
        last = int(batch[-1][0])


def _insert(
    target: Database, model: type[models.BaseModel], batch: list[tuple[object, ...]]
) -> None:
    with target.activated(), target.write_transaction():
        model.insert_many(batch, fields=model._meta.sorted_fields).execute()


def _advance_sequences(target: Database) -> None:
    """PostgreSQL hands out ids from a sequence that explicit ids do not move: set each
    past the largest id copied, or the first new row would collide with a copied one."""
    if target.is_sqlite:
        return
    setval = (
        "SELECT setval(pg_get_serial_sequence(%s, 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL)"
    )
    with target.activated(), target.write_transaction():
        for model in COPIED:
            table = f'"{model._meta.table_name}"'  # a model's own name, never input
            statement = f"{setval} FROM {table}"
            target.handle.execute_sql(statement, (table,))  # type: ignore[no-untyped-call]


def _empty(target: Database) -> None:
    """Undo a failed copy: the target's tables as empty as they were before it."""
    with target.activated(), target.write_transaction():
        for model in reversed(COPIED):
            model.delete().execute()
