"""The HTTP client of a proxy repository's upstream simple index (PyPI by default).

One `Upstream` per proxy, shared by all request threads (urllib3's pools are thread-safe).
Whatever goes wrong on the way becomes an `UpstreamError` whose message a client can print
as is, and nothing waits without a bound: connects and reads have timeouts, a page has a
size cap and an overall deadline, redirects a count.

Redirects are followed here, not by urllib3, which would carry the Authorization header to
any host: credentials go to the upstream's own origin only, since PyPI-like indexes serve
files from another host (files.pythonhosted.org). urllib3 also reads no proxy settings
from the environment, so they are applied here per request, as pip and requests do.
"""

from __future__ import annotations

import base64
import dataclasses
import http
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from urllib3 import exceptions as u3

from minirepo import __version__
from minirepo.upstream_types import UpstreamConfig, UpstreamError

ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
USER_AGENT = f"minirepo/{__version__} (proxy)"
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
PAGE_STATUSES = frozenset({200, 304, 404, 410})
DEFAULT_PORTS = {"http": 80, "https": 443}
CHUNK = 65536
# Kept-alive connections per host: about one per request thread that may ask at once.
POOL_SIZE = 16
# The rest of a body this small is read to keep its connection; a longer one closes it.
DRAIN_LIMIT = 65536
# Connect errors are retried (a refused connection is the cheapest to retry); a read is
# not, since the upstream may be slow rather than gone.
RETRIES = urllib3.Retry(connect=2, read=0, redirect=0, status=0, other=0)
CREDENTIALS_RE = re.compile(r"(?<=://)[^/?#]*@")


@dataclasses.dataclass(frozen=True)
class PageResponse:
    status: int  # 200, 304, 404 or 410
    body: bytes  # b"" unless 200
    content_type: str  # the media type, lowercased, without parameters
    etag: str  # as sent, quotes included; "" if none
    url: str  # after redirects: the base of the page's relative links


class FileResponse:
    """An open download (status 200): read it with `iter_chunks`, then `close()` it."""

    def __init__(self, response: urllib3.BaseHTTPResponse, url: str) -> None:
        self._response = response
        self.url = url
        self.status = response.status
        self.length: int | None = response.length_remaining  # Content-Length, if any

    def iter_chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The body exactly as sent, never decoded: a file's sha256 is of these bytes, and
        a server that gzips a .tar.gz on the fly must not get it unpacked here (pip does
        the same)."""
        try:
            yield from self._response.stream(size, decode_content=False)
        except u3.HTTPError as exc:
            raise _failure(self.url, exc, mid_body=True) from exc

    def close(self) -> None:
        _discard(self._response)


class Upstream:
    """The client of one upstream index; thread-safe, so one serves all request threads
    and its kept-alive connections are shared."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._origin = _origin(config.url)
        self._auth = _basic(config.user, config.password) if config.user or config.password else ""
        self._pool_kw: dict[str, Any] = {
            "maxsize": POOL_SIZE,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": config.ca_bundle or None,  # None: urllib3 loads the system's
        }
        self._direct = urllib3.PoolManager(**self._pool_kw)
        self._env_proxies = {} if config.proxy else urllib.request.getproxies()
        self._proxied: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()

    def project_page(self, normalized: str, etag: str = "") -> PageResponse:
        """The project's page; 304 when `etag` still matches, 404/410 when the upstream
        has no such project. Any other answer raises UpstreamError."""
        url = f"{self.config.url}{normalized}/"
        deadline = time.monotonic() + self.config.page_deadline
        headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT, "Accept-Encoding": "gzip"}
        if etag:
            headers["If-None-Match"] = etag
        response, url = self._get(url, headers, decode=True, deadline=deadline)
        status = response.status
        media_type = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        sent_etag = response.headers.get("ETag", "")
        if status == 200:
            body = self._read_page(response, url, deadline)
            return PageResponse(status, body, media_type, sent_etag, url)
        _discard(response)
        if status not in PAGE_STATUSES:
            raise _status_error(url, status)
        if status == 304 and not sent_etag:
            sent_etag = etag  # a 304 may leave its ETag out: the one asked about still holds
        return PageResponse(status, b"", media_type, sent_etag, url)

    def open_file(self, url: str) -> FileResponse:
        """A download of `url` (a link from a parsed page); raises UpstreamError unless 200."""
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        response, url = self._get(url, headers, decode=False, deadline=None)
        if response.status != 200:
            _discard(response)
            raise _status_error(url, response.status)
        return FileResponse(response, url)

    def close(self) -> None:
        with self._lock:
            managers = [self._direct, *self._proxied.values()]
            self._proxied.clear()
        for manager in managers:
            manager.clear()

    def _get(
        self, url: str, headers: dict[str, str], *, decode: bool, deadline: float | None
    ) -> tuple[urllib3.BaseHTTPResponse, str]:
        """The first answer that is not a redirect, and the URL that gave it."""
        asked = url
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(url, headers, self._timeout(url, deadline), decode)
            if response.status not in REDIRECTS:
                return response, url
            url = _redirect_target(url, response)
        raise UpstreamError(
            "invalid", f"upstream {_shown(asked)}: more than {MAX_REDIRECTS} redirects"
        )

    def _send(
        self, url: str, headers: dict[str, str], timeout: urllib3.Timeout, decode: bool
    ) -> urllib3.BaseHTTPResponse:
        try:
            if urlsplit(url).scheme not in DEFAULT_PORTS:
                raise UpstreamError("invalid", f"upstream link {_shown(url)} is not http(s)")
            if self._auth and _origin(url) == self._origin:
                headers = {**headers, "Authorization": self._auth}
            return self._manager(url).request(
                "GET",
                url,
                headers=headers,
                timeout=timeout,
                retries=RETRIES,
                redirect=False,
                preload_content=False,
                decode_content=decode,
            )
        except u3.HTTPError as exc:
            raise _failure(url, exc, mid_body=False) from exc
        except ValueError as exc:  # urlsplit's, on a malformed URL
            raise UpstreamError("invalid", f"upstream link {_shown(url)} is malformed") from exc

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The configured proxy, else the environment's for the URL's scheme unless
        NO_PROXY names its host, else a direct connection."""
        parts = urlsplit(url)
        proxy = self.config.proxy or self._env_proxies.get(parts.scheme, "")
        host = parts.netloc.rpartition("@")[2]
        if not proxy or (not self.config.proxy and urllib.request.proxy_bypass(host)):
            return self._direct
        with self._lock:
            manager = self._proxied.get(proxy)
            if manager is None:
                manager = self._proxied[proxy] = _proxy_manager(proxy, self._pool_kw)
            return manager

    def _timeout(self, url: str, deadline: float | None) -> urllib3.Timeout:
        connect, read = self.config.connect_timeout, self.config.read_timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._late(url)
            connect, read = min(connect, left), min(read, left)
        return urllib3.Timeout(connect=connect, read=read)

    def _read_page(self, response: urllib3.BaseHTTPResponse, url: str, deadline: float) -> bytes:
        """The decoded body within `page_max_bytes` and the deadline. read1 returns what
        one socket read brings (each bounded by the read timeout), so an upstream that
        trickles a byte at a time still meets the deadline check between reads."""
        cap = self.config.page_max_bytes
        body = bytearray()
        try:
            while chunk := response.read1(CHUNK):
                body += chunk
                if len(body) > cap:
                    raise UpstreamError(
                        "invalid", f"upstream {_shown(url)}: page larger than {cap} bytes"
                    )
                if time.monotonic() > deadline:
                    raise self._late(url)
        except u3.HTTPError as exc:
            _abandon(response)
            raise _failure(url, exc, mid_body=True) from exc
        except UpstreamError:
            _abandon(response)
            raise
        response.release_conn()
        return bytes(body)

    def _late(self, url: str) -> UpstreamError:
        return UpstreamError(
            "timeout",
            f"upstream {_shown(url)} timed out: the page took over {self.config.page_deadline}s",
        )


def _proxy_manager(proxy_url: str, pool_kw: dict[str, Any]) -> urllib3.ProxyManager:
    """urllib3 ignores credentials in a proxy's URL: they become its Proxy-Authorization.
    A URL without a scheme is http://, as in pip and requests."""
    if "://" not in proxy_url:
        proxy_url = f"http://{proxy_url}"
    proxy = urllib3.util.parse_url(proxy_url)
    headers = {}
    if proxy.auth:
        user, _, password = proxy.auth.partition(":")
        headers["Proxy-Authorization"] = _basic(unquote(user), unquote(password))
    return urllib3.ProxyManager(proxy._replace(auth=None).url, proxy_headers=headers, **pool_kw)


def _redirect_target(url: str, response: urllib3.BaseHTTPResponse) -> str:
    """Where a redirect points, made absolute; never from https down to http."""
    location = response.headers.get("Location", "")
    _discard(response)
    if not location:
        raise UpstreamError("invalid", f"upstream {_shown(url)} redirected without a Location")
    target = urljoin(url, location)
    if url.lower().startswith("https:") and not target.lower().startswith("https:"):
        raise UpstreamError(
            "invalid", f"upstream {_shown(url)} redirected to {_shown(target)}: not https"
        )
    return target


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Done with an answer: keep its connection when the rest of the body is announced and
    small, else close it, so an endless body costs nothing."""
    remaining = response.length_remaining
    if remaining is not None and remaining <= DRAIN_LIMIT:
        response.drain_conn()
        response.release_conn()
    else:
        _abandon(response)


def _abandon(response: urllib3.BaseHTTPResponse) -> None:
    response.close()
    response.release_conn()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname or "", parts.port or DEFAULT_PORTS.get(scheme)


def _basic(user: str, password: str) -> str:
    """RFC 7617 Basic credentials in UTF-8 (urllib3's make_headers encodes latin-1 and
    fails on other characters)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _shown(url: str) -> str:
    """A URL for a message: without the credentials some put in it."""
    return CREDENTIALS_RE.sub("", url, count=1)


def _status_error(url: str, status: int) -> UpstreamError:
    try:
        phrase = f" {http.HTTPStatus(status).phrase}"
    except ValueError:
        phrase = ""
    return UpstreamError("status", f"upstream {_shown(url)} answered {status}{phrase}", status)


def _failure(url: str, exc: u3.HTTPError, *, mid_body: bool) -> UpstreamError:
    """The one-line reason for a urllib3 error. A MaxRetryError wraps the last attempt's
    error, which says what happened."""
    where = f"upstream {_shown(url)}"
    error: Exception = exc
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        error = exc.reason
    if isinstance(error, u3.ProxyError):
        kind = "timeout" if _is_timeout(error.original_error) else "connect"
        return UpstreamError(
            kind, f"{where} unreachable: proxy failed: {_plain(error.original_error)}"
        )
    if isinstance(error, u3.ProxySchemeUnknown):
        return UpstreamError("connect", f"{where} unreachable: {error}")
    if isinstance(error, u3.SSLError):
        return UpstreamError("connect", f"{where} unreachable: TLS failed: {error}")
    if isinstance(error, u3.ConnectTimeoutError) and not isinstance(error, u3.NewConnectionError):
        return UpstreamError("timeout", f"{where} unreachable: connecting timed out")
    if _is_timeout(error):
        return UpstreamError("timeout", f"{where} timed out waiting for data")
    if isinstance(error, u3.NewConnectionError):
        return UpstreamError("connect", f"{where} unreachable: {_plain(error)}")
    if isinstance(error, u3.ProtocolError) and mid_body:
        return UpstreamError("truncated", f"{where}: the answer ended early")
    if isinstance(error, u3.ProtocolError):
        return UpstreamError("connect", f"{where} unreachable: the connection closed unanswered")
    if isinstance(error, u3.DecodeError):
        return UpstreamError("invalid", f"{where}: the answer's content encoding is broken")
    if isinstance(error, u3.LocationValueError):
        return UpstreamError("invalid", f"{where}: not a URL that can be fetched")
    return UpstreamError("connect", f"{where} unreachable: {error}")


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, u3.TimeoutError | TimeoutError) and not isinstance(
        error, u3.NewConnectionError
    )


def _plain(error: BaseException) -> str:
    """'connection refused' rather than urllib3's repr of the connection object."""
    if isinstance(error, u3.NameResolutionError):
        return "the host name does not resolve"
    cause = error.__cause__ if isinstance(error, u3.NewConnectionError) else error
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if _is_timeout(error):
        return "timed out"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(cause)
