"""A full disk while an upload is written: a clear 5xx, nothing left, server healthy.

RLIMIT_FSIZE caps every file the server process writes, which is how a full disk looks to
it (EFBIG, like ENOSPC) without root or a small mount. waitress keeps bodies under 512 KiB
in memory, so an upload of a few hundred KiB reaches minirepo's own write path.
"""

from __future__ import annotations

import contextlib
import random
import resource
import signal
import zipfile
from pathlib import Path

import requests

from tests.helpers.distfactory import Dist, wheel_members
from tests.helpers.serverproc import Server, running_server

LIMIT = 488 * 1024
# No first-start proxy and group: their rows would bring the database's WAL near LIMIT (the
# search index of schema 6 adds some 40 KiB to a new one).
NO_UPSTREAM = ("--no-upstream",)


def limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def full_disk_server(tmp_path: Path) -> contextlib.AbstractContextManager[Server]:
    return running_server(tmp_path / "srv", preexec_fn=limit_file_size, serve_args=NO_UPSTREAM)


def incompressible_wheel(folder: Path, name: str, size: int) -> Path:
    rng = random.Random(7)  # noqa: S311 - filler bytes, not a secret
    dist = Dist(name, "1.0", payload=f"DATA = {rng.randbytes(size).hex()!r}\n")
    path = folder / dist.wheel_name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for member, data in wheel_members(dist).items():
            archive.writestr(member, data)
    return path


def test_full_disk_mid_upload(tmp_path: Path) -> None:
    with full_disk_server(tmp_path) as srv:
        big = incompressible_wheel(tmp_path, "too-big", 250 * 1024)
        assert LIMIT < big.stat().st_size < 512 * 1024
        response = srv.upload(big)
        assert response.status_code == 507
        assert "storage is full" in response.reason
        assert response.text.strip() == response.reason
        assert list((srv.data / "tmp").iterdir()) == []
        assert not list((srv.data / "files").rglob("*.whl"))
        assert requests.get(f"{srv.url}/simple/too-big/", timeout=30).status_code == 404
        assert requests.get(f"{srv.url}/-/health", timeout=30).status_code == 200
        small = incompressible_wheel(tmp_path, "fits", 1024)
        assert srv.upload(small).status_code == 200


def test_full_disk_while_waitress_spools_the_body(tmp_path: Path) -> None:
    """Bodies over 512 KiB are spooled by waitress first: its failure is a 507 too."""
    with full_disk_server(tmp_path) as srv:
        big = incompressible_wheel(tmp_path, "spooled", 400 * 1024)
        assert big.stat().st_size > 512 * 1024
        response = srv.upload(big)
        assert response.status_code == 507
        assert "storage is full" in response.reason
        assert list((srv.data / "tmp").iterdir()) == []
        assert not list((srv.data / "files").rglob("*.whl"))
        assert requests.get(f"{srv.url}/-/health", timeout=30).status_code == 200
