"""Damaged or missing files: withdrawn from the pages, put back by their own bytes.

pip and uv pick one file per requirement from the page and give up on it after a few 5xx
answers ("too many 500 error responses"), even when an sdist of the same version would
do. So a file whose blob is found damaged (by a download or by `minirepo fsck`) is
withdrawn: its blob is moved to `<data>/quarantine/` and the pages, which list only
files whose blob is there (`Index._file_rows`), are rendered again without it. The rows
stay, so its name, hash and URL are kept, and the file comes back the moment its exact
bytes do: an upload of the identical file, or `minirepo fsck --repair-from BACKUP`.

No new table or column holds the withdrawn state: a missing blob is the state, so a
file lost by any other means (a bad restore, an operator's `rm`) is withdrawn alike. A
proxy's damaged file is dropped instead: its page is the upstream's, and the file is
fetched again when next asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
from pathlib import Path

from minirepo import models
from minirepo.db import rows, write_transaction
from minirepo.errors import DamagedFile
from minirepo.services import audit
from minirepo.services.integrity import Problem
from minirepo.storage import BlobStore

log = logging.getLogger(__name__)

REMEDY = "re-upload the identical file, or run minirepo fsck --repair-from BACKUP"
# fsck's problems that a blob's own bytes put right.
BLOB_PROBLEMS = ("missing", "size", "hash")


@dataclasses.dataclass(frozen=True)
class Holder:
    """A file row that names a blob (one blob may serve several repositories)."""

    file_id: int
    repository: str
    kind: str
    project: str
    filename: str


def holders(key: str) -> list[Holder]:
    """The rows naming `key`. The key ends with the filename, so the lookup goes through
    the (repository, filename) index once per repository instead of scanning every file
    (uploads ask, under the write lock): the `IN` over every repository is what makes
    SQLite's planner take that index."""
    filename = key.rsplit("/", 1)[-1]
    every_repository = models.Repository.select(models.Repository.id)
    query = (
        models.File.select(
            models.File.id,
            models.Repository.name,
            models.Repository.kind,
            models.Project.normalized,
            models.File.filename,
        )
        .join(models.Repository, on=(models.File.repository == models.Repository.id))
        .switch(models.File)
        .join(models.Release)
        .join(models.Project)
        .where(
            models.File.repository.in_(every_repository)
            & (models.File.filename == filename)
            & (models.File.storage_key == key)
        )
        .tuples()
    )
    return [Holder(*row) for row in rows(query)]


def intact(store: BlobStore, key: str, size: int) -> bool:
    """Whether the blob is there with its size and sha256 (a hash already checked counts)."""
    try:
        store.open_checked(key, size).close()
    except DamagedFile:
        return False
    return True


def withdraw(
    store: BlobStore, quarantine: Path, key: str, size: int, actor: str
) -> dict[str, int] | None:
    """Take a damaged or missing blob off the pages; returns the hosted repositories whose
    pages change, with their new generations (None: the blob is sound after all).

    The blob is checked once more before it is moved: a repair may have put good bytes
    in place since the caller found it damaged. The move happens before the transaction.
    """
    if store.info(key) is not None:
        if intact(store, key, size):
            return None
        quarantine.mkdir(mode=0o700, exist_ok=True)
        try:
            moved = store.quarantine(key, quarantine)
        except FileNotFoundError:
            pass  # another request withdrew it first
        else:
            log.error("withdrew damaged file %s: moved to %s; to repair: %s", key, moved, REMEDY)
    with write_transaction():
        found = holders(key)
        proxied = [holder.file_id for holder in found if holder.kind == "proxy"]
        if proxied:
            models.FileMetadata.delete().where(models.FileMetadata.file.in_(proxied)).execute()
            models.File.delete().where(models.File.id.in_(proxied)).execute()
        for holder in found:
            what = "fetched again when asked" if holder.kind == "proxy" else REMEDY
            audit.record(
                actor,
                "withdraw",
                repository=holder.repository,
                project=holder.project,
                filename=holder.filename,
                detail=f"stored file damaged or missing: {what}",
            )
        return _bump({holder.repository for holder in found if holder.kind != "proxy"})


def reinstate(key: str, actor: str) -> dict[str, int]:
    """Call in the write transaction that follows putting the blob back in place: the
    pages of every hosted repository holding it list it again. Returns their new
    generations."""
    found = [holder for holder in holders(key) if holder.kind != "proxy"]
    for holder in found:
        audit.record(
            actor,
            "repair",
            repository=holder.repository,
            project=holder.project,
            filename=holder.filename,
            detail="stored file put back in place",
        )
    return _bump({holder.repository for holder in found})


def _bump(names: set[str]) -> dict[str, int]:
    if not names:
        return {}
    models.Repository.update(generation=models.Repository.generation + 1).where(
        models.Repository.name.in_(sorted(names))
    ).execute()
    query = models.Repository.select(models.Repository.name, models.Repository.generation)
    return {
        str(name): int(generation)
        for name, generation in rows(query.where(models.Repository.name.in_(names)).tuples())
    }


def restore_from(store: BlobStore, backup: Path, key: str, size: int) -> Path | None:
    """Put the blob back from a copy of a data folder (or of its `files/`); returns the
    copy used, None when the backup has no sound copy. The copy is checked against the
    key's sha256 and the row's size before it is published."""
    for candidate in (backup.joinpath("files", *key.split("/")), backup.joinpath(*key.split("/"))):
        if candidate.is_file() and _place(store, candidate, key, size):
            return candidate
    return None


def _place(store: BlobStore, source: Path, key: str, size: int) -> bool:
    fd, temp = store.new_temp()
    try:
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out, source.open("rb") as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
                written += len(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if written != size or digest.hexdigest() != key.split("/")[1]:
            log.warning("%s does not match %s: not used", source, key)
            return False
        if not store.put(temp, key) and not intact(store, key, size):
            store.replace(temp, key)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def settle(
    store: BlobStore, quarantine: Path, problems: list[Problem], backup: Path | None
) -> list[Problem]:
    """fsck's blob problems acted on: each withdrawn, then put back from `backup` if it
    holds the bytes; the problems come back with what was done and what is left to do."""
    sizes = dict(_sizes({p.key for p in problems}))
    settled = []
    for problem in problems:
        size = sizes.get(problem.key)
        if problem.kind not in BLOB_PROBLEMS or size is None:
            settled.append(problem)
            continue
        try:
            withdrawn = withdraw(store, quarantine, problem.key, size, "fsck")
        except OSError as exc:
            remedy = f"could not move it aside ({exc}): move it away by hand, then {REMEDY}"
            settled.append(dataclasses.replace(problem, remedy=remedy))
            continue
        if withdrawn is None:
            done = "sound when checked again (repaired meanwhile)"
            settled.append(dataclasses.replace(problem, remedy=done, repaired=True))
        elif not withdrawn:
            done = "dropped from its proxy: fetched again from the upstream when asked"
            settled.append(dataclasses.replace(problem, remedy=done, repaired=True))
        elif backup is not None and (source := restore_from(store, backup, problem.key, size)):
            with write_transaction():
                reinstate(problem.key, "fsck")
            done = f"repaired from {source}"
            settled.append(dataclasses.replace(problem, remedy=done, repaired=True))
        else:
            names = ", ".join(sorted(withdrawn))
            missing = f" ({backup} holds no sound copy)" if backup is not None else ""
            remedy = f"withdrawn from the pages of {names} until repaired{missing}: {REMEDY}"
            settled.append(dataclasses.replace(problem, remedy=remedy))
    return settled


def _sizes(keys: set[str]) -> list[tuple[str, int]]:
    query = models.File.select(models.File.storage_key, models.File.size).where(
        models.File.storage_key.in_(sorted(keys))
    )
    return [(str(key), int(size)) for key, size in rows(query.distinct().tuples())]
