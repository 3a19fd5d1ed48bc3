"""kill -9 and damaged files: acknowledged uploads survive, partial ones never show."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.rawhttp import connect, send_partial_upload
from tests.helpers.serverproc import Server, running_server
from tests.helpers.stacks import Stack

# Kills the server between linking an upload's blob into place and committing its rows.
CRASH_AFTER_PUBLISH = """
import os
from minirepo.storage import LocalBlobStore
_put = LocalBlobStore.put
def _put_then_crash(self, source, key):
    _put(self, source, key)
    os._exit(137)
LocalBlobStore.put = _put_then_crash
"""


def project_status(server: Server, project: str) -> int:
    return requests.get(f"{server.url}/simple/{project}/", timeout=30).status_code


def test_crash_between_blob_publish_and_commit(tmp_path: Path) -> None:
    base = tmp_path / "srv"
    wheel = make_wheel(tmp_path, Dist("crashy", "1.0"))
    with running_server(base, prelude=CRASH_AFTER_PUBLISH) as srv:
        kept = make_wheel(tmp_path, Dist("kept", "1.0"))
        with pytest.raises(requests.ConnectionError):
            srv.upload(wheel)
        assert srv.proc.wait(timeout=30) == 137
    # The crash left the blob with no row. Orphans younger than an hour are left alone
    # (another process may be about to commit one): age it so the restart quarantines it.
    (orphan,) = (base / "repo" / "files").rglob(wheel.name)
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    with running_server(base) as srv:
        assert project_status(srv, "crashy") == 404
        assert not list((srv.data / "files").rglob(wheel.name))
        quarantined = [p.name for p in (srv.data / "quarantine").iterdir()]
        assert len(quarantined) == 1
        assert quarantined[0].endswith(wheel.name)
        assert srv.cli("fsck").returncode == 0
        assert srv.upload(wheel).status_code == 200
        assert srv.upload(kept).status_code == 200
        assert project_status(srv, "crashy") == 200


@pytest.mark.stacks
def test_kill_during_upload_leaves_nothing(tmp_path: Path, stack: Stack) -> None:
    base = tmp_path / "srv"
    env = stack.env()  # the same database and bucket prefix after the restart
    with running_server(base, env) as srv:
        acknowledged = make_wheel(tmp_path, Dist("acked", "1.0"))
        assert srv.upload(acknowledged).status_code == 200
        with connect(srv) as sock:
            send_partial_upload(sock)
            srv.proc.kill()
            srv.proc.wait(timeout=30)
    (base / "repo" / "tmp" / "upload-leftover.part").write_bytes(b"partial")
    with running_server(base, env) as srv:
        assert list((srv.data / "tmp").iterdir()) == []
        assert srv.cli("fsck").returncode == 0
        served = requests.get(f"{srv.url}/files/acked/{acknowledged.name}", timeout=30)
        assert served.content == acknowledged.read_bytes()


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_file_is_never_served(tmp_path: Path, damage: str) -> None:
    with running_server(tmp_path / "srv") as srv:
        wheel = make_wheel(tmp_path, Dist("fragile", "1.0"))
        assert srv.upload(wheel).status_code == 200
        (blob,) = (srv.data / "files").rglob(wheel.name)
        data = blob.read_bytes()
        if damage == "flip":
            blob.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
        elif damage == "truncate":
            blob.write_bytes(data[:-10])
        else:
            os.unlink(blob)
        response = requests.get(f"{srv.url}/files/fragile/{wheel.name}", timeout=30)
        assert response.status_code >= 500
        assert response.content != data
        assert "damaged" in response.reason or "missing" in response.reason
        result = srv.cli("fsck", check=False)
        assert result.returncode == 1
        assert wheel.name in result.stdout
