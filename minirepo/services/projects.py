"""Projects after their first upload: owner, maintainers, yank and delete.

Every change bumps the repository's generation in its own transaction, so the simple
pages show it at once; a deleted file becomes a tombstone that keeps its name burned and
its blob referenced until garbage collection.
"""

from __future__ import annotations

import dataclasses

import peewee
from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion

from minirepo import models
from minirepo.db import rows, write_transaction
from minirepo.errors import NotFound, UserError
from minirepo.permissions import ProjectInfo
from minirepo.services import audit


@dataclasses.dataclass(frozen=True)
class ProjectDetails:
    repository: str
    name: str
    normalized: str
    owner: str
    maintainers: list[str]
    versions: list[tuple[str, int, bool]]  # (version, files, every file yanked)


def _project(repo_id: int, name: str) -> models.Project:
    row = models.Project.get_or_none(
        (models.Project.repository == repo_id)
        & (models.Project.normalized == canonicalize_name(name))
    )
    if row is None:
        raise NotFound(f"No project named {canonicalize_name(name)!r} in this repository")
    return row


def _repo(name: str) -> models.Repository:
    row = models.Repository.get_or_none(models.Repository.name == name)
    if row is None:
        raise NotFound(f"No repository named {name!r}")
    return row


def info(repo_id: int, normalized: str) -> ProjectInfo | None:
    """Owner and maintainers of an existing project, in one query (uploads ask), else None."""
    query = (
        models.Project.select(
            models.Project.id, models.Project.owner, models.User.name, models.ProjectMaintainer.user
        )
        .join(models.User, peewee.JOIN.LEFT_OUTER, on=(models.Project.owner == models.User.id))
        .switch(models.Project)
        .join(
            models.ProjectMaintainer,
            peewee.JOIN.LEFT_OUTER,
            on=(models.ProjectMaintainer.project == models.Project.id),
        )
        .where((models.Project.repository == repo_id) & (models.Project.normalized == normalized))
        .tuples()
    )
    found = rows(query)
    if not found:
        return None
    project_id, owner_id, owner_name, _ = found[0]
    maintainers = frozenset(int(row[3]) for row in found if row[3] is not None)
    return ProjectInfo(normalized, owner_id, owner_name or "", maintainers, project_id)


def maintains_any(user_id: int, repo_id: int) -> bool:
    """Whether the account owns or maintains a project in the repository: one query."""
    maintained = models.ProjectMaintainer.select(models.ProjectMaintainer.project).where(
        models.ProjectMaintainer.user == user_id
    )
    return bool(
        models.Project.select()
        .where(
            (models.Project.repository == repo_id)
            & ((models.Project.owner == user_id) | models.Project.id.in_(maintained))
        )
        .exists()
    )


def _owner_name(project: models.Project) -> str:
    owner = project.owner
    return str(owner.name) if owner is not None else ""


def _user(name: str) -> models.User:
    user = models.User.get_or_none(models.User.name == name)
    if user is None:
        raise UserError(f"No user named {name!r}")
    return user


def _bump(repo: models.Repository) -> None:
    models.Repository.update(generation=models.Repository.generation + 1).where(
        models.Repository.id == repo.id
    ).execute()


def add_maintainer(repo_name: str, project: str, user_name: str, *, actor: str = "cli") -> None:
    """Let USER upload new files of PROJECT (not yank, delete or manage it)."""
    try:
        with write_transaction():
            repo = _repo(repo_name)
            row = _project(repo.id, project)
            user = _user(user_name)
            exists = models.ProjectMaintainer.select().where(
                (models.ProjectMaintainer.project == row.id)
                & (models.ProjectMaintainer.user == user.id)
            )
            if exists.exists():
                raise UserError(f"{user_name} already maintains {row.normalized}")
            models.ProjectMaintainer.create(project=row.id, user=user.id)
            audit.record(
                actor,
                "maintainer add",
                repository=repo_name,
                project=row.normalized,
                detail=user_name,
            )
    except peewee.IntegrityError as exc:  # another process added them first
        raise UserError(f"{user_name} already maintains {canonicalize_name(project)}") from exc


def remove_maintainer(repo_name: str, project: str, user_name: str, *, actor: str = "cli") -> None:
    """Stop USER from uploading to PROJECT."""
    with write_transaction():
        repo = _repo(repo_name)
        row = _project(repo.id, project)
        user = _user(user_name)
        deleted = (
            models.ProjectMaintainer.delete()
            .where(
                (models.ProjectMaintainer.project == row.id)
                & (models.ProjectMaintainer.user == user.id)
            )
            .execute()
        )
        if not deleted:
            raise UserError(f"{user_name} does not maintain {row.normalized}")
        audit.record(
            actor,
            "maintainer remove",
            repository=repo_name,
            project=row.normalized,
            detail=user_name,
        )


def set_owner(repo_name: str, project: str, user_name: str, *, actor: str = "cli") -> None:
    """Hand PROJECT to USER (offboarding: a disabled user keeps their projects until then)."""
    with write_transaction():
        repo = _repo(repo_name)
        row = _project(repo.id, project)
        user = _user(user_name)
        before = _owner_name(row) or "nobody"
        row.owner = user
        row.save()
        audit.record(
            actor,
            "owner set",
            repository=repo_name,
            project=row.normalized,
            detail=f"{before} -> {user_name}",
        )


def show(repo_name: str, project: str) -> ProjectDetails:
    repo = _repo(repo_name)
    row = _project(repo.id, project)
    query = (
        models.User.select(models.User.name)
        .join(models.ProjectMaintainer, on=(models.ProjectMaintainer.user == models.User.id))
        .where(models.ProjectMaintainer.project == row.id)
    )
    maintainers = sorted(str(name) for (name,) in rows(query.tuples()))
    versions = []
    for release in models.Release.select().where(models.Release.project == row.id):
        files = list(
            models.File.select(models.File.yanked).where(models.File.release == release.id)
        )
        versions.append((release.version, len(files), bool(files) and all(f.yanked for f in files)))
    return ProjectDetails(
        repo_name,
        row.name,
        row.normalized,
        _owner_name(row),
        maintainers,
        versions,
    )


def _release(project: models.Project, version: str) -> models.Release:
    try:
        canonical = canonicalize_version(version)
    except InvalidVersion as exc:
        raise UserError(f"Invalid version {version!r}") from exc
    release = models.Release.get_or_none(
        (models.Release.project == project.id) & (models.Release.canonical_version == canonical)
    )
    if release is None:
        raise NotFound(f"No version {version} of {project.normalized}")
    return release


def set_yanked(
    repo_name: str,
    project: str,
    version: str,
    *,
    yanked: bool,
    reason: str = "",
    actor: str = "cli",
    remote_addr: str = "",
) -> int:
    """Yank (PEP 592) or unyank every file of a release; returns the repository's new
    generation. pip then skips it unless a requirement pins it exactly."""
    with write_transaction():
        repo = _repo(repo_name)
        row = _project(repo.id, project)
        release = _release(row, version)
        models.File.update(
            yanked=yanked, yanked_reason=" ".join(reason.split()) if yanked else ""
        ).where(models.File.release == release.id).execute()
        _bump(repo)
        audit.record(
            actor,
            "yank" if yanked else "unyank",
            repository=repo_name,
            project=row.normalized,
            detail=f"{release.version} {reason}".strip(),
            remote_addr=remote_addr,
        )
        return int(_repo(repo_name).generation)


def delete(
    repo_name: str,
    project: str,
    version: str | None = None,
    filename: str | None = None,
    *,
    actor: str = "cli",
    remote_addr: str = "",
) -> list[str]:
    """Delete a project, a release or one file; returns the filenames deleted.

    Names stay burned and the project row stays (with its owner) even when its last file
    goes, so nobody else can take the name over.
    """
    with write_transaction():
        repo = _repo(repo_name)
        row = _project(repo.id, project)
        query = models.File.select().join(models.Release).where(models.Release.project == row.id)
        if version is not None:
            query = query.where(models.File.release == _release(row, version).id)
        if filename is not None:
            query = query.where(models.File.filename == filename)
        files = list(query)
        if not files:
            raise NotFound(f"Nothing to delete: no such file in {row.normalized}")
        for stored in files:
            models.bury(stored, repo_name, row.normalized, "deleted", actor)
            audit.record(
                actor,
                "delete",
                repository=repo_name,
                project=row.normalized,
                filename=stored.filename,
                detail=stored.sha256,
                remote_addr=remote_addr,
            )
        empty = models.Release.select(models.Release.id).where(
            (models.Release.project == row.id)
            & ~models.Release.id.in_(models.File.select(models.File.release))
        )
        models.Release.delete().where(models.Release.id.in_(empty)).execute()
        _bump(repo)
    return sorted(f.filename for f in files)
