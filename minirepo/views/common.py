"""What every view needs from the app: its services, and the repository a URL names."""

from __future__ import annotations

from flask import current_app

from minirepo import auth
from minirepo.config import Settings
from minirepo.errors import NotFound, RepositoryNotFound, Unauthorized
from minirepo.permissions import Action, may
from minirepo.services import groups
from minirepo.services.container import Services
from minirepo.services.fetches import Fetches
from minirepo.services.index import Index
from minirepo.services.proxies import Proxies
from minirepo.services.repos import RepoInfo, served_through
from minirepo.services.upload import UploadService


def services() -> Services:
    value: Services = current_app.extensions["minirepo"]
    return value


def settings() -> Settings:
    return services().settings


def index() -> Index:
    return services().index


def uploads() -> UploadService:
    return services().uploads


def proxies() -> Proxies:
    return services().proxies


def fetches() -> Fetches:
    return services().fetches


def repository(name: str | None) -> RepoInfo:
    """The repository a URL names. A missing one answers like a private one: 401 to
    anonymous callers (pip and uv then send credentials), 404 to others."""
    try:
        return index().repo(name)
    except RepositoryNotFound:
        if auth.current_principal() is None:
            raise Unauthorized("Authentication required") from None
        raise


def readable_source(info: RepoInfo, normalized: str, filename: str | None = None) -> RepoInfo:
    """The repository that answers for `normalized` at `info`'s URL, after the read checks.

    `info` itself, or for a group the member that wins (`groups.winner`), checked too: a
    caller who may not read it is refused there (401/404), never sent on to another
    member. The answer is as private as the group or the member, whichever is more. A
    name the group tracks (merges) has its `filename` from the first readable member
    that holds it.
    """
    auth.require(Action.READ, info, normalized)
    if not info.is_group:
        return info
    if filename is not None and index().is_tracked(info, normalized):
        return served_through(info, _holder(info, normalized, filename))
    member = index().member(info, normalized)
    if member is None:
        raise NotFound(f"No project named {normalized!r} in {info.name!r}")
    auth.require(Action.READ, member, normalized)
    return served_through(info, member)


def readable_members(group: RepoInfo, normalized: str) -> list[RepoInfo]:
    """The members the caller may read `normalized` in, in order (a tracked name)."""
    principal = auth.current_principal()
    return [
        member for member in group_members(group) if may(principal, Action.READ, member, normalized)
    ]


def _holder(group: RepoInfo, normalized: str, filename: str) -> RepoInfo:
    for member in readable_members(group, normalized):
        if member.is_proxy:
            try:
                proxies().file_entry(member, normalized, filename)
            except NotFound:
                continue
            return member
        if index().holds(member, normalized, filename):
            return member
    raise NotFound(f"No file named {filename!r} in {group.name!r}")


def group_members(group: RepoInfo) -> list[RepoInfo]:
    """A group's members, in order."""
    return [index().repo(name) for _, name in groups.members(group.id)]
