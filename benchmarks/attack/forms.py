"""Multipart upload bodies built by hand, so that a 60 MiB or 16 x 4 MiB form costs this
process one copy of its content and goes out through `rawhttp.send`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from benchmarks.attack.rawhttp import SEND_CHUNK, Request
from benchmarks.attack.target import SERVER

BOUNDARY = "minirepo-attack-boundary"

Part = tuple[str, str | None, bytes]  # name, filename (None: a text field), content


def multipart(parts: Iterable[Part]) -> tuple[bytes, ...]:
    """The body's pieces; small ones are joined, a big content stays the one shared object
    (16 fields of the same 4 MiB cost 4 MiB here, not 64)."""
    pieces: list[bytes] = []
    small: list[bytes] = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "Content-Type: application/octet-stream\r\n" if filename else ""
        small.append(f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode())
        if len(content) > SEND_CHUNK:
            pieces += [b"".join(small), content]
            small = []
        else:
            small.append(content)
        small.append(b"\r\n")
    return (*pieces, b"".join([*small, f"--{BOUNDARY}--\r\n".encode()]))


def post(port: int, parts: Iterable[Part], headers: Mapping[str, str] | None = None) -> Request:
    body = multipart(parts)
    lines = [
        "POST / HTTP/1.1",
        f"Host: {SERVER}:{port}",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        f"Content-Length: {sum(map(len, body))}",
        *(f"{key}: {value}" for key, value in (headers or {}).items()),
    ]
    return Request(("\r\n".join(lines) + "\r\n\r\n").encode(), body)


def twine_parts(filename: str, data: bytes) -> list[Part]:
    """The form twine sends for a file (as tests.helpers.distfactory.upload_form)."""
    name, version = filename.split("-")[:2]
    wheel = filename.endswith(".whl")
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version.removesuffix(".tar.gz"),
        "filetype": "bdist_wheel" if wheel else "sdist",
        "pyversion": "py3" if wheel else "source",
        "metadata_version": "2.1",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
    }
    return [(key, None, value.encode()) for key, value in fields.items()] + [
        ("content", filename, data)
    ]


def upload_head(name: str) -> list[Part]:
    return [
        (":action", None, b"file_upload"),
        ("protocol_version", None, b"1"),
        ("name", None, name.encode()),
        ("version", None, b"1.0"),
    ]
