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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Summary
from prometheus_client.exposition import choose_encoder

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
        registry = self.registry
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
        Gauge(
            "minirepo_disk_free_bytes", "Free bytes on the data folder's disk", registry=registry
        ).set_function(lambda: _known(disk_free()))
        Gauge(
            "minirepo_spool_bytes",
            "Bytes of request bodies being received or handled at once (max_spool_bytes caps it)",
            registry=registry,
        ).set_function(lambda: float(spool_in_use()))
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
        if kind == UPLOAD and code[0] == "2":
            self._uploads.inc()
        elif code == "429" or (code == "401" and "HTTP_AUTHORIZATION" in environ):
            # A 401 without credentials is the usual challenge (pip asks anonymously first).
            self._auth_failures.inc()

    def fetched(self, event: str) -> None:
        """A proxy fetch job's event (`Fetches`' `on_event`)."""
        self._fetches[event].inc()

    def busy(self, seconds: float) -> None:
        """A request gave up waiting for the database lock after `seconds`."""
        self._busy.observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and its content type: Prometheus's text format, or OpenMetrics for a
        scraper that asks for it."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


def _known(value: int | None) -> float:
    return float("nan") if value is None else float(value)


def init_app(app: Flask, metrics: Metrics) -> None:
    app.extensions["minirepo.metrics"] = metrics

    @app.teardown_request
    def _note_route(exc: BaseException | None) -> None:
        """Runs before the body is sent, so the kind is there when `observe` runs."""
        request.environ[ROUTE_KEY] = _KIND_OF_BLUEPRINT.get(request.blueprint or "", OTHER)
