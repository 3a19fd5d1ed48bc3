"""Who may do what: one pure function, so every rule has a unit test without a server."""

from __future__ import annotations

import dataclasses
import enum


class Action(enum.IntEnum):
    """Ordered: a token allowed one action is allowed every lower one."""

    READ = 1
    UPLOAD = 2
    ADMIN = 3


PERMISSIONS = {"read": Action.READ, "upload": Action.UPLOAD, "admin": Action.ADMIN}


@dataclasses.dataclass(frozen=True)
class Principal:
    """An authenticated caller: an account, narrowed by the token it used, if any."""

    user_id: int
    name: str
    is_admin: bool
    permission: Action
    repositories: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()
    token_prefix: str = ""


@dataclasses.dataclass(frozen=True)
class RepoInfo:
    id: int
    name: str
    read: str
    generation: int

    @property
    def is_public(self) -> bool:
        return self.read == "anonymous"


def may(
    principal: Principal | None, action: Action, repo: RepoInfo, project: str | None = None
) -> bool:
    """Decide; `project` is the normalized name, or None for a repository-wide action.

    A project-scoped token passes a repository-wide READ (the project list) and UPLOAD
    (the check made before the form names its project), but never a repository-wide
    ADMIN: administering the whole repository is more than any one project's scope.
    """
    if action is Action.READ and repo.is_public:
        return True
    if principal is None or principal.permission < action:
        return False
    if action is Action.ADMIN and not principal.is_admin:
        return False
    if principal.repositories and repo.name not in principal.repositories:
        return False
    if not principal.projects:
        return True
    if project is None:
        return action is not Action.ADMIN
    return project in principal.projects
