"""Repository and project pages as anonymous visitors see them, rendered once per change.

A browser page costs Flask's routing plus a Jinja render; most visits are anonymous views
of a public repository, which differ only in the URL the browser used (it goes into the
copy-paste lines). So the page is rendered with a marker where that URL goes, kept per
path under a stamp that changes with the repository (its generation) and with the
download counts, and answered by `UiPages` before Flask with the marker replaced: the
host never enters the cache key, so one rendering serves every address of the server.
No Flask here; the views fill the cache (`minirepo.views.webpage.render_cached`).
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import peewee
from werkzeug.wsgi import get_host

from minirepo.errors import ALWAYS_HEADERS, MinirepoError
from minirepo.metrics import CACHED_PAGE, ROUTE_KEY
from minirepo.permissions import Action, may
from minirepo.services.index import HTML, Index
from minirepo.views.simple import negotiate

# Where the host (and port) the browser used goes in a cached page: the page is rendered
# for `scheme://NETLOC/path`, so every line built from the base URL (a trusted-host flag
# too) carries it. No text a template writes has NULs.
NETLOC = "\x00minirepo-host\x00"
MAX_PAGES = 2000
Stamp = tuple[int, int]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_UI_PATH = re.compile(
    r"/(?P<repo>[a-z0-9][a-z0-9._-]{0,62})/"
    r"(?:project/(?P<project>[a-z0-9]+(?:-[a-z0-9]+)*)/(?:[A-Za-z0-9.!+_-]{1,100}/)?)?"
)


class RenderedPages:
    """key → (stamp, the page split at the marker); bounded, cleared when full."""

    def __init__(self, limit: int = MAX_PAGES) -> None:
        self.limit = limit
        self._pages: dict[str, tuple[Stamp, list[bytes]]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, stamp: Stamp) -> list[bytes] | None:
        entry = self._pages.get(key)
        if entry is None or entry[0] != stamp:
            return None
        return entry[1]

    def put(self, key: str, stamp: Stamp, page: str) -> list[bytes]:
        parts = [part.encode("utf-8") for part in page.split(NETLOC)]
        with self._lock:
            if len(self._pages) >= self.limit:
                self._pages.clear()
            self._pages[key] = (stamp, parts)
        return parts


def cache_key(base_url: str, script_name: str, path: str, query: str) -> str:
    """The page's key: its path, and the base URL's scheme (on plain http the lines carry a
    trusted-host flag), never its host."""
    scheme = base_url.partition("://")[0]
    return f"{scheme}:{script_name}{path}?{query}"


def marked(base_url: str) -> str:
    """`base_url` with its host replaced by the marker, to render a page to keep."""
    scheme, _, rest = base_url.partition("://")
    _, slash, path = rest.partition("/")
    return f"{scheme}://{NETLOC}{slash}{path}"


def fill(parts: list[bytes], base_url: str) -> bytes:
    netloc = base_url.partition("://")[2].partition("/")[0]
    return html.escape(netloc).encode("utf-8").join(parts)


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
        if match is None or environ.get("HTTP_AUTHORIZATION"):
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
