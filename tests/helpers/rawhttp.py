"""Reading answers off raw sockets, for tests that speak HTTP by hand."""

from __future__ import annotations

import contextlib
import re
import socket


def read_answer(sock: socket.socket) -> bytes:
    """Read one answer: until its Content-Length is in, without waiting for the close (a
    refused upload's connection stays open a while to drain the body, issue 14)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is not None and len(body) >= int(length.group(1)):
                    return data
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
