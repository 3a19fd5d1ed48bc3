"""`minirepo backup` beside a running server taking uploads, and `minirepo restore` into a
fresh folder that a second server then serves: every upload acknowledged before the backup
started is there, byte for byte; none of the uploads meanwhile failed."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from packaging.utils import canonicalize_name

from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import Server, running_server

TIMEOUT = 30
UPLOADS = 40
BEFORE = 8  # uploads acknowledged before the backup starts; the rest run beside it


@dataclasses.dataclass(frozen=True)
class Upload:
    wheel: Path
    started: float
    acknowledged: float
    status: int


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheels(folder: Path, count: int, prefix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [make_wheel(folder, Dist(f"{prefix}-{i}", "1.0", payload="x" * i)) for i in range(count)]


def minirepo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minirepo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes() if path.is_file() else b"/"
        for path in sorted(folder.rglob("*"))
    }


def assert_served(server: Server, token: str, wheel: Path) -> None:
    """The simple page lists `wheel` and its link downloads exactly its bytes."""
    auth = ("__token__", token)
    page = requests.get(
        f"{server.url}/simple/{canonicalize_name(wheel.name.split('-')[0])}/",
        auth=auth,
        timeout=TIMEOUT,
    )
    assert page.status_code == 200, (wheel.name, page.status_code)
    match = re.search(rf'href="([^"#]*{re.escape(wheel.name)})#sha256=([0-9a-f]+)"', page.text)
    assert match, (wheel.name, page.text)
    assert match.group(2) == sha256(wheel)
    download = requests.get(urljoin(page.url, match.group(1)), auth=auth, timeout=TIMEOUT)
    assert download.status_code == 200, (wheel.name, download.status_code)
    assert hashlib.sha256(download.content).hexdigest() == sha256(wheel)


class Uploader(threading.Thread):
    """Uploads `wheels` one after the other, recording when each was acknowledged."""

    def __init__(self, server: Server, token: str, wheels: list[Path]) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.token = token
        self.wheels = wheels
        self.done: list[Upload] = []
        self.progress = threading.Condition()

    def run(self) -> None:
        for wheel in self.wheels:
            started = time.monotonic()
            status = self.server.upload(wheel, self.token).status_code
            with self.progress:
                self.done.append(Upload(wheel, started, time.monotonic(), status))
                self.progress.notify_all()

    def wait_for(self, count: int) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: len(self.done) >= count, TIMEOUT)


def test_backup_beside_uploads_restores_every_acknowledged_file(tmp_path: Path) -> None:
    dists = wheels(tmp_path / "dists", UPLOADS, "bk")
    with running_server(tmp_path / "live") as live:
        token = live.admin_token
        uploader = Uploader(live, token, dists)
        uploader.start()
        uploader.wait_for(BEFORE)
        backup_started = time.monotonic()
        backup = live.cli("backup", str(tmp_path / "backup"))
        backup_ended = time.monotonic()
        uploader.join(TIMEOUT * 2)
        assert not uploader.is_alive()
        fsck = live.cli("fsck", check=False)
    assert [upload.status for upload in uploader.done] == [200] * UPLOADS, live.log_tail()
    assert any(
        upload.started < backup_ended and upload.acknowledged > backup_started
        for upload in uploader.done
    ), "no upload ran beside the backup"
    assert fsck.returncode == 0, fsck.stdout
    assert "Backed up" in backup.stdout, backup.stdout
    before = [upload.wheel for upload in uploader.done if upload.acknowledged < backup_started]
    assert len(before) >= BEFORE

    restore = live.cli("restore", str(tmp_path / "backup"), "--data", str(tmp_path / "new/repo"))
    assert "Next: minirepo serve" in restore.stdout, restore.stdout
    with running_server(tmp_path / "new") as restored:
        for wheel in before:
            assert_served(restored, token, wheel)  # the old token: the secret came along
        assert restored.cli("fsck").returncode == 0


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, str]]:
    """A running server with five uploads, its backup folder and its admin token. A
    `first-admin-token` file lies in its data folder: no backup may carry it."""
    root = tmp_path_factory.mktemp("backed-up")
    with running_server(root) as server:
        token = server.admin_token
        (server.data / "first-admin-token").write_text(token)
        for wheel in wheels(root / "dists", 5, "kept"):
            assert server.upload(wheel, token).status_code == 200
        server.cli("backup", str(root / "backup"))
        assert not (root / "backup" / "first-admin-token").exists()
        yield server, root / "backup", token


def test_restore_into_a_non_empty_folder_touches_nothing(
    backed_up: tuple[Server, Path, str], tmp_path: Path
) -> None:
    server, backup, _ = backed_up
    target = tmp_path / "target"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    before = tree(target)
    result = server.cli("restore", str(backup), "--data", str(target), check=False)
    assert result.returncode == 1
    assert "not an empty folder" in result.stderr
    assert tree(target) == before


def test_backup_into_a_non_empty_folder_writes_nothing(
    backed_up: tuple[Server, Path, str], tmp_path: Path
) -> None:
    server, _, _ = backed_up
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old-backup.txt").write_text("keep me")
    result = server.cli("backup", str(dest), check=False)
    assert result.returncode == 1
    assert "not an empty folder" in result.stderr
    assert tree(dest) == {"old-backup.txt": b"keep me"}


def test_a_tampered_blob_fails_the_restore_naming_it(
    backed_up: tuple[Server, Path, str], tmp_path: Path
) -> None:
    server, backup, _ = backed_up
    copy = shutil.copytree(backup, tmp_path / "copy")
    blob = sorted((copy / "files").glob("*/*/*"))[0]
    blob.write_bytes(blob.read_bytes() + b"\0")
    target = tmp_path / "target"
    result = server.cli("restore", str(copy), "--data", str(target), check=False)
    assert result.returncode == 1
    assert "/".join(blob.parts[-3:]) in result.stderr
    assert "does not match its sha256" in result.stderr
    assert not target.exists()


def test_tar_round_trip_with_minirepo_data(
    backed_up: tuple[Server, Path, str], tmp_path: Path
) -> None:
    server, _, token = backed_up
    archive = tmp_path / "minirepo.tar.gz"
    assert "Backed up 5 file(s)" in server.cli("backup", "--tar", str(archive)).stdout
    target = tmp_path / "new" / "repo"
    result = minirepo({**server.env, "MINIREPO_DATA": str(target)}, "restore", str(archive))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(target)) == ["files", "minirepo.sqlite3", "secret"]
    with running_server(tmp_path / "new") as restored:
        for wheel in sorted((server.data.parent / "dists").glob("*.whl")):
            assert_served(restored, token, wheel)
