"""Small, valid (or deliberately broken) wheels and sdists, built without a build backend."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import requests
from packaging.utils import canonicalize_name


def escaped(name: str) -> str:
    return canonicalize_name(name).replace("-", "_")


@dataclasses.dataclass
class Dist:
    name: str
    version: str
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None
    summary: str = "A test package"
    metadata_version: str = "2.1"
    description: str = "Hello from a test package."
    description_content_type: str = "text/plain"
    extra_headers: tuple[str, ...] = ()
    payload: str = ""

    def metadata(self) -> bytes:
        lines = [
            f"Metadata-Version: {self.metadata_version}",
            f"Name: {self.name}",
            f"Version: {self.version}",
            f"Summary: {self.summary}",
        ]
        if self.requires_python:
            lines.append(f"Requires-Python: {self.requires_python}")
        lines += [f"Requires-Dist: {req}" for req in self.requires_dist]
        lines += list(self.extra_headers)
        lines += [f"Description-Content-Type: {self.description_content_type}", ""]
        lines.append(self.description)
        return ("\n".join(lines) + "\n").encode()

    @property
    def module(self) -> str:
        return escaped(self.name)

    @property
    def wheel_name(self) -> str:
        return f"{escaped(self.name)}-{self.version}-py3-none-any.whl"

    @property
    def sdist_name(self) -> str:
        return f"{escaped(self.name)}-{self.version}.tar.gz"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def wheel_members(dist: Dist, metadata: bytes | None = None) -> dict[str, bytes]:
    info = f"{escaped(dist.name)}-{dist.version}.dist-info"
    code = f"__version__ = {dist.version!r}\n{dist.payload}".encode()
    members = {
        f"{dist.module}/__init__.py": code,
        f"{info}/METADATA": metadata if metadata is not None else dist.metadata(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: distfactory\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [_record_line(path, data) for path, data in members.items()]
    members[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    return members


def write_zip(path: Path, members: dict[str, bytes] | list[tuple[str, bytes]]) -> Path:
    items = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in items:
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return path


def make_wheel(folder: Path, dist: Dist, filename: str | None = None) -> Path:
    return write_zip(folder / (filename or dist.wheel_name), wheel_members(dist))


def write_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_577_836_800
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return path


def sdist_members(dist: Dist, pkg_info: bytes | None = None) -> dict[str, bytes]:
    top = f"{escaped(dist.name)}-{dist.version}"
    pyproject = (
        f'[project]\nname = "{dist.name}"\nversion = "{dist.version}"\n'
        '[build-system]\nrequires = ["flit_core>=3.2"]\nbuild-backend = "flit_core.buildapi"\n'
    )
    return {
        f"{top}/PKG-INFO": pkg_info if pkg_info is not None else dist.metadata(),
        f"{top}/pyproject.toml": pyproject.encode(),
        f"{top}/{dist.module}/__init__.py": f"__version__ = {dist.version!r}\n".encode(),
    }


def make_sdist(folder: Path, dist: Dist, filename: str | None = None) -> Path:
    return write_tar_gz(folder / (filename or dist.sdist_name), sdist_members(dist))


def upload_form(path: Path, **overrides: Any) -> dict[str, Any]:
    """The form twine sends for `path`; pass a field as None to leave it out."""
    data = path.read_bytes()
    name, version = path.name.split("-")[:2]
    version = version.removesuffix(".tar.gz")
    form: dict[str, Any] = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version,
        "filetype": "bdist_wheel" if path.name.endswith(".whl") else "sdist",
        "pyversion": "py3" if path.name.endswith(".whl") else "source",
        "metadata_version": "2.1",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "content": (io.BytesIO(data), path.name),
    }
    form.update(overrides)
    return {key: value for key, value in form.items() if value is not None}


def post_upload(
    url: str,
    path: Path,
    auth: tuple[str, str] | None,
    *,
    session: requests.Session | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
    fields: dict[str, Any] | None = None,
) -> requests.Response:
    """POST `path` to the upload URL `url` as twine would (`upload_form`, with `fields`)."""
    form = upload_form(path, **(fields or {}))
    handle, filename = form.pop("content")
    with handle:
        return (session or requests).post(
            url,
            data=form,
            files={"content": (filename, handle, "application/octet-stream")},
            auth=auth,
            headers=headers,
            timeout=timeout,
        )
