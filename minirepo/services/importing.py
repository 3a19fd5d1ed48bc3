"""Bringing files and accounts in from another index (pypiserver, devpi).

Each file goes through the checks and the publish of an upload (`services.upload`), so an
imported file meets the rules a twine upload meets: its name, its archive and its metadata
are read from the file itself, never trusted from the other index. An import can be run
again: what is already here with the same bytes is skipped, a name here with other bytes
is refused (names stay burned), and one bad file is reported, never the end of the run.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from minirepo import credentials, dists, models
from minirepo.config import Settings
from minirepo.db import rows, write_transaction
from minirepo.errors import BadRequest, FileExists, Forbidden, TooLarge, UserError
from minirepo.permissions import ProjectInfo
from minirepo.services import accounts, groups, projects, repos
from minirepo.services.repos import RepoInfo
from minirepo.services.upload import SpoolFile, Uploader, UploadService, check_file
from minirepo.storage import BlobStore

log = logging.getLogger(__name__)

# What refuses one file (its name, its archive, its place here) without stopping the
# run; anything else (a full disk, a busy database) ends the import, which can be rerun.
REFUSALS = (BadRequest, FileExists, Forbidden, TooLarge)
CHUNK = 1024 * 1024
IMPORT_ACTION = "import"


@dataclasses.dataclass(frozen=True)
class ImportedFile:
    path: Path  # a wheel or sdist on disk
    upload_time: datetime.datetime  # timezone-aware
    uploader: str | None = None  # an existing minirepo account's name; None: nobody


@dataclasses.dataclass
class ImportReport:
    """What an import did, file by file and account by account, for its summary."""

    imported: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)  # here with the same bytes
    ignored: list[str] = dataclasses.field(default_factory=list)  # not distributions at all
    refused: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, why)
    users_created: list[str] = dataclasses.field(default_factory=list)
    users_existing: list[str] = dataclasses.field(default_factory=list)  # left as they are
    users_refused: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    to_reset: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (user, note)
    notes: list[str] = dataclasses.field(default_factory=list)


def ensure_hosted_repo(name: str, *, actor: str) -> None:
    """Create the hosted repository `name` (with `repo create`'s defaults) if missing."""
    row = models.Repository.get_or_none(models.Repository.name == name)
    if row is None:
        repos.create(name, actor=actor)
        return
    _check_hosted(repos.info_of(row))


def _check_hosted(repo: RepoInfo) -> None:
    if repo.kind != "hosted":
        raise UserError(
            f"Repository {repo.name!r} is a {repo.kind}: import into a hosted repository "
            "(--repo NAME; a new name is created)"
        )


def import_files(
    repo_name: str,
    files: Iterable[ImportedFile],
    *,
    store: BlobStore,
    settings: Settings,
    actor: str,
    report: ImportReport,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Publish each file into the hosted repository `repo_name`, recording the outcome
    in `report`; `progress(1)` after each file. `settings` gives the upload's caps."""
    repo = repos.info_of(repos.get(repo_name))
    _check_hosted(repo)
    service = UploadService(store, settings.max_metadata_size)
    uploader_ids: dict[str, int | None] = {}
    for item in files:
        filename = item.path.name
        try:
            uploader = _uploader(item.uploader, actor, uploader_ids, report)
            if _import_one(service, repo, item, uploader, settings):
                report.imported.append(filename)
            else:
                report.skipped.append(filename)
        except REFUSALS as exc:
            report.refused.append((filename, exc.reason))
        except OSError as exc:  # the source file, not our store (that is a StorageError)
            report.refused.append((filename, f"cannot read {item.path}: {exc.strerror or exc}"))
        if progress is not None:
            progress(1)
    if report.imported:
        log.info("%s imported %d file(s) into %s", actor, len(report.imported), repo.name)


def _uploader(
    name: str | None, actor: str, known: dict[str, int | None], report: ImportReport
) -> Uploader:
    """The account a file is recorded for (the audit names `actor`, who imported it)."""
    if name is None:
        return Uploader(None, actor)
    if name not in known:
        row = models.User.get_or_none(models.User.name == name)
        known[name] = row.id if row is not None else None
        if row is None:
            report.notes.append(f"{name} is not an account here: their files have no uploader")
    return Uploader(known[name], actor)


def _import_one(
    service: UploadService,
    repo: RepoInfo,
    item: ImportedFile,
    uploader: Uploader,
    settings: Settings,
) -> bool:
    """True if stored now, False if already here with the same bytes."""
    dist = dists.parse_filename(item.path.name)
    existing = models.File.get_or_none(
        (models.File.repository == repo.id) & (models.File.filename == dist.filename)
    )
    if existing is not None:
        if hmac.compare_digest(existing.sha256, _sha256(item.path)):
            return False
        raise FileExists(f"{repo.name} already has {dist.filename} with other contents")
    spool = SpoolFile(service.store, settings.max_upload_size)
    try:
        with item.path.open("rb") as source:
            while chunk := source.read(CHUNK):
                spool.write(chunk)
        spool.flush()  # the archive checks read it by its path
        checked = check_file(dist, spool, settings)

        def authorize(project: ProjectInfo | None, replacing: bool) -> None:
            if replacing:  # an `overwrite = allow` repository: an import never replaces
                raise FileExists(f"{repo.name} already has {dist.filename} with other contents")
            locked = groups.origin_lock(repo.id, repo.name, dist.normalized)
            if locked is not None:
                raise Forbidden(locked)

        generation = service.publish(
            repo,
            checked,
            uploader,
            "",
            authorize,
            uploaded=_naive_utc(item.upload_time),
            action=IMPORT_ACTION,
        )
    finally:
        spool.discard()
    return generation is not None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _naive_utc(moment: datetime.datetime) -> datetime.datetime:
    """The database keeps naive UTC; a naive `moment` is taken as UTC already."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def import_user(
    name: str,
    password_hash: str | None,
    *,
    actor: str,
    report: ImportReport,
    note_if_unusable: str = "",
) -> None:
    """Create the account with the other index's password hash, re-hashed with ours at
    its first login (`auth`). A hash we cannot read (None, MD5-apr1, crypt, plain text)
    gives an account with no usable password, listed in `report.to_reset` with
    `note_if_unusable`. An existing account is left as it is: an import never changes
    a password here."""
    readable = password_hash is not None and credentials.is_importable_hash(password_hash)
    stored = password_hash if readable and password_hash is not None else credentials.NO_PASSWORD
    try:
        with write_transaction():
            user = accounts.add_user(name, None, method="", actor=actor)
            if stored != credentials.NO_PASSWORD:
                models.User.update(password_hash=stored).where(models.User.id == user.id).execute()
    except UserError as exc:
        if models.User.get_or_none(models.User.name == name) is not None:
            report.users_existing.append(name)
        else:
            report.users_refused.append((name, exc.reason))
        return
    report.users_created.append(name)
    if stored == credentials.NO_PASSWORD:
        report.to_reset.append((name, note_if_unusable or "its password hash cannot be read"))
    elif not credentials.can_verify(stored):
        report.to_reset.append((name, credentials.unverifiable_note(stored)))


def grant_missing(repo: str, grants: Iterable[tuple[str, str]], *, actor: str) -> None:
    """Grants a user has no role in `repo` yet: a rerun never changes a role set here."""
    existing = {user for _, user, _ in repos.grants(repo)}
    for user, role in grants:
        if user not in existing:
            repos.grant(user, repo, role, actor=actor)


def add_maintainers(
    repo: str, uploaders: Sequence[str], project_names: Iterable[str], *, actor: str
) -> None:
    """Make `uploaders` maintainers of each project named, as the other index let them
    upload to any project (its owner and existing maintainers are left as they are)."""
    row = repos.get(repo)
    query = models.User.select(models.User.id, models.User.name).where(
        models.User.name.in_(list(uploaders))
    )
    ids = {str(name): int(user_id) for user_id, name in rows(query.tuples())}
    for project in sorted(project_names):
        info = projects.info(row.id, canonicalize_name(project))
        if info is None:  # none of its files was imported
            continue
        for user in uploaders:
            user_id = ids.get(user)
            if user_id is None or user_id == info.owner_id or user_id in info.maintainer_ids:
                continue
            projects.add_maintainer(repo, info.normalized, user, actor=actor)
