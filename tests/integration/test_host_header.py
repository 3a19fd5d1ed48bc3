"""A forged `Host:` never reaches a `Location`, on a real `minirepo serve` (issue 14, 9).

The test client builds its own environ; only a raw socket shows what waitress and the
app together send for the exact bytes a cache-poisoning client would write.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.helpers.serverproc import Server, running_server

TIMEOUT = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("host-header")) as srv:
        yield srv


def exchange(server: Server, request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Status line, headers (lower-case names) and body of the one answer to `request`."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines)}
    return status_line, headers, body


@pytest.mark.parametrize(
    ("target", "location"),
    [
        (b"/simple", b"/simple/"),
        (b"/main/simple?x=1", b"/main/simple/?x=1"),
        (b"/+simple/some-pkg", b"/+simple/some-pkg/"),
    ],
)
def test_forged_host_is_not_reflected_in_a_redirect(
    server: Server, target: bytes, location: bytes
) -> None:
    request = b"GET " + target + b" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    status_line, headers, body = exchange(server, request)
    assert status_line.startswith(b"HTTP/1.1 308 "), status_line
    assert headers[b"location"] == location
    assert b"evil.example" not in status_line + b"".join(headers.values()) + body
    assert headers[b"x-content-type-options"] == b"nosniff"
