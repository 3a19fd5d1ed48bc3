"""Who may do what: one pure function, so every rule has a unit test without a server.

A caller's rights in a repository are its role there: its grant, else the repository's
default role (admins with `admin_package_access` are owners everywhere). A token narrows
its user's rights, never widens them: the token's permission caps the action, its scope
rows cap the repositories and projects, and the user's roles are read again whenever a
grant, a password or an account changes (the `auth` counter).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Protocol


class Action(enum.IntEnum):
    """Ordered by the token permission each needs (see `TOKEN_LIMITS`)."""

    READ = 1  # simple pages, files, metadata
    UPLOAD = 2  # a file: a new project, or a project one owns or maintains
    MANAGE = 3  # yank, delete, maintainers and owner of a project
    GRANT = 4  # roles in a repository
    ADMIN = 5  # users and repositories


class Role(enum.IntEnum):
    NONE = 0
    READER = 1
    UPLOADER = 2
    OWNER = 3


ROLES = {role.name.lower(): role for role in Role}
PERMISSIONS = {"read": Action.READ, "upload": Action.UPLOAD, "admin": Action.ADMIN}
# The highest action a token of each permission allows: admin tokens carry all of their
# user's rights, upload tokens are for publishing only (CI), read tokens for installing.
TOKEN_LIMITS = {Action.READ: Action.READ, Action.UPLOAD: Action.UPLOAD, Action.ADMIN: Action.ADMIN}


@dataclasses.dataclass(frozen=True)
class Principal:
    """An authenticated caller: an account, narrowed by the token it used, if any."""

    user_id: int
    name: str
    is_admin: bool
    # Admin with `admin_package_access`: reads and publishes everywhere without a grant.
    package_admin: bool = False
    grants: Mapping[int, Role] = dataclasses.field(default_factory=dict)
    token_permission: Action | None = None  # None: a password, the account's full rights
    token_repositories: Mapping[int, str] = dataclasses.field(default_factory=dict)
    token_projects: frozenset[str] = frozenset()
    token_prefix: str = ""


class Repo(Protocol):
    """What a rule needs of a repository (`services.repos.RepoInfo` is the one in use)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def read(self) -> str: ...
    @property
    def default_role(self) -> str: ...


def is_public(repo: Repo) -> bool:
    return repo.read == "anonymous"


@dataclasses.dataclass(frozen=True)
class ProjectInfo:
    """An existing project's people, for uploads and management."""

    normalized: str
    owner_id: int | None
    owner_name: str
    maintainer_ids: frozenset[int] = frozenset()
    id: int = 0


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why not; `hidden` when the caller may not even know the repository exists, so the
    answer must be the one a missing repository gets (401 anonymous, else 404)."""

    reason: str
    hidden: bool = False


def role_in(principal: Principal, repo: Repo) -> Role:
    """The caller's role: its grant, else the default role; at least reader where anyone
    may read; owner everywhere for an admin with package access."""
    if principal.package_admin:
        return Role.OWNER
    granted = principal.grants.get(repo.id)
    role = granted if granted is not None else ROLES.get(repo.default_role, Role.NONE)
    return max(role, Role.READER) if is_public(repo) else role


def refusal(
    principal: Principal | None,
    action: Action,
    repo: Repo,
    project: ProjectInfo | str | None = None,
) -> Refusal | None:
    """None when allowed. `project` is an existing project, a normalized name that exists
    nowhere yet (an upload creating it), or None for a repository-wide action.

    The order matters: whether the caller may know the repository exists is decided
    before anything that would name it in a refusal (a token's limits, a role), so a
    private repository answers like a missing one. A project-scoped token passes a
    repository-wide READ (its listing is filtered) and UPLOAD (the check made before the
    form names its project), never anything more.
    """
    if action is Action.READ and is_public(repo):
        return None
    if principal is None:
        return Refusal("Authentication required", hidden=not is_public(repo))
    if action is Action.ADMIN:
        return admin_refusal(principal)
    role = role_in(principal, repo)
    out_of_scope = (
        bool(principal.token_repositories) and repo.id not in principal.token_repositories
    )
    manages = principal.is_admin and action >= Action.MANAGE
    if not is_public(repo) and (out_of_scope or (role < Role.READER and not manages)):
        return Refusal(f"{principal.name} may not read {repo.name}", hidden=True)
    if out_of_scope:
        names = ", ".join(sorted(principal.token_repositories.values()))
        return Refusal(f"token {principal.token_prefix} is scoped to repository {names}")
    refused = _token_cap(principal, action) or _project_scope(principal, action, project)
    if refused is not None or action is Action.READ:
        return refused
    if action is Action.GRANT:
        if principal.is_admin or role >= Role.OWNER:
            return None
        return Refusal(f"{principal.name} is not an owner of {repo.name}: ask an admin")
    if action is Action.UPLOAD:
        return _upload_refusal(principal, role, repo, project)
    return _manage_refusal(principal, role, repo, project)


def admin_refusal(principal: Principal) -> Refusal | None:
    """Accounts and repositories: admins only, never through a scoped token (they are
    beyond any repository's or project's scope)."""
    capped = _token_cap(principal, Action.ADMIN)
    if capped is not None:
        return capped
    label = f"token {principal.token_prefix}"
    if principal.token_projects:
        return Refusal(
            f"{label} is scoped to project {', '.join(sorted(principal.token_projects))}"
        )
    if principal.token_repositories:
        scope = ", ".join(sorted(principal.token_repositories.values()))
        return Refusal(f"{label} is scoped to repository {scope}")
    return None if principal.is_admin else Refusal(f"{principal.name} is not an admin")


def may(
    principal: Principal | None,
    action: Action,
    repo: Repo,
    project: ProjectInfo | str | None = None,
) -> bool:
    return refusal(principal, action, repo, project) is None


def _token_cap(principal: Principal, action: Action) -> Refusal | None:
    """A token's permission caps the action, whatever its user may do."""
    if principal.token_permission is None or action <= TOKEN_LIMITS[principal.token_permission]:
        return None
    label = f"token {principal.token_prefix}"
    if principal.token_permission is Action.READ:
        return Refusal(f"{label} is read-only")
    return Refusal(f"{label} may only upload: use an admin token or a password for this")


def _project_scope(
    principal: Principal, action: Action, project: ProjectInfo | str | None
) -> Refusal | None:
    if not principal.token_projects:
        return None
    name = project.normalized if isinstance(project, ProjectInfo) else project
    if name is None and action in (Action.READ, Action.UPLOAD):
        return None
    if name in principal.token_projects:
        return None
    scope = ", ".join(sorted(principal.token_projects))
    return Refusal(f"token {principal.token_prefix} is scoped to project {scope}")


def _upload_refusal(
    principal: Principal, role: Role, repo: Repo, project: ProjectInfo | str | None
) -> Refusal | None:
    if project is None:  # the check before the form names its project
        return None
    if not isinstance(project, ProjectInfo):  # a project that exists nowhere yet
        if role >= Role.UPLOADER:
            return None
        return Refusal(
            f"{principal.name} may not create projects in {repo.name}: "
            f"ask an owner of {repo.name} for the uploader role"
        )
    if role >= Role.OWNER or principal.user_id == project.owner_id:
        return None
    if principal.user_id in project.maintainer_ids:
        return None
    owner = project.owner_name or "nobody"
    return Refusal(
        f"project {project.normalized} in {repo.name} belongs to {owner}: "
        f"ask {owner} to add you as a maintainer"
    )


def upload_anywhere_refusal(
    principal: Principal, repo: Repo, maintains_any: bool
) -> Refusal | None:
    """Before a form names its project: refused when no project in `repo` could take an
    upload from `principal` (`maintains_any`: they own or maintain one there), the test
    made on a request's head so that its body need not be received (issue 14)."""
    if maintains_any or role_in(principal, repo) >= Role.UPLOADER:
        return None
    return Refusal(
        f"{principal.name} may not upload to {repo.name}: "
        f"ask an owner of {repo.name} for the uploader role"
    )


def replace_refusal(principal: Principal, repo: Repo, project: ProjectInfo) -> Refusal | None:
    """Replacing a file under its name (`overwrite = allow`): the project's owner, an
    owner of the repository or an admin, with any token that may upload there."""
    if principal.is_admin or role_in(principal, repo) >= Role.OWNER:
        return None
    if principal.user_id == project.owner_id:
        return None
    owner = project.owner_name or "nobody"
    return Refusal(
        f"project {project.normalized} in {repo.name} belongs to {owner}: only its owner "
        "may replace a file"
    )


def _manage_refusal(
    principal: Principal, role: Role, repo: Repo, project: ProjectInfo | str | None
) -> Refusal | None:
    if principal.is_admin or role >= Role.OWNER:
        return None
    if isinstance(project, ProjectInfo) and principal.user_id == project.owner_id:
        return None
    rule = f"only its owner, an owner of {repo.name} or an admin may do that"
    if isinstance(project, ProjectInfo):
        owner = project.owner_name or "nobody"
        return Refusal(f"project {project.normalized} in {repo.name} belongs to {owner}: {rule}")
    return Refusal(f"{principal.name} is not an owner of {repo.name}: {rule}")


def listing_filter(principal: Principal | None, project: str | None) -> frozenset[str]:
    """The projects a root page may list for this caller (empty: all of them)."""
    if principal is None or project:
        return frozenset()
    return principal.token_projects
