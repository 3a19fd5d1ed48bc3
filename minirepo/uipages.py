"""Repository and project pages as anonymous visitors see them, rendered once per change.

A browser page costs Flask's routing plus a Jinja render; most visits are anonymous views
of a public repository, which differ only in the URL the browser used (it goes into the
copy-paste lines). So the page is rendered with a marker where that URL goes, kept per
path under a stamp that changes with the repository (its generation) and with the
download counts, and answered by `fastpath.UiPages` before Flask with the marker replaced:
the host never enters the cache key, so one rendering serves every address of the server.
No Flask here; the views fill the cache (`minirepo.views.webpage.render_cached`).
"""

from __future__ import annotations

import html
import threading

# Where the host (and port) the browser used goes in a cached page: the page is rendered
# for `scheme://NETLOC/path`, so every line built from the base URL (a trusted-host flag
# too) carries it. No text a template writes has NULs.
NETLOC = "\x00minirepo-host\x00"
MAX_PAGES = 2000
Stamp = tuple[int, int, int]


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
