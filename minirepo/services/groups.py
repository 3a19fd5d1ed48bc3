"""Group repositories: one index URL for several repositories, each name from one of them.

A lab gives pip and uv one URL. A group never merges a name across its members: pip and
uv would take the highest version from any of them, which is how a public upload named
like an internal package reaches a machine (dependency confusion). Each name is answered
by one member, the first that had it, and that choice is recorded (its origin) so that a
later arrival elsewhere never takes its place; only `minirepo origin set` moves it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence

import peewee

from minirepo import models
from minirepo.db import rows, write_transaction
from minirepo.errors import UserError
from minirepo.services import audit


@dataclasses.dataclass(frozen=True)
class Origin:
    project: str
    member: str
    since: datetime.datetime
    actor: str  # empty: recorded when the member first answered the name


def member_names(group_id: int) -> list[str]:
    """The members' names in the order they are asked."""
    return [name for _, name in members(group_id)]


def members(group_id: int) -> list[tuple[int, str]]:
    """(id, name) of the members, in the order they are asked."""
    query = (
        models.GroupMember.select(models.Repository.id, models.Repository.name)
        .join(models.Repository, on=models.GroupMember.member == models.Repository.id)
        .where(models.GroupMember.group == group_id)
        .order_by(models.GroupMember.position)
        .tuples()
    )
    return [(int(member_id), str(name)) for member_id, name in rows(query)]


def set_members(group: models.Repository, members: Sequence[str], upload_to: str | None) -> None:
    """Replace the members (inside the caller's write transaction). A member is a hosted
    or proxy repository, never a group; uploads go to a hosted member, or nowhere."""
    if len(set(members)) != len(members):
        raise UserError("--members names a repository twice")
    rows_by_name = {
        row.name: row
        for row in models.Repository.select().where(models.Repository.name.in_(list(members)))
    }
    for name in members:
        row = rows_by_name.get(name)
        if row is None:
            raise UserError(f"No repository named {name!r} (see minirepo repo list)")
        if row.id == group.id or row.kind == "group":
            raise UserError(
                f"{name} is a group: a group's members are hosted and proxy repositories"
            )
    hosted = [name for name in members if rows_by_name[name].kind == "hosted"]
    if upload_to is not None and upload_to not in hosted:
        raise UserError(
            f"--upload-to must be one of the hosted members ({', '.join(hosted) or 'none'})"
        )
    models.GroupMember.delete().where(models.GroupMember.group == group.id).execute()
    # A name recorded for a member that leaves is decided afresh among those that stay.
    kept = [rows_by_name[name].id for name in members]
    models.ProjectOrigin.delete().where(
        (models.ProjectOrigin.group == group.id) & models.ProjectOrigin.member.not_in(kept)
    ).execute()
    for position, name in enumerate(members):
        models.GroupMember.create(group=group.id, member=rows_by_name[name].id, position=position)
    group.upload_to = rows_by_name[upload_to].id if upload_to is not None else None
    group.save()


def winner(
    group_id: int, normalized: str, upstream_has: Callable[[str], bool] | None = None
) -> str | None:
    """The member that answers `normalized`: its recorded origin, else the first hosted
    member, wherever it is listed, that has the project (a `Project` row, kept when its
    files are deleted), else the first proxy member whose upstream has it
    (`upstream_has(member name)`, which raises to stop the walk on an upstream error);
    recorded now. None when no member has it. Nobody's rights are asked here: the caller
    checks them on the member that wins, and a refusal there ends the walk."""
    recorded = (
        models.ProjectOrigin.select(models.Repository.name)
        .join(models.Repository, on=models.ProjectOrigin.member == models.Repository.id)
        .where(
            (models.ProjectOrigin.group == group_id)
            & (models.ProjectOrigin.normalized == normalized)
        )
        .tuples()
        .first()
    )
    if recorded is not None:
        return str(recorded[0])
    found = (
        models.GroupMember.select(models.Repository.id, models.Repository.name)
        .join(models.Repository, on=models.GroupMember.member == models.Repository.id)
        .join(models.Project, on=models.Project.repository == models.Repository.id)
        .where(
            (models.GroupMember.group == group_id)
            & (models.Project.normalized == normalized)
            & (models.Repository.kind == "hosted")
        )
        .order_by(models.GroupMember.position)
        .tuples()
        .first()
    )
    if found is None and upstream_has is not None:
        found = next(
            (
                (member_id, name)
                for member_id, name, kind in _members_with_kinds(group_id)
                if kind == "proxy" and upstream_has(name)
            ),
            None,
        )
    if found is None:
        return None
    member_id, name = found
    try:
        with write_transaction():
            models.ProjectOrigin.create(group=group_id, normalized=normalized, member=member_id)
    except peewee.IntegrityError:
        return winner(group_id, normalized)  # another request recorded it first
    return str(name)


def _members_with_kinds(group_id: int) -> list[tuple[int, str, str]]:
    query = (
        models.GroupMember.select(
            models.Repository.id, models.Repository.name, models.Repository.kind
        )
        .join(models.Repository, on=models.GroupMember.member == models.Repository.id)
        .where(models.GroupMember.group == group_id)
        .order_by(models.GroupMember.position)
        .tuples()
    )
    return [(int(i), str(n), str(k)) for i, n, k in rows(query)]


def project_names(
    repositories: frozenset[int], only: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """(name, normalized) of every project the `repositories` hold, each name once,
    sorted: hosted projects, and the names a proxy has cached (not those gone upstream)."""
    members = sorted(repositories)
    hosted = models.Project.select(models.Project.name, models.Project.normalized).where(
        models.Project.repository.in_(members)
    )
    cached = models.CachedPage.select(
        models.CachedPage.normalized, models.CachedPage.normalized
    ).where(
        models.CachedPage.repository.in_(members)
        & (models.CachedPage.gone == False)  # noqa: E712 - SQL, not Python
        & (models.CachedPage.page_json != "")
    )
    if only:
        hosted = hosted.where(models.Project.normalized.in_(sorted(only)))
        cached = cached.where(models.CachedPage.normalized.in_(sorted(only)))
    seen: dict[str, str] = {}
    for name, normalized in rows(hosted.tuples()) + rows(cached.tuples()):
        seen.setdefault(str(normalized), str(name))
    return [(seen[normalized], normalized) for normalized in sorted(seen)]


def origin_lock(hosted_id: int, hosted_name: str, normalized: str) -> str | None:
    """Why an upload of `normalized` to a hosted repository is refused, or None: a group
    it belongs to serves that name from a proxy. Storing it would do nothing for that
    group's users, or (after an origin change) swap a public package for an internal
    one under their feet; an admin decides that with `minirepo origin set`."""
    member = models.Repository.alias()
    group = models.Repository.alias()
    locked = (
        models.ProjectOrigin.select(group.name, member.name, models.ProjectOrigin.since)
        .join(member, on=models.ProjectOrigin.member == member.id)
        .switch(models.ProjectOrigin)
        .join(group, on=models.ProjectOrigin.group == group.id)
        .join(models.GroupMember, on=models.GroupMember.group == group.id)
        .where(
            (models.GroupMember.member == hosted_id)
            & (models.ProjectOrigin.normalized == normalized)
            & (member.kind == "proxy")
        )
        .order_by(group.name)
        .tuples()
        .first()
    )
    if locked is None:
        return None
    group_name, proxy, since = locked
    return (
        f"{normalized} is served from upstream {proxy!r} in group {group_name!r} since "
        f"{since:%Y-%m-%d}; an admin can run: minirepo origin set {group_name} {normalized} "
        f"--member {hosted_name}"
    )


def is_tracked(group_id: int, normalized: str) -> bool:
    return bool(
        models.TrackedProject.select()
        .where(
            (models.TrackedProject.group == group_id)
            & (models.TrackedProject.normalized == normalized)
        )
        .exists()
    )


def tracked(group: models.Repository) -> list[str]:
    query = (
        models.TrackedProject.select(models.TrackedProject.normalized)
        .where(models.TrackedProject.group == group.id)
        .order_by(models.TrackedProject.normalized)
    )
    return [str(name) for (name,) in rows(query.tuples())]


def track(group: models.Repository, project: str, *, remove: bool = False, actor: str) -> None:
    """Merge `project` across the group's members from now on, or stop (audited). For a
    fork of a public package kept beside it: the page lists both, and says (PEP 708
    `tracks`) that it follows the upstream project, so installers may merge them."""
    if group.kind != "group":
        raise UserError(f"{group.name} is not a group")
    with write_transaction():
        query = models.TrackedProject.delete().where(
            (models.TrackedProject.group == group.id)
            & (models.TrackedProject.normalized == project)
        )
        removed = query.execute()
        if remove and not removed:
            raise UserError(f"{group.name} does not track {project}")
        if not remove:  # ignored when another process tracked it meanwhile
            models.TrackedProject.insert(
                group=group.id, normalized=project
            ).on_conflict_ignore().execute()
        group.generation += 1
        group.save()
        action = "repo untrack" if remove else "repo track"
        audit.record(actor, action, repository=group.name, project=project)


def origins(group: models.Repository, project: str | None = None) -> list[Origin]:
    query = (
        models.ProjectOrigin.select(
            models.ProjectOrigin.normalized,
            models.Repository.name,
            models.ProjectOrigin.since,
            models.ProjectOrigin.actor,
        )
        .join(models.Repository, on=models.ProjectOrigin.member == models.Repository.id)
        .where(models.ProjectOrigin.group == group.id)
        .order_by(models.ProjectOrigin.normalized)
    )
    if project is not None:
        query = query.where(models.ProjectOrigin.normalized == project)
    return [
        Origin(str(p), str(m), since, str(actor)) for p, m, since, actor in rows(query.tuples())
    ]


def set_origin(group: models.Repository, project: str, member: str, *, actor: str) -> None:
    """Serve `project` from `member` in the group from now on (audited)."""
    if group.kind != "group":
        raise UserError(f"{group.name} is not a group")
    if member not in member_names(group.id):
        raise UserError(f"{member} is not a member of {group.name}")
    row = models.Repository.get(models.Repository.name == member)
    with write_transaction():
        models.ProjectOrigin.delete().where(
            (models.ProjectOrigin.group == group.id) & (models.ProjectOrigin.normalized == project)
        ).execute()
        models.ProjectOrigin.create(group=group.id, normalized=project, member=row.id, actor=actor)
        group.generation += 1
        group.save()
        audit.record(actor, "origin set", repository=group.name, project=project, detail=member)
