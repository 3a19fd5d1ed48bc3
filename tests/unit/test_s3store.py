"""The S3 blob store against a real SeaweedFS (`tests/helpers/seaweed.py`), never a mock."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from minirepo import config
from minirepo.errors import Busy, DamagedFile, StorageError, UserError
from minirepo.s3client import INSTALL_HINT, S3Location, make_client
from minirepo.s3store import S3BlobStore
from minirepo.storage import blob_key
from tests.helpers.seaweed import REGION, S3Storage


def make_store(storage: S3Storage, tmp_path: Path, *, redirect: bool = False) -> S3BlobStore:
    store = S3BlobStore(
        storage.url,
        tmp_path / "tmp",
        endpoint_url=storage.endpoint,
        region=REGION,
        redirect=redirect,
    )
    store.ensure_dirs()
    return store


def spooled(
    store: S3BlobStore, content: bytes, filename: str = "demo-1.0.tar.gz"
) -> tuple[Path, str]:
    """A temp file holding `content`, and its key."""
    fd, path = store.new_temp()
    with open(fd, "wb") as handle:
        handle.write(content)
    return path, blob_key(hashlib.sha256(content).hexdigest(), filename)


@pytest.fixture
def store(s3_storage: S3Storage, tmp_path: Path) -> S3BlobStore:
    return make_store(s3_storage, tmp_path)


def read_all(store: S3BlobStore, key: str) -> bytes:
    with store.open(key) as handle:
        return handle.read()


def test_location_parses_bucket_and_prefix() -> None:
    assert S3Location.parse("s3://b/") == S3Location("b", "")
    assert S3Location.parse("s3://b/some/prefix/") == S3Location("b", "some/prefix/")
    with pytest.raises(UserError, match="storage"):
        S3Location.parse("s3:///prefix")


def test_keys_live_under_the_prefix(store: S3BlobStore, s3_storage: S3Storage) -> None:
    path, key = spooled(store, b"wheel bytes")
    assert store.put(path, key)
    assert s3_storage.object_keys() == [f"{s3_storage.prefix}/{key}"]
    assert list(store.stored_keys()) == [key]


def test_second_put_is_refused_and_keeps_the_bytes(store: S3BlobStore) -> None:
    path, key = spooled(store, b"first bytes")
    assert store.put(path, key) is True
    path.write_bytes(b"other bytes")  # what If-None-Match must keep out
    assert store.put(path, key) is False
    assert read_all(store, key) == b"first bytes"


def test_if_none_match_overwrite_is_refused_by_the_server(
    store: S3BlobStore, s3_storage: S3Storage
) -> None:
    path, key = spooled(store, b"published")
    store.put(path, key)
    client = s3_storage.server.client()
    with pytest.raises(Exception, match="PreconditionFailed"):
        client.put_object(
            Bucket=store.bucket, Key=store.object_key(key), Body=b"evil", IfNoneMatch="*"
        )


def test_the_store_refuses_bytes_that_do_not_hash_to_the_key(store: S3BlobStore) -> None:
    path, key = spooled(store, b"real")
    path.write_bytes(b"fake")
    with pytest.raises(StorageError, match="failed to store"):
        store.put(path, key)
    assert store.info(key) is None


def test_replace_swaps_the_object(store: S3BlobStore) -> None:
    path, key = spooled(store, b"good bytes")
    store.put(path, key)
    store.replace(path, key)
    assert read_all(store, key) == b"good bytes"


def test_wrong_secret_is_a_clear_error(
    s3_storage: S3Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = S3BlobStore(s3_storage.url, tmp_path / "tmp", endpoint_url=s3_storage.endpoint)
    with pytest.raises(UserError, match=r"credentials.*AWS_SECRET_ACCESS_KEY") as caught:
        store.ensure_dirs()
    assert "not-the-secret" not in str(caught.value)
    path, key = spooled(store, b"x")
    with pytest.raises(StorageError, match="refused the server's credentials"):
        store.put(path, key)
    assert not store.answers()


def test_missing_bucket_and_dead_endpoint_name_the_setting(
    s3_storage: S3Storage, tmp_path: Path
) -> None:
    missing = S3BlobStore("s3://no-such-bucket/p", tmp_path, endpoint_url=s3_storage.endpoint)
    with pytest.raises(UserError, match=r"'no-such-bucket' does not exist.*'storage'"):
        missing.ensure_dirs()
    dead = S3BlobStore(s3_storage.url, tmp_path, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(UserError, match="s3_endpoint_url"):
        dead.ensure_dirs()


def test_size_mismatch_is_damaged(store: S3BlobStore) -> None:
    path, key = spooled(store, b"twelve bytes")
    store.put(path, key)
    with pytest.raises(DamagedFile, match="damaged"):
        store.open_checked(key, 13)
    with store.open_checked(key, 12) as handle:
        assert handle.read() == b"twelve bytes"


def test_object_without_our_checksum_is_hashed_before_it_is_served(
    store: S3BlobStore, s3_storage: S3Storage
) -> None:
    """Bytes put under a key by another tool (no ChecksumSHA256) are read in full first."""
    key = blob_key(hashlib.sha256(b"right").hexdigest(), "demo-1.0.tar.gz")
    client = s3_storage.server.client()
    client.put_object(Bucket=store.bucket, Key=store.object_key(key), Body=b"wrong")
    with pytest.raises(DamagedFile):
        store.open_checked(key, 5)
    client.put_object(Bucket=store.bucket, Key=store.object_key(key), Body=b"right")
    assert store.open_checked(key, 5).read() == b"right"


def test_missing_object_is_damaged_not_a_crash(store: S3BlobStore) -> None:
    key = blob_key("ab" * 32, "gone-1.0.tar.gz")
    with pytest.raises(DamagedFile, match="missing"):
        store.open_checked(key, 1)
    with pytest.raises(FileNotFoundError):
        store.open(key)


def test_info_stored_keys_delete(store: S3BlobStore) -> None:
    keys = []
    for number in range(3):
        path, key = spooled(store, f"file {number}".encode(), f"demo-{number}.tar.gz")
        store.put(path, key)
        keys.append(key)
    info = store.info(keys[0])
    assert info is not None
    assert info.size == 6
    assert abs(info.mtime - time.time()) < 120
    assert sorted(store.stored_keys()) == sorted(keys)
    store.delete(keys[0])
    store.delete(keys[0])  # absent: still fine
    assert store.info(keys[0]) is None
    assert sorted(store.stored_keys()) == sorted(keys[1:])


def test_missing_asks_the_bucket_once_per_key(
    store: S3BlobStore, s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page render asks which of its files are gone: a HEAD for a key not seen yet, none
    for one seen, and again after a download found it gone behind the store's back."""
    path, key = spooled(store, b"listed file")
    absent = blob_key("cd" * 32, "absent-1.0.tar.gz")
    store.put(path, key)
    heads: list[str] = []
    real_info = store.info
    monkeypatch.setattr(store, "info", lambda k: heads.append(k) or real_info(k))
    assert store.missing([key, absent]) == {absent}
    assert store.missing([key, absent]) == {absent}
    assert heads == [absent, absent]  # the put already showed `key` is there
    s3_storage.server.client().delete_object(
        Bucket=s3_storage.server.bucket, Key=store.object_key(key)
    )
    assert store.missing([key]) == set()  # trusted until a download says otherwise
    with pytest.raises(DamagedFile, match="missing"):
        store.open_checked(key, len(b"listed file"))
    assert store.missing([key]) == {key}


def test_quarantine_downloads_then_deletes(store: S3BlobStore, tmp_path: Path) -> None:
    path, key = spooled(store, b"orphan bytes")
    store.put(path, key)
    moved = store.quarantine(key, tmp_path)
    assert moved.read_bytes() == b"orphan bytes"
    assert moved.parent == tmp_path
    assert store.info(key) is None
    with pytest.raises(FileNotFoundError):
        store.quarantine(key, tmp_path)
    assert store.put(moved, key)  # gc puts a blob back this way


def test_ranged_read_seeks_with_a_range_get(store: S3BlobStore) -> None:
    content = bytes(range(256)) * 8192  # 2 MiB: more than one block
    path, key = spooled(store, content)
    store.put(path, key)
    with store.open_checked(key, len(content)) as handle:
        assert handle.seek(1_000_000) == 1_000_000
        assert handle.read(10) == content[1_000_000:1_000_010]
        assert handle.tell() == 1_000_010
        assert b"".join(handle) == content[1_000_010:]
        handle.seek(0)
        assert handle.read(3) == content[:3]


def test_sha256_reads_the_object(store: S3BlobStore) -> None:
    path, key = spooled(store, b"hash me")
    store.put(path, key)
    assert store.sha256(key) == hashlib.sha256(b"hash me").hexdigest()


def test_presigned_url_is_served_by_the_store(s3_storage: S3Storage, tmp_path: Path) -> None:
    store = make_store(s3_storage, tmp_path, redirect=True)
    path, key = spooled(store, b"fetch me directly")
    store.put(path, key)
    url = store.direct_url(key)
    assert url is not None
    assert url.startswith(s3_storage.endpoint)
    assert "X-Amz-Expires=300" in url
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
        assert answer.read() == b"fetch me directly"
    assert make_store(s3_storage, tmp_path).direct_url(key) is None


def test_health_answers_and_is_cached(store: S3BlobStore) -> None:
    assert store.answers()
    started = time.monotonic()
    for _ in range(50):
        assert store.answers()
    assert time.monotonic() - started < 0.5  # one HEAD a second at most, not 50


def test_sweep_tmp_is_local(store: S3BlobStore) -> None:
    path, _key = spooled(store, b"left by a crash")
    assert store.sweep_tmp() == 1
    assert not path.exists()


def client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    answer = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    error: Exception = ClientError(answer, "PutObject")
    return error


def test_store_without_conditional_writes_falls_back_to_head(
    store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a store lacking If-None-Match answers (501), on the real server otherwise."""
    real = store._client.put_object

    def no_condition(**kwargs: object) -> object:
        if "IfNoneMatch" in kwargs:
            raise client_error("NotImplemented", 501)
        return real(**kwargs)

    monkeypatch.setattr(store._client, "put_object", no_condition)
    path, key = spooled(store, b"first")
    assert store.put(path, key) is True
    assert store.put(path, key) is False
    assert read_all(store, key) == b"first"


def test_throttling_is_busy(store: S3BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def slow_down(**kwargs: object) -> object:
        raise client_error("SlowDown", 503)

    monkeypatch.setattr(store._client, "put_object", slow_down)
    path, key = spooled(store, b"x")
    with pytest.raises(Busy):
        store.put(path, key)


def test_missing_boto3_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(UserError, match=re.escape(INSTALL_HINT)):
        make_client("", "")


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"MINIREPO_STORAGE": "/srv/files"}, "'storage' must be empty"),
        ({"MINIREPO_STORAGE": "s3://"}, "'storage' must be empty"),
        ({"MINIREPO_S3_ENDPOINT_URL": "127.0.0.1:8333"}, "'s3_endpoint_url' must start"),
        ({"MINIREPO_S3_REDIRECT": "true"}, "'s3_redirect' needs 'storage'"),
    ],
)
def test_storage_settings_are_checked(variables: dict[str, str], problem: str) -> None:
    with pytest.raises(UserError, match=re.escape(problem)):
        config.load(None, variables)


def test_storage_settings_are_read() -> None:
    settings = config.load(
        None,
        {
            "MINIREPO_STORAGE": "s3://bucket/prefix",
            "MINIREPO_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
            "MINIREPO_S3_REDIRECT": "yes",
        },
    )
    assert (settings.storage, settings.s3_redirect) == ("s3://bucket/prefix", True)


def test_a_forked_worker_makes_its_own_client(store: S3BlobStore) -> None:
    """`serve --workers` forks after the start-up check: the parent's pooled connections
    must not be shared with the children."""
    path, key = spooled(store, b"shared bucket")
    store.put(path, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        fresh = "_client" not in store.__dict__
        os._exit(0 if fresh and read_all(store, key) == b"shared bucket" else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert read_all(store, key) == b"shared bucket"
