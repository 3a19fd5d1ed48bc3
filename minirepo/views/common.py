"""What every view needs from the app: its services, and the repository a URL names."""

from __future__ import annotations

from flask import current_app

from minirepo import auth
from minirepo.config import Settings
from minirepo.errors import RepositoryNotFound, Unauthorized
from minirepo.services.container import Services
from minirepo.services.index import Index
from minirepo.services.repos import RepoInfo
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


def repository(name: str | None) -> RepoInfo:
    """The repository a URL names. A missing one answers like a private one: 401 to
    anonymous callers (pip and uv then send credentials), 404 to others."""
    try:
        return index().repo(name)
    except RepositoryNotFound:
        if auth.current_principal() is None:
            raise Unauthorized("Authentication required") from None
        raise
