"""The JSON API under `/-/api/`: what the CLI does, over HTTP, for those with the rights.

Credentials are the same as everywhere (Basic with a password or a token); the permission
rules are the same `refusal()`. Changes take a JSON body: a browser can't send that
cross-site without asking first, so a password a browser remembers can't be replayed by
another page (CSRF). Refusals are `{"error": reason}` with the status of the refusal.
"""

from __future__ import annotations

import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, session

from minirepo import auth, units
from minirepo.errors import BadRequest, Forbidden, NotFound, Unauthorized
from minirepo.permissions import Action, Principal, admin_refusal, refusal
from minirepo.services import accounts, audit, projects, repos
from minirepo.services.repos import RepoInfo
from minirepo.views.common import index, repository, settings

bp = Blueprint("api", __name__, url_prefix="/-/api")


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _caller() -> Principal:
    principal = auth.current_principal()
    if principal is None:
        raise Unauthorized("Authentication required")
    return principal


def _body() -> dict[str, Any]:
    if not request.is_json:
        raise BadRequest("Send a JSON body with Content-Type: application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key!r} must be a string")
    return value


def _names(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(f"{key!r} must be a list of strings")
    return tuple(value)


def _require(action: Action, repo: RepoInfo, project: str | None = None) -> Principal:
    """The permission check for a repository action, with the project's people if any."""
    _caller()
    people = projects.info(repo.id, project) if project else None
    principal = auth.require(action, repo, people or project)
    assert principal is not None  # noqa: S101 - _caller() refused anonymous callers
    return principal


def _admin() -> Principal:
    principal = _caller()
    refused = admin_refusal(principal)
    if refused is not None:
        raise Forbidden(refused.reason)
    return principal


def _changed(repo: RepoInfo) -> None:
    """Pages of `repo` change at once in this process (others follow within a second)."""
    index().forget_repo(repo.name)


@bp.post("/session")
def session_login() -> Response:
    """Log in with a password for the web UI or a script: a cookie, and the CSRF token that
    every change made with that cookie must send back (X-CSRF-Token)."""
    body = _body()
    authenticator: auth.Authenticator = current_app.extensions["minirepo.auth"]
    data = authenticator.login(
        _text(body, "user") or "", _text(body, "password") or "", request.remote_addr or ""
    )
    session.clear()
    session.update(data)
    return jsonify(user=_text(body, "user"), csrf=data["csrf"])


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
    principal = _caller()
    token = None
    if principal.token_permission is not None:
        token = {
            "prefix": principal.token_prefix,
            "permission": principal.token_permission.name.lower(),
            "repositories": sorted(principal.token_repositories.values()),
            "projects": sorted(principal.token_projects),
        }
    return jsonify(user=principal.name, admin=principal.is_admin, token=token)


@bp.get("/repos")
def repo_list() -> Response:
    principal = _caller()
    visible = []
    for item in repos.summaries():
        if refusal(principal, Action.READ, item.info) is None:
            visible.append(_repo_json(item.info, item))
    return jsonify(repositories=visible)


def _repo_json(info: RepoInfo, summary: repos.RepoSummary | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": info.name,
        "kind": info.kind,
        "read": info.read,
        "overwrite": info.overwrite,
        "default_role": info.default_role,
    }
    if summary is not None:
        data.update(
            description=summary.description,
            projects=summary.projects,
            files=summary.files,
            bytes=summary.bytes,
        )
    return data


@bp.post("/repos")
def repo_create() -> tuple[Response, int]:
    principal = _admin()
    body = _body()
    name = _text(body, "name") or ""
    row = repos.create(
        name,
        read=_text(body, "read", "anonymous") or "anonymous",
        overwrite=_text(body, "overwrite", "never") or "never",
        default_role=_text(body, "default_role", "none") or "none",
        description=_text(body, "description", "") or "",
        actor=principal.name,
    )
    return jsonify(_repo_json(repos.info_of(row))), 201


@bp.patch("/repos/<repo>")
def repo_set(repo: str) -> Response:
    principal = _admin()
    body = _body()
    row = repos.update(
        repository(repo).name,
        read=_text(body, "read"),
        overwrite=_text(body, "overwrite"),
        default_role=_text(body, "default_role"),
        description=_text(body, "description"),
        actor=principal.name,
    )
    index().forget_repo(row.name)
    return jsonify(_repo_json(repos.info_of(row)))


@bp.delete("/repos/<repo>")
def repo_delete(repo: str) -> Response:
    principal = _admin()
    info = repository(repo)
    if info.name == settings().default_repository:
        raise BadRequest(f"{info.name} is the default repository (setting default_repository)")
    force = request.args.get("force", "").lower() in ("1", "true", "yes")
    count = repos.delete(info.name, force=force, actor=principal.name)
    _changed(info)
    return jsonify(deleted=info.name, files=count)


@bp.get("/repos/<repo>/grants")
def grant_list(repo: str) -> Response:
    info = repository(repo)
    _require(Action.GRANT, info)
    rows = repos.grants(info.name)
    return jsonify(grants=[{"user": user, "role": role} for _, user, role in rows])


@bp.put("/repos/<repo>/grants/<user>")
def grant_put(repo: str, user: str) -> Response:
    info = repository(repo)
    principal = _require(Action.GRANT, info)
    role = _text(_body(), "role") or ""
    repos.grant(user, info.name, role, actor=principal.name)
    return jsonify(user=user, repository=info.name, role=role)


@bp.delete("/repos/<repo>/grants/<user>")
def grant_delete(repo: str, user: str) -> Response:
    info = repository(repo)
    principal = _require(Action.GRANT, info)
    repos.revoke(user, info.name, actor=principal.name)
    return jsonify(user=user, repository=info.name, role=None)


@bp.get("/repos/<repo>/projects/<project>")
def project_show(repo: str, project: str) -> Response:
    info = repository(repo)
    _require(Action.READ, info, project)
    details = projects.show(info.name, project)
    return jsonify(
        repository=details.repository,
        name=details.name,
        normalized=details.normalized,
        owner=details.owner or None,
        maintainers=details.maintainers,
        versions=[
            {"version": version, "files": files, "yanked": yanked}
            for version, files, yanked in details.versions
        ],
    )


@bp.put("/repos/<repo>/projects/<project>/maintainers/<user>")
def maintainer_put(repo: str, project: str, user: str) -> Response:
    info = repository(repo)
    principal = _require(Action.MANAGE, info, project)
    projects.add_maintainer(info.name, project, user, actor=principal.name)
    return jsonify(project=project, maintainer=user)


@bp.delete("/repos/<repo>/projects/<project>/maintainers/<user>")
def maintainer_delete(repo: str, project: str, user: str) -> Response:
    info = repository(repo)
    principal = _require(Action.MANAGE, info, project)
    projects.remove_maintainer(info.name, project, user, actor=principal.name)
    return jsonify(project=project, maintainer=None)


@bp.put("/repos/<repo>/projects/<project>/owner")
def owner_put(repo: str, project: str) -> Response:
    info = repository(repo)
    principal = _require(Action.MANAGE, info, project)
    user = _text(_body(), "user") or ""
    projects.set_owner(info.name, project, user, actor=principal.name)
    return jsonify(project=project, owner=user)


@bp.post("/repos/<repo>/projects/<project>/versions/<version>/yank")
@bp.post("/repos/<repo>/projects/<project>/versions/<version>/unyank")
def yank(repo: str, project: str, version: str) -> Response:
    info = repository(repo)
    principal = _require(Action.MANAGE, info, project)
    yanked = request.path.endswith("/yank")
    reason = (_text(_body(), "reason", "") or "") if yanked else ""
    generation = projects.set_yanked(
        info.name,
        project,
        version,
        yanked=yanked,
        reason=reason,
        actor=principal.name,
        remote_addr=request.remote_addr or "",
    )
    index().note_generation(info, generation)
    return jsonify(project=project, version=version, yanked=yanked, reason=reason)


@bp.delete("/repos/<repo>/projects/<project>", defaults={"version": None, "filename": None})
@bp.delete("/repos/<repo>/projects/<project>/versions/<version>", defaults={"filename": None})
@bp.delete("/repos/<repo>/projects/<project>/versions/<version>/files/<filename>")
def delete(repo: str, project: str, version: str | None, filename: str | None) -> Response:
    info = repository(repo)
    principal = _require(Action.MANAGE, info, project)
    deleted = projects.delete(
        info.name,
        project,
        version,
        filename,
        actor=principal.name,
        remote_addr=request.remote_addr or "",
    )
    _changed(info)
    return jsonify(deleted=deleted)


@bp.get("/users")
def user_list() -> Response:
    _admin()
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
    principal = _admin()
    body = _body()
    name = _text(body, "name") or ""
    admin = bool(body.get("admin", False))
    accounts.add_user(
        name,
        _text(body, "password"),
        method=settings().password_hash,
        admin=admin,
        actor=principal.name,
    )
    return jsonify(name=name, admin=admin), 201


@bp.patch("/users/<name>")
def user_set(name: str) -> Response:
    principal = _admin()
    body = _body()
    if "disabled" in body:
        accounts.set_disabled(name, bool(body["disabled"]), actor=principal.name)
    password = _text(body, "password")
    if password is not None:
        accounts.set_password(name, password, method=settings().password_hash, actor=principal.name)
    return jsonify(name=name)


@bp.post("/users/<name>/unlock")
def user_unlock(name: str) -> Response:
    principal = _admin()
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
    principal = _caller()
    if principal.token_permission is not None and principal.token_permission < Action.ADMIN:
        raise Forbidden(f"token {principal.token_prefix} may not manage tokens: use an admin token")
    return principal


@bp.get("/tokens")
def token_list() -> Response:
    principal = _token_manager()
    user = request.args.get("user") or principal.name
    if user != principal.name:
        _admin()
    return jsonify(tokens=[_token_json(item) for item in accounts.list_tokens(user)])


@bp.post("/tokens")
def token_create() -> tuple[Response, int]:
    principal = _token_manager()
    body = _body()
    user = _text(body, "user") or principal.name
    if user != principal.name:
        _admin()
    repositories, project_names = _names(body, "repositories"), _names(body, "projects")
    if user == principal.name:
        repositories, project_names = _within_own_scope(principal, repositories, project_names)
    expires = _text(body, "expires")
    try:
        lifetime = (
            None
            if expires is None
            else datetime.timedelta(seconds=units.parse_duration(expires, "d"))
        )
    except ValueError as exc:
        raise BadRequest(f"'expires': {exc}") from exc
    new = accounts.create_token(
        user,
        permission=_text(body, "permission", "upload") or "upload",
        repositories=repositories,
        projects=project_names,
        expires=lifetime,
        description=_text(body, "description", "") or "",
        actor=principal.name,
    )
    return jsonify(token=new.secret, prefix=new.prefix, user=user), 201


def _within_own_scope(
    principal: Principal, repositories: tuple[str, ...], project_names: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A token made with a scoped token is no wider: empty means the caller's scope."""
    own_repos = tuple(sorted(principal.token_repositories.values()))
    if own_repos:
        if not repositories:
            repositories = own_repos
        elif not set(repositories) <= set(own_repos):
            raise Forbidden(
                f"token {principal.token_prefix} is scoped to repository "
                f"{', '.join(own_repos)}: a new token can't be wider"
            )
    own_projects = tuple(sorted(principal.token_projects))
    if own_projects:
        if not project_names:
            project_names = own_projects
        elif not set(project_names) <= set(own_projects):
            raise Forbidden(
                f"token {principal.token_prefix} is scoped to project "
                f"{', '.join(own_projects)}: a new token can't be wider"
            )
    return repositories, project_names


@bp.delete("/tokens/<handle>")
def token_delete(handle: str) -> Response:
    principal = _token_manager()
    owner = None if principal.is_admin else principal.user_id
    prefix = accounts.revoke_token(handle, actor=principal.name, owner=owner)
    return jsonify(revoked=prefix)


@bp.get("/audit")
def audit_log() -> Response:
    _caller()
    repo = request.args.get("repo")
    if repo is None:
        _admin()
    else:
        info = repository(repo)
        _require(Action.GRANT, info)
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
