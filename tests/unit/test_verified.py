"""Verified hashes remembered on disk (issue 16): a restart does not re-hash every file on
its first download, and nothing wrong is ever trusted."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from minirepo import storage
from minirepo.errors import DamagedFile
from minirepo.storage import LocalBlobStore, blob_key
from minirepo.verified import VerifiedBlobs

CONTENT = b"the bytes of a wheel" * 100


def new_store(tmp_path: Path) -> LocalBlobStore:
    store = LocalBlobStore(tmp_path / "files", tmp_path / "tmp", tmp_path / "verified.json")
    store.ensure_dirs()
    return store


def stored(store: LocalBlobStore, content: bytes = CONTENT) -> str:
    """Publish `content` as an upload does; returns its key."""
    fd, temp = store.new_temp()
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    key = blob_key(hashlib.sha256(content).hexdigest(), "demo-1.0-py3-none-any.whl")
    assert store.put(temp, key)
    temp.unlink()
    return key


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys `open_checked` reads in full."""
    seen: list[str] = []
    real = storage._matches

    def counting(handle: BinaryIO, key: str) -> bool:
        seen.append(key)
        return real(handle, key)

    monkeypatch.setattr(storage, "_matches", counting)
    return seen


def test_a_restart_does_not_hash_a_verified_file_again(tmp_path: Path, hashes: list[str]) -> None:
    store = new_store(tmp_path)
    key = stored(store)
    store.flush()
    restarted = new_store(tmp_path)
    with restarted.open_checked(key, len(CONTENT)) as handle:
        assert handle.read() == CONTENT
    assert hashes == []


def test_a_file_changed_since_is_hashed_again_and_refused(
    tmp_path: Path, hashes: list[str]
) -> None:
    store = new_store(tmp_path)
    key = stored(store)
    store.flush()
    blob = tmp_path / "files" / key
    blob.write_bytes(CONTENT.replace(b"wheel", b"wheal"))  # same size, new mtime
    with pytest.raises(DamagedFile):
        new_store(tmp_path).open_checked(key, len(CONTENT))
    assert hashes == [key]


def test_fscks_hash_is_remembered_for_the_server(tmp_path: Path, hashes: list[str]) -> None:
    key = stored(new_store(tmp_path))  # never flushed: as if the server had crashed
    fsck = new_store(tmp_path)
    assert fsck.sha256(key) == key.split("/")[1]
    fsck.flush()
    new_store(tmp_path).open_checked(key, len(CONTENT)).close()
    assert hashes == []


def test_a_refused_upload_leaves_no_trace(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    key = stored(store)
    store.delete(key)
    store.flush()
    assert not (tmp_path / "verified.json").exists()


def test_a_withdrawn_file_is_forgotten_on_disk(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    key = stored(store)
    store.flush()
    (tmp_path / "quarantine").mkdir()
    store.quarantine(key, tmp_path / "quarantine")
    store.flush()
    assert json.loads((tmp_path / "verified.json").read_text())["blobs"] == {}


def test_changes_are_written_in_one_batch_after_a_while(tmp_path: Path) -> None:
    path = tmp_path / "verified.json"
    verified = VerifiedBlobs(path, flush_seconds=0.2)
    for number in range(50):
        verified.note(f"ab/{number}/x", (number, 1, 2))
    assert not path.exists()
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(json.loads(path.read_text())["blobs"]) == 50
    assert verified.writes == 1


def test_two_processes_merge_rather_than_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "verified.json"
    server, fsck = VerifiedBlobs(path), VerifiedBlobs(path)
    server.note("ab/1/x", (1, 1, 1))
    fsck.note("ab/2/y", (2, 2, 2))
    server.flush()
    fsck.flush()
    assert VerifiedBlobs(path).matches("ab/1/x", (1, 1, 1))
    assert VerifiedBlobs(path).matches("ab/2/y", (2, 2, 2))


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"format": 99, "blobs": {}}', b'{"format": 1, "blobs": {"k": "x"}}'],
)
def test_a_file_not_ours_is_ignored(tmp_path: Path, hashes: list[str], content: bytes) -> None:
    store = new_store(tmp_path)
    key = stored(store)
    (tmp_path / "verified.json").write_bytes(content)
    new_store(tmp_path).open_checked(key, len(CONTENT)).close()
    assert hashes == [key]
