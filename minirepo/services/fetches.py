"""A proxy's file miss: fetched from upstream once, teed to every client asking meanwhile.

The first request for a file a proxy does not hold starts a *fetch job*; it, and every
request for that file while the job runs, *tails* the job's `.part` file in `<data>/tmp`:
each reads from disk what the job has written so far and waits for more. Nothing holds a
file in memory, and a client that leaves does not stop the job (the next one wants the
file too). When the last byte has arrived and matches the page's size and sha256, the
file is published like an upload, so the next request is served from the blob store.

Three rules shape this module:

- The last chunk is withheld. A tail may only read what lies more than one chunk behind
  what was written, until the job has checked the whole file: a lying or truncated
  upstream makes every tail raise `FetchFailed` instead, which makes waitress drop the
  connection before Content-Length is reached. So no client ever holds the whole of a
  wrong file and takes it for the right one.
- Tails are capped. A tailing response holds one of waitress's worker threads for its
  whole transfer, as long as the upstream takes; so at most `threads - 2` tails run at
  once, and the next request gets a 503 with Retry-After (pip and uv retry it) while
  pages and stored files keep being served by the remaining workers.
- One fetch per file across processes. Processes sharing the database (the workers of
  `serve --workers N`, several servers, the CLI) each have their own job table, so the
  rule lives in the database: a job first inserts a `FetchJob` row, unique per repository
  and filename, its owner named `host:pid`. Whoever loses waits for the winner's `File`
  row (polling; it does not tail another process's `.part`). The unique constraint decides
  across boxes (PostgreSQL) as across the workers of one. A row of a process of this box
  that is gone (a worker killed mid-fetch) is taken over at once; one of another box only
  once it is older than `STALE_JOB`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import errno
import hmac
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import peewee

from minirepo import dists, models
from minirepo.config import Settings
from minirepo.db import Database, redact, write_transaction
from minirepo.errors import BadGateway, Busy, GatewayTimeout, InvalidUpload, MinirepoError
from minirepo.permissions import ProjectInfo
from minirepo.services.repos import RepoInfo
from minirepo.services.upload import Checked, SpoolFile, Uploader, UploadService
from minirepo.storage import OUT_OF_DESCRIPTORS, BlobStore, out_of_descriptors, storage_error
from minirepo.upstream_types import UpstreamError

if TYPE_CHECKING:
    from minirepo.upstream import FileResponse, Upstream
    from minirepo.upstream_pages import UpstreamFile

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
# A FetchJob row this old belongs to a process that died mid-fetch (a live one deletes its
# row when its job ends, and the upstream's timeouts end every job long before this).
STALE_JOB = datetime.timedelta(minutes=10)
# How long a request waits for another process's fetch to publish the file, and how often
# it looks; then it answers 503 and the client's retry finds the file (or fetches it).
OTHER_PROCESS_WAIT = 30.0
POLL_INTERVAL = 0.2
# How long a request waits for its job to get the upstream's answer head: the upstream's
# own timeouts are shorter, so this only ends a wait queued behind busy fetch workers.
HEAD_WAIT = 60.0
# A tail that sees no progress for this long gives up (the upstream's read timeout ends
# the job long before; this only bounds the wait should that ever fail).
TAIL_IDLE = 300.0
RETRY_AFTER = "2"

# A job's states. QUEUED until the upstream answers; ELSEWHERE when another process holds
# the file's FetchJob row; STREAMING while bytes arrive; VERIFIED once every byte matched
# the page (tails may read all); FAILED at any error (tails abort).
QUEUED = "queued"
ELSEWHERE = "elsewhere"
STREAMING = "streaming"
VERIFIED = "verified"
FAILED = "failed"
# What `on_event` hears of a job: STARTED, then how it ended (VERIFIED, FAILED, ELSEWHERE).
STARTED = "started"


class FetchFailed(Exception):
    """Raised by a tail's body when its job failed: the server then closes the connection
    before Content-Length is reached, so the client knows its copy is incomplete."""


class FetchBusy(Busy):
    """Every tail slot (or every fetch worker) is taken, or another process is still
    fetching the file: retry in a moment."""

    def __init__(self, reason: str, retry_after: int = int(RETRY_AFTER)) -> None:
        super().__init__(reason)
        self.headers = {"Retry-After": str(retry_after)}


class _Job:
    """One file being fetched; its state changes under `cond`, which wakes every waiter
    (requests waiting for the head, tails waiting for bytes) on each change."""

    def __init__(
        self,
        repo: RepoInfo,
        upstream: Upstream,
        file: UpstreamFile,
        keep: bool,
        spool: SpoolFile,
    ) -> None:
        self.repo = repo
        self.upstream = upstream
        self.file = file
        self.keep = keep
        self.spool = spool
        self.cond = threading.Condition()
        self.state = QUEUED
        self.size: int | None = None  # the Content-Length the tails send
        self.written = 0  # bytes in the .part
        self.visible = 0  # bytes the tails may read: all but the withheld chunk
        self.error = ""
        self.refusal: type[MinirepoError] = BadGateway  # what a request still waiting gets
        self.claimed = False  # this process holds the FetchJob row
        self.started = time.monotonic()  # when the upstream's answer began

    @property
    def key(self) -> tuple[int, str]:
        return (self.repo.id, self.file.filename)

    @property
    def path(self) -> Path:
        return self.spool.path

    def elsewhere(self) -> None:
        with self.cond:
            self.state = ELSEWHERE
            self.cond.notify_all()

    def start(self, size: int | None) -> None:
        with self.cond:
            self.started = time.monotonic()
            self.size = size
            self.state = STREAMING
            self.cond.notify_all()

    def seconds_left(self) -> float:
        """How long the rest of the file should take at the rate it has come so far."""
        with self.cond:
            if self.size is None or self.written <= 0:
                return 1.0
            elapsed = time.monotonic() - self.started
            return (self.size - self.written) * elapsed / self.written

    def advance(self, written: int) -> None:
        """`written` bytes are on disk: the tails may read all but the last chunk of them."""
        with self.cond:
            self.written = written
            self.visible = max(self.visible, written - CHUNK)
            self.cond.notify_all()

    def verify(self, total: int) -> None:
        with self.cond:
            self.written = self.visible = total
            self.state = VERIFIED
            self.cond.notify_all()

    def fail(self, reason: str, refusal: type[MinirepoError] = BadGateway) -> None:
        """Kept on the job for every request that asks, logged once; a job that was
        verified stays so (its tails have the right bytes)."""
        with self.cond:
            if self.state in (VERIFIED, FAILED, ELSEWHERE):
                return
            self.error = reason
            self.refusal = refusal
            self.state = FAILED
            self.cond.notify_all()
        log.warning("fetching %s for %s failed: %s", self.file.filename, self.repo.name, reason)

    def wait_head(self, timeout: float) -> str:
        """The state once the job got past QUEUED, or QUEUED when `timeout` ran out."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.state == QUEUED:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return self.state

    def readable(self, position: int) -> int:
        """How far a tail at `position` may read: > position, or == position at the end.
        Raises FetchFailed when the job failed, or made no progress for TAIL_IDLE."""
        with self.cond:
            idle_since = time.monotonic()
            seen = self.written
            while True:
                if self.state == FAILED:
                    raise FetchFailed(self.error)
                if self.visible > position or self.state == VERIFIED:
                    return self.visible
                if self.written != seen:  # bytes still arrive, if not yet readable ones
                    seen, idle_since = self.written, time.monotonic()
                left = idle_since + TAIL_IDLE - time.monotonic()
                if left <= 0:
                    raise FetchFailed(f"no progress fetching {self.file.filename} upstream")
                self.cond.wait(min(left, 1.0))


@dataclasses.dataclass(eq=False)
class Download:
    """A WSGI body tailing a fetch job: iterate it to stream, close it when done.

    Closing gives back the tail slot and the file descriptor; it never stops the job,
    which other clients may be tailing and whose file the proxy keeps.
    """

    size: int | None  # Content-Length: the page's size, else the upstream's, else None
    _job: _Job = dataclasses.field(repr=False)
    _fd: int = dataclasses.field(repr=False)
    _fetches: Fetches = dataclasses.field(repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    _closed: bool = dataclasses.field(default=False, repr=False)

    def __iter__(self) -> Iterator[bytes]:
        position = 0
        try:
            while True:
                limit = self._job.readable(position)
                if limit <= position:
                    return
                data = os.pread(self._fd, min(limit - position, CHUNK), position)
                if not data:  # the .part is shorter than the job said: never pretend
                    raise FetchFailed(f"{self._job.file.filename}: short read of the .part")
                position += len(data)
                yield data
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.close(self._fd)
        self._fetches._release_slot()


class Fetches:
    """The fetch jobs of one app: a pool of `fetch_workers` threads and the tail slots."""

    def __init__(
        self,
        database: Database,
        store: BlobStore,
        uploads: UploadService,
        settings: Settings,
        after_publish: Callable[[RepoInfo], None] = lambda repo: None,
        on_event: Callable[[str], None] = lambda event: None,
    ) -> None:
        """`after_publish`: run in the job's thread once a file is kept (eviction).
        `on_event`: told when a job starts and how it ended (`minirepo.metrics` counts)."""
        self._after_publish = after_publish
        self._on_event = on_event
        self._database = database
        self._store = store
        self._uploads = uploads
        self._settings = settings
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.fetch_workers, thread_name_prefix="minirepo-fetch"
        )
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # a job is done, its .part removed
        self._jobs: dict[tuple[int, str], _Job] = {}
        self._running = 0  # jobs in the table, or still removing their .part
        self._tails = 0
        # Two waitress workers stay free for pages, uploads and stored files.
        self.max_tails = max(1, settings.threads - 2)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    # -- the request's side -------------------------------------------------------------

    def download(
        self, repo: RepoInfo, upstream: Upstream, file: UpstreamFile, *, keep: bool
    ) -> Download | None:
        """A body tailing the file's fetch job (started here, or joined), once the
        upstream has answered; None when the file is (or got) stored in `repo`, so the
        caller serves it from the blob store.

        Raises BadGateway (GatewayTimeout) when the upstream failed before any byte, so
        the client gets a proper error rather than an aborted 200, and FetchBusy when
        every tail slot is taken or another process's fetch did not end in time.
        `keep=False` (no sha256 on the page, or a nearly full disk): stream, don't store.
        """
        self._take_slot((repo.id, file.filename))
        try:
            answer = self._download(repo, upstream, file, keep)
        except BaseException:
            self._release_slot()
            raise
        if answer is None:
            self._release_slot()
        return answer

    def _take_slot(self, key: tuple[int, str]) -> None:
        """A tail slot, or FetchBusy whose Retry-After is when the file's own fetch should
        end (at least a second): the retry then finds it stored and served from disk
        without a worker thread, instead of finding the slots still taken."""
        with self._lock:
            if self._tails < self.max_tails:
                self._tails += 1
                return
            job = self._jobs.get(key)
        wait = job.seconds_left() if job is not None else 1.0
        log.warning("all %d proxy download slots are taken: answering 503", self.max_tails)
        raise FetchBusy(
            "Server busy fetching files from upstream; retry shortly",
            retry_after=max(1, min(60, math.ceil(wait))),
        )

    def _release_slot(self) -> None:
        with self._lock:
            self._tails -= 1

    @property
    def tails(self) -> int:
        """Tail slots in use (for tests and the operator's view)."""
        with self._lock:
            return self._tails

    def _download(
        self, repo: RepoInfo, upstream: Upstream, file: UpstreamFile, keep: bool
    ) -> Download | None:
        key = (repo.id, file.filename)
        for _attempt in range(3):
            with self._lock:
                job = self._jobs.get(key)
                # Opened while the job is listed: it removes its .part only once it is not.
                fd = _open_tail(job.path) if job is not None else -1
            if job is not None:
                break
            # Checked after finding no job: a job publishes before it leaves the table.
            if _published(repo.id, file.filename):
                return None
            started = self._start(repo, upstream, file, keep)
            if started is not None:
                job, fd = started
                break
        else:  # pragma: no cover - three jobs for one file ended while this one looked
            raise FetchBusy(f"{file.filename} is being fetched; retry shortly")
        try:
            state = job.wait_head(HEAD_WAIT)
        except BaseException:
            os.close(fd)
            raise
        if state in (STREAMING, VERIFIED):
            return Download(job.size, job, fd, self)
        os.close(fd)
        if state == ELSEWHERE:
            self._wait_elsewhere(repo, file.filename)
            return None
        if state == FAILED:
            raise job.refusal(job.error)
        raise FetchBusy("Every upstream fetch worker is busy; retry shortly")

    def _start(
        self, repo: RepoInfo, upstream: Upstream, file: UpstreamFile, keep: bool
    ) -> tuple[_Job, int] | None:
        """A new job for the file and a descriptor on its .part, its temp file made before
        the lock is taken; None if another request started a job for it meanwhile."""
        spool = SpoolFile(self._store, self._settings.max_upload_size)
        try:
            fd = _open_tail(spool.path)
        except BaseException:
            spool.discard()
            raise
        job = _Job(repo, upstream, file, keep, spool)
        with self._lock:
            won = job.key not in self._jobs
            if won:
                self._jobs[job.key] = job
                self._running += 1
        if not won:
            os.close(fd)
            spool.discard()
            return None
        try:
            future = self._pool.submit(self._run, job)
        except BaseException:
            os.close(fd)
            job.fail("the server is shutting down")
            self._forget(job)
            raise
        self._on_event(STARTED)
        future.add_done_callback(lambda done: self._cancelled(job, done))
        return job, fd

    def _wait_elsewhere(self, repo: RepoInfo, filename: str) -> None:
        """Another process holds the file's FetchJob row: wait (bounded) for its File row;
        raises FetchBusy when it does not come.

        The row is looked at before the file: a fetch publishes, then deletes its row, so
        a row gone and no file means that fetch failed, and the client's retry (after
        Retry-After) fetches it here."""
        deadline = time.monotonic() + OTHER_PROCESS_WAIT
        while True:
            fetching = _fetch_row_exists(repo.id, filename)
            if _published(repo.id, filename):
                return
            if not fetching:
                raise FetchBusy(f"Another server's fetch of {filename} ended; retry shortly")
            if time.monotonic() >= deadline:
                raise FetchBusy(f"Another server is still fetching {filename}; retry shortly")
            time.sleep(POLL_INTERVAL)

    # -- the job's side -----------------------------------------------------------------

    def _run(self, job: _Job) -> None:
        """A pool thread starts bare: the app's database is activated for the job, and
        this thread's connection closed after it."""
        with self._database.activated():
            try:
                self._fetch(job)
            except Exception as exc:
                log.exception("fetching %s for %s failed", job.file.filename, job.repo.name)
                job.fail(f"internal error while fetching: {type(exc).__name__}")
            finally:
                job.fail("the fetch ended early")  # no effect on a finished job
                self._on_event(job.state)  # before `_finish`: counted when wait_idle returns
                self._finish(job)
                self._database.close()

    def _fetch(self, job: _Job) -> None:
        try:
            claimed = self._claim(job)
        except peewee.OperationalError as exc:  # locked past the busy timeout, most likely
            job.fail(f"the database did not answer ({exc}); retry shortly", FetchBusy)
            return
        if not claimed:
            job.elsewhere()
            return
        url = job.file.url
        try:
            response = job.upstream.open_file(url)
        except UpstreamError as exc:
            job.fail(_reason(url, exc), _refusal(exc))
            return
        try:
            self._stream(job, response)
        finally:
            response.close()
        if job.state == VERIFIED and job.keep and job.file.sha256:
            self._publish(job)

    def _stream(self, job: _Job, response: FileResponse) -> None:
        """Write the body to the .part and check it; only then may the tails read all."""
        file, spool, url = job.file, job.spool, redact(job.file.url)
        expected = file.size if file.size is not None else response.length
        if file.size is not None and response.length is not None and response.length != file.size:
            job.fail(
                f"upstream {url}: sent {response.length} bytes for a file its page lists "
                f"as {file.size} bytes"
            )
            return
        if expected is not None and expected > self._settings.max_upload_size:
            job.fail(
                f"upstream {url}: the file is {expected} bytes, more than this server "
                f"accepts ({self._settings.max_upload_size} bytes)"
            )
            return
        job.start(expected)
        try:
            for chunk in response.iter_chunks(CHUNK):
                spool.write(chunk)
                if expected is not None and spool.size > expected:
                    job.fail(f"upstream {url}: the body is longer than {expected} bytes")
                    return
                spool.flush()  # to the OS: the tails read the file by its path
                job.advance(spool.size)
        except UpstreamError as exc:
            job.fail(_reason(url, exc), _refusal(exc))
            return
        except MinirepoError as exc:  # TooLarge, StorageError (disk full)
            job.fail(f"{file.filename}: {exc.reason}")
            return
        except OSError as exc:  # flushing the .part
            job.fail(f"{file.filename}: {storage_error(exc, 'the fetched file').reason}")
            return
        if expected is not None and spool.size != expected:
            job.fail(f"upstream {url}: the body ended after {spool.size} of {expected} bytes")
            return
        actual = spool.digest("sha256_digest")
        if file.sha256 and not hmac.compare_digest(actual, file.sha256.lower()):
            job.fail(f"upstream {url}: sha256 {actual} is not the page's {file.sha256}")
            return
        job.verify(spool.size)

    def _publish(self, job: _Job) -> None:
        """Store the checked file like an upload. Its bytes matched the upstream's hash, so
        the tails have it either way; a file whose metadata can't be read is not kept."""
        file, spool = job.file, job.spool
        try:
            dist = dists.parse_filename(file.filename)
            metadata = dists.read_core_metadata(
                spool.path,
                dist,
                self._settings.max_metadata_size,
                max_members=self._settings.max_archive_members,
            )
        except InvalidUpload as exc:
            log.warning("%s from %s is served but not kept: %s", file.filename, job.repo.name, exc)
            return
        except OSError as exc:
            log.warning("%s from %s is served but not kept: %s", file.filename, job.repo.name, exc)
            return
        if file.metadata_sha256 and file.metadata_sha256 != metadata.sha256:
            log.warning(
                "%s: the page of %s gives another metadata sha256 than the file holds",
                file.filename,
                job.repo.name,
            )
        try:
            self._uploads.publish(
                job.repo,
                Checked(dist, metadata, spool),
                Uploader(None, f"proxy:{job.repo.name}"),
                "",
                authorize=_anyone,
            )
        except MinirepoError as exc:
            log.warning("could not keep %s in %s: %s", file.filename, job.repo.name, exc.reason)
            return
        except peewee.PeeweeException as exc:
            log.warning("could not keep %s in %s: %s", file.filename, job.repo.name, exc)
            return
        self._after_publish(job.repo)

    def _claim(self, job: _Job) -> bool:
        """Insert the file's FetchJob row; False when another process holds it. One short
        transaction, with nothing else inside. A stale row is taken over, and so is one of
        this very process: with no job in the table, it is a leftover of a failed delete."""
        repo_id, filename = job.key
        cutoff = models.utcnow() - STALE_JOB
        try:
            with write_transaction():
                row = models.FetchJob.get_or_none(
                    (models.FetchJob.repository == repo_id) & (models.FetchJob.filename == filename)
                )
                if row is not None:
                    if row.started > cutoff and row.owner != self.owner and _may_run(row.owner):
                        return False
                    log.warning(
                        "taking over the fetch of %s that %s started at %s",
                        filename,
                        row.owner,
                        row.started,
                    )
                    row.delete_instance()
                models.FetchJob.create(repository=repo_id, filename=filename, owner=self.owner)
        except peewee.IntegrityError:  # another process inserted it between our two steps
            return False
        job.claimed = True
        return True

    def _finish(self, job: _Job) -> None:
        """Drop the FetchJob row, leave the job table, remove the .part: in this order,
        so a request never finds the job gone with neither the file nor a row to wait on,
        and every tail opened the .part while it still existed (tails keep their fd)."""
        if job.claimed:
            try:
                with write_transaction():
                    models.FetchJob.delete().where(
                        (models.FetchJob.repository == job.repo.id)
                        & (models.FetchJob.filename == job.file.filename)
                        & (models.FetchJob.owner == self.owner)
                    ).execute()
            except peewee.PeeweeException as exc:
                # Left behind, it is taken over by this process's next fetch of the file;
                # other processes wait for it (bounded), then for it to count as stale.
                log.error("could not remove the fetch row of %s: %s", job.file.filename, exc)
        self._forget(job)

    def _forget(self, job: _Job) -> None:
        with self._lock:
            del self._jobs[job.key]
        job.spool.discard()
        with self._lock:
            self._running -= 1
            self._ended.notify_all()

    def _cancelled(self, job: _Job, future: concurrent.futures.Future[None]) -> None:
        """A job the pool never ran (closed while it waited in the queue)."""
        if future.cancelled():
            job.fail("the server is shutting down")
            self._on_event(job.state)
            self._forget(job)

    # -- the app's side -----------------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs; False if some still do after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._ended:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ended.wait(left)
        return True

    def close(self) -> None:
        """Shut the pool down: queued jobs are dropped, running ones finish (their
        upstream's timeouts bound that)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _anyone(project: ProjectInfo | None, replacing: bool) -> None:
    """A proxy's fetch stores what its upstream serves, for no account."""


def _refusal(exc: UpstreamError) -> type[MinirepoError]:
    return GatewayTimeout if exc.kind == "timeout" else BadGateway


def _reason(url: str, exc: UpstreamError) -> str:
    """The client's one line: the upstream client's messages name the upstream already."""
    text = str(exc)
    return text if text.startswith("upstream") else f"upstream {redact(url)}: {text}"


def _open_tail(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno in OUT_OF_DESCRIPTORS:
            raise out_of_descriptors(exc, "a fetch's temp file") from exc
        if exc.errno == errno.ENOENT:
            raise FetchBusy("The file is being fetched; retry shortly") from exc
        raise storage_error(exc, "the fetched file") from exc


def _published(repo_id: int, filename: str) -> bool:
    return bool(
        models.File.select()
        .where((models.File.repository == repo_id) & (models.File.filename == filename))
        .exists()
    )


def _may_run(owner: str) -> bool:
    """Whether the process that owns a FetchJob row may still be fetching: one of this box
    is asked (a pid reused meanwhile only makes it wait for STALE_JOB, as before), one of
    another box is believed."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _fetch_row_exists(repo_id: int, filename: str) -> bool:
    return bool(
        models.FetchJob.select()
        .where((models.FetchJob.repository == repo_id) & (models.FetchJob.filename == filename))
        .exists()
    )
