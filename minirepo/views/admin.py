"""The admin pages (`/-/admin/`): users, repositories, grants and the audit log.

Every change calls the service the CLI and the JSON API call, with the viewer as the
actor, so the rules and the audit lines are the same whichever way a change is made. The
checks are the JSON API's own (`require_admin`): an anonymous visitor is sent to log in,
anyone else who is not an admin gets a 403 page. Changes come from a login session only
(`form_caller`); a refused change is shown on its page with the reason.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, flash, redirect, request
from packaging.utils import canonicalize_name
from werkzeug.wrappers import Response as BaseResponse

from minirepo.errors import BadRequest, MinirepoError, NotFound, one_line
from minirepo.permissions import ROLES, Principal
from minirepo.services import accounts, audit, repos
from minirepo.views.api.common import changed, require_admin
from minirepo.views.common import index, repository, settings
from minirepo.views.webpage import form_caller, render, root, ui_blueprint

bp = ui_blueprint("admin", __name__, url_prefix="/-/admin")

AUDIT_LIMIT = 100
MAX_AUDIT_LIMIT = 1000
GRANTABLE = tuple(name for name in ROLES if name != "none")


def _changer() -> Principal:
    """The admin a form post acts for: a login session with its CSRF token, and an admin."""
    form_caller()
    return require_admin()


def _done(page: Callable[..., Response], change: Callable[[], str], target: str) -> BaseResponse:
    """Make `change`; on success flash its message and go to `target` (303), else show
    `page` again with the refusal's status and reason."""
    try:
        message = change()
    except MinirepoError as exc:
        return page(status=exc.status, error=one_line(exc.reason), form=request.form)
    flash(message, "info")
    return redirect(f"{root()}/-/admin{target}", code=303)


@bp.get("/")
def home() -> Response:
    require_admin()
    return render("admin_index.html")


# Users


def _users_page(
    status: int = 200, error: str = "", form: Mapping[str, str] | None = None
) -> Response:
    require_admin()
    return render(
        "admin_users.html", status=status, error=error, form=form or {}, users=accounts.list_users()
    )


@bp.get("/users")
def users() -> Response:
    return _users_page()


@bp.post("/users")
def user_create() -> BaseResponse:
    principal = _changer()
    name = request.form.get("name", "").strip()

    def change() -> str:
        accounts.add_user(
            name,
            request.form.get("password") or None,
            method=settings().password_hash,
            admin=request.form.get("admin") == "yes",
            actor=principal.name,
        )
        return f"User {name} created."

    return _done(_users_page, change, "/users")


@bp.post("/users/<name>/<action>")
def user_change(name: str, action: str) -> BaseResponse:
    principal = _changer()

    def change() -> str:
        if action in ("disable", "enable"):
            accounts.set_disabled(name, action == "disable", actor=principal.name)
            return f"User {name} {action}d."
        if action == "unlock":
            accounts.unlock(name, actor=principal.name)
            return f"User {name} unlocked: failed logins so far no longer count."
        if action == "password":
            password = request.form.get("password", "")
            accounts.set_password(
                name, password, method=settings().password_hash, actor=principal.name
            )
            return f"Password of {name} changed: their sessions have ended."
        raise NotFound(f"No user action {action!r}")

    return _done(_users_page, change, "/users")


# Repositories


def _choices() -> dict[str, Any]:
    return {
        "read_modes": repos.READ_MODES,
        "overwrite_modes": repos.OVERWRITE_MODES,
        "default_roles": repos.DEFAULT_ROLES,
    }


def _repos_page(
    status: int = 200, error: str = "", form: Mapping[str, str] | None = None
) -> Response:
    require_admin()
    return render(
        "admin_repos.html",
        status=status,
        error=error,
        form=form or {},
        summaries=repos.summaries(),
        default_repository=settings().default_repository,
        **_choices(),
    )


@bp.get("/repos")
def repo_list() -> Response:
    return _repos_page()


@bp.post("/repos")
def repo_create() -> BaseResponse:
    principal = _changer()
    name = request.form.get("name", "").strip()

    def change() -> str:
        repos.create(
            name,
            read=request.form.get("read", "anonymous"),
            overwrite=request.form.get("overwrite", "never"),
            default_role=request.form.get("default_role", "none"),
            description=request.form.get("description", ""),
            actor=principal.name,
        )
        return f"Repository {name} created."

    return _done(_repos_page, change, f"/repos/{name}")


def _summary(name: str) -> repos.RepoSummary:
    info = repository(name)
    for item in repos.summaries():
        if item.info.id == info.id:
            return item
    raise NotFound(f"No repository named {name!r}")


def _repo_page(
    name: str, status: int = 200, error: str = "", form: Mapping[str, str] | None = None
) -> Response:
    require_admin()
    summary = _summary(name)
    return render(
        "admin_repo.html",
        status=status,
        error=error,
        form=form or {},
        repo=summary,
        grants=repos.grants(summary.info.name),
        roles=GRANTABLE,
        is_default=summary.info.name == settings().default_repository,
        **_choices(),
    )


@bp.get("/repos/<name>")
def repo_show(name: str) -> Response:
    return _repo_page(name)


@bp.post("/repos/<name>")
def repo_set(name: str) -> BaseResponse:
    principal = _changer()
    info = repository(name)

    def change() -> str:
        row = repos.update(
            info.name,
            read=request.form.get("read"),
            overwrite=request.form.get("overwrite"),
            default_role=request.form.get("default_role"),
            description=request.form.get("description"),
            actor=principal.name,
        )
        index().forget_repo(row.name)
        return f"Repository {info.name} changed."

    return _done(_page_of(info.name), change, f"/repos/{info.name}")


@bp.post("/repos/<name>/grants")
def grant(name: str) -> BaseResponse:
    principal = _changer()
    info = repository(name)
    user = request.form.get("user", "").strip()
    role = request.form.get("role", "")

    def change() -> str:
        repos.grant(user, info.name, role, actor=principal.name)
        return f"{user} is now {role} in {info.name}."

    return _done(_page_of(info.name), change, f"/repos/{info.name}")


@bp.post("/repos/<name>/grants/<user>/revoke")
def revoke(name: str, user: str) -> BaseResponse:
    principal = _changer()
    info = repository(name)

    def change() -> str:
        repos.revoke(user, info.name, actor=principal.name)
        return f"{user} no longer has a grant in {info.name}."

    return _done(_page_of(info.name), change, f"/repos/{info.name}")


def _page_of(name: str) -> Callable[..., Response]:
    def page(**kwargs: Any) -> Response:
        return _repo_page(name, **kwargs)

    return page


def _delete_page(
    name: str, status: int = 200, error: str = "", form: Mapping[str, str] | None = None
) -> Response:
    require_admin()
    summary = _summary(name)
    repos.check_deletable(summary.info.name, settings().default_repository)
    return render("admin_repo_delete.html", status=status, error=error, repo=summary)


@bp.get("/repos/<name>/delete")
def repo_delete_form(name: str) -> Response:
    """The confirm step as a page of its own, so it works without JavaScript."""
    return _delete_page(name)


@bp.post("/repos/<name>/delete")
def repo_delete(name: str) -> BaseResponse:
    principal = _changer()
    info = repository(name)

    def change() -> str:
        repos.check_deletable(info.name, settings().default_repository)
        count = repos.delete(
            info.name, force=request.form.get("force") == "yes", actor=principal.name
        )
        changed(info)
        return f"Repository {info.name} deleted ({count} file(s))."

    def page(**kwargs: Any) -> Response:
        return _delete_page(info.name, **kwargs)

    return _done(page, change, "/repos")


@bp.get("/grants")
def grants() -> Response:
    require_admin()
    return render("admin_grants.html", grants=repos.grants())


# The audit log


@bp.get("/audit")
def audit_log() -> Response:
    require_admin()
    filters = {
        key: request.args.get(key, "").strip()
        for key in ("actor", "action", "repository", "project", "since")
    }
    try:
        limit, page, since = _audit_paging(filters["since"])
    except BadRequest as exc:
        return _audit_page(filters, status=exc.status, error=one_line(exc.reason))
    events = audit.entries(
        filters["repository"] or None,
        since,
        limit + 1,  # one more tells whether there is a next page
        actor=filters["actor"] or None,
        action=filters["action"] or None,
        project=canonicalize_name(filters["project"]) if filters["project"] else None,
        offset=(page - 1) * limit,
    )
    return _audit_page(
        filters, events=events[:limit], limit=limit, page=page, has_next=len(events) > limit
    )


def _audit_page(
    filters: dict[str, str],
    *,
    status: int = 200,
    error: str = "",
    events: list[audit.Entry] | None = None,
    limit: int = AUDIT_LIMIT,
    page: int = 1,
    has_next: bool = False,
) -> Response:
    """The log with its filter form; `query` keeps the filters in the pager's links."""
    query = {key: value for key, value in filters.items() if value}
    if limit != AUDIT_LIMIT:
        query["limit"] = str(limit)
    return render(
        "admin_audit.html",
        status=status,
        error=error,
        events=events or [],
        filters=filters,
        limit=limit,
        page=page,
        query=query,
        has_next=has_next,
    )


def _audit_paging(since_text: str) -> tuple[int, int, datetime.datetime | None]:
    try:
        since = datetime.datetime.fromisoformat(since_text) if since_text else None
        limit = int(request.args.get("limit") or AUDIT_LIMIT)
        page = int(request.args.get("page") or 1)
    except ValueError as exc:
        raise BadRequest(f"Invalid 'since', 'limit' or 'page': {exc}") from exc
    if since is not None and since.tzinfo is not None:  # the log's times are naive UTC
        since = since.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    if not 1 <= limit <= MAX_AUDIT_LIMIT or page < 1:
        raise BadRequest(f"'limit' is 1 to {MAX_AUDIT_LIMIT}, 'page' 1 or more")
    return limit, page, since
