"""The exception hierarchy, and the one place it becomes an HTTP answer.

twine, pdm, hatch and flit print only the status line of an error and uv prints only the
body, so every refusal carries the same one-line reason in both.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, has_request_context, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Response as BaseResponse

log = logging.getLogger(__name__)


class MinirepoError(Exception):
    """A refusal the client should read; `reason` is shown to them as is."""

    status = 500
    headers: dict[str, str] = {}  # noqa: RUF012 - class-level default, never mutated

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadRequest(MinirepoError):
    status = 400


class InvalidUpload(BadRequest):
    """The uploaded form, filename, archive or metadata is not acceptable."""


class FilenameBurned(BadRequest):
    """A filename that was used once stays unusable, even after a delete (PEP 592 spirit)."""


class Unauthorized(MinirepoError):
    status = 401
    headers = {"WWW-Authenticate": 'Basic realm="minirepo"'}  # noqa: RUF012


class Forbidden(MinirepoError):
    status = 403


class NotFound(MinirepoError):
    status = 404


class RepositoryNotFound(NotFound):
    """The one answer for a repository that is missing and for one the caller may not
    read: the same words, so private repository names can't be probed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No repository named {name!r}")


class MethodNotAllowed(MinirepoError):
    """A request this repository never takes (an upload to a group without a target)."""

    status = 405
    headers = {"Allow": "GET, HEAD"}  # noqa: RUF012


class FileExists(MinirepoError):
    status = 409


class Gone(MinirepoError):
    status = 410


class TooLarge(MinirepoError):
    status = 413


class TooManyRequests(MinirepoError):
    status = 429

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.headers = {"Retry-After": str(retry_after)}


class StorageError(MinirepoError):
    """The data folder could not store or serve a file (disk full, damaged file)."""

    status = 507


class DamagedFile(MinirepoError):
    """A stored file no longer matches its row; never serve it with a wrong hash."""

    status = 500


class Busy(MinirepoError):
    """Out of a shared resource for a moment (the database stayed locked past the busy
    timeout, or no file descriptor was left); clients may retry."""

    status = 503
    headers = {"Retry-After": "1"}  # noqa: RUF012


class BadGateway(MinirepoError):
    """A proxy's upstream failed (refused, 5xx, lied about a hash) and nothing cached
    could stand in: the reason names the upstream and what went wrong."""

    status = 502


class GatewayTimeout(BadGateway):
    """A proxy's upstream did not answer in time."""

    status = 504


class UserError(MinirepoError):
    """A command-line mistake: the CLI prints it as one line and exits 1."""

    status = 400


def one_line(text: str) -> str:
    """Make `text` safe for a status line: one line of latin-1, no control characters."""
    first = text.splitlines()[0] if text else ""
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in first)
    return cleaned[:400]


API_PREFIX = "/-/api/"

# On every answer, whichever layer makes it (Flask, or the fast path without it): a 404
# echoes the path and a `.metadata` is the uploader's text, and neither may be sniffed
# into HTML by a browser.
ALWAYS_HEADERS = (("X-Content-Type-Options", "nosniff"),)


def answer_body(phrase: str, path: str) -> tuple[str, str]:
    """The body and mimetype of a refusal: the reason phrase as plain text, or
    `{"error": phrase}` under the JSON API. Also for answers waitress makes itself."""
    if path.startswith(API_PREFIX):
        return json.dumps({"error": phrase}) + "\n", "application/json"
    return phrase + "\n", "text/plain"


def to_response(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    """Answer with `reason` as the reason phrase and as the body (`answer_body`)."""
    phrase = one_line(reason)
    body, mimetype = answer_body(phrase, request.path if has_request_context() else "")
    response = Response(body, mimetype=mimetype)
    response.status = f"{status} {phrase}"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def redirect(location: str, status: int = 301) -> Response:
    """A redirect to `location`, a path or a reference relative to the request's URL.

    Never an absolute URL built from the request: `Host:` is the client's to choose, and
    a shared cache would hand a forged one's redirect to everyone asking for that URL.
    """
    response = Response(f"Moved to {location}\n", status=status, mimetype="text/plain")
    response.headers["Location"] = location
    return response


def _local_redirect(exc: RequestRedirect) -> Response:
    """werkzeug's trailing-slash and merged-slash redirects, as a path on this server.

    werkzeug builds `new_url` from `Host:`; only its path and query are kept. The path
    starts with SCRIPT_NAME (a path token's `/-/t/<token>` prefix, so the client keeps its
    credentials) and with exactly one slash: `//name/...` would be another host.
    """
    target = urlsplit(iri_to_uri(exc.new_url))
    path = "/" + target.path.lstrip("/")
    return redirect(urlunsplit(("", "", path, target.query, "")), exc.code)


def init_app(app: Flask) -> None:
    @app.before_request
    def _redirect_without_host() -> Response | None:
        """Flask answers a routing redirect with werkzeug's own response, bypassing the
        error handlers: answer it here, before the view would have run."""
        if isinstance(request.routing_exception, RequestRedirect):
            return _local_redirect(request.routing_exception)
        return None

    @app.after_request
    def _always_headers(response: BaseResponse) -> BaseResponse:
        response.headers.update(ALWAYS_HEADERS)
        return response

    @app.errorhandler(MinirepoError)
    def _minirepo_error(exc: MinirepoError) -> Response:
        return to_response(exc.status, exc.reason, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> BaseResponse:
        response = exc.get_response()
        status = exc.code or 500
        reason = exc.description or exc.name
        if status == 413:
            reason = "Request body too large for this server"
        elif status == 405:
            reason = "Method not allowed here"
        elif status == 404:
            reason = "Not found"
        answer = to_response(status, reason)
        for name in ("Allow", "Content-Range", "Retry-After", "WWW-Authenticate"):
            if name in response.headers:
                answer.headers[name] = response.headers[name]
        return answer

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.error("unhandled error while answering a request", exc_info=exc)
        return to_response(500, "Internal server error")
