"""The home page and the repository pages: what a repository holds, how to set up every
client for it, a token made for it, and the upload form.

Also turns an index URL set to the repository URL by mistake into a working install:
pip and uv then ask for `/<repo>/<project>/` (or `/<project>/`) with the simple `Accept`,
and are redirected to the simple page. Clients that are not browsers (no `text/html` in
`Accept`) get the plain answers of the API for a refusal (a 401 with its challenge, so
that pip and uv send credentials), browsers a page (the login form, a 404 with names).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib

from flask import Response, flash, redirect, request
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Response as BaseResponse

from minirepo import auth
from minirepo import errors as answers
from minirepo.errors import BadRequest, Forbidden, MinirepoError, NotFound, one_line
from minirepo.permissions import (
    Action,
    Principal,
    listing_filter,
    may,
    upload_anywhere_refusal,
)
from minirepo.services import accounts, listing, projects, repos
from minirepo.services.index import HTML
from minirepo.services.repos import RepoInfo
from minirepo.services.setup_snippets import Setup
from minirepo.services.upload import SpoolFile, check_browser_file
from minirepo.views.common import group_members, index, repository, settings
from minirepo.views.simple import existing_project, negotiate
from minirepo.views.upload import publish
from minirepo.views.webpage import (
    base_url,
    form_caller,
    page_stamp,
    refusal_page,
    render,
    render_cached,
    root,
    ui_blueprint,
    viewer,
)

bp = ui_blueprint("web", __name__)

TOKEN_PERMISSIONS = ("read", "upload")
DEFAULT_TOKEN_DAYS = 90
RECENT_UPLOADS = 20


def _from_browser() -> bool:
    """Browsers name `text/html`; pip, uv, requests and curl don't (`*/*` or simple types)."""
    return "text/html" in request.headers.get("Accept", "").lower()


def _refusal(exc: MinirepoError) -> BaseResponse:
    if not _from_browser():
        return answers.to_response(exc.status, exc.reason, exc.headers)
    suggestions = None
    if exc.status == 404 and request.endpoint == "web.repository_page":
        suggestions = _nearest_repositories(str((request.view_args or {}).get("repo", "")))
    response: BaseResponse = refusal_page(exc, suggestions)
    return response


bp.register_error_handler(MinirepoError, _refusal)


def _readable(principal: Principal | None) -> list[repos.RepoSummary]:
    return [item for item in repos.summaries() if may(principal, Action.READ, item.info)]


def _nearest_repositories(name: str) -> list[tuple[str, str]]:
    """The repositories the viewer may read whose names are closest to `name`."""
    names = [item.info.name for item in _readable(viewer())]
    close = difflib.get_close_matches(name.lower(), names, n=5, cutoff=0.5)
    return [(found, f"{root()}/{found}/") for found in close]


# --- the home page ------------------------------------------------------------------


@bp.get("/")
def home() -> Response:
    """Anonymous visitors see it where the default repository is public; elsewhere they
    are asked to log in (pip and uv pointed at `/` get the 401 they answer with
    credentials). Accounts see what they may read."""
    principal = viewer()
    if principal is None:
        auth.require(Action.READ, index().repo(None))
    readable = [_members_readable_by(item, principal) for item in _readable(principal)]
    infos = {item.info.name: item.info for item in readable}
    stored = [item.info.id for item in readable if not (item.info.is_group or item.info.is_proxy)]
    uploads = [
        upload
        for upload in listing.recent_uploads(stored, RECENT_UPLOADS)
        if may(principal, Action.READ, infos[upload.repository], upload.normalized)
    ]
    return render(
        "home.html",
        repositories=readable,
        uploads=uploads,
        install=_home_install(infos),
    )


def _members_readable_by(item: repos.RepoSummary, principal: Principal | None) -> repos.RepoSummary:
    """A group's summary naming only the members the viewer may read: a public group may
    serve a private repository, whose name is not for everyone."""
    if not item.members:
        return item
    shown = []
    for name in item.members:
        with contextlib.suppress(NotFound):
            if may(principal, Action.READ, index().repo(name)):
                shown.append(name)
    return dataclasses.replace(item, members=tuple(shown))


def _home_install(readable: dict[str, RepoInfo]) -> list[object]:
    """pip's and uv's install lines for the group `all` (issue 11), else the default
    repository; none when the viewer may read neither."""
    for name in (repos.first_start_group(), settings().default_repository):
        info = readable.get(name or "")
        if info is not None:
            setup = Setup(info.name, None, private=not info.is_public)
            return list(setup.install_commands(base_url()))
    return []


# --- a repository's page ------------------------------------------------------------


@bp.get("/<repo>/")
def repository_page(repo: str) -> BaseResponse:
    try:
        info = index().repo(repo)
    except NotFound:
        kind = negotiate(request.headers.get("Accept"))
        if kind != HTML:
            # `/<name>/` with no such repository: a project of the default one, if it exists.
            with contextlib.suppress(NotFound):
                normalized, *_ = existing_project(index().repo(None), repo, kind)
                return answers.redirect(f"../simple/{normalized}/")
        info = repository(repo)  # the answer for a missing repository: 401 or 404
    auth.require(Action.READ, info)
    stamp = page_stamp(info)
    return render_cached("repo.html", info, stamp, **_repo_context(info, _page_number()))


def _page_number() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


def _upload_target(info: RepoInfo) -> RepoInfo | None:
    """Where uploads to `info`'s URL go; None for a proxy or a group without a target."""
    with contextlib.suppress(MinirepoError):
        return index().upload_target(info)
    return None


def _upload_refusal(principal: Principal | None, target: RepoInfo | None) -> str | None:
    """Why `principal` may upload nothing to `target`, or None: the upload API's checks
    before a form names its project (as `preflight` makes them)."""
    if target is None:
        return "This repository takes no uploads"
    if principal is None:
        return "Log in to upload"
    if not may(principal, Action.UPLOAD, target):
        return f"{principal.name} may not upload to {target.name}"
    maintains = projects.maintains_any(principal.user_id, target.id)
    refused = upload_anywhere_refusal(principal, target, maintains)
    return refused.reason if refused is not None else None


def _listed_repositories(info: RepoInfo, principal: Principal | None) -> list[int]:
    if not info.is_group:
        return [info.id]
    members = group_members(info)
    return [member.id for member in members if may(principal, Action.READ, member)]


def _repo_context(
    info: RepoInfo,
    page: int,
    *,
    token: str | None = None,
    token_error: str = "",
    upload_error: str = "",
) -> dict[str, object]:
    principal = viewer()
    target = _upload_target(info)
    from_session = principal is not None and not request.headers.get("Authorization")
    may_upload = _upload_refusal(principal, target) is None
    return {
        "repository": info,
        "description": listing.description(info.id),
        "listing": listing.projects(
            _listed_repositories(info, principal), page, only=listing_filter(principal, None)
        ),
        "target": target,
        "setup": Setup(
            info.name, info.name if target else None, token=token, private=not info.is_public
        ),
        "token": token,
        "token_error": token_error,
        "may_make_tokens": from_session,
        "token_permissions": TOKEN_PERMISSIONS if may_upload else TOKEN_PERMISSIONS[:1],
        "default_token_days": DEFAULT_TOKEN_DAYS,
        "may_upload": from_session and may_upload,
        "upload_error": upload_error,
    }


def _own_page(
    info: RepoInfo,
    status: int = 200,
    *,
    token: str | None = None,
    token_error: str = "",
    upload_error: str = "",
) -> Response:
    """The page for this viewer alone, never cached anywhere: it may show a secret."""
    context = _repo_context(
        info, 1, token=token, token_error=token_error, upload_error=upload_error
    )
    response = render("repo.html", status=status, **context)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- a token from the setup panel -----------------------------------------------------


@bp.post("/<repo>/-/token")
def create_token(repo: str) -> Response:
    """A token for this repository, shown once in every snippet of the page. The rules
    are the token service's, as for `POST /-/api/tokens` with a password session."""
    principal = form_caller()
    info = repository(repo)
    auth.require(Action.READ, info)
    try:
        permission, lifetime = _token_request(info, principal)
        new = accounts.create_token(
            principal.name,
            permission=permission,
            repositories=_token_scope(info, principal),
            expires=lifetime,
            description=request.form.get("description", ""),
            actor=principal.name,
        )
    except MinirepoError as exc:
        if exc.status in (401, 404):
            raise
        return _own_page(info, exc.status, token_error=one_line(exc.reason))
    return _own_page(info, token=new.secret)


def _token_request(info: RepoInfo, principal: Principal) -> tuple[str, datetime.timedelta]:
    permission = request.form.get("permission", "read")
    if permission not in TOKEN_PERMISSIONS:
        raise BadRequest(f"Choose the permission read or upload, not {permission!r}")
    if permission == "upload":
        refused = _upload_refusal(principal, _upload_target(info))
        if refused is not None:
            raise Forbidden(f"{refused}: choose read")
    try:
        days = int(request.form.get("expires_days", str(DEFAULT_TOKEN_DAYS)))
    except ValueError:
        raise BadRequest("The expiry is a whole number of days") from None
    if days < 1:
        raise BadRequest("The expiry is at least one day")
    return permission, datetime.timedelta(days=min(days, accounts.MAX_EXPIRES.days))


def _token_scope(info: RepoInfo, principal: Principal) -> tuple[str, ...]:
    """The repository, and for a group the members it reads that the user may read too,
    and the one it stores uploads in: a token scoped to the group alone could read none
    of them, and one naming a private member would show its name on the tokens page."""
    if not info.is_group:
        return (info.name,)
    readable = [member for member in group_members(info) if may(principal, Action.READ, member)]
    names = {info.name, *(member.name for member in readable)}
    if info.upload_to:
        names.add(info.upload_to)
    return tuple(sorted(names))


# --- the upload form ------------------------------------------------------------------


@bp.post("/<repo>/-/upload")
def upload_file(repo: str) -> BaseResponse:
    """The API's checks and publish for a file from the browser: a login session with its
    CSRF token only (the upload API refuses session cookies, this form API tokens)."""
    principal = form_caller()
    info = repository(repo)
    auth.require(Action.READ, info)
    target = index().upload_target(info)
    auth.require(Action.UPLOAD, target)
    refused = _upload_refusal(principal, target)
    if refused is not None:
        raise Forbidden(refused)
    try:
        try:
            part = request.files.get("content")
        except ClientDisconnected as exc:
            raise BadRequest("The upload was cut short: try again") from exc
        content = part.stream if part is not None and part.filename else None
        checked = check_browser_file(
            (part.filename or "") if part is not None else "",
            content if isinstance(content, SpoolFile) else None,
            settings(),
        )
        publish(target, principal, checked)
    except MinirepoError as exc:
        if exc.status in (401, 404):
            raise
        return _own_page(info, exc.status, upload_error=one_line(exc.reason))
    flash(f"Uploaded {checked.dist.filename} to {target.name}.", "info")
    return redirect(f"{root()}/{target.name}/project/{checked.dist.normalized}/", code=303)


# --- clients that took the repository URL for the index --------------------------------


@bp.get("/<repo>/<project>/")
def misplaced_index(repo: str, project: str) -> Response:
    """`/<repo>/<project>/` asked for as a simple page: send the client to the real one."""
    kind = negotiate(request.headers.get("Accept"))
    if kind == HTML:
        raise NotFound("Not found")
    normalized, *_ = existing_project(repository(repo), project, kind)
    return answers.redirect(f"../simple/{normalized}/")


@bp.get("/<repo>/<name>")
def two_segments_without_slash(repo: str, name: str) -> Response:
    """`/<a>/<b>` is never a page: 404 at once, not werkzeug's trailing-slash redirect.

    Without this rule `/files/<anything>` or `/main/<anything>` would get a 308 built
    from the raw path; clients always ask for the trailing-slash form.
    """
    raise NotFound("Not found")
