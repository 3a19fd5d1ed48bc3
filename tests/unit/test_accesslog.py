"""The access log: one line per answer, from any layer, with no secret in it."""

from __future__ import annotations

import contextlib
import datetime
import errno
import io
import json
import logging
import socket
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request, request_started
from flask.testing import FlaskClient
from waitress.buffers import ReadOnlyFileBasedBuffer

from minirepo import accesslog, server
from minirepo.accesslog import AccessLog, Entry, JsonFormatter, caller, redact
from minirepo.config import load
from minirepo.errors import UserError
from minirepo.permissions import Principal
from minirepo.services import accounts
from tests.conftest import ADMIN_PASSWORD, basic, post_upload, token_auth
from tests.helpers.serverproc import FAST_HASH

TOKEN = "mr-" + "AbCd1234" + "x" * 35
PREFIX = "mr-AbCd1234"


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="minirepo.access")
    return caplog


def access(caplog: pytest.LogCaptureFixture) -> list[Entry]:
    return [record.access for record in caplog.records if record.name == "minirepo.access"]  # type: ignore[attr-defined]


# --- redaction and the text line


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"/-/t/{TOKEN}/simple/", "/-/t/<redacted>/simple/"),
        ("/-/t/not-even-a-token/simple/", "/-/t/<redacted>/simple/"),
        (f"/simple/?token={TOKEN}&x=1", "/simple/?token=<redacted>&x=1"),
        (f"/simple/?token=mr%2D{TOKEN[3:]}", "/simple/?token=<redacted>"),
        (f"/{TOKEN}/simple/", "/<redacted>/simple/"),
        ("/simple/mr-robot/", "/simple/mr-robot/"),
        (f"token {PREFIX} is not a read token", f"token {PREFIX} is not a read token"),
    ],
)
def test_tokens_never_reach_a_line(raw: str, shown: str) -> None:
    assert redact(raw) == shown


def entry(**changes: Any) -> Entry:
    fields: dict[str, Any] = {
        "client": "10.0.0.7",
        "user": None,
        "token": None,
        "method": "GET",
        "path": "/simple/",
        "status": 200,
        "size": 120,
        "seconds": 0.0042,
        "reason": None,
    }
    return Entry(**{**fields, **changes})


def test_text_line() -> None:
    assert str(entry()) == '10.0.0.7 - "GET /simple/" 200 120 4.2ms'
    refused = entry(user="alice", token=PREFIX, status=403, reason="No upload right")
    assert str(refused) == (
        f'10.0.0.7 alice/{PREFIX} "GET /simple/" 403 120 4.2ms "No upload right"'
    )


def test_a_request_cannot_forge_a_line() -> None:
    line = str(entry(path='/x" 200 1 1ms\n10.0.0.1 admin "GET /', user="a\tb"))
    assert "\n" not in line
    assert "\t" not in line
    assert line.count('"') == 2
    assert "\\x0a" in line
    assert "\\x22" in line


# --- who the caller is


def test_caller_is_the_proven_principal() -> None:
    principal = Principal(user_id=1, name="alice", is_admin=False, token_prefix=PREFIX)
    environ = {accesslog.CALLER_KEY: principal, **wsgi_basic("__token__", TOKEN)}
    assert caller(environ) == ("alice", PREFIX)


def wsgi_basic(user: str, password: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": basic(user, password)["Authorization"]}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (None, None)),
        (wsgi_basic("alice", "correct horse"), ("alice", None)),
        (wsgi_basic("__token__", TOKEN), (None, PREFIX)),
        (wsgi_basic("alice", TOKEN), ("alice", PREFIX)),
        (wsgi_basic(TOKEN, "whatever"), (None, PREFIX)),
        ({"HTTP_AUTHORIZATION": "Bearer " + TOKEN}, (None, None)),
        ({"HTTP_AUTHORIZATION": "Basic !!!"}, (None, None)),
    ],
)
def test_caller_claimed_by_credentials(
    environ: dict[str, str], expected: tuple[str | None, str | None]
) -> None:
    assert caller(environ) == expected


# --- the WSGI layer


class Body:
    """An app's body that says whether it was closed, and how often."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed += 1


def call(app: Any, environ: dict[str, Any]) -> tuple[list[str], Iterable[bytes]]:
    statuses: list[str] = []
    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "10.0.0.7"}
    body = AccessLog(app)(
        {**base, **environ}, lambda status, headers, *exc: statuses.append(status)
    )
    return statuses, body


def test_body_counted_as_sent_and_logged_on_close(lines: pytest.LogCaptureFixture) -> None:
    inner = Body([b"abc", b"defg"])

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return inner

    statuses, body = call(app, {"PATH_INFO": "/simple/"})
    assert b"".join(body) == b"abcdefg"
    assert access(lines) == []  # not before waitress is done with the body
    body.close()  # type: ignore[attr-defined]
    assert inner.closed == 1  # the app's own close, as WSGI asks
    [line] = access(lines)
    assert (line.status, line.size, line.path, line.reason) == (200, 7, "/simple/", None)
    assert statuses == ["200 OK"]


def test_a_refusal_carries_its_reason(lines: pytest.LogCaptureFixture) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("409 File already exists: a.whl; upload a new version", [])
        return [b"File already exists\n"]

    _, body = call(app, {"REQUEST_METHOD": "POST", **wsgi_basic("bob", "pw-pw-pw-pw")})
    assert body == [b"File already exists\n"]  # a list goes back as it is: logged at once
    [line] = access(lines)
    assert (line.status, line.user, line.method) == (409, "bob", "POST")
    assert line.reason == "File already exists: a.whl; upload a new version"


def test_file_wrapper_passes_through_untouched(
    lines: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """waitress sends its own file wrapper from its loop (sendfile-like, no thread held):
    wrapping it would make it an ordinary body. Its size is the Content-Length."""
    served = tmp_path / "file.whl"
    served.write_bytes(b"x" * 5000)
    with served.open("rb") as handle:
        wrapped = ReadOnlyFileBasedBuffer(handle)

        def app(environ: dict[str, Any], start_response: Any) -> ReadOnlyFileBasedBuffer:
            start_response("200 OK", [("Content-Length", "5000")])
            return wrapped

        _, body = call(app, {"wsgi.file_wrapper": ReadOnlyFileBasedBuffer})
        assert body is wrapped
    [line] = access(lines)
    assert (line.status, line.size) == (200, 5000)


def test_an_app_that_fails_is_logged_as_waitress_answers_it(
    lines: pytest.LogCaptureFixture,
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        call(app, {})
    [line] = access(lines)
    assert (line.status, line.reason) == (500, "Internal Server Error")


def test_nothing_is_wrapped_when_the_access_log_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="minirepo.access")
    inner = [b"page"]
    _, body = call(lambda environ, start_response: inner, {})
    assert body is inner


def test_waitress_own_answers_are_logged(lines: pytest.LogCaptureFixture) -> None:
    environ = {"REMOTE_ADDR": "10.0.0.9", "REQUEST_METHOD": "POST", "PATH_INFO": "/main/"}
    accesslog.log_answer(environ, "413 Upload too large", 60, 0.001)
    [line] = access(lines)
    assert (line.client, line.status, line.reason) == ("10.0.0.9", 413, "Upload too large")


# --- through the app: Flask and the fast path


@contextlib.contextmanager
def flask_dispatches(app: Flask) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(sender: Flask, **_: Any) -> None:
        seen.append(request.path)

    with request_started.connected_to(note, app):
        yield seen


def fetch(client: FlaskClient, path: str, **options: Any) -> int:
    """The status; closing the answer is what writes its line, as waitress does."""
    with client.open(path, **options) as response:
        return response.status_code


def test_the_app_names_the_proven_caller(
    client: FlaskClient, admin: str, wheel: Path, lines: pytest.LogCaptureFixture
) -> None:
    with post_upload(client, admin, wheel) as uploaded:
        assert uploaded.status_code == 200
    assert fetch(client, "/simple/", headers=basic("root", ADMIN_PASSWORD)) == 200
    upload, page = access(lines)
    assert (upload.user, upload.token, upload.status) == ("root", admin[:11], 200)
    assert (page.user, page.token, page.status) == ("root", None, 200)
    assert all(admin not in record.getMessage() for record in lines.records)


def test_fast_path_answers_are_logged(
    app: Flask, client: FlaskClient, lines: pytest.LogCaptureFixture
) -> None:
    assert fetch(client, "/simple/") == 200  # Flask renders it and fills the cache
    with flask_dispatches(app) as seen:
        assert fetch(client, "/simple/") == 200
    assert seen == [], "the fast path did not answer"
    assert [(line.path, line.status) for line in access(lines)] == [("/simple/", 200)] * 2


def test_path_token_line_keeps_only_the_prefix(
    client: FlaskClient, app: Flask, lines: pytest.LogCaptureFixture
) -> None:
    accounts.add_user("reader", "reader-password", method=FAST_HASH)
    token = accounts.create_token("reader", permission="read").secret
    assert fetch(client, f"/-/t/{token}/simple/") == 200
    [line] = access(lines)
    assert line.path == "/-/t/<redacted>/simple/"
    assert (line.user, line.token) == ("reader", token[:11])
    assert token not in str(line)


def test_post_to_the_index_url_names_the_upload_url(client: FlaskClient, admin: str) -> None:
    for path, target in [
        ("/simple/", "http://localhost/"),
        ("/main/simple/", "http://localhost/main/"),
    ]:
        response = client.post(path, headers=token_auth(admin), data={":action": "file_upload"})
        assert response.status_code == 405
        assert response.status == f"405 Uploads go to {target}, not the /simple/ index URL"
        assert response.headers["Allow"] == "GET, HEAD"


# --- logging set-up, the setting, a busy port


def test_json_lines_carry_the_fields() -> None:
    record = logging.LogRecord("minirepo.access", logging.INFO, __file__, 1, "%s", (), None)
    record.access = entry(user="alice", status=401, reason="Authentication required")
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "minirepo.access"
    assert line["time"].endswith("Z")
    assert {key: line[key] for key in ("user", "status", "bytes", "duration_ms", "reason")} == {
        "user": "alice",
        "status": 401,
        "bytes": 120,
        "duration_ms": 4.2,
        "reason": "Authentication required",
    }


def test_json_lines_for_other_loggers_and_tracebacks() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        failure = sys.exc_info()
    record = logging.LogRecord("minirepo.app", logging.ERROR, __file__, 1, "at %s", ("x",), failure)
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["message"]) == ("ERROR", "at x")
    assert "ValueError: bad" in line["exception"]
    assert "status" not in line


def test_debug_level_never_shows_sql() -> None:
    levels = {name: logging.getLogger(name).level for name in ("peewee", "waitress.queue", "")}
    try:
        server.configure_logging("debug", "json")
        assert logging.getLogger("peewee").getEffectiveLevel() == logging.INFO
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("value", ["json", "text", "JSON"])
def test_log_format_setting(value: str) -> None:
    assert load(None, {"MINIREPO_LOG_FORMAT": value}).log_format == value


def test_log_format_setting_is_checked() -> None:
    with pytest.raises(UserError, match="log_format"):
        load(None, {"MINIREPO_LOG_FORMAT": "xml"})


def test_busy_port_is_found_before_anything_is_made(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = load(None, {}, {"data": tmp_path / "data", "port": port})
        with pytest.raises(UserError) as refused:
            server.check_address(settings)
    assert refused.value.reason == (
        f"Address 127.0.0.1:{port} is already in use: "
        "stop the other server or pick another with --port"
    )
    assert not (tmp_path / "data").exists()


def test_other_listen_failures_name_the_address() -> None:
    settings = load(None, {}, {"host": "::1", "port": 80})
    failure = OSError(errno.EACCES, "Permission denied")
    assert server.listen_error(settings, failure).reason == (
        "Cannot listen on [::1]:80: Permission denied (check --host and --port)"
    )


def test_unknown_host_is_one_line() -> None:
    settings = load(None, {}, {"host": "no-such-host.invalid"})
    with pytest.raises(UserError, match=r"no-such-host.invalid:8080: no such address"):
        server.check_address(settings)


def test_a_stream_is_not_read_by_the_log(lines: pytest.LogCaptureFixture) -> None:
    """A generator body (a proxy's file while it is fetched) is counted chunk by chunk."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield from (b"a" * 10, b"b" * 5)

    _, body = call(app, {})
    assert not isinstance(body, list)
    stream = iter(body)
    assert next(stream) == b"a" * 10
    body.close()  # type: ignore[attr-defined]  # the client went away mid-way
    [line] = access(lines)
    assert line.size == 10


# --- the line written without `logging`'s machinery, for the stream `serve` sets up


@contextlib.contextmanager
def serve_logging(log_format: str) -> Iterator[io.StringIO]:
    """`server.configure_logging` as `minirepo serve` calls it, into a StringIO, on a root
    logger without pytest's handlers; those handlers and every level are put back after."""
    names = ("", "peewee", "waitress.queue")
    levels = {name: logging.getLogger(name).level for name in names}
    kept = logging.root.handlers[:]
    logging.root.handlers.clear()
    stream = io.StringIO()
    try:
        with contextlib.redirect_stderr(stream):  # StreamHandler() writes to sys.stderr
            server.configure_logging("info", log_format)
        yield stream
    finally:
        logging.root.handlers[:] = kept
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def refused_entry() -> Entry:
    return entry(
        client="10.0.0.9",
        user="alice",
        token=PREFIX,
        method="POST",
        path="/main/",
        status=413,
        size=60,
        seconds=0.001,
        reason="Upload too large",
    )


def as_logging_writes(entry: Entry, now: float) -> str:
    """The line `logging` itself would write for this entry, logged at `now`."""
    [handler] = logging.root.handlers
    record = logging.LogRecord("minirepo.access", logging.INFO, __file__, 1, "%s", (entry,), None)
    record.created, record.msecs = now, int((now - int(now)) * 1000)
    record.access = entry
    return handler.format(record) + "\n"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_direct_line_is_the_one_logging_would_write(
    monkeypatch: pytest.MonkeyPatch, log_format: str
) -> None:
    environ = {
        "REMOTE_ADDR": "10.0.0.9",
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/main/",
        **wsgi_basic("alice", TOKEN),
    }
    expected = ""
    with serve_logging(log_format) as stream:
        # Two lines in one second, then one in the next: each second's text is made once.
        for now in (1_795_000_000.042, 1_795_000_000.999, 1_795_000_001.5):
            monkeypatch.setattr(accesslog.time, "time", lambda now=now: now)
            accesslog.log_answer(environ, "413 Upload too large", 60, 0.001)
            expected += as_logging_writes(refused_entry(), now)
    assert stream.getvalue() == expected
    assert TOKEN not in stream.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serve_logging_takes_the_direct_way(log_format: str) -> None:
    with serve_logging(log_format):
        assert accesslog._direct() is not None


def test_any_other_listener_gets_the_record(lines: pytest.LogCaptureFixture) -> None:
    """pytest's capture, a filter or a handler of an operator's own: `logging` writes."""
    with serve_logging("text") as stream:
        logging.root.addHandler(lines.handler)
        assert accesslog._direct() is None
        accesslog.log_answer({"REQUEST_METHOD": "GET"}, "404 Not Found", 0, 0.0)
    assert [line.status for line in access(lines)] == [404]
    assert stream.getvalue().endswith('INFO minirepo.access: - - "GET -" 404 0 0.0ms "Not Found"\n')


class FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failing_stream_never_fails_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `logging` does: the handler reports it (a traceback on stderr), the answer goes on."""
    failed: list[logging.LogRecord] = []
    with serve_logging("text"):
        [handler] = logging.root.handlers
        monkeypatch.setattr(handler, "stream", FullDisk())
        monkeypatch.setattr(handler, "handleError", failed.append)
        accesslog.log_answer({"REQUEST_METHOD": "GET"}, "200 OK", 1, 0.0)
    [record] = failed
    assert record.getMessage() == '- - "GET -" 200 1 0.0ms'


@pytest.mark.parametrize("now", [0.0, 1_795_000_000.0, 1_795_000_000.042, 1_795_000_059.9995])
def test_json_time_is_iso_utc_in_milliseconds(now: float) -> None:
    record = logging.LogRecord("minirepo", logging.INFO, __file__, 1, "x", (), None)
    record.created = now
    shown = json.loads(JsonFormatter().format(record))["time"]
    when = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    assert shown == when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
