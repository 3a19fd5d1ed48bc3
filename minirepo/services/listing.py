"""What the home and repository pages list: projects with their latest release, a page at
a time, and the latest uploads. Callers pass only repositories the viewer may read.

A project's latest version is the highest by PEP 440 among its releases that have files,
a yanked-only release counting only when there is nothing else: what `pip install NAME`
would pick, roughly, without a query per project.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Sequence

import peewee
from packaging.version import InvalidVersion, Version

from minirepo import models
from minirepo.db import rows

PER_PAGE = 50


@dataclasses.dataclass(frozen=True)
class ProjectRow:
    name: str
    normalized: str
    version: str
    summary: str


@dataclasses.dataclass(frozen=True)
class ProjectPage:
    projects: list[ProjectRow]
    total: int
    page: int
    pages: int


@dataclasses.dataclass(frozen=True)
class RecentUpload:
    repository: str
    name: str
    normalized: str
    version: str
    filename: str
    uploaded: datetime.datetime


def projects(
    repo_ids: Sequence[int],
    page: int,
    per_page: int = PER_PAGE,
    only: frozenset[str] = frozenset(),
) -> ProjectPage:
    """Page `page` (from 1; clamped) of the projects of `repo_ids` by normalized name. For
    a group's members, a name held by several is listed once, from the first of them.
    `only`: a project-scoped caller's names (`permissions.listing_filter`; empty: all)."""
    if not repo_ids:
        return ProjectPage([], 0, 1, 1)
    in_repos = models.Project.repository.in_(list(repo_ids))
    if only:
        in_repos &= models.Project.normalized.in_(sorted(only))
    total = int(
        models.Project.select(peewee.fn.COUNT(peewee.fn.DISTINCT(models.Project.normalized)))
        .where(in_repos)
        .scalar()
        or 0
    )
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    names_query = (
        models.Project.select(models.Project.normalized)
        .where(in_repos)
        .group_by(models.Project.normalized)
        .order_by(models.Project.normalized)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    wanted = [normalized for (normalized,) in rows(names_query.tuples())]
    chosen = _first_holder(repo_ids, wanted)
    latest = latest_releases([project_id for project_id, _ in chosen.values()])
    listed = []
    for normalized in wanted:
        project_id, name = chosen[normalized]
        version, summary = latest.get(project_id, ("", ""))
        listed.append(ProjectRow(name, normalized, version, summary))
    return ProjectPage(listed, total, page, pages)


def _first_holder(repo_ids: Sequence[int], wanted: list[str]) -> dict[str, tuple[int, str]]:
    """normalized -> (project id, display name) in the first repository of `repo_ids`."""
    order = {repo_id: position for position, repo_id in enumerate(repo_ids)}
    query = models.Project.select(
        models.Project.id, models.Project.name, models.Project.normalized, models.Project.repository
    ).where(models.Project.repository.in_(list(repo_ids)) & models.Project.normalized.in_(wanted))
    chosen: dict[str, tuple[int, int, str]] = {}
    for project_id, name, normalized, repo_id in rows(query.tuples()):
        rank = order[int(repo_id)]
        if normalized not in chosen or rank < chosen[normalized][0]:
            chosen[normalized] = (rank, int(project_id), str(name))
    return {normalized: (project_id, name) for normalized, (_, project_id, name) in chosen.items()}


def latest_releases(project_ids: list[int]) -> dict[int, tuple[str, str]]:
    """project id -> (version, summary) of its latest release with files, one query."""
    if not project_ids:
        return {}
    query = (
        models.Release.select(
            models.Release.project,
            models.Release.version,
            models.Release.summary,
            # MIN over 0/1: PostgreSQL has no MIN of a boolean.
            peewee.fn.MIN(peewee.Case(None, [(models.File.yanked, 1)], 0)),
        )
        .join(models.File)
        .where(models.Release.project.in_(project_ids))
        .group_by(models.Release.id)
        .tuples()
    )
    best: dict[int, tuple[tuple[bool, Version], str, str]] = {}
    for project_id, version, summary, all_yanked in rows(query):
        try:
            parsed = Version(version)
        except InvalidVersion:  # stored versions were checked on upload: never, in practice
            continue
        key = (not all_yanked, parsed)
        current = best.get(int(project_id))
        if current is None or key > current[0]:
            best[int(project_id)] = (key, str(version), str(summary))
    return {project_id: (version, summary) for project_id, (_, version, summary) in best.items()}


def description(repo_id: int) -> str:
    row = models.Repository.get_or_none(models.Repository.id == repo_id)
    return str(row.description) if row is not None else ""


def recent_uploads(repo_ids: Sequence[int], limit: int = 20) -> list[RecentUpload]:
    """The newest files of `repo_ids`, newest first."""
    if not repo_ids:
        return []
    query = (
        models.File.select(
            models.Repository.name,
            models.Project.name,
            models.Project.normalized,
            models.Release.version,
            models.File.filename,
            models.File.upload_time,
        )
        .join(models.Release)
        .join(models.Project)
        .join(models.Repository)
        .where(models.File.repository.in_(list(repo_ids)))
        .order_by(models.File.upload_time.desc(), models.File.id.desc())
        .limit(limit)
        .tuples()
    )
    return [RecentUpload(*row) for row in rows(query)]
