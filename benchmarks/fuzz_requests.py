"""Throw generated raw HTTP requests at a real `minirepo serve`; report every 5xx and traceback.

    python -m benchmarks.fuzz_requests --minutes 10
    python -m benchmarks.fuzz_requests --minutes 1 --seed 7 --out /tmp/fuzz
    python -m benchmarks.fuzz_requests --replay /tmp/fuzz/finding-01.json

Not part of CI (it runs for minutes). It starts `minirepo serve` on a free loopback port
(tests.helpers.serverproc), seeds it (a wheel and an sdist of `foo`, a password account, tokens
with each permission), then sends hypothesis-generated requests over raw sockets, one at a
time so that every log line belongs to the request just sent: random methods, paths with
percent-encodings and traversal, the headers the server reads (Authorization, Accept,
Accept-Encoding, Range, If-None-Match, If-Modified-Since, Content-Length,
Transfer-Encoding, ...), multipart upload bodies with mutated parts, fresh valid uploads
and mutated copies of them.

It records every 5xx (503 with Retry-After and 507 are expected; waitress's own 501 for a
transfer coding it does not implement is correct HTTP and counted apart), every
traceback or ERROR line in the server log, every connection closed without an answer,
every hang (no answer to a complete request within --timeout), and whether `/-/health`
still answers. Each distinct finding is saved with its raw request; `--replay` sends one
again to a freshly seeded server and prints the answer and the log.

Loopback only; bounded by --minutes and --max-requests.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import dataclasses
import hashlib
import http.client
import json
import re
import socket
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.helpers.distfactory import Dist, sdist_members, wheel_members
from tests.helpers.serverproc import Server, running_server
from tests.unit.test_fuzz_properties import (
    FILENAMES,
    HASHERS,
    ODD_TEXT,
    Part,
    encode_multipart,
    fix_tar_checksums,
    gz,
    mostly,
    mutated,
    noise,
    rarely,
    sdist_gz,
    sdist_tar,
    tar_bytes,
    tar_points,
    wheel_deflated,
    wheel_variants,
    zip_bytes,
)

PASSWORD = "alice-password-1"
SERVER_SETTINGS = {
    # Small limits, so that random bodies reach the 413s; short lockouts, so that the
    # wrong-password requests exercise the limiter without locking the run out for long.
    "MINIREPO_MAX_UPLOAD_SIZE": str(256 * 1024),
    "MINIREPO_MAX_METADATA_SIZE": str(64 * 1024),
    "MINIREPO_LOGIN_FAILURE_LIMIT": "30",
    "MINIREPO_LOGIN_FAILURE_WINDOW": "5",
    "MINIREPO_THREADS": "4",
}
EXPECTED_5XX = {503, 507}
BATCH = 200
HEALTH_EVERY = 250
SHORT_TIMEOUT = 0.3  # for a request we left incomplete on purpose (the server must wait)
# waitress 3.0.2 never answers an HTTP/1.1 request that has `Expect: 100-continue` and no
# body (no Content-Length, or 0, and no Transfer-Encoding): its send_continue() sets
# `request.completed = False` on a request that was already complete, so it is never queued.
# Counted under its own label instead of as a hang of minirepo.
KNOWN_EXPECT_HANG = "waitress-expect-no-body"
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<rest>.*)$")


# --- the seeded server ----------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    host: str
    port: int
    credentials: dict[str, str]  # label -> Authorization value

    @classmethod
    def seed(cls, server: Server) -> Target:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        admin = server.admin_token
        server.add_user("alice", PASSWORD)
        credentials = {
            "admin": basic("__token__", admin),
            "read": basic("__token__", server.create_token("alice", "--permission", "read")),
            "upload": basic("__token__", server.create_token("alice")),
            "scoped": basic("__token__", server.create_token("alice", "--project", "other")),
            "password": basic("alice", PASSWORD),
            "wrong": basic("alice", "not-the-password"),
        }
        target = cls(host, int(port), credentials)
        for filename, data in (
            (Dist("foo", "1.0").wheel_name, wheel_deflated()),
            (Dist("foo", "1.0").sdist_name, sdist_gz()),
        ):
            raw = upload_request(target, filename, data, "foo", "1.0", "admin")
            outcome = send(target, raw, "POST", 10.0)
            assert outcome.status == 200, outcome
        return target


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def upload_request(
    target: Target, filename: str, data: bytes, name: str, version: str, auth: str
) -> bytes:
    boundary = "fuzz-7f3a9c"
    fields = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version}
    fields["filetype"] = "bdist_wheel" if filename.endswith(".whl") else "sdist"
    fields["sha256_digest"] = hashlib.sha256(data).hexdigest()
    parts = [Part(key, value.encode()) for key, value in fields.items()]
    body = encode_multipart([*parts, Part("content", data, filename)], boundary)
    head = [
        "POST / HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        f"Authorization: {target.credentials[auth]}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# --- sending one request --------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    kind: str  # answer, closed, timeout, reset, refused
    status: int = 0
    status_line: str = ""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0


def send(target: Target, raw: bytes, method: str, timeout: float) -> Outcome:
    """Send `raw` on a fresh connection and read one answer (http.client parses it)."""
    start = time.monotonic()
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except OSError:
        return Outcome("refused", seconds=time.monotonic() - start)
    with contextlib.closing(sock):
        # The server may answer (413, 400) and close before reading the whole body.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        parse_as = method if method in ("GET", "HEAD", "POST", "PUT", "DELETE") else "GET"
        response = http.client.HTTPResponse(sock, method=parse_as)
        try:
            response.begin()
            body = response.read(4 * 1024**2)
        except TimeoutError:
            return Outcome("timeout", seconds=time.monotonic() - start)
        except (http.client.RemoteDisconnected, http.client.BadStatusLine) as exc:
            kind = "closed" if isinstance(exc, http.client.RemoteDisconnected) else "badline"
            return Outcome(kind, status_line=repr(exc)[:200], seconds=time.monotonic() - start)
        except (ConnectionResetError, http.client.IncompleteRead, http.client.HTTPException):
            return Outcome("reset", seconds=time.monotonic() - start)
        finally:
            response.close()
        line = f"{response.status} {response.reason}"
        return Outcome(
            "answer",
            response.status,
            line,
            {key.lower(): value for key, value in response.getheaders()},
            body,
            time.monotonic() - start,
        )


def healthy(target: Target) -> bool:
    url = f"http://{target.host}:{target.port}/-/health"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# --- the server log -------------------------------------------------------------------------


class LogWatcher:
    """New ERROR/CRITICAL records (with their tracebacks) since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def new_errors(self) -> list[str]:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode("utf-8", "replace")
        # Keep a partial last line for the next look.
        cut = text.rfind("\n") + 1
        self.offset += len(text[:cut].encode("utf-8", "replace"))
        records: list[list[str]] = []
        for line in text[:cut].splitlines():
            match = LOG_RECORD.match(line)
            if match:
                records.append([line] if match["level"] in ("ERROR", "CRITICAL") else [])
            elif records and records[-1]:
                records[-1].append(line)
            elif line.startswith("Traceback") or (line and not records):
                records.append([line])  # printed outside logging: still a finding
        return ["\n".join(record) for record in records if record]


def error_key(record: str) -> str:
    """What makes two log records the same bug: the message and the last exception line."""
    lines = record.splitlines()
    head = LOG_RECORD.match(lines[0])
    message = head["rest"] if head else lines[0]
    message = re.sub(r"/\S*", "<path>", message)[:120]
    exceptions = [
        line for line in lines[1:] if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)", line)
    ]
    return f"{message} | {exceptions[-1][:160] if exceptions else ''}"


# --- generated requests ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Generated:
    raw: bytes
    method: str
    label: str  # what kind of request, for the summary
    complete: bool | None  # False: incomplete on purpose; None: framing unknown


SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "simple",
            "+simple",
            "files",
            "main",
            "legacy",
            "-",
            "health",
            "foo",
            "Foo",
            "F.O_O",
            "nope",
            "pypi",
            "project",
            "foo-1.0-py3-none-any.whl",
            "foo-1.0.tar.gz",
            "foo-1.0-py3-none-any.whl.metadata",
            "foo-1.0.tar.gz.metadata",
            "..",
            ".",
            "",
            "%2e%2e",
            "%2E%2e%2f",
            "%2F",
            "%5c",
            "%00",
            "%ff",
            "%c0%af",
            "%e2%80%a8",
            "%25",
            "%",
            "%zz",
            "x" * 300,
        ]
    ),
    st.text(max_size=12).map(lambda text: quote(text, safe="")),
)
RAW_SEGMENTS = st.one_of(
    SEGMENTS,
    st.text(st.characters(codec="ascii", exclude_characters=" \r\n"), max_size=12),
    st.binary(max_size=6).map(lambda raw: raw.decode("latin-1").replace(" ", "")),
)
# Header values any HTTP parser must pass on: printable ASCII and latin-1 obs-text.
PRINTABLE = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
)
KNOWN_PATHS = (
    "/",
    "/simple/",
    "/simple/foo/",
    "/simple/Foo/",
    "/simple/foo",
    "/+simple/foo/",
    "/main/",
    "/main/simple/",
    "/main/simple/foo/",
    "/main/foo/",
    "/foo/",
    "/files/foo/foo-1.0-py3-none-any.whl",
    "/files/foo/foo-1.0.tar.gz",
    "/files/foo/foo-1.0-py3-none-any.whl.metadata",
    "/main/files/foo/foo-1.0.tar.gz",
    "/files/foo/nope-1.0.tar.gz",
    "/-/health",
    "/legacy/",
    "/main/legacy",
)
QUERIES = st.one_of(
    st.just(""),
    st.sampled_from(["?", "?a=b", "?:action=file_upload", "?%ff", "#frag", "?x=" + "y" * 2000]),
)


@st.composite
def paths(draw: st.DrawFn, target: Target, hostile: bool) -> str:
    segments = RAW_SEGMENTS if hostile else SEGMENTS
    path = draw(
        st.one_of(
            st.sampled_from(KNOWN_PATHS),
            st.sampled_from(KNOWN_PATHS),
            st.lists(segments, max_size=5).map(lambda parts: "/" + "/".join(parts)),
            st.lists(segments, max_size=4).map(lambda parts: "/" + "/".join(parts) + "/"),
            st.sampled_from(
                ["*", "", "//simple/", f"http://{target.host}:{target.port}/simple/", "simple/"]
            ),
        )
    )
    return path + draw(QUERIES)


METHODS = mostly(
    "GET", st.sampled_from(["HEAD", "HEAD", "POST", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
)
RAW_METHODS = st.one_of(
    METHODS,
    st.sampled_from(["TRACE", "CONNECT", "get", "PROPFIND", "G ET", "", "\x00"]),
    st.text(st.characters(codec="ascii", exclude_characters=" \r\n"), min_size=1, max_size=8),
)
VERSIONS = mostly("HTTP/1.1", st.just("HTTP/1.0"))
RAW_VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.12", "http/1.1", ""])
DATES = st.sampled_from(
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Fri, 01 Jan 2100 00:00:00 GMT",
        "Mon, 01 Jan 99999 00:00:00 GMT",
        "Mon, 32 Foo 2020 25:61:61 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "0",
        "-1",
        "",
        "Sun, 06 Nov 1994 08:49:37 +9999",
    ]
)
ACCEPTS = mostly(
    "application/vnd.pypi.simple.v1+json",
    st.sampled_from(
        [
            "application/vnd.pypi.simple.v1+json",
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
            "text/html;q=0.01",
            "application/vnd.pypi.simple.latest+json",
            "application/vnd.pypi.simple.v1+html",
            "text/html",
            "*/*",
            "*/*;q=nan",
            "application/vnd.pypi.simple.v1+json;q=1e999",
            ";;;,,,",
            "text/html;q=0.5, */*;q=0.6, application/vnd.pypi.simple.v1+json;q=0.4",
            "application/vnd.pypi.simple.v1+json;q=0, text/html;q=0",
        ]
    ),
)
RANGES = st.one_of(
    st.sampled_from(
        [
            "bytes=0-0",
            "bytes=0-10",
            "bytes=-5",
            "bytes=-0",
            "bytes=5-",
            "bytes=100000-",
            "bytes=0-0,2-3",
            "bytes=10-5",
            "bytes=abc",
            "items=0-1",
            "bytes=99999999999999999999-",
            "bytes=-99999999999999999999",
            "bytes=0-99999999999999999999",
            "bytes= 0-1",
            "bytes=0--1",
        ]
    ),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(-5, 3000), st.integers(-5, 3000)),
)
ETAGS = st.sampled_from(["*", 'W/"x"', '"x", W/"y"', '"', "W/", '""', ",,,", '"a" "b"', "x"])


@st.composite
def headers(draw: st.DrawFn, target: Target, hostile: bool, upload: bool) -> list[tuple[str, str]]:
    out = []
    if not rarely(draw, 12):
        out.append(("Host", f"{target.host}:{target.port}"))
    if draw(mostly(True, st.just(False)) if upload else st.booleans()):
        label = draw(st.sampled_from(sorted(target.credentials)))
        odd = st.one_of(
            st.sampled_from(
                [
                    "Basic \xe9",
                    "Basic \xe9\xe9\xe9\xe9",
                    "Basic",
                    "Basic =",
                    "Bearer abc",
                    "Basic " + "A" * 6000,
                    basic("alice", "x" * 5000),
                    basic("__token__", "mr-" + "x" * 40),
                    basic("x" * 300, "password"),
                    basic("", ""),
                    "basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
                ]
            ),
            (ODD_TEXT if hostile else PRINTABLE).map(lambda text: "Basic " + text),
            st.binary(max_size=30).map(lambda raw: "Basic " + base64.b64encode(raw).decode()),
        )
        out.append(("Authorization", draw(mostly(target.credentials[label], odd))))
    optional = {
        "Accept": ACCEPTS,
        "Accept-Encoding": st.sampled_from(["gzip", "gzip, deflate, zstd", "gzip;q=0", "br", ""]),
        "Range": RANGES,
        "If-None-Match": ETAGS,
        "If-Modified-Since": DATES,
        "If-Range": st.one_of(DATES, ETAGS),
        "If-Match": ETAGS,
        "X-Forwarded-For": st.sampled_from(["1.2.3.4", "::1", "junk"]),
        "Cookie": st.sampled_from(["session=x", "a=b; c=d", "=", "\x00"]),
    }
    for name, values in optional.items():
        if rarely(draw, 4):
            out.append((name, draw(values)))
    if rarely(draw, 12):
        out.append(("Expect", draw(st.sampled_from(["100-continue", "100-Continue", "bogus"]))))
    if hostile and draw(st.booleans()):  # any header at all, with any value
        name = draw(st.text(st.characters(codec="ascii"), min_size=1, max_size=12))
        out.append((name, draw(ODD_TEXT)))
    known = [*optional, "Host", "Content-Type", "Authorization"]
    if hostile and draw(st.booleans()):  # a known header with a hostile value
        out.append((draw(st.sampled_from(known)), draw(ODD_TEXT)))
    if rarely(draw, 4):  # a known header with an odd value that still is a valid header
        out.append((draw(st.sampled_from(known)), draw(PRINTABLE)))
    return out


@st.composite
def multipart_body(draw: st.DrawFn) -> tuple[bytes, str]:
    """An upload body: twine's fields with some wrong, and a file that may be mutated."""
    wheel = draw(st.booleans())
    version = draw(mostly("1.0", st.integers(0, 10**6).map(lambda n: f"2.{n}")))
    dist = Dist("foo", version)
    if version == "1.0":
        data = draw(mostly(wheel_deflated() if wheel else sdist_gz(), file_variants()))
    elif wheel:
        data = zip_bytes(wheel_members(dist), zipfile.ZIP_DEFLATED)
    else:
        data = gz(tar_bytes(sdist_members(dist)))
    filename = draw(mostly(dist.wheel_name if wheel else dist.sdist_name, FILENAMES))
    fields = {
        ":action": draw(mostly("file_upload", st.sampled_from(["submit", "", "x"]))),
        "protocol_version": draw(mostly("1", ODD_TEXT)),
        "name": draw(mostly("foo", ODD_TEXT)),
        "version": draw(mostly(version, ODD_TEXT)),
        "filetype": draw(mostly("bdist_wheel" if wheel else "sdist", ODD_TEXT)),
        "description": draw(mostly("hello", st.integers(60_000, 70_000).map("d".__mul__))),
    }
    for field, hasher in HASHERS.items():
        fields[field] = draw(mostly(hasher(data).hexdigest(), ODD_TEXT))
    parts = [
        Part(key, value.encode("utf-8", "surrogatepass"))
        for key, value in fields.items()
        if not rarely(draw, 25)
    ]
    if not rarely(draw, 25):
        parts.append(Part("content", data, filename, draw(st.booleans())))
    if rarely(draw, 6):
        parts = draw(st.permutations(parts))
    boundary = draw(st.sampled_from(["fuzz-7f3a9c", "a", "x" * 70, "x" * 71]))
    body = encode_multipart(parts, boundary)
    if rarely(draw, 8):
        body = draw(mutated(body, (0, len(body) - len(boundary) - 8)))
    content_type = draw(
        mostly(
            f"multipart/form-data; boundary={boundary}",
            st.sampled_from(
                [
                    f'multipart/form-data; boundary="{boundary}"',
                    "multipart/form-data",
                    f"multipart/form-data; boundary={boundary}; charset=latin-1",
                    "application/x-www-form-urlencoded",
                    "text/plain",
                ]
            ),
        )
    )
    return body, content_type


def file_variants() -> st.SearchStrategy[bytes]:
    tar = sdist_tar()
    return st.one_of(
        wheel_variants(),
        mutated(sdist_gz(), (0, 3, 9)),
        mutated(tar, tar_points(tar)).map(fix_tar_checksums).map(gz),
        st.binary(max_size=300),
        st.integers(250_000, 270_000).map(noise),
    )


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos = [], 0
    for size in sizes:
        piece = body[pos : pos + size]
        if not piece:
            break
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        pos += len(piece)
    if pos < len(body):
        out.append(b"%x\r\n%s\r\n" % (len(body) - pos, body[pos:]))
    return b"".join(out) + b"0\r\n\r\n"


@st.composite
def framed(draw: st.DrawFn, body: bytes) -> tuple[list[tuple[str, str]], bytes, bool | None]:
    """Headers and bytes that carry `body`, framed well or badly; and whether it is complete."""
    how = draw(
        mostly(
            "length",
            st.sampled_from(
                ["length", "short", "long", "chunked", "bad-chunked", "both", "none", "odd"]
            ),
        )
    )
    if how == "length":
        return [("Content-Length", str(len(body)))], body, True
    if how == "short":
        return [("Content-Length", str(max(0, len(body) - draw(st.integers(1, 50)))))], body, True
    if how == "long":
        return [("Content-Length", str(len(body) + draw(st.integers(1, 50))))], body, False
    if how == "chunked":
        sizes = draw(st.lists(st.integers(1, 4096), max_size=6))
        return [("Transfer-Encoding", "chunked")], chunked(body, sizes), True
    if how == "bad-chunked":
        size = draw(st.sampled_from(["zz", "-1", "ffffffffffffffffff", "1;x=y", " 5", "0x5", ""]))
        return [("Transfer-Encoding", "chunked")], f"{size}\r\n".encode() + body, None
    if how == "both":
        coding = draw(st.sampled_from(["chunked", "gzip", "chunked, chunked", " chunked", "x"]))
        return [("Content-Length", str(len(body))), ("Transfer-Encoding", coding)], body, None
    if how == "none":
        return [], body, True
    value = draw(
        st.sampled_from(["+5", " 5", "5,5", "0x10", "-1", "99999999999", "1e3", "\u0661", ""])
    )
    return (
        [("Content-Length", value), ("Content-Length", str(len(body)))][: draw(st.integers(1, 2))],
        body,
        None,
    )


def encode_head(request_line: str, header_list: list[tuple[str, str]]) -> bytes:
    lines = [request_line, *(f"{name}: {value}" for name, value in header_list)]
    text = "\r\n".join(lines) + "\r\n\r\n"
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


@st.composite
def requests(draw: st.DrawFn, target: Target) -> Generated:
    kind = draw(
        st.sampled_from(["page", "page", "page", "page", "upload", "upload", "valid", "mutant"])
    )
    if kind == "valid" or kind == "mutant":
        version = f"3.{draw(st.integers(0, 10**9))}"
        dist = Dist(draw(st.sampled_from(["foo", "bar-baz", "Qux.Q"])), version)
        if rarely(draw, 5):  # foo 1.0 again, with other contents: a 409
            dist = Dist("foo", "1.0", payload=f"X = {draw(st.integers())}\n")
            version = "1.0"
        wheel = draw(st.booleans())
        if wheel:
            data = zip_bytes(wheel_members(dist), zipfile.ZIP_DEFLATED)
        else:
            data = gz(tar_bytes(sdist_members(dist)))
        filename = dist.wheel_name if wheel else dist.sdist_name
        auth = draw(st.sampled_from(["admin", "admin", "upload", "password", "scoped", "read"]))
        raw = upload_request(target, filename, data, dist.name, version, auth)
        if kind == "valid":
            return Generated(raw, "POST", "valid-upload", True)
        head, _, body = raw.partition(b"\r\n\r\n")
        if draw(st.booleans()):  # the body only, with a Content-Length that fits it again
            points = tuple(m.start() for m in re.finditer(rb"\r\n\r\n|PK|name=", body))
            body = draw(mutated(body, points))
            head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(body), head)
            return Generated(head + b"\r\n\r\n" + body, "POST", "mutated-upload-body", True)
        points = tuple(m.start() for m in re.finditer(rb"\r\n|: ", head))
        return Generated(draw(mutated(raw, points)), "POST", "mutated-upload", None)
    hostile = rarely(draw, 4)  # then anything goes; else every piece is valid HTTP
    method = draw(RAW_METHODS if hostile else METHODS)
    header_list = draw(headers(target, hostile, kind == "upload"))
    if kind == "upload":
        method = draw(mostly("POST", RAW_METHODS if hostile else METHODS))
        path = draw(st.sampled_from(["/", "/", "/legacy/", "/main/", "/main/legacy", "/nope/"]))
        body, content_type = draw(multipart_body())
        header_list.append(("Content-Type", content_type))
    else:
        path = draw(paths(target, hostile))
        body = draw(mostly(b"", st.binary(max_size=64)))
    frame_headers, payload, complete = draw(framed(body)) if body else ([], b"", True)
    header_list += frame_headers
    if draw(mostly(True, st.just(False))):
        header_list.append(("Connection", "close"))
    if rarely(draw, 5):
        header_list = draw(st.permutations(header_list))
    version = draw(RAW_VERSIONS if hostile else VERSIONS)
    raw = encode_head(f"{method} {path} {version}".rstrip(), header_list) + payload
    names = {name.lower(): value.strip() for name, value in header_list}
    declared = names.get("content-length", "0") != "0" or "transfer-encoding" in names
    expects = names.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1"
    if expects and not declared:
        return Generated(raw, method, KNOWN_EXPECT_HANG, None)
    if hostile and rarely(draw, 5):  # odd line endings, folded or broken header lines
        raw = raw.replace(b"\r\n", draw(st.sampled_from([b"\n", b"\r\n ", b"\r", b"\r\n\t"])), 2)
        complete = None
    label = f"{kind}{'-hostile' if hostile else ''}:{method}"[:30]
    return Generated(raw, method, label, complete)


# --- the run --------------------------------------------------------------------------------


@dataclasses.dataclass
class Finding:
    key: str
    what: str
    count: int
    raw: bytes
    detail: str


@dataclasses.dataclass
class Stats:
    started: float = dataclasses.field(default_factory=time.monotonic)
    sent: int = 0
    statuses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    labels: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    findings: dict[str, Finding] = dataclasses.field(default_factory=dict)
    expected_5xx: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    seconds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    answers: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    by_kind: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    health_checks: int = 0
    health_failures: int = 0
    slowest: float = 0.0

    def note(self, what: str, key: str, raw: bytes, detail: str) -> None:
        full = f"{what}: {key}"
        if full in self.findings:
            self.findings[full].count += 1
        else:
            self.findings[full] = Finding(full, what, 1, raw, detail)
            print(f"  [{self.sent}] new finding: {full[:200]}", flush=True)


def classify(stats: Stats, generated: Generated, outcome: Outcome, records: list[str]) -> None:
    """Count the outcome; note a finding for an unexpected 5xx, log error, hang or silence.

    A 5xx and the log records its request caused are one finding, keyed by both.
    """
    stats.outcomes[outcome.kind] += 1
    stats.seconds[f"{generated.label.split(':')[0]}/{outcome.kind}"] += outcome.seconds
    stats.by_kind[f"{generated.label.split(':')[0]}/{outcome.kind}"] += 1
    stats.slowest = max(stats.slowest, outcome.seconds)
    unexpected = False
    if outcome.kind == "answer":
        stats.statuses[str(outcome.status)] += 1
        body = outcome.body.decode("latin-1")[:300]
        # waitress's own answers (bad framing, bad header): "...\r\n\r\n(generated by <ident>)"
        waitress = "\r\n\r\n(generated by " in body
        why = f" (waitress: {body.split(chr(10))[2].strip()[:40]})" if waitress else ""
        answer = f"{generated.label.split(':')[0]}: {outcome.status_line[:60]}{why}"
        stats.answers[answer] += 1
        if outcome.status < 500:
            pass
        elif outcome.status in EXPECTED_5XX and (
            outcome.status != 503 or "retry-after" in outcome.headers
        ):
            stats.expected_5xx[outcome.status_line[:80]] += 1
        elif outcome.status in (501, 505) and (waitress or generated.method == "HEAD"):
            # waitress's answer to a transfer coding or HTTP version it does not implement
            # (RFC 9112 6.1); minirepo itself never answers 501 or 505.
            stats.expected_5xx[f"{outcome.status_line[:60]} (waitress, protocol)"] += 1
        else:
            unexpected = True
            cause = error_key(records[0]) if records else "no log record"
            key = f"{outcome.status_line[:60]}{' (waitress)' if waitress else ''} <- {cause}"
            detail = body + ("\n" + records[0][-3000:] if records else "")
            stats.note("5xx", key, generated.raw, detail)
    elif outcome.kind == "timeout" and generated.complete:
        stats.note("hang", generated.label, generated.raw, f"no answer in {outcome.seconds:.1f}s")
    elif outcome.kind in ("closed", "badline") and generated.complete:
        stats.note("no answer", generated.label, generated.raw, outcome.status_line)
    for record in records[1 if unexpected else 0 :]:
        stats.note("log", error_key(record), generated.raw, record[-3000:])


def run(
    stats: Stats, minutes: float, max_requests: int, timeout: float, base_seed: int, out: Path
) -> None:
    deadline = time.monotonic() + minutes * 60 + 120  # set again once the server is seeded
    with running_server(out / "server", SERVER_SETTINGS) as server:
        target = Target.seed(server)
        stats.started = time.monotonic()
        deadline = stats.started + minutes * 60
        (out / "credentials.json").write_text(json.dumps(target.credentials, indent=2))
        log = LogWatcher(server.log)

        def one(generated: Generated) -> None:
            if time.monotonic() >= deadline or stats.sent >= max_requests:
                return
            stats.sent += 1
            stats.labels[generated.label.split(":")[0]] += 1
            wait = timeout if generated.complete else SHORT_TIMEOUT
            try:
                outcome = send(target, generated.raw, generated.method, wait)
            except Exception as exc:  # a bug of this script: note it, keep going
                stats.note("fuzzer error", repr(exc)[:200], generated.raw, "")
                return
            classify(stats, generated, outcome, log.new_errors())
            suspicious = outcome.kind != "answer" or outcome.status >= 500
            if stats.sent % HEALTH_EVERY == 0 or suspicious:
                stats.health_checks += 1
                if not healthy(target):
                    stats.health_failures += 1
                    stats.note("health", "/-/health did not answer 200", generated.raw, "")
            if server.proc.poll() is not None:
                stats.note("crash", f"server exited {server.proc.returncode}", generated.raw, "")
                raise SystemExit(f"the server died:\n{server.log_tail()}")
            if stats.sent % 2000 == 0:
                progress(stats)

        batch = 0
        while time.monotonic() < deadline and stats.sent < max_requests:
            # Each batch its own seed; different --seed values never share a batch.
            test = seed(base_seed * 1_000_003 + batch)(
                settings(
                    max_examples=BATCH,
                    database=None,
                    deadline=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )(given(requests(target))(one))
            )
            test()
            batch += 1
        stats.health_checks += 1
        if not healthy(target):
            stats.health_failures += 1
            stats.note("health", "/-/health did not answer 200 at the end", b"", "")
        for record in log.new_errors():
            stats.note("log", error_key(record), b"", record[-3000:])


def progress(stats: Stats) -> None:
    elapsed = time.monotonic() - stats.started
    top = ", ".join(f"{code}:{n}" for code, n in sorted(stats.statuses.items()))
    print(
        f"  {elapsed:6.0f}s  {stats.sent} requests ({stats.sent / elapsed:.0f}/s)  {top}  "
        f"findings={len(stats.findings)}",
        flush=True,
    )


def reproducer(raw: bytes) -> str:
    """The request head, each line cut to 200 characters, and the size of the body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [
        line if len(line) <= 200 else f"{line[:200]}...<{len(line)} chars>"
        for line in head.decode("latin-1").split("\r\n")
    ]
    shown = "\n".join(lines)
    return f"{shown}\n\n<{len(body)} body bytes>" if body else shown


def summarize(stats: Stats, out: Path) -> None:
    elapsed = time.monotonic() - stats.started
    print("\n=== fuzz_requests summary ===")
    print(
        f"requests sent:     {stats.sent} in {elapsed:.0f}s ({stats.sent / max(elapsed, 1):.0f}/s)"
    )
    print(f"request kinds:     {dict(stats.labels.most_common())}")
    print(f"outcomes:          {dict(stats.outcomes.most_common())}")
    print(f"outcome by kind:   {dict(sorted(stats.by_kind.items()))}")
    print(f"statuses:          {dict(sorted(stats.statuses.items()))}")
    print(f"expected 5xx:      {dict(stats.expected_5xx.most_common())}")
    print(f"slowest answer:    {stats.slowest:.2f}s")
    spent = {key: round(value, 1) for key, value in stats.seconds.most_common()}
    print(f"seconds spent:     {spent}")
    print("most frequent answers (request kind: status line):")
    for answer, count in stats.answers.most_common(30):
        print(f"  {count:7d}  {answer}")
    print(f"health checks:     {stats.health_checks} ({stats.health_failures} failed)")
    print(f"distinct findings: {len(stats.findings)}")
    report = []
    for number, finding in enumerate(stats.findings.values(), 1):
        path = out / f"finding-{number:02d}.json"
        entry = {
            "key": finding.key,
            "count": finding.count,
            "detail": finding.detail,
            "raw_b64": base64.b64encode(finding.raw).decode(),
        }
        path.write_text(json.dumps(entry, indent=2))
        report.append({**entry, "file": str(path)})
        print(f"\n--- finding {number}: {finding.key} (x{finding.count})")
        print(f"replay: python -m benchmarks.fuzz_requests --replay {path}")
        print(finding.detail[-1200:])
        print("request:")
        print(reproducer(finding.raw))
    summary = {
        "requests": stats.sent,
        "seconds": round(elapsed),
        "statuses": dict(stats.statuses),
        "outcomes": dict(stats.outcomes),
        "outcome_by_kind": dict(stats.by_kind),
        "answers": dict(stats.answers.most_common(200)),
        "expected_5xx": dict(stats.expected_5xx),
        "health_failures": stats.health_failures,
        "findings": [{k: v for k, v in r.items() if k != "raw_b64"} for r in report],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nfindings and summary.json in {out}")


def replay(path: Path, timeout: float) -> None:
    """Send one saved request to a freshly seeded server, with this server's credentials."""
    entry = json.loads(path.read_text())
    raw = base64.b64decode(entry["raw_b64"])
    old = json.loads((path.parent / "credentials.json").read_text())
    with (
        tempfile.TemporaryDirectory(prefix="minirepo-replay-") as folder,
        running_server(Path(folder), SERVER_SETTINGS) as server,
    ):
        target = Target.seed(server)
        for label, value in old.items():
            raw = raw.replace(value.encode(), target.credentials[label].encode())
        log = LogWatcher(server.log)
        method = raw.split(b" ", 1)[0].decode("latin-1")
        outcome = send(target, raw, method, timeout)
        print(f"{outcome.kind}: {outcome.status_line}")
        print(outcome.body[:500].decode("latin-1"))
        for record in log.new_errors():
            print(record)


@contextlib.contextmanager
def output_folder(path: str | None) -> Iterator[Path]:
    if path:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
    else:
        yield Path(tempfile.mkdtemp(prefix="minirepo-fuzz-"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a hang")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for findings (default: a new temp folder)")
    parser.add_argument("--replay", type=Path, help="resend one saved finding")
    args = parser.parse_args(argv)
    if args.replay:
        replay(args.replay, args.timeout)
        return 0
    with output_folder(args.out) as out:
        print(f"fuzzing a minirepo serve for {args.minutes} min (data and findings in {out})")
        stats = Stats()
        try:
            run(stats, args.minutes, args.max_requests, args.timeout, args.seed, out)
        except KeyboardInterrupt:
            print("interrupted")
        summarize(stats, out)
        return 1 if stats.findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
