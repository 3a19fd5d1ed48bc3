"""The upload pipeline: stream and hash → validate → publish the blob → one transaction.

Everything slow (streaming, hashing, reading METADATA, fsync) happens before the write
lock is taken; the transaction only checks for duplicates, links the blob into place and
inserts rows, so a failure at any step leaves no row, no blob and no temp file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable
from typing import IO, Any

import peewee
from packaging.utils import canonicalize_version

from minirepo import dists, models
from minirepo.config import Settings
from minirepo.db import write_transaction
from minirepo.errors import FileExists, FilenameBurned, Gone, InvalidUpload, TooLarge
from minirepo.permissions import ProjectInfo
from minirepo.services import audit, projects, provenance, repair
from minirepo.services.repos import RepoInfo
from minirepo.storage import BlobStore, blob_key, storage_error

log = logging.getLogger(__name__)

DIGEST_FIELDS = ("sha256_digest", "blake2_256_digest", "md5_digest")


class SpoolFile:
    """Where werkzeug's form parser writes the file part: a temp file hashed as it grows.

    The file lives in `<data>/tmp`, on the blob store's filesystem, so publishing it is a
    hard link, never a copy.
    """

    def __init__(self, store: BlobStore, limit: int) -> None:
        fd, self.path = store.new_temp()
        self._file: IO[bytes] = os.fdopen(fd, "w+b")
        self.limit = limit
        self.size = 0
        self._hashes: dict[str, Any] = {
            "sha256_digest": hashlib.sha256(),
            "blake2_256_digest": hashlib.blake2b(digest_size=32),
            "md5_digest": hashlib.md5(usedforsecurity=False),
        }

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"File too large: the limit is {self.limit} bytes")
        for digest in self._hashes.values():
            digest.update(data)
        try:
            return self._file.write(data)
        except OSError as exc:
            raise storage_error(exc, "the upload") from exc

    def digest(self, field: str) -> str:
        return str(self._hashes[field].hexdigest())

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        self._file.flush()

    def sync(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise storage_error(exc, "the upload") from exc

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        """Close and remove the temp file; safe to call twice."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclasses.dataclass(frozen=True)
class Uploader:
    """Who a stored file is recorded for: an account, or (no id) a proxy's fetch."""

    user_id: int | None
    name: str


@dataclasses.dataclass(frozen=True)
class UploadForm:
    action: str
    protocol_version: str
    name: str
    version: str
    filetype: str
    digests: dict[str, str]
    filename: str
    content: SpoolFile | None
    attestations: str = ""  # PEP 740: a JSON array, as sent
    gpg_signature: int | None = None  # the size of a `gpg_signature` part, if one came


@dataclasses.dataclass(frozen=True)
class Checked:
    dist: dists.DistFilename
    metadata: dists.CoreMetadata
    content: SpoolFile
    attestations: str = ""
    gpg_signature: bool = False  # one came, and is dropped (audited)


# No index knows which key should sign and no installer checks: a GPG signature is
# accepted (old twine sends one with --sign), never kept, never served.
GPG_SIGNATURE_CAP = 64 * 1024


def check_form(form: UploadForm, settings: Settings) -> Checked:
    """Every check that needs no database: the form, the filename, digests, the archive
    (within the settings' caps on its metadata and its members)."""
    if form.action == "submit":
        raise Gone("Project registration is not needed: upload the files directly")
    if not form.action:
        raise InvalidUpload(
            "The upload has no ':action' field: send multipart/form-data with "
            "':action=file_upload' and a correct Content-Length"
        )
    if form.action != "file_upload":
        raise InvalidUpload(f"Unsupported action {form.action!r}: expected file_upload")
    if form.protocol_version not in ("", "1"):
        raise InvalidUpload(f"Unsupported protocol_version {form.protocol_version!r}")
    if form.content is None:
        raise InvalidUpload("The upload has no file part named 'content'")
    dist = dists.parse_filename(form.filename)
    if not form.name:
        raise InvalidUpload("The upload has no 'name' field")
    if dists.validate_project_name(form.name) != dist.normalized:
        raise InvalidUpload(f"Form name {form.name!r} does not match {dist.filename!r}")
    if not form.version:
        raise InvalidUpload("The upload has no 'version' field")
    if dists.parse_version(form.version) != dist.version:
        raise InvalidUpload(f"Form version {form.version!r} does not match {dist.filename!r}")
    if form.filetype and form.filetype != dist.packagetype:
        raise InvalidUpload(f"Form filetype {form.filetype!r} does not match {dist.filename!r}")
    content = form.content
    for field, sent in form.digests.items():
        # Bytes, not str: compare_digest raises TypeError on non-ASCII text (a 500).
        expected = content.digest(field).encode()
        if sent and not hmac.compare_digest(sent.strip().lower().encode(), expected):
            raise InvalidUpload(f"The {field} supplied does not match the uploaded file")
    if form.gpg_signature is not None and form.gpg_signature > GPG_SIGNATURE_CAP:
        raise InvalidUpload(
            "The gpg_signature part is larger than 64 KiB; GPG signatures are not kept "
            "here: upload without --sign"
        )
    checked = check_file(dist, content, settings)
    return dataclasses.replace(
        checked,
        attestations=form.attestations,
        gpg_signature=form.gpg_signature is not None,
    )


def check_browser_file(filename: str, content: SpoolFile | None, settings: Settings) -> Checked:
    """A file from the web UI's upload form: no form fields to cross-check, so the name and
    version come from the filename, which `check_file` checks against the metadata."""
    if content is None:
        raise InvalidUpload("Choose a file to upload: a wheel (.whl) or an sdist (.tar.gz)")
    return check_file(dists.parse_filename(filename), content, settings)


def check_file(dist: dists.DistFilename, content: SpoolFile, settings: Settings) -> Checked:
    """The archive's checks, for an upload's file part and an imported file alike."""
    if content.size == 0:
        raise InvalidUpload(f"Invalid file {dist.filename!r}: it is empty")
    try:
        metadata = dists.read_core_metadata(
            content.path,
            dist,
            settings.max_metadata_size,
            max_members=settings.max_archive_members,
        )
    except OSError as exc:  # opening the spool file: out of descriptors, most likely
        raise storage_error(exc, "the upload") from exc
    return Checked(dist, metadata, content)


# Called inside the write transaction with the project as it is then (None: new) and
# whether a file is being replaced, so two accounts racing to create one project can't
# both pass a check made before the lock, and credentials revoked while the body streamed
# count. It raises to refuse; it runs before any answer, a retry of stored bytes included.
Authorize = Callable[[ProjectInfo | None, bool], None]


class UploadService:
    def __init__(self, store: BlobStore, metadata_cap: int) -> None:
        self.store = store
        self.metadata_cap = metadata_cap

    def publish(
        self,
        repo: RepoInfo,
        checked: Checked,
        uploader: Uploader,
        remote_addr: str,
        authorize: Authorize,
        *,
        uploaded: datetime.datetime | None = None,
        action: str = "upload",
    ) -> int | None:
        """Store the file; returns the repository's new generation, None if already stored
        (and sound: the same bytes again repair a damaged or withdrawn copy, `repair`).

        `uploaded` (naive UTC, as stored; default now) and the audit `action` are an
        import's: the file keeps the time it was first uploaded elsewhere.

        The blob is linked into place before the transaction (no disk work under the
        database lock); a failed transaction removes it again unless a row names it.
        """
        kept = None
        if action == "upload" and not repo.is_proxy:
            # Before the blob is placed: what must not be published never is.
            kept = provenance.prepare(
                repo.attestations,
                checked.attestations,
                checked.dist.filename,
                checked.content.digest("sha256_digest"),
            )
        checked.content.sync()
        key = blob_key(checked.content.digest("sha256_digest"), checked.dist.filename)
        created_blob = self._place_blob(checked, key)

        def commit() -> tuple[bool, int | None]:
            """(whether rows were written, the generation) in one write transaction."""
            with write_transaction():
                replaced = self._check_duplicate(repo, checked)
                project = projects.info(repo.id, checked.dist.normalized)
                authorize(project, isinstance(replaced, models.File))
                # Put back in place, a withdrawn file's blob lists it again everywhere.
                restored = repair.reinstate(key, uploader.name) if created_blob else {}
                if replaced is _SAME:
                    return False, restored.get(repo.name)
                if isinstance(replaced, models.File):
                    _tombstone(repo, replaced, uploader.name, "replaced")
                self._insert_rows(
                    repo, checked, uploader, remote_addr, key, project, uploaded, action, kept
                )
                return True, _bump_generation(repo.id)

        try:
            written, generation = _after_races(commit)
            if not written:
                return generation
        except BaseException:
            if created_blob and not is_referenced(key):
                self.store.delete(key)
            raise
        if not created_blob and self.store.info(key) is None:
            # `minirepo gc` took the same bytes (of a long-deleted file) between our put
            # and our commit: put them back, and list them again.
            self.store.put(checked.content.path, key)
            with write_transaction():
                generation = repair.reinstate(key, uploader.name).get(repo.name, generation)
        log.info(
            "stored %s in %s for %s (%d bytes)",
            checked.dist.filename,
            repo.name,
            uploader.name,
            checked.content.size,
        )
        return generation

    def _place_blob(self, checked: Checked, key: str) -> bool:
        """Link the upload into place; True if this put the blob there. The same bytes
        again (twine retries after a 5xx) find their blob in place, unless that copy is
        damaged: then these bytes, which hash to its key, take its place."""
        path = checked.content.path
        if self.store.put(path, key):
            return True
        if repair.intact(self.store, key, checked.content.size):
            return False
        self.store.replace(path, key)
        return True

    def _check_duplicate(self, repo: RepoInfo, checked: Checked) -> object:
        """_SAME, the file row to replace (`overwrite = allow`), or None for a new name."""
        filename = checked.dist.filename
        existing = models.File.get_or_none(
            (models.File.repository == repo.id) & (models.File.filename == filename)
        )
        if existing is not None:
            if hmac.compare_digest(existing.sha256, checked.content.digest("sha256_digest")):
                return _SAME
            if not repo.allows_overwrite:
                raise FileExists(
                    f"File already exists: {filename} (with other contents); upload a new version"
                )
            return existing
        if repo.allows_overwrite or repo.is_proxy:
            return None  # a proxy's evicted file is fetched again under its name
        burned = models.UsedFilename.get_or_none(
            (models.UsedFilename.repository == repo.id) & (models.UsedFilename.filename == filename)
        )
        if burned is not None:
            raise FilenameBurned(
                f"File already exists: {filename} was used by a deleted file; upload a new version"
            )
        return None

    def _insert_rows(
        self,
        repo: RepoInfo,
        checked: Checked,
        uploader: Uploader,
        remote_addr: str,
        key: str,
        existing: ProjectInfo | None,
        uploaded: datetime.datetime | None,
        action: str,
        kept: provenance.Kept | None,
    ) -> None:
        dist, metadata, content = checked.dist, checked.metadata, checked.content
        if existing is not None:
            project = existing.id
        else:
            project = models.Project.insert(
                repository=repo.id,
                normalized=dist.normalized,
                name=metadata.name,
                owner=uploader.user_id,
            ).execute()
        canonical = canonicalize_version(metadata.version)
        release = models.Release.get_or_none(
            (models.Release.project == project) & (models.Release.canonical_version == canonical)
        ) or models.Release.create(
            project=project,
            canonical_version=canonical,
            version=str(metadata.version),
            summary=metadata.summary,
            requires_python=metadata.requires_python,
            metadata_json=json.dumps(metadata.fields),
        )
        advertised = dists.advertises_metadata(dist, metadata)
        stored = models.File.create(
            release=release,
            repository=repo.id,
            filename=dist.filename,
            packagetype=dist.packagetype,
            python_version=dist.python_version,
            requires_python=metadata.requires_python,
            size=content.size,
            sha256=content.digest("sha256_digest"),
            blake2b_256=content.digest("blake2_256_digest"),
            md5=content.digest("md5_digest"),
            metadata_sha256=metadata.sha256 if advertised else None,
            uploader=uploader.user_id,
            storage_key=key,
            upload_time=uploaded or models.utcnow(),
        )
        if advertised:
            models.FileMetadata.create(file=stored, content=metadata.raw)
        if not repo.is_proxy:
            models.UsedFilename.insert(
                repository=repo.id, filename=dist.filename
            ).on_conflict_ignore().execute()
        detail = f"sha256={stored.sha256}"
        if kept is not None:
            provenance.store(stored.id, kept)
            detail += f" attestations={kept.status}"
        if checked.gpg_signature:
            detail += " gpg_signature=dropped"
        audit.record(
            uploader.name,
            action,
            repository=repo.name,
            project=dist.normalized,
            filename=dist.filename,
            detail=detail,
            remote_addr=remote_addr,
        )


_SAME = object()
# Transactions one upload may lose to racing writers before it gives up (a 500).
RACE_TRIES = 3


def _after_races(commit: Callable[[], tuple[bool, int | None]]) -> tuple[bool, int | None]:
    """`commit`, run again when a racing upload from another process (a worker, another
    box) committed the same file, project or release first: the unique constraint decided,
    and the next transaction reads the winner's rows, so the loser answers as it would
    have after it (the same bytes stored, other bytes 409). On SQLite the write lock
    orders them and this never loops; PostgreSQL lets both check before either inserts,
    and a failed statement ends the transaction, so the reading needs a new one."""
    for attempt in range(1, RACE_TRIES + 1):
        try:
            return commit()
        except peewee.IntegrityError:
            if attempt == RACE_TRIES:
                raise
            log.info("an upload lost a race to a concurrent writer; reading its rows")
    raise AssertionError("unreachable")


def _tombstone(repo: RepoInfo, stored: models.File, actor: str, reason: str) -> None:
    project = stored.release.project.normalized
    audit.record(
        actor,
        "replace",
        repository=repo.name,
        project=project,
        filename=stored.filename,
        detail=f"old sha256={stored.sha256}",
    )
    models.bury(stored, repo.name, project, reason, actor)


def is_referenced(key: str) -> bool:
    """Whether a row still names the blob (blobs are shared by key across repositories)."""
    return (
        models.File.select().where(models.File.storage_key == key).exists()
        or models.Tombstone.select().where(models.Tombstone.storage_key == key).exists()
    )


def _bump_generation(repo_id: int) -> int:
    models.Repository.update(generation=models.Repository.generation + 1).where(
        models.Repository.id == repo_id
    ).execute()
    return int(models.Repository.get_by_id(repo_id).generation)
