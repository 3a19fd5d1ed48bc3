"""Repositories and the roles accounts hold in them.

A repository's settings live in the database, never only in a config file: a server
restarted without its config keeps a private repository private (fail closed). Changes to
roles bump the `auth` counter, so cached logins re-read their rights at once everywhere.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import peewee

from minirepo import models, names
from minirepo.db import rows, write_transaction
from minirepo.errors import UserError
from minirepo.permissions import ROLES
from minirepo.services import audit, groups, policy
from minirepo.services.proxy_options import ProxyOptions, check_url, options_of
from minirepo.services.retention_rule import Rule

log = logging.getLogger(__name__)

READ_MODES = ("anonymous", "authenticated")
OVERWRITE_MODES = ("never", "allow")
DEFAULT_ROLES = ("none", "reader", "uploader")
# What a hosted repository does with the PEP 740 attestations of an upload
# (`services.provenance`); `auto`: verify when the `attestations` extra is there.
ATTESTATION_MODES = ("auto", "off", "store", "verify", "require")
# hosted: stores uploads; proxy: caches an upstream index; group: serves its members'
# projects under one URL.
KINDS = ("hosted", "proxy", "group")
# The default repository is made with PyPI's model: any account may create a project.
DEFAULT_REPOSITORY_ROLE = "uploader"


@dataclasses.dataclass(frozen=True)
class RepoInfo:
    """A repository as the request path sees it, cached briefly by the index."""

    id: int
    name: str
    read: str
    generation: int
    kind: str = "hosted"
    overwrite: str = "never"
    default_role: str = "none"
    upload_to: str | None = None  # a group's repository for uploads
    upstream: str = ""  # a proxy's upstream simple index
    proxy_options: str = "{}"  # a proxy's `ProxyOptions`, as stored (JSON)
    block: str = ""  # its `policy` level as stored: "" is its kind's default
    attestations: str = "auto"  # what it does with uploaded PEP 740 attestations

    @property
    def level(self) -> str:
        """What known-vulnerable files it refuses (`services.policy`)."""
        return policy.effective(self.kind, self.block)

    @property
    def is_group(self) -> bool:
        return self.kind == "group"

    @property
    def is_proxy(self) -> bool:
        return self.kind == "proxy"

    @property
    def is_public(self) -> bool:
        return self.read == "anonymous"

    @property
    def allows_overwrite(self) -> bool:
        return self.overwrite == "allow"


def served_through(group: RepoInfo, member: RepoInfo) -> RepoInfo:
    """The member as it answers at the group's URL: as private as the group or the
    member, whichever is more (the caching headers say so), and blocking what the
    stricter of the two blocks."""
    level = policy.stricter(group.level, member.level)
    read = member.read if group.is_public else group.read
    if level == member.level and read == member.read:
        return member
    return dataclasses.replace(member, read=read, block=level)


@dataclasses.dataclass(frozen=True)
class RepoSummary:
    info: RepoInfo
    description: str
    projects: int
    files: int
    bytes: int
    members: tuple[str, ...] = ()
    retention: Rule = dataclasses.field(default_factory=Rule)


def upload_target_name(row: models.Repository) -> str | None:
    """A group's upload target (one query when it has one)."""
    target = row.upload_to
    return str(target.name) if target is not None else None


def info_of(row: models.Repository) -> RepoInfo:
    target = upload_target_name(row)
    return RepoInfo(
        row.id,
        row.name,
        row.read,
        row.generation,
        row.kind,
        row.overwrite,
        row.default_role,
        target,
        row.upstream,
        row.proxy_options,
        row.block,
        row.attestations,
    )


def get(name: str) -> models.Repository:
    row = models.Repository.get_or_none(models.Repository.name == name)
    if row is None:
        raise UserError(f"No repository named {name!r} (see minirepo repo list)")
    return row


def _check_choice(option: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise UserError(f"--{option} must be one of {', '.join(choices)}, not {value!r}")


def _check_settings(read: str | None, overwrite: str | None, default_role: str | None) -> None:
    _check_choice("read", read, READ_MODES)
    _check_choice("overwrite", overwrite, OVERWRITE_MODES)
    _check_choice("default-role", default_role, DEFAULT_ROLES)


def create(
    name: str,
    *,
    kind: str = "hosted",
    read: str = "anonymous",
    overwrite: str = "never",
    default_role: str = "none",
    description: str = "",
    members: Sequence[str] = (),
    upload_to: str | None = None,
    upstream: str = "",
    options: ProxyOptions | None = None,
    actor: str = "cli",
) -> models.Repository:
    """A hosted repository, a proxy of `upstream`, or a group of `members` (uploads go
    to `upload_to`)."""
    problem = names.repository_name_problem(name)
    if problem:
        raise UserError(problem)
    _check_choice("kind", kind, KINDS)
    _check_settings(read, overwrite, default_role)
    if kind == "group" and not members:
        raise UserError("A group needs --members: the repositories it serves, in order")
    if kind != "group" and (members or upload_to):
        raise UserError("--members and --upload-to are for groups (--kind group)")
    if kind == "proxy" and not upstream:
        raise UserError("A proxy needs --upstream: the simple index it caches")
    if kind != "proxy" and (upstream or options is not None):
        raise UserError("--upstream and the cache options are for proxies (--kind proxy)")
    if upstream:
        upstream = check_url(upstream)
    if options is not None:
        options.check()
    try:
        with write_transaction():
            row = models.Repository.create(
                name=name,
                kind=kind,
                read=read,
                overwrite=overwrite,
                default_role=default_role,
                description=" ".join(description.split()),
                upstream=upstream,
                proxy_options=(options or ProxyOptions()).to_json(),
            )
            if kind == "group":
                groups.set_members(row, members, upload_to)
            audit.record(actor, "repo create", repository=name, detail=_describe(row))
    except peewee.IntegrityError as exc:
        raise UserError(f"Repository {name!r} already exists") from exc
    return row


def _describe(row: models.Repository) -> str:
    text = f"read={row.read} overwrite={row.overwrite} default-role={row.default_role}"
    if row.kind == "group":
        text += f" members={','.join(groups.member_names(row.id))}"
        text += f" upload-to={upload_target_name(row) or '-'}"
    if row.kind == "proxy":
        text += f" upstream={row.upstream} options={row.proxy_options}"
    if row.retention:
        text += f" retention={Rule.from_json(row.retention).describe()}"
    text += f" block={policy.effective(row.kind, row.block)} attestations={row.attestations}"
    return text


def update(
    name: str,
    *,
    read: str | None = None,
    overwrite: str | None = None,
    default_role: str | None = None,
    description: str | None = None,
    members: Sequence[str] | None = None,
    upload_to: str | None = None,
    upstream: str | None = None,
    options: dict[str, Any] | None = None,
    retention: dict[str, Any] | None = None,
    no_retention: bool = False,
    block: str | None = None,
    attestations: str | None = None,
    actor: str = "cli",
) -> models.Repository:
    """Change what is given; the pages of the repository change at once (generation).
    `upload_to` "" clears a group's upload target; `options` holds the proxy options
    and `retention` the retention rule's fields to change (None values are left alone);
    `no_retention` removes the rule; `block` "default" goes back to the kind's level."""
    _check_settings(read, overwrite, default_role)
    if block is not None and block != "default":
        policy.check_level(block)
    _check_choice("attestations", attestations, ATTESTATION_MODES)
    with write_transaction():
        row = get(name)
        before = _describe(row)
        if members is not None or upload_to is not None:
            if row.kind != "group":
                raise UserError(f"{name} is not a group: --members and --upload-to are for groups")
            current = groups.member_names(row.id)
            target = upload_target_name(row)
            groups.set_members(
                row,
                current if members is None else members,
                target if upload_to is None else (upload_to or None),
            )
        if upstream is not None or any(v is not None for v in (options or {}).values()):
            if row.kind != "proxy":
                raise UserError(
                    f"{name} is not a proxy: --upstream and the cache options are for proxies"
                )
            if upstream is not None:
                row.upstream = check_url(upstream)
            current_options = options_of(row.proxy_options)
            row.proxy_options = current_options.replaced(**(options or {})).to_json()
        if no_retention or any(value is not None for value in (retention or {}).values()):
            _set_retention(row, None if no_retention else retention)
        for field, value in (
            ("read", read),
            ("overwrite", overwrite),
            ("default_role", default_role),
            ("block", "" if block == "default" else block),
            ("attestations", attestations),
        ):
            if value is not None:
                setattr(row, field, value)
        if description is not None:
            row.description = " ".join(description.split())
        row.generation += 1
        row.save()
        audit.record(actor, "repo set", repository=name, detail=f"{before} -> {_describe(row)}")
        models.bump_counter(models.AUTH_COUNTER)
    models.forget_counters()
    return row


def _set_retention(row: models.Repository, changes: dict[str, Any] | None) -> None:
    """A changed rule runs at the server's next hourly look, then daily."""
    if row.kind != "hosted":
        hint = " (a proxy: --cache-max, minirepo cache prune)" if row.kind == "proxy" else ""
        raise UserError(
            f"{row.name} is a {row.kind}: retention rules are for hosted repositories{hint}"
        )
    rule = Rule() if changes is None else Rule.from_json(row.retention).replaced(**changes)
    row.retention = rule.to_json()
    row.retention_applied_at = None


def summaries() -> list[RepoSummary]:
    """Every repository with its counts, in two grouped queries."""
    file_counts = models.File.select(
        models.File.repository, peewee.fn.COUNT(models.File.id), peewee.fn.SUM(models.File.size)
    ).group_by(models.File.repository)
    files = {
        int(repo_id): (int(count), int(size or 0))
        for repo_id, count, size in rows(file_counts.tuples())
    }
    project_counts = models.Project.select(
        models.Project.repository, peewee.fn.COUNT(models.Project.id)
    ).group_by(models.Project.repository)
    projects = {int(repo_id): int(count) for repo_id, count in rows(project_counts.tuples())}
    repositories = models.Repository.select().order_by(models.Repository.name)
    return [
        RepoSummary(
            info_of(row),
            row.description,
            projects.get(row.id, 0),
            *files.get(row.id, (0, 0)),
            tuple(groups.member_names(row.id)) if row.kind == "group" else (),
            Rule.from_json(row.retention),
        )
        for row in repositories
    ]


def check_deletable(name: str, default_repository: str) -> None:
    """The default repository stays: the URLs without a repository name answer from it."""
    if name == default_repository:
        raise UserError(f"{name} is the default repository (setting default_repository)")


def delete(name: str, *, force: bool = False, actor: str = "cli") -> int:
    """Remove the repository and its rows; returns how many files it held.

    Its files become tombstones (their blobs wait for garbage collection, which counts
    references by key: other repositories may hold the same blob). Tokens scoped to it
    alone are revoked: dropping their last scope row would widen them to everything.
    """
    with write_transaction():
        row = get(name)
        files = list(
            models.File.select(models.File, models.Release, models.Project)
            .join(models.Release)
            .join(models.Project)
            .where(models.File.repository == row.id)
        )
        if files and not force:
            raise UserError(
                f"Repository {name!r} holds {len(files)} file(s): pass --force to delete it anyway"
            )
        for stored in files:
            models.bury(
                stored, name, stored.release.project.normalized, "repository deleted", actor
            )
        _revoke_tokens_scoped_only_to(row)
        row.delete_instance(recursive=False)
        audit.record(actor, "repo delete", repository=name, detail=f"{len(files)} file(s)")
        models.bump_counter(models.AUTH_COUNTER)
    models.forget_counters()
    return len(files)


def _revoke_tokens_scoped_only_to(repo: models.Repository) -> None:
    scoped = models.TokenRepository.select(models.TokenRepository.token).where(
        models.TokenRepository.repository == repo.id
    )
    for (token_id,) in rows(scoped.tuples()):
        others = models.TokenRepository.select().where(
            (models.TokenRepository.token == token_id)
            & (models.TokenRepository.repository != repo.id)
        )
        if not others.exists():
            models.Token.update(revoked=True).where(models.Token.id == token_id).execute()


def ensure_default(name: str, read: str | None) -> None:
    """Create the default repository if missing; apply `read` only when a layer set it.

    `read` is None when no config layer set it: the stored value stands, so a restart
    without the config file never turns a private index public.
    """
    with write_transaction():
        row = models.Repository.get_or_none(models.Repository.name == name)
        if row is None:
            models.Repository.create(
                name=name, read=read or "anonymous", default_role=DEFAULT_REPOSITORY_ROLE
            )
        elif read is not None and row.read != read:
            log.warning("repository %r: read access changed from %s to %s", name, row.read, read)
            audit.record("config", "repo set", repository=name, detail=f"read={read}")
            row.read = read
            row.generation += 1
            row.save()


PROXY_NAME = "pypi-proxy"
GROUP_NAME = "all"


def create_pypi_defaults(hosted: str, upstream: str) -> None:
    """A first start's proxy of `upstream` and the group of `hosted` and it, which pip
    and uv are given: internal names from `hosted`, the rest from the cache, a public
    name never in place of an internal one. The group reads like `hosted`: who may read
    it there may read the group."""
    main = get(hosted)
    create(PROXY_NAME, kind="proxy", upstream=upstream, options=ProxyOptions(), actor="serve")
    create(
        GROUP_NAME,
        kind="group",
        read=main.read,
        default_role="reader" if main.default_role != "none" else "none",
        members=(hosted, PROXY_NAME),
        upload_to=hosted,
        actor="serve",
    )


def first_start_group() -> str | None:
    """The group a first start made, if it is there (the banner leads with it)."""
    row = models.Repository.get_or_none(models.Repository.name == GROUP_NAME)
    return GROUP_NAME if row is not None and row.kind == "group" else None


def grant(user_name: str, repo_name: str, role: str, *, actor: str = "cli") -> None:
    if role not in ROLES or role == "none":
        raise UserError(f"Unknown role {role!r}: use reader, uploader or owner")
    with write_transaction():
        user = _user(user_name)
        repo = get(repo_name)
        # One statement: an update-or-insert would let two processes both insert.
        models.Grant.insert(user=user.id, repository=repo.id, role=role).on_conflict(
            conflict_target=[models.Grant.user, models.Grant.repository],
            update={models.Grant.role: role},
        ).execute()
        audit.record(actor, "grant", repository=repo_name, detail=f"{user_name}={role}")
        models.bump_counter(models.AUTH_COUNTER)
    models.forget_counters()


def revoke(user_name: str, repo_name: str, *, actor: str = "cli") -> None:
    with write_transaction():
        user = _user(user_name)
        repo = get(repo_name)
        deleted = (
            models.Grant.delete()
            .where((models.Grant.user == user.id) & (models.Grant.repository == repo.id))
            .execute()
        )
        if not deleted:
            raise UserError(f"{user_name} has no grant in {repo_name}")
        audit.record(actor, "revoke", repository=repo_name, detail=user_name)
        models.bump_counter(models.AUTH_COUNTER)
    models.forget_counters()


def grants(repo_name: str | None = None) -> list[tuple[str, str, str]]:
    """(repository, user, role) rows, sorted."""
    query = (
        models.Grant.select(models.Repository.name, models.User.name, models.Grant.role)
        .join(models.Repository)
        .switch(models.Grant)
        .join(models.User)
    )
    if repo_name is not None:
        query = query.where(models.Repository.name == get(repo_name).name)
    return sorted((str(r), str(u), str(role)) for r, u, role in rows(query.tuples()))


def _user(name: str) -> models.User:
    user = models.User.get_or_none(models.User.name == name)
    if user is None:
        raise UserError(f"No user named {name!r}")
    return user
