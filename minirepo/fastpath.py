"""Cached pages answered before Flask's routing, under the same rules: simple pages
(`FastPages`) and the web UI's anonymous repository and project pages (`UiPages`).

Flask's per-request work costs about half of what waitress can serve (PERFORMANCE.md), and
pip and uv ask for a simple page per dependency on every resolve. This WSGI layer answers
the common case itself: a canonical page URL, a page already rendered for the current
generation, and a caller who is anonymous on a public repository or whose credentials were
proven recently. Anything else (a miss, a redirect, an error, a first login) goes to Flask,
which renders, authenticates and fills the caches, so the two paths cannot disagree.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import peewee
from werkzeug.wsgi import get_host

from minirepo.auth import PATH_TOKEN_KEY, Authenticator
from minirepo.errors import ALWAYS_HEADERS, MinirepoError
from minirepo.metrics import CACHED_PAGE, ROUTE_KEY
from minirepo.names import RESERVED_REPO_NAMES
from minirepo.permissions import Action, listing_filter, may
from minirepo.services.index import HTML, Index
from minirepo.services.repos import served_through
from minirepo.uipages import RenderedPages, Stamp, cache_key, fill
from minirepo.views.simple import negotiate, page_answer

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_PAGE_PATH = re.compile(
    r"/(?:(?P<repo>[a-z0-9][a-z0-9._-]{0,62})/)?simple/(?:(?P<project>[a-z0-9]+(?:-[a-z0-9]+)*)/)?"
)
_REASONS = {200: "200 OK", 304: "304 Not Modified"}


class FastPages:
    def __init__(self, app: WSGIApp, index: Index, authenticator: Authenticator) -> None:
        self.app = app
        self.index = index
        self.authenticator = authenticator

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method == "GET" or method == "HEAD":
            answer = self._answer(environ)
            if answer is not None:
                status, headers, body = answer
                environ[ROUTE_KEY] = CACHED_PAGE
                start_response(_REASONS[status], [*headers, *ALWAYS_HEADERS])
                return [] if method == "HEAD" else [body]
        return self.app(environ, start_response)

    def _answer(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes] | None:
        match = _PAGE_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        repo_name, project = match.group("repo", "project")
        header = environ.get("HTTP_AUTHORIZATION")
        try:
            repo = self.index.repo(repo_name)
            principal = (
                self.authenticator.cached(
                    header,
                    environ.get("REMOTE_ADDR", ""),
                    read_only=bool(environ.get(PATH_TOKEN_KEY)),
                )
                if header
                else None
            )
        except (MinirepoError, peewee.PeeweeException):
            return None  # Flask gives the proper answer (404, 429, 503) for these
        if header and principal is None:
            return None
        if not may(principal, Action.READ, repo, project):
            return None
        if repo.is_group:
            # Only a member already known to answer, under the same read rule as Flask's
            # `readable_source`: readable itself, as private as the group.
            try:
                member = self.index.cached_member(repo, project) if project else None
            except (MinirepoError, peewee.PeeweeException):
                return None
            if member is None or not may(principal, Action.READ, member, project):
                return None
            repo = served_through(repo, member)
        kind = negotiate(environ.get("HTTP_ACCEPT"))
        only = listing_filter(principal, project)
        page = self.index.cached_page(repo, project or "", kind, only)
        if page is None:
            return None
        return page_answer(
            page,
            kind,
            repo,
            environ.get("HTTP_ACCEPT_ENCODING"),
            environ.get("HTTP_IF_NONE_MATCH"),
        )


_PATH_TOKEN = re.compile(r"/-/t/(?P<token>mr-[A-Za-z0-9_-]{8,200})(?P<rest>/.*)")


class PathTokens:
    """`/-/t/<token>/...` for CI and Docker builds where Basic auth is awkward: the token
    becomes the request's credentials and the path the plain one, so the links (relative)
    keep the prefix. Only read tokens count there (the authenticator checks), and the
    token never reaches a log line: every log names the rewritten path.

    The prefix moves to SCRIPT_NAME, as WSGI says for the part of the URL that leads to
    the app: the redirects werkzeug makes (`.../simple` to `.../simple/`) then keep it.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        match = _PATH_TOKEN.fullmatch(path) if path.startswith("/-/t/") else None
        if match is not None and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            credentials = base64.b64encode(f"__token__:{match['token']}".encode()).decode()
            environ["HTTP_AUTHORIZATION"] = f"Basic {credentials}"
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + path[: match.start("rest")]
            environ["PATH_INFO"] = match["rest"]
            environ["RAW_URI"] = environ["REQUEST_URI"] = match["rest"]
            environ[PATH_TOKEN_KEY] = True
        return self.app(environ, start_response)


# A repository's page, a project's page, a version's page.
_UI_PATH = re.compile(
    r"/(?P<repo>[a-z0-9][a-z0-9._-]{0,62})/"
    r"(?:project/(?P<project>[a-z0-9]+(?:-[a-z0-9]+)*)/(?:[A-Za-z0-9.!+_-]{1,100}/)?)?"
)


class UiPages:
    """The fast path for cached anonymous pages: no credentials, no session cookie, a
    browser's `Accept`, a public hosted repository. Anything else goes on to Flask."""

    def __init__(
        self,
        app: WSGIApp,
        index: Index,
        pages: RenderedPages,
        stamp: Callable[[int], Stamp],
        headers: Iterable[tuple[str, str]],
        public_url: str,
        session_cookie: str,
    ) -> None:
        self.app = app
        self.index = index
        self.pages = pages
        self.stamp = stamp
        self.headers = [*headers, ("Content-Type", "text/html; charset=utf-8"), *ALWAYS_HEADERS]
        self.public_url = public_url.rstrip("/")
        self.cookie = f"{session_cookie}="

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method == "GET" or method == "HEAD":
            body = self._answer(environ)
            if body is not None:
                environ[ROUTE_KEY] = CACHED_PAGE
                headers = [*self.headers, ("Content-Length", str(len(body)))]
                start_response("200 OK", headers)
                return [] if method == "HEAD" else [body]
        return self.app(environ, start_response)

    def _answer(self, environ: dict[str, Any]) -> bytes | None:
        match = _UI_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or match["repo"] in RESERVED_REPO_NAMES:
            return None  # `/simple/` above all: the simple root index goes on untouched
        if environ.get("HTTP_AUTHORIZATION"):
            return None
        if self.cookie in environ.get("HTTP_COOKIE", ""):
            return None
        if negotiate(environ.get("HTTP_ACCEPT")) != HTML:
            return None
        try:
            repo = self.index.repo(match["repo"])
        except (MinirepoError, peewee.PeeweeException):
            return None
        if repo.is_group or repo.is_proxy or not may(None, Action.READ, repo, match["project"]):
            return None
        base = self.public_url or _reached(environ)
        if not base:
            return None
        key = cache_key(
            base,
            environ.get("SCRIPT_NAME", ""),
            environ["PATH_INFO"],
            environ.get("QUERY_STRING", ""),
        )
        parts = self.pages.get(key, self.stamp(repo.generation))
        return None if parts is None else fill(parts, base)


def _reached(environ: dict[str, Any]) -> str:
    """The base URL as werkzeug's `request.host_url` builds it (scheme, a valid Host, the
    mount path); "" for a Host no browser sends, which Flask answers with the bind address."""
    host = get_host(environ)
    if not host:
        return ""
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{environ.get('SCRIPT_NAME', '')}"
