"""`minirepo prune`: a retention rule for a hosted repository's releases.

CI that publishes a dev build per commit fills a Pi's SD card within months. A rule
keeps the newest `keep` releases of each project and anything younger than `older_than`;
the rest become tombstones, exactly as a delete by hand would (names stay burned, each
file audited, blobs freed by `minirepo gc` after its grace). `dev_only` applies the rule
to `.devN` releases alone, so final releases are never touched.

A repository's own rule (`minirepo repo set REPO --keep N`) is applied by the server once a
day (`apply_due`, called by `services.housekeeping`), under the actor `retention`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections import defaultdict

from packaging.version import InvalidVersion, Version

from minirepo import models
from minirepo.db import rows, write_transaction
from minirepo.errors import UserError
from minirepo.services import audit, repos
from minirepo.services.pages import version_key
from minirepo.services.retention_rule import Rule

log = logging.getLogger(__name__)

# How often a repository's own rule runs.
PERIOD = datetime.timedelta(days=1)
ACTOR = "retention"


@dataclasses.dataclass(frozen=True)
class Pruned:
    """A release the rule removes, with all its files."""

    id: int
    project: str
    version: str
    newest_upload: datetime.datetime
    files: tuple[tuple[int, str], ...]  # (file id, filename)


def prune(repo_name: str, rule: Rule, *, dry_run: bool = False, actor: str = "cli") -> list[Pruned]:
    """The releases the rule removes; with `dry_run`, nothing changes."""
    rule.check()
    repo = repos.info_of(repos.get(repo_name))
    if repo.is_proxy or repo.is_group:
        raise UserError(
            f"{repo_name} is a {repo.kind}: only hosted repositories are pruned "
            "(a proxy's files: minirepo cache prune)"
        )
    doomed = _select(_releases(repo.id), rule)
    if doomed and not dry_run:
        _bury(repo.id, repo_name, doomed, rule, actor)
    return doomed


def apply_due() -> dict[str, list[Pruned]]:
    """Apply each hosted repository's rule not applied in the last day; what it pruned.

    A repository is claimed (its `retention_applied_at` moved to now) before it is pruned,
    in a transaction of its own: of several processes serving one database, one prunes.
    A rule that fails is logged and tried again the next day, not at every call.
    """
    now = models.utcnow()
    due = models.Repository.retention_applied_at.is_null() | (
        models.Repository.retention_applied_at < now - PERIOD
    )
    candidates = rows(
        models.Repository.select(models.Repository.id, models.Repository.name)
        .where((models.Repository.kind == "hosted") & (models.Repository.retention != "") & due)
        .order_by(models.Repository.name)
        .tuples()
    )
    done: dict[str, list[Pruned]] = {}
    for repo_id, name in candidates:
        with write_transaction():
            claimed = (
                models.Repository.update(retention_applied_at=now)
                .where((models.Repository.id == repo_id) & due)
                .execute()
            )
            rule = Rule.from_json(models.Repository.get_by_id(repo_id).retention)
        if not claimed or not rule.is_set:
            continue
        try:
            done[name] = prune(name, rule, actor=ACTOR)
        except (UserError, ValueError) as exc:
            log.warning("retention of %s not applied: %s", name, exc)
            continue
        files = sum(len(release.files) for release in done[name])
        if files:
            log.info(
                "retention (%s) pruned %d file(s) of %d release(s) in %s",
                rule.describe(),
                files,
                len(done[name]),
                name,
            )
    return done


def _releases(repo_id: int) -> dict[str, list[Pruned]]:
    """Each project's releases with files, newest version first."""
    query = (
        models.File.select(
            models.Project.normalized,
            models.Release.id,
            models.Release.version,
            models.File.id,
            models.File.filename,
            models.File.upload_time,
        )
        .join(models.Release)
        .join(models.Project)
        .where(models.File.repository == repo_id)
        .tuples()
    )
    grouped: dict[tuple[str, int, str], list[tuple[int, str, datetime.datetime]]] = defaultdict(
        list
    )
    for project, release_id, version, file_id, filename, uploaded in rows(query):
        grouped[(str(project), int(release_id), str(version))].append(
            (int(file_id), str(filename), uploaded)
        )
    projects: dict[str, list[Pruned]] = defaultdict(list)
    for (project, release_id, version), files in grouped.items():
        newest = max(uploaded for _, _, uploaded in files)
        ids = tuple(sorted((file_id, name) for file_id, name, _ in files))
        projects[project].append(Pruned(release_id, project, version, newest, ids))
    for releases in projects.values():
        releases.sort(key=lambda release: version_key(release.version), reverse=True)
    return projects


def _is_dev(version: str) -> bool:
    try:
        return Version(version).is_devrelease
    except InvalidVersion:
        return False


def _select(projects: dict[str, list[Pruned]], rule: Rule) -> list[Pruned]:
    cutoff = (
        models.utcnow() - datetime.timedelta(seconds=rule.older_than)
        if rule.older_than is not None
        else None
    )
    doomed = []
    for project in sorted(projects):
        candidates = [r for r in projects[project] if not rule.dev_only or _is_dev(r.version)]
        for release in candidates[rule.keep or 0 :]:
            if cutoff is None or release.newest_upload < cutoff:
                doomed.append(release)
    return doomed


def _bury(repo_id: int, repo_name: str, doomed: list[Pruned], rule: Rule, actor: str) -> None:
    """One transaction: tombstones and audit lines for every file, empty releases gone,
    the generation bumped (the pages drop them at once)."""
    versions = {file_id: release.version for release in doomed for file_id, _ in release.files}
    with write_transaction():
        files = (
            models.File.select(models.File, models.Release, models.Project)
            .join(models.Release)
            .join(models.Project)
            .where(models.File.id.in_(sorted(versions)))
        )
        for stored in files:
            project = stored.release.project.normalized
            models.bury(stored, repo_name, project, "pruned", actor)
            audit.record(
                actor,
                "prune",
                repository=repo_name,
                project=project,
                filename=stored.filename,
                detail=f"{versions[stored.id]}: {rule.describe()}",
            )
        empty = models.Release.select(models.Release.id).where(
            models.Release.id.in_([release.id for release in doomed])
            & ~models.Release.id.in_(models.File.select(models.File.release))
        )
        models.Release.delete().where(models.Release.id.in_(empty)).execute()
        models.Repository.update(generation=models.Repository.generation + 1).where(
            models.Repository.id == repo_id
        ).execute()
