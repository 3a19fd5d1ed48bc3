"""`minirepo import pypiserver`: a pypiserver packages folder and its htpasswd file.

pypiserver keeps no database: its index is the folder (walked with its subfolders, dot
names left out, as pypiserver lists it) and its accounts are an Apache htpasswd file. A
file's upload time is its mtime, the only record pypiserver has of it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable
from pathlib import Path

from minirepo import dists
from minirepo.errors import UserError
from minirepo.services import accounts, importing
from minirepo.services.datafolder import DataFolder
from minirepo.services.importing import ImportedFile, ImportReport

ACTOR = "import pypiserver"
# What pypiserver lists as a distribution; minirepo keeps wheels and .tar.gz sdists and
# refuses the rest by name, so nothing that was installable there is dropped silently.
DIST_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar.xz", ".egg", ".exe")
# htpasswd formats minirepo does not read, by their prefix.
UNREADABLE = (
    ("$apr1$", "an MD5-apr1 hash, which minirepo does not read"),
    ("$1$", "an MD5-crypt hash, which minirepo does not read"),
    ("$5$", "a SHA-256-crypt hash, which minirepo does not read"),
    ("$6$", "a SHA-512-crypt hash, which minirepo does not read"),
)


@dataclasses.dataclass(frozen=True)
class Found:
    files: list[ImportedFile]
    ignored: list[str]  # relative paths of what is no distribution


@dataclasses.dataclass(frozen=True)
class HtpasswdEntry:
    name: str
    password_hash: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """What an import will bring, read before anything is stored (and before the
    progress bar starts, so a wrong argument fails alone)."""

    repo: str
    found: Found
    users: list[HtpasswdEntry]


def find_files(root: Path, owner: str | None = None) -> Found:
    """Every distribution below `root`, in a stable order (path by path), recorded as
    uploaded by `owner` (pypiserver keeps no uploader)."""
    files: list[ImportedFile] = []
    ignored: list[str] = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            path = Path(folder, name)
            if name.startswith(".") or not path.is_file():
                continue
            if not name.lower().endswith(DIST_SUFFIXES):
                ignored.append(path.relative_to(root).as_posix())
                continue
            mtime = path.stat().st_mtime
            uploaded = datetime.datetime.fromtimestamp(mtime, tz=datetime.timezone.utc)
            files.append(ImportedFile(path, uploaded, owner))
    return Found(files, ignored)


def read_htpasswd(path: Path) -> list[HtpasswdEntry]:
    """`name:hash` lines; blank lines and `#` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not an htpasswd file (not UTF-8 text)") from exc
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, password_hash = line.partition(":")
        if not sep or not name:
            raise UserError(f"{path}:{number}: not a 'name:hash' line of an htpasswd file")
        entries.append(HtpasswdEntry(name, password_hash))
    return entries


def unreadable_note(password_hash: str) -> str:
    """Why an htpasswd hash is not kept: the note beside its account."""
    return next(
        (text for prefix, text in UNREADABLE if password_hash.startswith(prefix)),
        "a crypt or plain-text password, which minirepo does not read",
    )


def import_users(entries: list[HtpasswdEntry], report: ImportReport) -> None:
    for entry in entries:
        importing.import_user(
            entry.name,
            entry.password_hash,
            actor=ACTOR,
            report=report,
            note_if_unusable=unreadable_note(entry.password_hash),
        )


def plan(packages: Path, *, htpasswd: Path | None, repo: str, owner: str | None = None) -> Plan:
    """Read the htpasswd file and the folder; create the repository if it is new.

    `owner`: an account here or in the htpasswd file, recorded as every file's uploader
    and so the owner of every project the import creates.
    """
    users = read_htpasswd(htpasswd) if htpasswd is not None else []
    if owner is not None and owner not in {entry.name for entry in users}:
        accounts.get_user(owner)
    importing.ensure_hosted_repo(repo, actor=ACTOR)
    return Plan(repo, find_files(packages, owner), users)


def run(
    folder: DataFolder, planned: Plan, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """The accounts first, then the files, then the accounts' rights: pypiserver let
    every account upload to any project, so each becomes an uploader of the repository
    and a maintainer of every project the import brought."""
    report = ImportReport(ignored=list(planned.found.ignored))
    import_users(planned.users, report)
    importing.import_files(
        planned.repo,
        planned.found.files,
        store=folder.store,
        settings=folder.settings,
        actor=ACTOR,
        report=report,
        progress=progress,
    )
    users = [entry.name for entry in planned.users if entry.name in report.users_created]
    importing.grant_missing(planned.repo, [(user, "uploader") for user in users], actor=ACTOR)
    imported = {dists.parse_filename(name).normalized for name in report.imported}
    importing.add_maintainers(planned.repo, users, imported, actor=ACTOR)
    if users:
        report.notes.append(
            f"{len(users)} account(s) from the htpasswd file may upload to {planned.repo} "
            f"and maintain the {len(imported)} project(s) imported now, as on pypiserver"
        )
    return report
