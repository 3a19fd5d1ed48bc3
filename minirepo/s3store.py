"""Blobs in an S3 bucket (`storage = "s3://bucket/prefix"`): one store for several boxes.

The client is boto3, the maintained reference client: pure Python, it signs with SigV4,
reads credentials from the usual chain (AWS_* variables, AWS_PROFILE, instance roles),
presigns URLs, retries, and sends conditional writes. It comes with the optional extra
`minirepo-server[s3]` and is imported only when `storage` names a bucket, so a one-box
install (a Raspberry Pi) stays small. Credentials are never settings and never logged.

Keys are those of the local store under the URL's prefix (`prefix/ab/<sha256>/<file>`),
so blobs stay content-addressed and immutable. Uploads still spool into the data folder's
`tmp/` (hashed as they arrive) and are sent once whole, before any database transaction.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from minirepo.errors import DamagedFile, MinirepoError, StorageError, UserError
from minirepo.s3client import (
    ALREADY_THERE,
    MISSING_BUCKET,
    NOT_FOUND,
    S3Location,
    error_code,
    failure,
    make_client,
)
from minirepo.storage import (
    BlobInfo,
    key_parts,
    new_temp_in,
    quarantine_target,
    sweep_folder,
)

log = logging.getLogger(__name__)

BLOCK = 256 * 1024  # a streamed download's read size: the socket send buffer's (server.py)
# A presigned URL is checked when the client's request starts, not while it transfers, so a
# few minutes is plenty for a redirect followed at once, and little for a leaked URL.
REDIRECT_SECONDS = 300
# Keys `missing` remembers as present (about 150 bytes each); past this it starts again.
PRESENT_LIMIT = 200_000
HEALTH_SECONDS = 1.0  # probes poll /-/health every 100 ms: one HEAD bucket a second at most


class S3Object:
    """A streamed GET, read like a file: `read`, iteration in BLOCK-sized pieces, `close`.

    Seeking (werkzeug serves a Range this way) asks again from that offset with a Range
    GET, so a resumed download never streams the bytes before it. Not a real file: the
    download view hands it to waitress as an iterable, never as `wsgi.file_wrapper`, whose
    peek-and-seek-back would fetch every block twice.
    """

    def __init__(self, store: S3BlobStore, key: str, body: Any, size: int) -> None:
        self._store, self._key, self._body, self.size = store, key, body, size
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        data = self._body.read(None if size < 0 else size)
        self._position += len(data)
        return bytes(data)

    def __iter__(self) -> S3Object:
        """Itself (werkzeug seeks what `iter()` gave it), yielding BLOCK-sized pieces."""
        return self

    def __next__(self) -> bytes:
        block = self.read(BLOCK)
        if not block:
            raise StopIteration
        return block

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        target += offset
        if target != self._position:
            self._body.close()
            self._body = (
                self._store.get_body(self._key, f"bytes={target}-")
                if target < self.size
                else _Empty()
            )
            self._position = target
        return target

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> S3Object:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Empty:
    def read(self, size: int | None = None) -> bytes:
        return b""

    def close(self) -> None:
        pass


def _after_fork(ref: weakref.ref[S3BlobStore]) -> None:
    """In a worker forked from `serve` (`--workers`): the parent's clients hold its pooled
    connections, which two processes must never share, and its locks may be held by a
    thread that does not exist here. Each worker makes its own."""
    store = ref()
    if store is not None:
        store.__dict__.pop("_client", None)
        store.__dict__.pop("_probe", None)
        store._lock = threading.Lock()
        store._health_lock = threading.Lock()


class S3BlobStore:
    """The blob store in a bucket; `tmp`: the local folder uploads spool into.

    `put` publishes with `If-None-Match: *`, so of two writers of one key the store lets
    exactly one in and the other learns "already there", as `os.link` tells the local store.
    A store that does not implement that condition (older MinIO, some gateways) answers
    NotImplemented: `put` then falls back to HEAD before an unconditional put, which two
    writers can both pass; harmless here, since both write the same bytes (the key is their
    sha256). Every put carries the bytes' sha256 as `ChecksumSHA256`, which the store checks
    (it refuses a body that does not hash to it), and as the metadata `sha256`, which every
    GET returns. So a download checks the size and that metadata in the GET's headers and
    streams: re-hashing on every read (botocore's checksum validation) cost a third of the
    throughput. An object put under a key by another tool lacks that metadata and is read in
    full once per process before it is served.
    """

    kind = "s3"

    def __init__(
        self,
        url: str,
        tmp: Path,
        *,
        endpoint_url: str = "",
        region: str = "",
        redirect: bool = False,
    ) -> None:
        self.location = S3Location.parse(url)
        self.tmp = tmp
        self.endpoint_url = endpoint_url
        self.region = region
        self.redirect = redirect
        self._conditional = True  # until the store says it has no If-None-Match
        self._verified: set[tuple[str, str]] = set()  # (key, ETag) read in full here
        self._present: set[str] = set()  # keys seen in the bucket (`missing`)
        self._health: tuple[float, bool] = (-HEALTH_SECONDS, False)
        self._lock = threading.Lock()
        self._health_lock = threading.Lock()  # a slow probe never holds up the downloads
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    @functools.cached_property
    def _client(self) -> Any:
        """Made on first use (half a second, mostly boto3's import): a CLI command that
        opens the data folder but never a blob does not pay for it."""
        return make_client(self.endpoint_url, self.region)

    @functools.cached_property
    def _probe(self) -> Any:
        return make_client(self.endpoint_url, self.region, quick=True)

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def object_key(self, key: str) -> str:
        return self.location.prefix + "/".join(key_parts(key))

    def _fail(self, exc: Exception, what: str) -> MinirepoError:
        return failure(exc, what, self.location, self.endpoint_url)

    def _errors(self) -> tuple[type[Exception], ...]:
        from botocore.exceptions import BotoCoreError, ClientError

        return (ClientError, BotoCoreError)

    def ensure_dirs(self) -> None:
        """The local tmp/, then one HEAD of the bucket: a wrong secret, endpoint or bucket
        stops the start with the setting to fix, not the first upload."""
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors() as exc:
            code, status = error_code(exc)
            if status == 404 or code in MISSING_BUCKET:
                reason = f"the bucket {self.bucket!r} does not exist: create it, or fix 'storage'"
            else:
                reason = self._fail(exc, "the start-up check").reason
            raise UserError(
                f"Cannot use the S3 store s3://{self.bucket}/{self.location.prefix}: {reason}"
            ) from exc

    def answers(self) -> bool:
        """A HEAD of the bucket, at most one per HEALTH_SECONDS (with short timeouts)."""
        with self._health_lock:
            checked, ok = self._health
            if time.monotonic() - checked < HEALTH_SECONDS:
                return ok
            try:
                self._probe.head_bucket(Bucket=self.bucket)
                ok = True
            except self._errors() as exc:
                log.warning("health: the S3 bucket %s does not answer: %s", self.bucket, exc)
                ok = False
            self._health = (time.monotonic(), ok)
            return ok

    def direct_url(self, key: str) -> str | None:
        """A presigned GET valid REDIRECT_SECONDS (`s3_redirect`); None when the server streams."""
        if not self.redirect:
            return None
        params = {"Bucket": self.bucket, "Key": self.object_key(key)}
        return str(
            self._client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=REDIRECT_SECONDS
            )
        )

    def new_temp(self) -> tuple[int, Path]:
        return new_temp_in(self.tmp)

    def sweep_tmp(self, older_than: float = 0.0) -> int:
        return sweep_folder(self.tmp, older_than)

    def flush(self) -> None:
        """Nothing waits for a batch here."""

    def _put(self, source: Path, key: str, **condition: str) -> None:
        checksum = base64.b64encode(bytes.fromhex(key_parts(key)[1])).decode()
        with source.open("rb") as body:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.object_key(key),
                Body=body,
                ContentLength=os.fstat(body.fileno()).st_size,
                ContentType="application/octet-stream",
                ChecksumSHA256=checksum,
                Metadata={"sha256": key_parts(key)[1]},
                **condition,
            )

    def put(self, source: Path, key: str) -> bool:
        if not self._conditional:
            if self.info(key) is not None:
                return False
            self.replace(source, key)
            return True
        try:
            self._put(source, key, IfNoneMatch="*")
        except self._errors() as exc:
            code, status = error_code(exc)
            if code in ALREADY_THERE or status == 412:
                return False
            if code == "NotImplemented" or status == 501:
                log.warning("S3 store has no conditional writes: HEAD before each put")
                self._conditional = False
                return self.put(source, key)
            raise self._fail(exc, f"to store {key}") from exc
        self._seen([key])
        return True

    def replace(self, source: Path, key: str) -> None:
        """An unconditional put: the store swaps the object whole, a reader sees either."""
        try:
            self._put(source, key)
        except self._errors() as exc:
            raise self._fail(exc, f"to store {key}") from exc
        self._forget(key)
        self._seen([key])

    def get(self, key: str, byte_range: str = "") -> dict[str, Any]:
        """The GET's response, its body streaming; FileNotFoundError when there is no such
        object."""
        extra = {"Range": byte_range} if byte_range else {}
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self.object_key(key), **extra
            )
        except self._errors() as exc:
            code, status = error_code(exc)
            if code in NOT_FOUND or status == 404:
                raise FileNotFoundError(errno.ENOENT, "no such object in the bucket", key) from exc
            raise self._fail(exc, f"to read {key}") from exc
        return dict(response)

    def get_body(self, key: str, byte_range: str = "") -> Any:
        return self.get(key, byte_range)["Body"]

    def open(self, key: str) -> BinaryIO:
        response = self.get(key)
        return cast(
            "BinaryIO", S3Object(self, key, response["Body"], int(response["ContentLength"]))
        )

    def open_checked(self, key: str, size: int) -> BinaryIO:
        """One GET: its Content-Length must be `size` and its sha256 metadata the key's."""
        filename = key.rsplit("/", 1)[-1]
        try:
            response = self.get(key)
        except FileNotFoundError as exc:
            self._forget(key)
            log.error("stored file %s is missing from the bucket", key)
            raise DamagedFile(f"Stored file {filename} is missing on the server") from exc
        handle = S3Object(self, key, response["Body"], int(response["ContentLength"]))
        try:
            if handle.size != size or not self._sound(key, response):
                self._forget(key)
                log.error("stored file %s does not match its size or sha256", key)
                raise DamagedFile(f"Stored file {filename} is damaged on the server")
        except BaseException:
            handle.close()
            raise
        return cast("BinaryIO", handle)

    def _sound(self, key: str, response: dict[str, Any]) -> bool:
        stored = response.get("Metadata", {}).get("sha256")
        if stored is not None:
            return bool(stored == key_parts(key)[1])
        tag = (key, str(response.get("ETag", "")))
        if tag in self._verified:
            return True
        if self.sha256(key) != key_parts(key)[1]:
            return False
        with self._lock:
            self._verified.add(tag)
        return True

    def sha256(self, key: str) -> str:
        """Read in full from the store (fsck --checksum), never trusted from a header."""
        digest = hashlib.sha256()
        body = self.get_body(key)
        try:
            for block in iter(lambda: body.read(BLOCK), b""):
                digest.update(block)
        finally:
            body.close()
        return digest.hexdigest()

    def info(self, key: str) -> BlobInfo | None:
        """HEAD: the size and LastModified (the orphan sweep's age); None when absent."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except self._errors() as exc:
            code, status = error_code(exc)
            if code in NOT_FOUND or status == 404:
                return None
            raise self._fail(exc, f"to look up {key}") from exc
        return BlobInfo(int(head["ContentLength"]), head["LastModified"].timestamp())

    def missing(self, keys: Iterable[str]) -> set[str]:
        """A HEAD for each key not seen in the bucket before; one seen is trusted after, as
        blobs never change and leave only through `delete` or `quarantine` (or are found
        gone by a download), which forget it. A page of 50 files would otherwise cost 50
        HEADs (6 ms each on SeaweedFS here) at every render."""
        unknown = [key for key in keys if key not in self._present]
        gone = {key for key in unknown if self.info(key) is None}
        self._seen(key for key in unknown if key not in gone)
        return gone

    def _seen(self, keys: Iterable[str]) -> None:
        with self._lock:
            if len(self._present) > PRESENT_LIMIT:
                self._present.clear()
            self._present.update(keys)

    def _forget(self, key: str) -> None:
        with self._lock:
            self._present.discard(key)
            self._verified = {item for item in self._verified if item[0] != key}

    def stored_keys(self) -> Iterator[str]:
        """Every key under the prefix (ListObjectsV2, page by page); others are left alone."""
        pages = self._client.get_paginator("list_objects_v2")
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.location.prefix):
                for item in page.get("Contents", ()):
                    key = str(item["Key"]).removeprefix(self.location.prefix)
                    try:
                        key_parts(key)
                    except StorageError:
                        log.warning(
                            "unexpected object in the blob store: %s (left alone)", item["Key"]
                        )
                        continue
                    yield key
        except self._errors() as exc:
            raise self._fail(exc, "to list the stored files") from exc

    def quarantine(self, key: str, folder: Path) -> Path:
        """Downloaded into the local `folder`, then deleted from the bucket: quarantine is
        where an operator looks (and `gc` puts a blob back from with `put`), and a copy
        kept in the bucket would still be a blob no row names. FileNotFoundError when the
        object is gone."""
        target = quarantine_target(folder, key)
        body = self.get_body(key)
        try:
            with contextlib.closing(body), target.open("wb") as out:
                for block in iter(lambda: body.read(BLOCK), b""):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            raise
        self.delete(key)
        return target

    def delete(self, key: str) -> None:
        """Deleting an absent object succeeds, as S3 has it."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except self._errors() as exc:
            raise self._fail(exc, f"to delete {key}") from exc
        self._forget(key)
