"""The JSON API's sessions, accounts, tokens and audit log."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from flask import Response, current_app, jsonify, request, session

from minirepo import auth
from minirepo.errors import BadRequest, Forbidden, NotFound, Unauthorized
from minirepo.permissions import Action, Principal
from minirepo.services import accounts, audit
from minirepo.views.api.common import (
    bp,
    caller,
    json_body,
    names_in,
    require,
    require_admin,
    text,
)
from minirepo.views.common import repository, settings


@bp.post("/session")
def session_login() -> Response:
    """Log in with a password for the web UI or a script: a cookie, and the CSRF token that
    every change made with that cookie must send back (X-CSRF-Token)."""
    body = json_body()
    authenticator: auth.Authenticator = current_app.extensions["minirepo.auth"]
    data = authenticator.login(
        text(body, "user") or "", text(body, "password") or "", request.remote_addr or ""
    )
    session.clear()
    session.update(data)
    return jsonify(user=text(body, "user"), csrf=data["csrf"])


@bp.get("/session")
def session_show() -> Response:
    principal = auth.current_principal()
    if principal is None or "uid" not in session:
        raise Unauthorized("No session: log in with POST /-/api/session")
    return jsonify(user=principal.name, admin=principal.is_admin, csrf=session["csrf"])


@bp.delete("/session")
def session_logout() -> Response:
    if auth.current_principal() is not None:
        session.clear()
    return jsonify(user=None)


@bp.get("/whoami")
def whoami() -> Response:
    principal = caller()
    token = None
    if principal.token_permission is not None:
        token = {
            "prefix": principal.token_prefix,
            "permission": principal.token_permission.name.lower(),
            "repositories": sorted(principal.token_repositories.values()),
            "projects": sorted(principal.token_projects),
        }
    return jsonify(user=principal.name, admin=principal.is_admin, token=token)


@bp.get("/users")
def user_list() -> Response:
    require_admin()
    users = [
        {
            "name": user.name,
            "admin": user.is_admin,
            "disabled": user.disabled,
            "created": user.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for user in accounts.list_users()
    ]
    return jsonify(users=users)


@bp.post("/users")
def user_create() -> tuple[Response, int]:
    principal = require_admin()
    body = json_body()
    name = text(body, "name") or ""
    is_admin = bool(body.get("admin", False))
    accounts.add_user(
        name,
        text(body, "password"),
        method=settings().password_hash,
        admin=is_admin,
        actor=principal.name,
    )
    return jsonify(name=name, admin=is_admin), 201


@bp.patch("/users/<name>")
def user_set(name: str) -> Response:
    principal = require_admin()
    body = json_body()
    if "disabled" in body:
        accounts.set_disabled(name, bool(body["disabled"]), actor=principal.name)
    password = text(body, "password")
    if password is not None:
        accounts.set_password(name, password, method=settings().password_hash, actor=principal.name)
    return jsonify(name=name)


@bp.post("/users/<name>/unlock")
def user_unlock(name: str) -> Response:
    principal = require_admin()
    accounts.unlock(name, actor=principal.name)
    return jsonify(name=name, unlocked=True)


def _token_json(item: accounts.TokenInfo) -> dict[str, Any]:
    def when(value: datetime.datetime | None) -> str | None:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

    return {
        "id": item.id,
        "prefix": item.prefix,
        "user": item.user,
        "permission": item.permission,
        "repositories": item.repositories,
        "projects": item.projects,
        "description": item.description,
        "expires": when(item.expires),
        "last_used": when(item.last_used),
        "state": item.state,
    }


def _token_manager() -> Principal:
    """A password login or an admin token: a token never makes tokens with less."""
    principal = caller()
    if principal.token_permission is not None and principal.token_permission < Action.ADMIN:
        raise Forbidden(f"token {principal.token_prefix} may not manage tokens: use an admin token")
    return principal


@bp.get("/tokens")
def token_list() -> Response:
    principal = _token_manager()
    user = request.args.get("user") or principal.name
    if user != principal.name:
        require_admin()
    return jsonify(tokens=[_token_json(item) for item in accounts.list_tokens(user)])


@bp.post("/tokens")
def token_create() -> tuple[Response, int]:
    principal = _token_manager()
    body = json_body()
    user = text(body, "user") or principal.name
    if user != principal.name:
        require_admin()
    repositories, project_names = names_in(body, "repositories"), names_in(body, "projects")
    if user == principal.name:
        repositories, project_names = _within_own_scope(principal, repositories, project_names)
    lifetime = accounts.token_lifetime(text(body, "expires"))
    new = accounts.create_token(
        user,
        permission=text(body, "permission", "upload") or "upload",
        repositories=repositories,
        projects=project_names,
        expires=lifetime,
        description=text(body, "description", "") or "",
        actor=principal.name,
    )
    return jsonify(token=new.secret, prefix=new.prefix, user=user), 201


def _within_own_scope(
    principal: Principal, repositories: tuple[str, ...], project_names: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A token made with a scoped token is no wider: empty means the caller's scope."""
    return (
        _narrowed(principal, "repository", repositories, principal.token_repositories.values()),
        _narrowed(principal, "project", project_names, principal.token_projects),
    )


def _narrowed(
    principal: Principal, what: str, given: tuple[str, ...], own_scope: Iterable[str]
) -> tuple[str, ...]:
    own = tuple(sorted(own_scope))
    if not own:
        return given
    if not given:
        return own
    if not set(given) <= set(own):
        raise Forbidden(
            f"token {principal.token_prefix} is scoped to {what} {', '.join(own)}: "
            "a new token can't be wider"
        )
    return given


@bp.delete("/tokens/<handle>")
def token_delete(handle: str) -> Response:
    principal = _token_manager()
    owner = None if principal.is_admin else principal.user_id
    prefix = accounts.revoke_token(handle, actor=principal.name, owner=owner)
    return jsonify(revoked=prefix)


@bp.get("/audit")
def audit_log() -> Response:
    caller()
    repo = request.args.get("repo")
    if repo is None:
        require_admin()
    else:
        info = repository(repo)
        require(Action.GRANT, info)
    since_text = request.args.get("since")
    try:
        since = datetime.datetime.fromisoformat(since_text) if since_text else None
        limit = min(int(request.args.get("limit", "1000")), 10_000)
    except ValueError as exc:
        raise BadRequest(f"Invalid 'since' or 'limit': {exc}") from exc
    return jsonify(events=[entry.as_dict() for entry in audit.entries(repo, since, limit)])


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str) -> Response:
    raise NotFound(f"No API endpoint /-/api/{rest}")
