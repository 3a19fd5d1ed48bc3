"""The JSON API under `/-/api/`: what the CLI does, over HTTP, for those with the rights.

Credentials are the same as everywhere (Basic with a password or a token); the permission
rules are the same `refusal()`. Changes take a JSON body: a browser can't send that
cross-site without asking first, so a password a browser remembers can't be replayed by
another page (CSRF). Refusals are `{"error": reason}` with the status of the refusal.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from minirepo import auth
from minirepo.errors import BadRequest, Forbidden, Unauthorized
from minirepo.permissions import Action, Principal, admin_refusal
from minirepo.services import projects
from minirepo.services.repos import RepoInfo
from minirepo.views.common import index

bp = Blueprint("api", __name__, url_prefix="/-/api")


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def caller() -> Principal:
    principal = auth.current_principal()
    if principal is None:
        raise Unauthorized("Authentication required")
    return principal


def json_body() -> dict[str, Any]:
    if not request.is_json:
        raise BadRequest("Send a JSON body with Content-Type: application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object")
    return body


def text(body: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key!r} must be a string")
    return value


def names_in(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(f"{key!r} must be a list of strings")
    return tuple(value)


def require(action: Action, repo: RepoInfo, project: str | None = None) -> Principal:
    """The permission check for a repository action, with the project's people if any."""
    caller()
    people = projects.info(repo.id, project) if project else None
    principal = auth.require(action, repo, people or project)
    assert principal is not None  # noqa: S101 - caller() refused anonymous callers
    return principal


def require_admin() -> Principal:
    principal = caller()
    refused = admin_refusal(principal)
    if refused is not None:
        raise Forbidden(refused.reason)
    return principal


def changed(repo: RepoInfo) -> None:
    """Pages of `repo` change at once in this process (others follow within a second)."""
    index().forget_repo(repo.name)
