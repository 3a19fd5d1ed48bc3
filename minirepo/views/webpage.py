"""What every page of the web UI shares: rendering, its security headers, who is viewing,
the CSRF token of its forms, and the answers for refusals (a login page, a 404 page).

Pages are Jinja templates with autoescaping, so every metadata field is escaped where it
is written; nothing from a package reaches a page as HTML except a README that went
through the sanitiser (`services.readme`). The CSP forbids inline script and style, so
even a slip in a template cannot run script.
"""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from minirepo import auth
from minirepo.errors import Forbidden, MinirepoError, Unauthorized, one_line
from minirepo.permissions import Principal
from minirepo.services.repos import RepoInfo
from minirepo.uipages import Stamp, cache_key, fill, marked
from minirepo.views.common import settings

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# On every page: the CSP above, no MIME sniffing (also in errors.ALWAYS_HEADERS), no
# framing (older browsers ignore frame-ancestors), and no full URL to other sites.
PAGE_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
)
# Pages answer per viewer and per `Accept` (pip asking `/<name>/` is redirected).
PAGE_CACHING = (("Cache-Control", "no-cache"), ("Vary", "Accept"))


def secure(response: BaseResponse) -> BaseResponse:
    """The page headers, on every answer of a UI blueprint (pages, refusals, redirects)."""
    response.headers.update(PAGE_HEADERS)
    response.headers.setdefault("Cache-Control", "no-cache")
    # A simple `Accept` turns some pages into redirects to the simple API: caches must know.
    response.vary.add("Accept")
    return response


def root() -> str:
    """The path the app is mounted at (a path-token or proxy prefix), for absolute links."""
    return request.script_root.rstrip("/")


def base_url() -> str:
    """The server's URL as this browser reached it, for copy-paste lines: `public_url` when
    set (behind a proxy it may carry a path); else the address this browser used, which
    works from where it is even when the server listens on every interface (and then has
    no one address to print). werkzeug empties a `Host:` no browser sends; the bind address
    stands in then."""
    configured = settings().public_url
    reached = request.host_url if request.host else ""
    return (configured or reached or settings().base_url).rstrip("/")


def csrf_token() -> str:
    """The session's CSRF token, made on first need (the login form of an anonymous visitor
    needs one too, so that another site cannot log a browser into an account of theirs)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


def viewer() -> Principal | None:
    """Who the page is for: the session's account, or credentials the browser sends anyway.
    Credentials refused in this request (a wrong CSRF token, a bad password) make the page
    that shows the refusal an anonymous one."""
    try:
        return auth.current_principal()
    except MinirepoError:
        return None


def form_caller() -> Principal:
    """The account a web form acts for: a login session only, with its CSRF token.

    An API token (or a Basic password a browser remembers) never works a form: tokens are
    for clients, and a form post carrying one would make a stolen token a web login."""
    if request.headers.get("Authorization"):
        raise Forbidden("Web forms take a login session, not an API token: log in at /-/login")
    principal = auth.current_principal()  # a session: its CSRF token was checked there
    if principal is None:
        raise Unauthorized("Log in first")
    return principal


def render(template: str, status: int = 200, **context: Any) -> Response:
    body = render_template(template, **_globals(), status=status, **context)
    return Response(body, status=status, mimetype="text/html")


def page_stamp(repo: RepoInfo) -> Stamp:
    """What a page kept for the fast path is valid for: the repository's generation and
    the download counts' epoch. Read it before the page's data, so that a change landing
    while the page renders leaves it under the older stamp (rendered again next time),
    never under the newer one with older data."""
    stamp: Stamp = current_app.extensions["minirepo.ui_stamp"](repo.generation)
    return stamp


def render_cached(template: str, repo: RepoInfo, stamp: Stamp, **context: Any) -> Response:
    """`render` for the repository and project pages: an anonymous view of a public hosted
    repository is rendered with a marker for the base URL and kept for the fast path
    (`minirepo.uipages`) under `stamp` (`page_stamp`, taken before the data was read);
    everyone else gets a page of their own."""
    if (
        viewer() is not None
        or request.method != "GET"
        or session.get("_flashes")
        or repo.is_group
        or repo.is_proxy
        or not repo.is_public
    ):
        return render(template, **context)
    environ = request.environ
    base = base_url()
    key = cache_key(
        base, environ.get("SCRIPT_NAME", ""), environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    )
    body = render_template(template, **{**_globals(), "base_url": marked(base), **context})
    parts = current_app.extensions["minirepo.ui_pages"].put(key, stamp, body)
    return Response(fill(parts, base), mimetype="text/html")


def _globals() -> dict[str, Any]:
    return {
        "viewer": viewer(),
        "root": root(),
        "base_url": base_url(),
        "here": here(),
    }


def here() -> str:
    """This page's path as the browser asked for it (with the mount prefix), for `next`."""
    return request.script_root + request.full_path.rstrip("?")


def login_url(target: str) -> str:
    return f"{root()}/-/login?next={urllib.parse.quote(target, safe='/')}"


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no `//host`, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return f"{root()}/"
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc:
        return f"{root()}/"
    return target


def refusal_page(exc: MinirepoError, suggestions: list[tuple[str, str]] | None = None) -> Any:
    """A refusal as a browser should see it: an anonymous visitor asking for a page they
    may not see yet is sent to log in; anyone else gets a page saying why."""
    if exc.status == 401 and request.method in ("GET", "HEAD") and viewer() is None:
        return redirect(login_url(here()), code=303)
    response = render(
        "error.html",
        status=exc.status,
        reason=one_line(exc.reason),
        suggestions=suggestions or [],
    )
    # No `WWW-Authenticate` here: it would open the browser's Basic prompt over the page.
    response.headers.update({k: v for k, v in exc.headers.items() if k != "WWW-Authenticate"})
    return response


def ui_blueprint(name: str, import_name: str, **options: Any) -> Blueprint:
    """A blueprint of the web UI: its answers carry the page headers, its refusals are pages."""
    bp = Blueprint(name, import_name, **options)
    bp.after_request(secure)
    bp.register_error_handler(MinirepoError, refusal_page)
    return bp


bp = Blueprint(
    "webpage",
    __name__,
    static_folder="../static",
    static_url_path="/-/static",
)
bp.after_request(secure)
# Globals rather than context, so that macros imported by a template can call them too.
bp.add_app_template_global(csrf_token)


@bp.app_template_global()
def static(name: str) -> str:
    return url_for("webpage.static", filename=name)


@bp.get("/favicon.ico")
def favicon() -> Response:
    response = bp.send_static_file("favicon.ico")
    response.cache_control.no_cache = None
    response.cache_control.max_age = 86400
    response.cache_control.public = True
    return response
