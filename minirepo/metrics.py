"""`/-/metrics`: one app's counters, in a Prometheus registry of its own.

Every answer the app gives passes the access log's WSGI layer (`accesslog.AccessLog`),
which hands its status and size to `Metrics.observe` after the last byte: one place counts
pages, files and uploads alike, whichever layer answered. That layer only knows the URL,
so the layer that answered names the route's kind in the environ: the fast path marks the
pages it served from its cache, Flask's teardown the kind of the blueprint that routed.
Labels are kinds and status codes, never paths, so the number of series stays bounded
whatever clients ask for.

A registry per app, never prometheus_client's global one: the tests run many apps in one
process, and two apps must neither count into each other nor register a name twice.

With `serve --workers N` a scrape reaches one worker, which must answer for all of them:
the supervisor gives the workers a folder (`share_across_processes`, before any app is
made), prometheus_client's multiprocess mode keeps each worker's counters in a file of its
own there, and a scrape sums every file. A dead worker's files stay, so no counter ever runs
backwards, across a restart either; the spool gauge sums the live workers' (each updates
its own as it answers), and disk free is asked by the worker that answers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from flask import Flask, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Summary, multiprocess, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

# The folder the workers of this server count in, or None (one process). Process-wide, as
# prometheus_client's own choice of value class is.
_shared_folder: Path | None = None

# Where the layer that answered leaves the route kind for `observe`.
ROUTE_KEY = "minirepo.route"
PAGE, FILE, UPLOAD, OTHER = "page", "file", "upload", "other"
# A page the fast path answered from its cache (`minirepo.fastpath`): a page, and a hit.
CACHED_PAGE = "cached page"
_KIND_OF_BLUEPRINT = {"simple": PAGE, "files": FILE, "upload": UPLOAD}
# A page Flask answered with one of these could have come from the cache: a miss. Its
# other answers (401 asking for credentials, 404) are no question of caching.
_PAGE_ANSWERS = ("200", "304")
# What `services.fetches.Fetches` reports of its jobs: started, then one of the others.
FETCH_EVENTS = ("started", "verified", "failed", "elsewhere")


class Metrics:
    """The instruments of one app; `observe`, `fetched` and `busy` are what its layers
    call, `exposition` what `/-/metrics` answers."""

    def __init__(
        self, disk_free: Callable[[], int | None], spool_in_use: Callable[[], int]
    ) -> None:
        """`disk_free`: None when the disk could not be asked (a scrape then says NaN)."""
        self.registry = CollectorRegistry()
        shared = _shared_folder
        # Shared: the instruments count into this worker's file, and the registry reads all.
        registry: CollectorRegistry | None = None if shared else self.registry
        self._requests = Counter(
            "minirepo_http_requests",
            "Answers by route kind (page, file, upload, other) and status code",
            ["kind", "code"],
            registry=registry,
        )
        self._sent = Counter(
            "minirepo_http_response_bytes",
            "Bytes of answer bodies sent, by route kind",
            ["kind"],
            registry=registry,
        )
        self._uploads = Counter(
            "minirepo_uploads",
            "Uploads accepted (2xx answers of the upload route)",
            registry=registry,
        )
        self._auth_failures = Counter(
            "minirepo_auth_failures",
            "Credentials refused: 401 answers to requests that sent some, and 429 lockouts",
            registry=registry,
        )
        cache = Counter(
            "minirepo_page_cache_requests",
            "Simple pages answered from the fast path's cache (hit) or rendered by Flask (miss)",
            ["result"],
            registry=registry,
        )
        self._hits, self._misses = cache.labels("hit"), cache.labels("miss")
        self._busy = Summary(
            "minirepo_database_busy_wait_seconds",
            "Requests answered 503 after waiting for the database lock, and how long they waited",
            registry=registry,
        )
        fetches = Counter(
            "minirepo_upstream_fetches",
            "Proxy file fetches from upstream: started, and how each ended",
            ["event"],
            registry=registry,
        )
        self._fetches = {event: fetches.labels(event) for event in FETCH_EVENTS}
        self._advised = Counter(
            "minirepo_advised_downloads",
            "Files served although an advisory names them (a warn level, or an exception), "
            "and blocked files refused, by action and severity",
            ["action", "severity"],
            registry=registry,
        )
        disk_help = "Free bytes on the data folder's disk"
        spool_help = (
            "Bytes of request bodies being received or handled at once (max_spool_bytes caps it)"
        )
        self._spool: Gauge | None = None
        self._spool_in_use = spool_in_use
        if shared:
            multiprocess.MultiProcessCollector(self.registry, str(shared))  # type: ignore[no-untyped-call]
            self.registry.register(
                _Asked("minirepo_disk_free_bytes", disk_help, lambda: _known(disk_free()))
            )
            self._spool = Gauge(
                "minirepo_spool_bytes", spool_help, multiprocess_mode="livesum", registry=None
            )
        else:
            Gauge("minirepo_disk_free_bytes", disk_help, registry=registry).set_function(
                lambda: _known(disk_free())
            )
            Gauge("minirepo_spool_bytes", spool_help, registry=registry).set_function(
                lambda: float(spool_in_use())
            )
        # The children of `_requests` and `_sent` per (kind, code): `labels()` takes a lock
        # and builds a key on every call, this one dict lookup on the hot path.
        self._answers: dict[tuple[str, str], tuple[Counter, Counter]] = {}

    def observe(self, environ: Mapping[str, Any], status: str, size: int) -> None:
        """One answer, after its last byte (`accesslog.AccessLog`'s observer)."""
        code = status[:3]
        kind = environ.get(ROUTE_KEY, OTHER)
        if kind == CACHED_PAGE:
            kind = PAGE
            self._hits.inc()
        elif kind == PAGE and code in _PAGE_ANSWERS:
            self._misses.inc()
        counters = self._answers.get((kind, code))
        if counters is None:
            counters = (self._requests.labels(kind, code), self._sent.labels(kind))
            self._answers[(kind, code)] = counters
        requests, sent = counters
        requests.inc()
        if size:
            sent.inc(size)
        if self._spool is not None:  # a worker's own part of the summed gauge
            self._spool.set(self._spool_in_use())
        if kind == UPLOAD and code[0] == "2":
            self._uploads.inc()
        elif code == "429" or (code == "401" and "HTTP_AUTHORIZATION" in environ):
            # A 401 without credentials is the usual challenge (pip asks anonymously first).
            self._auth_failures.inc()

    def fetched(self, event: str) -> None:
        """A proxy fetch job's event (`Fetches`' `on_event`)."""
        self._fetches[event].inc()

    def advised(self, action: str, severity: str) -> None:
        """A download of a file an advisory names: served ("warned", "excepted") or
        refused ("blocked")."""
        self._advised.labels(action, severity).inc()

    def busy(self, seconds: float) -> None:
        """A request gave up waiting for the database lock after `seconds`."""
        self._busy.observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and its content type: Prometheus's text format, or OpenMetrics for a
        scraper that asks for it."""
        encode, content_type = choose_encoder(accept or "")
        if self._spool is not None:
            self._spool.set(self._spool_in_use())
        return encode(self.registry), content_type


class _Asked(Collector):
    """A gauge asked at each scrape, outside the shared files (multiprocess mode keeps
    none of prometheus_client's function gauges)."""

    def __init__(self, name: str, documentation: str, ask: Callable[[], float]) -> None:
        self.name = name
        self.documentation = documentation
        self.ask = ask

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, value=self.ask())


def _known(value: int | None) -> float:
    return float("nan") if value is None else float(value)


def prepare_shared_folder(folder: Path) -> None:
    """The supervisor's part, before any worker starts: an empty private folder (a crashed
    run's files would count again)."""
    if folder.exists():
        for entry in folder.iterdir():
            entry.unlink()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def share_across_processes(folder: Path) -> None:
    """A worker's part, before its app is made: count in `folder` with the other workers.
    prometheus_client names the folder by this variable only."""
    global _shared_folder
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _shared_folder = folder


def forget_process(folder: Path, pid: int) -> None:
    """A worker died: its live gauges leave the sums (its counters stay in them)."""
    multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


def init_app(app: Flask, metrics: Metrics) -> None:
    app.extensions["minirepo.metrics"] = metrics

    @app.teardown_request
    def _note_route(exc: BaseException | None) -> None:
        """Runs before the body is sent, so the kind is there when `observe` runs."""
        request.environ[ROUTE_KEY] = _KIND_OF_BLUEPRINT.get(request.blueprint or "", OTHER)
