"""The access log: one line per answer, whichever layer gave it, with no secret in it.

An operator asking "why did CI get a 403?" needs the refusal's reason next to the request,
and the reason is already the status line's phrase (`minirepo.errors`), so it is read from
there. Answers come from three places (the fast path, Flask, and waitress itself for
refusals made from a request's head), so this is a WSGI layer around all of the app plus a
function `waitress_fixes` calls for waitress's own answers.

Credentials never reach a line: the caller is named by the account or the token's public
prefix (what `token list` shows), a path token's segment is replaced, and anything shaped
like a token elsewhere in the URL or the reason is too.

A line goes through Python's `logging` only when something other than the plain stream
`minirepo serve` sets up (`server.configure_logging`) would receive it (pytest's capture, a
filter, another handler). For that stream it is made here, as its formatter would make it,
and written under the handler's lock: `logging`'s machinery was most of the 17-25 % a cached
page lost to its line (docs/benchmarks.md, session 6). Each line is still flushed before the
answer is done: nothing waits in a buffer for a stop to lose.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import Any

from flask import Flask, g, request

from minirepo.auth import MAX_USER_LENGTH, parse_basic
from minirepo.credentials import TOKEN_USERNAME, is_token, public_prefix
from minirepo.errors import MinirepoError
from minirepo.permissions import Principal

log = logging.getLogger("minirepo.access")

# The text layout `minirepo serve` logs with (`server.configure_logging`); a line for a
# formatter with this layout is written without `logging`'s machinery (`_direct`).
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Told of every answer after its last byte: (environ, status line, body bytes sent).
Observer = Callable[[Mapping[str, Any], str, int], None]

# Where the app leaves the caller it proved, for the line written after it returned.
CALLER_KEY = "minirepo.caller"
REDACTED = "<redacted>"
# What waitress answers when the app raises instead of answering.
FAILED = "500 Internal Server Error"
# The segment of `/-/t/<token>/...`, whatever it holds; and a token anywhere else (also
# percent-encoded in a query). Real tokens have 43 characters after `mr-`; from 20 on, a
# public prefix (8) stays readable, and so do most project names that start with `mr-`.
_PATH_TOKEN = re.compile(r"(?<=/-/t/)[^/?]+")
_TOKEN = re.compile(r"mr(?:-|%2[dD])[A-Za-z0-9_%-]{20,}")
# What a text line shows as is; the rest is escaped, so no request can forge a line.
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def redact(text: str) -> str:
    if "mr" not in text and "/-/t/" not in text:
        return text  # nearly every line: one C-level scan instead of two regex passes
    return _TOKEN.sub(REDACTED, _PATH_TOKEN.sub(REDACTED, text))


def _escape(text: str) -> str:
    """A WSGI string's characters are its bytes (latin-1): `\\xNN` gives them back."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text  # nearly every line: four C-level checks instead of a regex pass
    return _UNSAFE.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    code = ord(found[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclasses.dataclass(slots=True)
class Entry:
    """One answer, as logged: `str()` is the text line, `fields()` the JSON one's keys."""

    client: str
    user: str | None
    token: str | None
    method: str
    path: str
    status: int
    size: int
    seconds: float
    reason: str | None

    @property
    def caller(self) -> str:
        return "/".join(part for part in (self.user, self.token) if part) or "-"

    def __str__(self) -> str:
        line = (
            f"{_escape(self.client) or '-'} {_escape(self.caller)} "
            f'"{_escape(self.method or "-")} {_escape(self.path or "-")}" '
            f"{self.status} {self.size} {self.seconds * 1000:.1f}ms"
        )
        return f'{line} "{_escape(self.reason)}"' if self.reason else line

    def fields(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "user": self.user,
            "token": self.token,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "bytes": self.size,
            "duration_ms": round(self.seconds * 1000, 1),
            "reason": self.reason,
        }


def caller(environ: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(account name, token prefix): the caller the app proved, else the one the
    credentials claim (a refusal's line names who was refused). Never the secret."""
    principal = environ.get(CALLER_KEY)
    if isinstance(principal, Principal):
        return principal.name, principal.token_prefix or None
    header = environ.get("HTTP_AUTHORIZATION")
    try:
        credentials = parse_basic(header) if header else None
    except MinirepoError:
        return None, None
    if credentials is None:
        return None, None
    user, password = credentials
    if is_token(user):  # a token pasted as the user name is still a token
        return None, public_prefix(user)
    name = user[:MAX_USER_LENGTH] if user != TOKEN_USERNAME else None
    return name, public_prefix(password) if is_token(password) else None


class _PerSecond:
    """A timestamp as a `logging` formatter writes it, its text up to the second made once
    a second (a busy index writes thousands of lines in one), then the milliseconds."""

    def __init__(self, to_second: Callable[[int], str], millis: str) -> None:
        self._to_second = to_second
        self._millis = millis
        self._cached = (-1, "")

    def __call__(self, now: float) -> str:
        second = int(now)
        cached = self._cached  # one tuple: another thread sees the old or the new pair
        if cached[0] != second:
            cached = self._cached = (second, self._to_second(second))
        return cached[1] + self._millis % int((now - second) * 1000)


# `logging.Formatter`'s default asctime (local time); the JSON line's time (UTC, ISO 8601).
_asctime = _PerSecond(
    lambda second: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)), ",%03d"
)
_utc_time = _PerSecond(
    lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)), ".%03dZ"
)


def _json_line(
    now: float, level: str, name: str, message: str, entry: Entry | None
) -> dict[str, Any]:
    line = {"time": _utc_time(now), "level": level, "logger": name, "message": message}
    return line if entry is None else {**line, **entry.fields()}


def _text_access_line(entry: Entry, now: float) -> str:
    return f"{_asctime(now)} {logging.getLevelName(logging.INFO)} {log.name}: {entry}"


def _json_access_line(entry: Entry, now: float) -> str:
    level = logging.getLevelName(logging.INFO)
    return json.dumps(_json_line(now, level, log.name, str(entry), entry))


def _line_maker(formatter: logging.Formatter | None) -> Callable[[Entry, float], str] | None:
    """How to write the line as `formatter` would, for the two `minirepo serve` installs."""
    if type(formatter) is JsonFormatter:
        return _json_access_line
    if (
        type(formatter) is logging.Formatter
        and formatter._fmt == TEXT_FORMAT
        and formatter.datefmt is None
        and formatter.converter is time.localtime
    ):
        return _text_access_line
    return None


def _direct() -> tuple[logging.StreamHandler[Any], Callable[[Entry, float], str]] | None:
    """The handler an access line reaches and how to make its line, when that is the one
    plain stream `minirepo serve` sets up; None when anything else would see the record."""
    if log.filters or log.disabled:
        return None
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = log
    while current is not None:
        handlers += current.handlers
        current = current.parent if current.propagate else None
    if len(handlers) != 1:
        return None
    [handler] = handlers
    if type(handler) is not logging.StreamHandler or handler.filters:
        return None
    if handler.level > logging.INFO:
        return None
    make = _line_maker(handler.formatter)
    return None if make is None else (handler, make)


def _emit(entry: Entry) -> None:
    direct = _direct()
    if direct is None:
        log.info("%s", entry, extra={"access": entry})
        return
    handler, make = direct
    try:
        line = make(entry, time.time())
        handler.acquire()
        try:
            stream = handler.stream
            stream.write(line + handler.terminator)
            stream.flush()  # each line whole in the log before the answer is done
        finally:
            handler.release()
    except RecursionError:  # as `logging.StreamHandler.emit` does
        raise
    except Exception:
        record = log.makeRecord(log.name, logging.INFO, "", 0, "%s", (entry,), None)
        handler.handleError(record)


def _write(environ: Mapping[str, Any], path: str, status: str, size: int, seconds: float) -> None:
    code, _, phrase = status.partition(" ")
    number = int(code) if code.isdigit() else 0
    user, token = caller(environ)
    entry = Entry(
        client=str(environ.get("REMOTE_ADDR", "")),
        user=user,
        token=token,
        method=str(environ.get("REQUEST_METHOD", "")),
        path=redact(path),
        status=number,
        size=size,
        seconds=seconds,
        reason=redact(phrase) if number >= 400 and phrase else None,
    )
    _emit(entry)


def _full_path(environ: Mapping[str, Any]) -> str:
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


def log_answer(environ: Mapping[str, Any], status: str, size: int, seconds: float) -> None:
    """The line for an answer waitress gave without the app (a refusal from the head)."""
    if log.isEnabledFor(logging.INFO):
        _write(environ, _full_path(environ), status, size, seconds)


class _Pending:
    """A request between its call and its last byte: logged and observed once, at `finish`."""

    def __init__(self, environ: dict[str, Any], logged: bool, observe: Observer | None) -> None:
        self.environ = environ
        self.logged = logged
        self.observe = observe
        self.path = _full_path(environ)  # before the path-token layer rewrites it
        self.started = time.monotonic()
        self.status = FAILED
        self.length = 0
        self.done = False

    def start_response(self, status: str, headers: list[tuple[str, str]]) -> None:
        self.status = status
        for name, value in headers:
            if name.lower() == "content-length" and value.isdigit():
                self.length = int(value)

    def finish(self, size: int) -> None:
        if self.done:
            return
        self.done = True
        if self.logged:
            _write(self.environ, self.path, self.status, size, time.monotonic() - self.started)
        if self.observe is not None:
            self.observe(self.environ, self.status, size)


class _Counted:
    """The app's body, counted as waitress takes it; the line is written on `close()`,
    which waitress calls however the answer ended (even a client gone mid-way)."""

    def __init__(self, body: Iterable[bytes], pending: _Pending) -> None:
        self._body = body
        self._pending = pending
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._pending.finish(self._sent)


class _SizedCounted(_Counted):
    """waitress sets Content-Length itself for a one-chunk body it can `len()`: keep that."""

    def __len__(self) -> int:
        body = self._body
        assert isinstance(body, Sized)  # noqa: S101 - only made for a sized body
        return len(body)


class AccessLog:
    """The WSGI layer; outside the path-token one, so it sees (and redacts) the real URL.
    `observe` is told of each answer too (`minirepo.metrics`), whatever the log level."""

    def __init__(self, app: WSGIApp, observe: Observer | None = None) -> None:
        self.app = app
        self.observe = observe

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        logged = log.isEnabledFor(logging.INFO)
        if not logged and self.observe is None:
            return self.app(environ, start_response)
        pending = _Pending(environ, logged, self.observe)

        def recording(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            pending.start_response(status, headers)
            return start_response(status, headers, *exc_info)

        try:
            body = self.app(environ, recording)
        except Exception:
            pending.status = FAILED
            pending.finish(0)
            raise
        if isinstance(body, list):
            # A page from the fast path, whole in memory: its size is known now, and a
            # wrapper round it would cost more than the page (the hot path of pip's resolve).
            pending.finish(sum(len(chunk) for chunk in body))
            return body
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body, wrapper):
            # Handed back untouched: waitress sends it from its own loop, after this
            # returns, so its size is the one announced.
            pending.finish(pending.length)
            return body
        return _SizedCounted(body, pending) if isinstance(body, Sized) else _Counted(body, pending)


def init_app(app: Flask) -> None:
    @app.teardown_request
    def _note_caller(exc: BaseException | None) -> None:
        """Runs before the body is sent: the line, written after, names the proven caller."""
        principal = g.get("principal")
        if principal is not None:
            request.environ[CALLER_KEY] = principal


class JsonFormatter(logging.Formatter):
    """`log_format = "json"`: every line one JSON object, for a log shipper to index; an
    access line carries its fields as keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        entry = getattr(record, "access", None)
        line = _json_line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            entry if isinstance(entry, Entry) else None,
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)
