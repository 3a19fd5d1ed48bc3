"""PEP 740 attestations uploaded with a file: checked before the file is published, kept
with it, and served as its provenance object once verified.

What a repository does is its `attestations` mode: `off` drops them, `store` keeps them
after the stdlib checks (`attestations.check`), `verify` also verifies them offline with
the `attestations` extra, `require` refuses an upload without a verified one, and `auto`
is `verify` where the extra is installed, else `store`. An attestation that cannot be
checked here (no extra, no trust root) is kept as `unverified` with the reason, and
`minirepo attestations verify` checks it again later.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from minirepo import attestations, models
from minirepo.db import rows, write_transaction
from minirepo.errors import InvalidUpload

STORED_ONLY = "kept without verification: the repository's attestations mode is store"


@dataclasses.dataclass(frozen=True)
class Kept:
    """What is stored with a file."""

    status: str  # "verified" or "unverified"
    reason: str
    publisher: dict[str, Any] | None
    attestations: list[dict[str, Any]]


def mode_in_force(mode: str) -> str:
    if mode == "auto":
        return "verify" if attestations.extra_available() else "store"
    return mode


def prepare(mode: str, raw: str, filename: str, sha256: str) -> Kept | None:
    """The attestations of an upload as they will be kept, or None (none sent, or `off`);
    raises InvalidUpload (400) for what must not be published. No database, no network."""
    # An empty array is no attestation at all (a client may always send the field).
    if raw.strip() in ("", "[]"):
        if mode == "require":
            raise InvalidUpload(_REQUIRED + "none was sent")
        return None
    mode = mode_in_force(mode)
    if mode == "off":
        return None
    checked = attestations.check(raw, filename, sha256)
    if mode == "store":
        return Kept("unverified", STORED_ONLY, None, checked)
    verdict = attestations.verify(checked, filename, sha256)
    if mode == "require" and verdict.status != "verified":
        raise InvalidUpload(_REQUIRED + verdict.reason)
    return Kept(verdict.status, verdict.reason, verdict.publisher, checked)


_REQUIRED = (
    "This repository requires a verified PEP 740 attestation (twine upload --attestations "
    "dist/* or uv publish dist/*: both send only the .attestation files they are given, "
    "signed in a trusted publisher's CI): "
)


def store(file_id: int, kept: Kept) -> None:
    """Inside the upload's write transaction, for the file row it made."""
    models.FileProvenance.insert(
        file=file_id,
        status=kept.status,
        reason=kept.reason,
        publisher=json.dumps(kept.publisher) if kept.publisher else "",
        attestations=json.dumps(kept.attestations, separators=(",", ":")),
    ).execute()


def provenance_of(file_id: int) -> dict[str, Any] | None:
    """The PEP 740 provenance object of a hosted file: verified attestations only, since
    a client reading it trusts the publisher it names."""
    row = (
        models.FileProvenance.select(
            models.FileProvenance.publisher, models.FileProvenance.attestations
        )
        .where(
            (models.FileProvenance.file == file_id)
            & (models.FileProvenance.status == "verified")
            & (models.FileProvenance.publisher != "")
        )
        .tuples()
        .first()
    )
    if row is None:
        return None
    publisher, kept = row
    bundle = attestations.Bundle(json.loads(publisher), json.loads(kept))
    return attestations.provenance([bundle])


def verified_files(file_ids: list[int]) -> set[int]:
    """Which of `file_ids` have a provenance object to serve (one query per page)."""
    if not file_ids:
        return set()
    query = models.FileProvenance.select(models.FileProvenance.file).where(
        models.FileProvenance.file.in_(file_ids)
        & (models.FileProvenance.status == "verified")
        & (models.FileProvenance.publisher != "")
    )
    return {int(file_id) for (file_id,) in rows(query.tuples())}


def describe(file_ids: list[int]) -> dict[int, str]:
    """file id -> what the web UI says of its attestations (why not verified, too)."""
    if not file_ids:
        return {}
    query = models.FileProvenance.select(
        models.FileProvenance.file, models.FileProvenance.status, models.FileProvenance.reason
    ).where(models.FileProvenance.file.in_(file_ids))
    return {int(file_id): f"{status}: {reason}" for file_id, status, reason in rows(query.tuples())}


@dataclasses.dataclass(frozen=True)
class Rechecked:
    repository: str
    filename: str
    status: str
    reason: str


def recheck() -> list[Rechecked]:
    """Verify the unverified attestations again (the extra was installed since, or the
    trust root answers now); an invalid one stays unverified, with the reason why."""
    query = (
        models.FileProvenance.select(
            models.FileProvenance.id,
            models.FileProvenance.attestations,
            models.File.filename,
            models.File.sha256,
            models.Repository.id,
            models.Repository.name,
        )
        .join(models.File)
        .join(models.Repository)
        .where(models.FileProvenance.status == "unverified")
        .tuples()
    )
    done = []
    for row_id, kept, filename, sha256, repo_id, repository in rows(query):
        try:
            verdict = attestations.verify(json.loads(kept), filename, sha256)
            status, reason, publisher = verdict.status, verdict.reason, verdict.publisher
        except InvalidUpload as exc:
            status, reason, publisher = "unverified", exc.reason, None
        with write_transaction():
            models.FileProvenance.update(
                status=status,
                reason=reason,
                publisher=json.dumps(publisher) if publisher else "",
            ).where(models.FileProvenance.id == row_id).execute()
            if status == "verified":  # its pages now link the provenance
                models.Repository.update(generation=models.Repository.generation + 1).where(
                    models.Repository.id == repo_id
                ).execute()
        done.append(Rechecked(repository, filename, status, reason))
    return done
