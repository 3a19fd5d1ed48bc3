"""Refuse changes that a page on another site asks a browser to make (cross-site forgery).

A browser that once answered the index's Basic prompt sends those credentials with every
later request to the index, also with a form that a page on any other origin submits: an
HTML form may POST multipart anywhere, so without this rule such a page publishes (or
yanks, or deletes) as that browser's user. Browsers say where a request comes from
(`Origin` on every unsafe request, `Sec-Fetch-Site` in current ones); pip, uv, twine,
poetry, pdm, hatch, flit and curl send neither, so they are never refused.

The rule is one pure function of plain values, so it can run wherever the headers are
known: in Flask before any other hook (`init_app`), or earlier, before a body is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, request

from minirepo.errors import Forbidden

# RFC 9110's safe methods: every other one, known now or added later, may change something.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# `same-site` too: another port or subdomain of the same site is another origin, which may
# host pages the index's owner does not control.
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})
DEFAULT_PORTS = {"http": 80, "https": 443}
ADVICE = "a page on another site may not change this index; use twine/uv or the minirepo web UI"
# Only so much of a foreign Origin is echoed: the advice must fit in the status line.
MAX_SHOWN_ORIGIN = 100

Origin = tuple[str, str, int | None]


def cross_site_refusal(
    method: str,
    *,
    origin: str | None,
    fetch_site: str | None,
    host: str | None,
    scheme: str,
    public_url: str,
) -> str | None:
    """Why this request is refused as cross-site, or None to let it through.

    `origin`, `fetch_site` and `host` are the `Origin`, `Sec-Fetch-Site` and `Host`
    headers as received (None when absent); `scheme` is the one the request came in by.
    The server's own origins are `public_url`'s (behind a proxy the scheme and host the
    server sees are not the ones the browser used) and `scheme` + `host` (a colleague
    using the LAN address): a browser sends a site's credentials only to that site, so a
    page whose origin is the address it reached is this index's own page.
    """
    if method in SAFE_METHODS:
        return None
    if origin is not None:
        own = [found for found in _own_origins(host, scheme, public_url) if found is not None]
        if _parse_origin(origin) not in own:
            shown = origin[:MAX_SHOWN_ORIGIN]
            here = _show(own[0]) if own else "unknown"
            return f"Cross-site request refused (Origin {shown}, this index is {here}): {ADVICE}"
    site = (fetch_site or "").strip().lower()
    if site in FOREIGN_FETCH_SITES:
        return f"Cross-site request refused (Sec-Fetch-Site: {site}): {ADVICE}"
    return None


def _own_origins(host: str | None, scheme: str, public_url: str) -> list[Origin | None]:
    """The public URL's origin first (the one a refusal names), then the address reached."""
    reached = _parse_origin(f"{scheme}://{host}") if host else None
    return [_parse_origin(public_url, path_allowed=True), reached] if public_url else [reached]


def _parse_origin(url: str, *, path_allowed: bool = False) -> Origin | None:
    """(scheme, host, port) of an origin, the default port made explicit; None for
    anything that names no single host, such as `null` (a sandboxed page, a local file,
    a redirect across sites), or a Host header carrying more than a host and port."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a port that is not a number, a malformed IPv6 literal
        return None
    extra = (parts.path if not path_allowed else "") or parts.query or parts.fragment
    if not parts.hostname or parts.username is not None or extra:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, port if port is not None else DEFAULT_PORTS.get(scheme)


def _show(origin: Origin) -> str:
    scheme, host, port = origin
    shown = f"{scheme}://[{host}]" if ":" in host else f"{scheme}://{host}"
    return shown if port == DEFAULT_PORTS.get(scheme) else f"{shown}:{port}"


def environ_refusal(environ: Mapping[str, Any], public_url: str) -> str | None:
    """`cross_site_refusal` for a WSGI environ: the one reading of the headers, for Flask's
    hook and for any layer that sees the request earlier."""
    return cross_site_refusal(
        environ.get("REQUEST_METHOD", ""),
        origin=environ.get("HTTP_ORIGIN"),
        fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
        host=environ.get("HTTP_HOST"),
        scheme=environ.get("wsgi.url_scheme", "http"),
        public_url=public_url,
    )


def init_app(app: Flask, public_url: str) -> None:
    """Run the check first among the app's hooks, ahead of any added later: a refused
    request gets no credential check (no 401 that makes a browser prompt, no lockout
    count) and its body is never parsed, so no file part is spooled."""

    def refuse_cross_site() -> None:
        reason = environ_refusal(request.environ, public_url)
        if reason is not None:
            raise Forbidden(reason)

    app.before_request_funcs.setdefault(None, []).insert(0, refuse_cross_site)
