"""Body limits and broken bodies on a real waitress server, over raw sockets."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from urllib.parse import urlsplit

import requests

from tests.helpers.serverproc import Server

StartServer = Callable[..., AbstractContextManager[Server]]


def raw_request(server: Server, head: bytes, body: bytes = b"", close: bool = False) -> bytes:
    """Send bytes, read the answer until the server closes or 64 KiB arrived."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + body)
        if close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer and not close:
                break
        return answer


def test_declared_body_over_the_limit_is_refused_before_reading(start_server: StartServer) -> None:
    with start_server(max_upload_size="1048576") as srv:
        head = (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 2147483648\r\n\r\n"
        )
        answer = raw_request(srv, head)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert requests.get(f"{srv.url}/-/health", timeout=10).status_code == 200


def test_truncated_body_leaves_nothing_and_server_keeps_serving(
    start_server: StartServer,
) -> None:
    with start_server(channel_timeout="2") as srv:
        token = srv.admin_token
        auth = base64.b64encode(f"__token__:{token}".encode())
        head = (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic " + auth + b"\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 5000000\r\n\r\n"
        )
        disposition = b'form-data; name="content"; filename="a-1.0.tar.gz"'
        body = b"--x\r\nContent-Disposition: " + disposition + b"\r\n\r\n"
        raw_request(srv, head, body + b"\0" * 600_000, close=True)
        assert requests.get(f"{srv.url}/-/health", timeout=10).status_code == 200
        assert list((srv.data / "tmp").iterdir()) == []
        assert not list((srv.data / "files").rglob("*.tar.gz"))


def test_negative_and_odd_content_length_are_400(server: Server) -> None:
    for value in (b"-1", b"+10", b"abc", b"1 0"):
        head = (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + value + b"\r\n"
            b"Connection: close\r\n\r\n"
        )
        answer = raw_request(server, head, close=True)
        assert answer.split(b"\r\n")[0].split(b" ")[1] == b"400", (value, answer[:200])


def test_expect_continue_without_a_body_is_answered(server: Server) -> None:
    """waitress 3.0.2 alone sends `100 Continue` and then nothing until channel_timeout."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n\r\n")
        answer = b""
        while b"HTTP/1.1 200" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
