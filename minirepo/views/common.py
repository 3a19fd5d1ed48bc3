"""What every view needs from the app: its services, and the repository a URL names."""

from __future__ import annotations

from flask import current_app

from minirepo import auth
from minirepo.config import Settings
from minirepo.errors import NotFound, RepositoryNotFound, Unauthorized
from minirepo.permissions import Action
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


def readable_source(info: RepoInfo, normalized: str) -> RepoInfo:
    """The repository that answers for `normalized` at `info`'s URL, after the read checks.

    `info` itself, or for a group the member that wins (`groups.winner`), checked too: a
    caller who may not read it is refused there (401/404), never sent on to another
    member. The answer is as private as the group or the member, whichever is more.
    """
    auth.require(Action.READ, info, normalized)
    if not info.is_group:
        return info
    member = index().member(info, normalized)
    if member is None:
        raise NotFound(f"No project named {normalized!r} in {info.name!r}")
    auth.require(Action.READ, member, normalized)
    return served_through(info, member)


def group_members(group: RepoInfo) -> list[RepoInfo]:
    """A group's members, in order."""
    return [index().repo(name) for _, name in groups.members(group.id)]
