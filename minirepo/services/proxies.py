"""Proxy repositories' pages: an upstream simple index, cached so it survives outages.

A page younger than the proxy's `page_ttl` is served from memory like a hosted page. An
older one costs one conditional request (If-None-Match) for all the threads asking: the
others wait at most `connect_timeout` + 2 s, then take the page they have. When the
upstream fails (refused, timed out, 5xx) the last page is served, marked stale, until it
is older than `stale_max`; with nothing cached the answer is 502 (504 on a timeout) with
the reason, never an empty page that would make pip say "no matching distribution". A
failing upstream is left alone for DOWN_SECONDS, so a resolve of fifty names on a box
without internet fails fast instead of fifty times slowly.

No request or disk call happens inside a database transaction: the upstream is asked
first, the row written after.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import peewee

from minirepo import dists, models
from minirepo.config import Settings
from minirepo.db import rows, write_transaction
from minirepo.errors import BadGateway, GatewayTimeout, InvalidUpload, NotFound
from minirepo.services import cache, pages
from minirepo.services.cache import LastUse
from minirepo.services.pages import JSON_V1, Page
from minirepo.services.policy import Stamp, Verdicts
from minirepo.services.proxy_options import ProxyOptions, options_of
from minirepo.services.repos import RepoInfo
from minirepo.services.upstream_health import DOWN_SECONDS, UpstreamBook
from minirepo.storage import BlobStore
from minirepo.units import format_size
from minirepo.upstream_pages import UpstreamFile, UpstreamPage, from_json, parse_page, to_json
from minirepo.upstream_types import UpstreamConfig, UpstreamError

if TYPE_CHECKING:
    from minirepo.upstream import Upstream

log = logging.getLogger(__name__)

# Waiting for another thread's revalidation: its connect timeout plus this.
WAIT_SLACK = 2.0
DISK_WARNING_SECONDS = 3600.0


@dataclasses.dataclass(frozen=True)
class Stale:
    """Why a page is served from the cache past its TTL: the upstream's last error."""

    since: datetime.datetime  # when the page was last confirmed by the upstream
    error: str

    def header(self) -> str:
        since = self.since.strftime("%Y-%m-%dT%H:%M:%SZ")
        error = self.error.replace("\\", "\\\\").replace('"', '\\"')
        return f'stale; since={since}; error="{error}"'

    def banner(self) -> str:
        since = self.since.strftime("%Y-%m-%d %H:%M UTC")
        return f"The upstream is unreachable ({self.error}); this page is as it was at {since}."


@dataclasses.dataclass(frozen=True)
class ProxyPage:
    name: str
    files: tuple[UpstreamFile, ...]
    tracks: tuple[str, ...]
    stale: Stale | None = None


@dataclasses.dataclass
class _Fresh:
    checked: float  # monotonic time of the last upstream confirmation
    page: ProxyPage
    # (kind, block level) -> the page and the verdicts' stamp it was rendered under
    rendered: dict[tuple[str, str], tuple[Stamp, Page]] = dataclasses.field(default_factory=dict)


def _age(value: datetime.datetime | None) -> float:
    if value is None:
        return float("inf")
    return (models.utcnow() - value).total_seconds()


class Proxies:
    """One per app: the upstream clients, fresh pages in memory, the upstreams' health."""

    def __init__(self, settings: Settings, store: BlobStore) -> None:
        self.settings = settings
        self.store = store
        # The app's one verdict cache: the index shares it (`Index.verdicts`).
        self.verdicts = Verdicts()
        self._lock = threading.Lock()
        self._clients: dict[int, tuple[tuple[str, str, str], Upstream]] = {}
        self._fresh: dict[tuple[int, str], _Fresh] = {}
        self._inflight: dict[tuple[int, str], threading.Event] = {}
        self.upstreams = UpstreamBook()
        self._disk_warned: float = -DISK_WARNING_SECONDS
        self.last_use = LastUse()

    def options(self, repo: RepoInfo) -> ProxyOptions:
        return options_of(repo.proxy_options)

    def is_offline(self, repo: RepoInfo) -> bool:
        return self.settings.offline or self.options(repo).offline

    def client(self, repo: RepoInfo) -> Upstream:
        """The repository's upstream client, rebuilt when its settings change."""
        options = self.options(repo)
        key = (repo.upstream, repo.proxy_options, options.password)
        with self._lock:
            held = self._clients.get(repo.id)
            if held is not None and held[0] == key:
                return held[1]
            from minirepo.upstream import Upstream  # urllib3: only once a proxy fetches

            client = Upstream(
                UpstreamConfig(
                    url=repo.upstream,
                    connect_timeout=options.connect_timeout,
                    read_timeout=options.read_timeout,
                    user=options.upstream_user,
                    password=options.password,
                    proxy=options.upstream_proxy,
                    ca_bundle=options.ca_bundle,
                )
            )
            self._clients[repo.id] = (key, client)
        if held is not None:
            held[1].close()
        return client

    def close(self) -> None:
        with self._lock:
            clients = [client for _, client in self._clients.values()]
            self._clients.clear()
        for client in clients:
            client.close()

    # -- pages -------------------------------------------------------------------------

    def fresh_page(self, repo: RepoInfo, normalized: str, kind: str) -> Page | None:
        """The rendered page if it is younger than the TTL, else None; no I/O (the fast
        path asks this on every request, so it reads the options once)."""
        entry = self._fresh.get((repo.id, normalized))
        if entry is None or entry.page.stale is not None:
            return None
        options = options_of(repo.proxy_options)
        if options.offline or self.settings.offline:
            return None  # offline pages list only what is cached: rendered per request
        if time.monotonic() - entry.checked >= options.page_ttl:
            return None
        return self._rendered(repo, entry, normalized, kind)

    def rendered_page(
        self, repo: RepoInfo, normalized: str, kind: str
    ) -> tuple[Page, Stale | None]:
        """The page as a client gets it, with the reason when it is stale."""
        page = self.listed(repo, normalized)
        if self.is_offline(repo):
            return self._render(repo, page, normalized, kind)[1], page.stale
        entry = self._fresh.get((repo.id, normalized))
        if entry is not None and entry.page is page:
            return self._rendered(repo, entry, normalized, kind), None
        return self._render(repo, page, normalized, kind)[1], page.stale

    def listed(self, repo: RepoInfo, normalized: str) -> ProxyPage:
        """`page` as it is listed: offline, only the files the proxy holds."""
        page = self.page(repo, normalized)
        if not self.is_offline(repo):
            return page
        cached = self._cached_filenames(repo, normalized)
        return dataclasses.replace(page, files=tuple(f for f in page.files if f.filename in cached))

    def _rendered(self, repo: RepoInfo, entry: _Fresh, normalized: str, kind: str) -> Page:
        key = (kind, repo.level)
        made = entry.rendered.get(key)
        if made is None or not self.verdicts.is_current(made[0]):
            made = entry.rendered[key] = self._render(repo, entry.page, normalized, kind)
        return made[1]

    def _render(
        self, repo: RepoInfo, page: ProxyPage, normalized: str, kind: str
    ) -> tuple[Stamp, Page]:
        """The page with the repository's verdicts: a blocked file listed as yanked."""
        files, stamp = self.verdicts.judge(repo.id, repo.level, normalized, proxy_rows(page.files))
        if kind == JSON_V1:
            body = pages.project_json(page.name, normalized, files, tracks=page.tracks)
        else:
            banner = page.stale.banner() if page.stale is not None else ""
            body = pages.project_html(
                page.name, normalized, files, banner=banner, tracks=page.tracks
            )
        return stamp, pages.make_page(body, stamp.etag_part)

    def has(self, repo: RepoInfo, normalized: str) -> bool:
        """Whether the upstream (or, offline, the cache) has the project; raises
        BadGateway on an upstream error, so a group's walk stops there."""
        try:
            self.page(repo, normalized)
        except NotFound:
            return False
        return True

    def file_entry(self, repo: RepoInfo, normalized: str, filename: str) -> UpstreamFile:
        """The page's entry for `filename`: file URLs come from the page, never the request."""
        for entry in self.page(repo, normalized).files:
            if entry.filename == filename:
                return entry
        raise NotFound(f"No file named {filename!r} in {repo.name!r}")

    def page(self, repo: RepoInfo, normalized: str) -> ProxyPage:
        """The project's page: fresh, revalidated, or stale with the reason; NotFound
        when the upstream does not have it, BadGateway when nothing can stand in."""
        key = (repo.id, normalized)
        options = self.options(repo)
        entry = self._fresh.get(key)
        if entry is not None and time.monotonic() - entry.checked < options.page_ttl:
            return entry.page
        row = _cached_row(repo.id, normalized)
        if self.is_offline(repo):
            if row is None or row.gone or not row.page_json:
                raise NotFound(f"offline: {normalized} is not cached in {repo.name}")
            return _page_of(row)
        if row is not None and _age(row.fetched_at) < options.page_ttl:
            if row.gone:  # confirmed gone upstream within the TTL: still gone
                raise NotFound(f"No project named {normalized!r} in {repo.name!r}")
            if row.page_json:
                return self._remember(repo, row, time.monotonic() - _age(row.fetched_at))
        health = self.upstreams.of(repo.id, repo.upstream)
        if health.is_down:
            reason = f"upstream left alone for {DOWN_SECONDS:.0f} s after: {health.last_error}"
            error = GatewayTimeout if health.timed_out else BadGateway
            return self._stand_in(repo, row, reason, error, options)
        with self._lock:
            event = self._inflight.get(key)
            leader = event is None
            if leader:
                event = self._inflight[key] = threading.Event()
        assert event is not None  # noqa: S101 - for mypy: set above when it was missing
        if not leader:
            event.wait(options.connect_timeout + WAIT_SLACK)
            entry = self._fresh.get(key)
            if entry is not None and time.monotonic() - entry.checked < options.page_ttl:
                return entry.page
            return self._stand_in(
                repo,
                _cached_row(repo.id, normalized),
                health.last_error or "slow",
                GatewayTimeout,
                options,
            )
        try:
            return self._revalidate(repo, normalized, row, options)
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            event.set()

    def _revalidate(
        self,
        repo: RepoInfo,
        normalized: str,
        row: models.CachedPage | None,
        options: ProxyOptions,
    ) -> ProxyPage:
        etag = row.etag if row is not None and row.page_json and not row.gone else ""
        try:
            answer = self.client(repo).project_page(normalized, etag)
            parsed: UpstreamPage | None = None
            if answer.status == 200:
                parsed = parse_page(answer.body, answer.content_type, answer.url, normalized)
        except (UpstreamError, ValueError) as exc:
            return self._failed(repo, normalized, row, exc, options)
        now = models.utcnow()
        self.upstreams.ok(repo.id, repo.upstream)
        if answer.status in (404, 410):
            _save(repo.id, normalized, gone=True, fetched_at=now, error="", error_at=None)
            with self._lock:
                self._fresh.pop((repo.id, normalized), None)
            raise NotFound(
                f"No project named {normalized!r} in {repo.name!r} (upstream: {answer.status})"
            )
        if answer.status == 304 and row is not None:
            _save(repo.id, normalized, fetched_at=now, gone=False, error="", error_at=None)
            page = _page_of(row)
        else:
            assert parsed is not None  # noqa: S101 - a 200 was parsed above
            page = ProxyPage(parsed.name, parsed.files, parsed.tracks)
            _save(
                repo.id,
                normalized,
                page_json=to_json(parsed),
                etag=answer.etag,
                gone=False,
                fetched_at=now,
                error="",
                error_at=None,
            )
        entry = _Fresh(time.monotonic(), page)
        with self._lock:
            self._fresh[(repo.id, normalized)] = entry
        return page

    def _failed(
        self,
        repo: RepoInfo,
        normalized: str,
        row: models.CachedPage | None,
        exc: Exception,
        options: ProxyOptions,
    ) -> ProxyPage:
        timeout = isinstance(exc, UpstreamError) and exc.kind == "timeout"
        reason = str(exc) if isinstance(exc, UpstreamError) else f"upstream page unreadable: {exc}"
        log.warning("proxy %s: %s (%s)", repo.name, reason, normalized)
        # The whole upstream failed, not one page of it: a 5xx, a refusal, a timeout.
        whole = not isinstance(exc, UpstreamError) or exc.kind != "invalid"
        self.upstreams.failed(repo.id, repo.upstream, reason, timeout=timeout, whole=whole)
        if row is not None:
            _save(repo.id, normalized, error=reason, error_at=models.utcnow())
        return self._stand_in(repo, row, reason, GatewayTimeout if timeout else BadGateway, options)

    def _stand_in(
        self,
        repo: RepoInfo,
        row: models.CachedPage | None,
        reason: str,
        error: type[BadGateway],
        options: ProxyOptions,
    ) -> ProxyPage:
        """The cached page, marked stale, while it is younger than `stale_max`."""
        if row is not None and row.gone and _age(row.fetched_at) < options.stale_max:
            raise NotFound(f"No project named {row.normalized!r} in {repo.name!r}")
        if row is None or not row.page_json or _age(row.fetched_at) >= options.stale_max:
            raise error(f"{repo.name}: {reason}")
        page = _page_of(row)
        return dataclasses.replace(page, stale=Stale(row.fetched_at or models.utcnow(), reason))

    def _remember(self, repo: RepoInfo, row: models.CachedPage, checked: float) -> ProxyPage:
        """A page another process refreshed: fresh here too, for the rest of its TTL."""
        page = _page_of(row)
        with self._lock:
            self._fresh[(repo.id, row.normalized)] = _Fresh(checked, page)
        return page

    # -- files -------------------------------------------------------------------------

    def keeps_files(self, repo: RepoInfo, data: Path) -> bool:
        """Whether a fetched file may be kept: the disk has `min_free_disk` left."""
        floor = self.options(repo).min_free_disk
        free = shutil.disk_usage(data).free
        if free >= floor:
            return True
        now = time.monotonic()
        if now - self._disk_warned >= DISK_WARNING_SECONDS:
            self._disk_warned = now
            log.warning(
                "proxy %s: %s free, below min_free_disk %s: files stream through, none kept",
                repo.name,
                format_size(free),
                format_size(floor),
            )
        return False

    def core_metadata(self, repo: RepoInfo, normalized: str, filename: str) -> bytes:
        """A proxied file's PEP 658 metadata: fetched once, checked against the sha256 its
        page gives, kept with the project. Resolvers (uv, pip) read this instead of the
        file, so a lock or a compile through a proxy downloads no wheel."""
        kept = _kept_small(repo.id, filename)
        if kept is not None:
            return kept
        entry = self.file_entry(repo, normalized, filename)
        if not entry.metadata_sha256:
            raise NotFound(f"No core metadata for {filename!r}")
        if self.is_offline(repo):
            raise NotFound(f"offline: the metadata of {filename} is not cached in {repo.name}")
        content = self._fetch_small(repo, entry.url + ".metadata")
        if hashlib.sha256(content).hexdigest() != entry.metadata_sha256:
            raise BadGateway(
                f"{repo.name}: the upstream's metadata of {filename} does not match its page"
            )
        _keep_small(repo.id, normalized, filename, content)
        return content

    def provenance(self, repo: RepoInfo, normalized: str, filename: str) -> bytes:
        """A proxied file's PEP 740 provenance, as its upstream serves it: fetched once and
        kept verbatim beside its metadata (under `<filename>.provenance`). The client
        verifies it against the file's hash, which the page already gives."""
        name = filename + ".provenance"
        kept = _kept_small(repo.id, name)
        if kept is not None:
            return kept
        entry = self.file_entry(repo, normalized, filename)
        if entry.provenance is None:
            raise NotFound(f"No provenance for {filename!r}")
        if self.is_offline(repo):
            raise NotFound(f"offline: the provenance of {filename} is not cached in {repo.name}")
        content = self._fetch_small(repo, entry.provenance)
        _keep_small(repo.id, normalized, name, content)
        return content

    def _fetch_small(self, repo: RepoInfo, url: str) -> bytes:
        """A body of at most `max_metadata_size` bytes, or BadGateway/GatewayTimeout."""
        limit = self.settings.max_metadata_size
        try:
            answer = self.client(repo).open_file(url)
            try:
                body = bytearray()
                for chunk in answer.iter_chunks():
                    body += chunk
                    if len(body) > limit:
                        raise BadGateway(f"{repo.name}: {url} is larger than {limit} bytes")
            finally:
                answer.close()
        except UpstreamError as exc:
            error = GatewayTimeout if exc.kind == "timeout" else BadGateway
            raise error(f"{repo.name}: {exc}") from exc
        return bytes(body)

    def note_use(self, repo: RepoInfo, filename: str) -> None:
        self.last_use.note(repo.id, filename)

    def after_fetch(self, repo: RepoInfo) -> None:
        """A file was kept: evict the least used past `cache_max`, uses written first so
        the order is current."""
        limit = self.options(repo).cache_max
        if limit:
            self.last_use.flush()
            cache.evict(self.store, repo, limit)

    def _cached_filenames(self, repo: RepoInfo, normalized: str) -> frozenset[str]:
        query = (
            models.File.select(models.File.filename)
            .join(models.Release)
            .join(models.Project)
            .where((models.File.repository == repo.id) & (models.Project.normalized == normalized))
            .tuples()
        )
        return frozenset(str(name) for (name,) in rows(query))


def _cached_row(repo_id: int, normalized: str) -> models.CachedPage | None:
    row: models.CachedPage | None = (
        models.CachedPage.select()
        .where(
            (models.CachedPage.repository == repo_id) & (models.CachedPage.normalized == normalized)
        )
        .first()
    )
    return row


def _save(repo_id: int, normalized: str, **fields: object) -> None:
    """Insert or update the project's row in one short transaction."""
    insert = {"repository": repo_id, "normalized": normalized, **fields}
    update = {getattr(models.CachedPage, key): value for key, value in fields.items()}
    try:
        with write_transaction():
            models.CachedPage.insert(**insert).on_conflict(
                conflict_target=[models.CachedPage.repository, models.CachedPage.normalized],
                update=update,
            ).execute()
    except peewee.IntegrityError:
        log.debug("the proxy's repository went away while its page was fetched")


def _kept_small(repo_id: int, name: str) -> bytes | None:
    row = (
        models.CachedMetadata.select(models.CachedMetadata.content)
        .where(
            (models.CachedMetadata.repository == repo_id) & (models.CachedMetadata.filename == name)
        )
        .tuples()
        .first()
    )
    return bytes(row[0]) if row is not None else None


def _keep_small(repo_id: int, normalized: str, name: str, content: bytes) -> None:
    try:
        with write_transaction():
            models.CachedMetadata.insert(
                repository=repo_id, normalized=normalized, filename=name, content=content
            ).on_conflict_ignore().execute()
    except peewee.IntegrityError:
        log.debug("the proxy's repository went away while %s was fetched", name)


def _page_of(row: models.CachedPage) -> ProxyPage:
    parsed = from_json(row.page_json)
    return ProxyPage(parsed.name, parsed.files, parsed.tracks)


def proxy_rows(files: tuple[UpstreamFile, ...]) -> list[pages.FileRow]:
    return pages.sorted_rows(_row_of(entry) for entry in files)


def _row_of(entry: UpstreamFile) -> pages.FileRow:
    try:
        version = str(dists.parse_filename(entry.filename).version)
    except InvalidUpload:
        version = ""
    return pages.FileRow(
        entry.filename,
        version,
        entry.sha256,
        entry.size,
        entry.requires_python,
        entry.metadata_sha256,
        entry.yanked,
        entry.yanked_reason,
        entry.upload_time,
        provenance=entry.provenance is not None,
    )
