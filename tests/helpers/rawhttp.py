"""Uploads as raw bytes and answers read off raw sockets, for tests that speak HTTP by hand."""

from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.helpers.distfactory import upload_form
from tests.helpers.serverproc import Server


def twine_request(server: Server, wheel: Path) -> requests.PreparedRequest:
    """twine's upload of `wheel` with the admin's token, prepared but not sent."""
    form = upload_form(wheel)
    handle, filename = form.pop("content")
    return requests.Request(
        "POST",
        f"{server.url}/",
        data=form,
        files={"content": (filename, handle, "application/octet-stream")},
        auth=("__token__", server.admin_token),
    ).prepare()


def upload_bytes(server: Server, wheel: Path) -> tuple[bytes, bytes]:
    """The head and body of twine's upload of `wheel`, the head asking for `100 Continue`."""
    prepared = twine_request(server, wheel)
    assert isinstance(prepared.body, bytes)
    headers = {key: str(value) for key, value in prepared.headers.items()}
    headers.update({"Host": urlsplit(server.url).netloc, "Expect": "100-continue"})
    lines = ["POST / HTTP/1.1", *(f"{key}: {value}" for key, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), prepared.body


def connect(server: Server) -> socket.socket:
    parts = urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def send_partial_upload(sock: socket.socket) -> None:
    """The first megabyte of a 5 MB upload: the server is mid-upload until the rest."""
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n\r\n" + b"\0" * 1_000_000
    )


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
