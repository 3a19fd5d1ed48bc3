"""The read side: repositories, simple pages and stored files.

Simple pages are rendered once per change and kept in memory, keyed by the repository's
generation counter, which every write bumps in its own transaction. The generation is
re-read from the database at most every `page_cache_seconds`, so a page request normally
costs no query at all (PERFORMANCE.md: one query per page caps the stack near 1 400 req/s).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from typing import Any, BinaryIO, TypeVar, cast

import peewee

from minirepo import models, names
from minirepo.config import Settings
from minirepo.db import rows
from minirepo.errors import (
    DamagedFile,
    MethodNotAllowed,
    MinirepoError,
    NotFound,
    RepositoryNotFound,
)
from minirepo.services import groups, pages, provenance, repair
from minirepo.services.pages import HTML, HTML_V1, JSON_V1, Page, make_page
from minirepo.services.policy import Stamp
from minirepo.services.proxies import Proxies, proxy_rows
from minirepo.services.repos import RepoInfo, info_of, served_through
from minirepo.storage import BlobStore

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

__all__ = ["HTML", "HTML_V1", "JSON_V1", "Index", "Page", "StoredFile"]


@dataclasses.dataclass(frozen=True)
class StoredFile:
    id: int
    filename: str
    storage_key: str
    size: int
    sha256: str
    upload_time: datetime.datetime


class Index:
    def __init__(self, settings: Settings, store: BlobStore, proxies: Proxies) -> None:
        self.settings = settings
        self.store = store
        self.proxies = proxies
        self.verdicts = proxies.verdicts
        self._repos: dict[str, tuple[float, RepoInfo]] = {}
        # (repository, project, kind, scope, block level) -> (generation, verdicts, page)
        self._pages: dict[tuple[int, str, str, frozenset[str], str], tuple[int, Stamp, Page]] = {}
        # (group id, its generation, name) -> the member that answers: a recorded origin
        # only changes with the group's generation (`origin set`, new members).
        self._winners: dict[tuple[int, int, str], str] = {}
        # (group id, its generation, name) -> whether the group merges it (`repo track`).
        self._tracked: dict[tuple[int, int, str], bool] = {}
        # storage key -> (repository id, its generation) when this process withdrew it: a
        # file asked for again at that generation is not withdrawn (and written) again.
        self._withdrawn: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def repo(self, name: str | None) -> RepoInfo:
        """The repository named in the URL (None: the default), from a short-lived cache."""
        name = name or self.settings.default_repository
        now = time.monotonic()
        cached = self._repos.get(name)
        if cached is not None and now - cached[0] < self.settings.page_cache_seconds:
            return cached[1]
        if not names.is_repository_name(name):
            raise NotFound("Not found")
        row = models.Repository.get_or_none(models.Repository.name == name)
        if row is None:
            raise RepositoryNotFound(name)
        info = info_of(row)
        with self._lock:
            # An upload may have committed and noted its generation between our read and
            # now: never replace that fresh, newer entry with the older row we read.
            current = self._repos.get(name)
            if (
                current is not None
                and current[1].id == info.id
                and current[1].generation > info.generation
                and now - current[0] < self.settings.page_cache_seconds
            ):
                return current[1]
            self._repos[name] = (now, info)
        return info

    def note_generation(self, repo: RepoInfo, generation: int) -> None:
        """Called after a write commits in this process: its pages change at once."""
        with self._lock:
            current = self._repos.get(repo.name)
            if current is not None and current[1].id == repo.id:
                # Two uploads may note out of order: the higher generation wins.
                generation = max(generation, current[1].generation)
            updated = dataclasses.replace(repo, generation=generation)
            self._repos[repo.name] = (time.monotonic(), updated)

    def forget_repo(self, name: str) -> None:
        """After a change to a repository made in this process: re-read it at once."""
        with self._lock:
            self._repos.pop(name, None)

    def member(self, group: RepoInfo, normalized: str) -> RepoInfo | None:
        """The group member that answers for `normalized` (`groups.winner`), or None."""
        key = (group.id, group.generation, normalized)
        name = self._winners.get(key)
        if name is None:
            name = groups.winner(
                group.id, normalized, lambda proxy: self.proxies.has(self.repo(proxy), normalized)
            )
            if name is None:
                return None
            _remember(self._lock, self._winners, key, name)
        return self.repo(name)

    def is_tracked(self, group: RepoInfo, normalized: str) -> bool:
        """Whether the group merges `normalized` across its members (`repo track`)."""
        key = (group.id, group.generation, normalized)
        known = self._tracked.get(key)
        if known is None:
            known = groups.is_tracked(group.id, normalized)
            _remember(self._lock, self._tracked, key, known)
        return known

    def tracked_page(
        self, group: RepoInfo, members: list[RepoInfo], normalized: str, kind: str
    ) -> tuple[Page, list[RepoInfo]]:
        """A tracked name's page: the files of every member that has it, the first
        member's on a duplicate filename, with PEP 708 `tracks` naming each upstream
        project it follows. Also the members that contributed. Rendered per request."""
        merged: dict[str, pages.FileRow] = {}
        tracks: list[str] = []
        contributed: list[RepoInfo] = []
        name = normalized
        stamp = self.verdicts.stamp()
        for member in members:
            if member.is_proxy:
                try:
                    found = self.proxies.listed(member, normalized)
                except NotFound:
                    continue
                rows_of_member = proxy_rows(found.files)
                tracks.append(f"{member.upstream.rstrip('/')}/{normalized}/")
                name = found.name
            else:
                project = (
                    models.Project.select(models.Project.id, models.Project.name)
                    .where(
                        (models.Project.repository == member.id)
                        & (models.Project.normalized == normalized)
                    )
                    .first()
                )
                if project is None:
                    continue
                rows_of_member = self._file_rows(project.id)
                name = project.name
            contributed.append(member)
            # Each member's files under the stricter of its own and the group's level.
            judged, stamp = self.verdicts.judge(
                member.id, served_through(group, member).level, normalized, rows_of_member
            )
            for row in judged:
                merged.setdefault(row.filename, row)
        if not contributed:
            raise NotFound(f"No project named {normalized!r}")
        files = pages.sorted_rows(merged.values())
        if kind == JSON_V1:
            body = pages.project_json(name, normalized, files, tracks=tuple(tracks))
        else:
            body = pages.project_html(name, normalized, files, tracks=tuple(tracks))
        return make_page(body, stamp.etag_part), contributed

    def cached_member(self, group: RepoInfo, normalized: str) -> RepoInfo | None:
        """The member already known to answer `normalized`, without a query (fast path)."""
        name = self._winners.get((group.id, group.generation, normalized))
        return self.repo(name) if name is not None else None

    def upload_target(self, repo: RepoInfo) -> RepoInfo:
        """Where an upload to `repo`'s URL is stored: a group's `upload_to` member."""
        if repo.is_proxy:
            raise MethodNotAllowed("proxy repositories are read-only")
        if not repo.is_group:
            return repo
        if repo.upload_to is None:
            raise MethodNotAllowed(
                f"group {repo.name} takes no uploads: upload to one of its members, or ask "
                f"an admin for: minirepo repo set {repo.name} --upload-to MEMBER"
            )
        return self.repo(repo.upload_to)

    def group_root_page(
        self, group: RepoInfo, kind: str, members: frozenset[int], only: frozenset[str]
    ) -> Page:
        """A group's project list from the `members` the caller may read. Rendered per
        request: it changes with every member, and no installer asks for it."""
        projects = groups.project_names(members, only)
        body = pages.root_json(projects) if kind == JSON_V1 else pages.root_html(projects)
        return make_page(body, self.verdicts.stamp().etag_part)

    def cached_page(
        self, repo: RepoInfo, project: str, kind: str, only: frozenset[str] = frozenset()
    ) -> Page | None:
        """The page if it is rendered for the repository's current generation, else None.

        `only`: a project-scoped caller's root page lists just those projects; it is
        cached under its own key like any other page.
        """
        if repo.is_proxy and project:
            return self.proxies.fresh_page(repo, project, kind)
        entry = self._pages.get((repo.id, project, kind, only, repo.level))
        if entry is not None and entry[0] == repo.generation and self.verdicts.is_current(entry[1]):
            return entry[2]
        return None

    def _store(
        self,
        repo: RepoInfo,
        project: str,
        kind: str,
        stamp: Stamp,
        body: bytes,
        only: frozenset[str] = frozenset(),
    ) -> Page:
        page = make_page(body, stamp.etag_part)
        with self._lock:
            if len(self._pages) > 50_000:
                self._pages.clear()
            self._pages[(repo.id, project, kind, only, repo.level)] = (
                repo.generation,
                stamp,
                page,
            )
        return page

    def root_page(self, repo: RepoInfo, kind: str, only: frozenset[str] = frozenset()) -> Page:
        """The project list; `only` (normalized names) limits it for a project-scoped token."""
        page = self.cached_page(repo, "", kind, only)
        if page is not None:
            return page
        stamp = self.verdicts.stamp()
        projects = groups.project_names(frozenset([repo.id]), only)
        body = pages.root_json(projects) if kind == JSON_V1 else pages.root_html(projects)
        if repo.is_proxy:
            # its names change with fetches, not its generation
            return make_page(body, stamp.etag_part)
        return self._store(repo, "", kind, stamp, body, only)

    def project_page(self, repo: RepoInfo, normalized: str, kind: str) -> Page | None:
        """None when the project does not exist in this repository (a proxy's pages:
        `proxies.rendered_page`)."""
        page = self.cached_page(repo, normalized, kind)
        if page is not None:
            return page
        project = (
            models.Project.select()
            .where(
                (models.Project.repository == repo.id) & (models.Project.normalized == normalized)
            )
            .first()
        )
        if project is None:
            return None
        files, stamp = self.verdicts.judge(
            repo.id, repo.level, normalized, self._file_rows(project.id)
        )
        if kind == JSON_V1:
            body = pages.project_json(project.name, normalized, files)
        else:
            body = pages.project_html(project.name, normalized, files)
        return self._store(repo, normalized, kind, stamp, body)

    def _file_rows(self, project_id: int) -> list[pages.FileRow]:
        """The files to list: those whose blob is in place (`repair`: a damaged or missing
        file is withdrawn), as the store tells (`BlobStore.missing`: a stat per file on
        a local disk); pages are rendered once per generation."""
        query = (
            models.File.select(
                models.File.id,
                models.File.storage_key,
                models.File.filename,
                models.Release.version,
                models.File.sha256,
                models.File.size,
                models.File.requires_python,
                models.File.metadata_sha256,
                models.File.yanked,
                models.File.yanked_reason,
                models.File.upload_time,
            )
            .join(models.Release)
            .where(models.Release.project == project_id)
            .tuples()
        )
        listed = rows(query)
        gone = self.store.missing(row[1] for row in listed)
        found = [row for row in listed if row[1] not in gone]
        attested = provenance.verified_files([row[0] for row in found])
        # (id, key, then FileRow's fields up to its upload time) -> FileRow
        return pages.sorted_rows(
            pages.FileRow(
                *row[2:10],  # type: ignore[misc]
                upload_time=pages.upload_time_text(row[10]),
                provenance=row[0] in attested,
            )
            for row in found
        )

    def holds(self, repo: RepoInfo, normalized: str, filename: str) -> bool:
        """Whether the repository stores the file (a proxy: has fetched and kept it)."""
        try:
            self.stored_file(repo, normalized, filename)
        except NotFound:
            return False
        return True

    def stored_file(self, repo: RepoInfo, normalized: str, filename: str) -> StoredFile:
        row = (
            models.File.select(
                models.File.id,
                models.File.filename,
                models.File.storage_key,
                models.File.size,
                models.File.sha256,
                models.File.upload_time,
            )
            .join(models.Release)
            .join(models.Project)
            .where(
                (models.File.repository == repo.id)
                & (models.File.filename == filename)
                & (models.Project.normalized == normalized)
            )
            .tuples()
            .first()
        )
        row = cast("tuple[Any, ...] | None", row)
        if row is None:
            raise NotFound(f"No file named {filename!r} in {repo.name!r}")
        file_id, name, key, size, sha256, uploaded = row
        return StoredFile(file_id, name, key, size, sha256, uploaded)

    def open_file(
        self, repo: RepoInfo, normalized: str, filename: str
    ) -> tuple[BinaryIO, StoredFile]:
        """The stored file, checked against its row (see `open_checked`); the caller closes
        the handle. pip and uv treat a wrong hash as a hard failure, so a damaged file is
        refused with a 5xx instead of served."""
        stored = self.stored_file(repo, normalized, filename)
        try:
            return self.store.open_checked(stored.storage_key, stored.size), stored
        except DamagedFile:
            self._withdraw(repo, stored)
            raise

    def direct_url(
        self, repo: RepoInfo, normalized: str, filename: str
    ) -> tuple[str, StoredFile] | None:
        """Where the client may fetch a hosted file from the store itself (`s3_redirect`),
        else None and the server streams it. No query unless the setting is on; the blob is
        not checked (the store answers 404 itself), which is the point of redirecting."""
        if not self.settings.s3_redirect or repo.is_proxy:
            return None
        stored = self.stored_file(repo, normalized, filename)
        url = self.store.direct_url(stored.storage_key)
        return (url, stored) if url else None

    def _withdraw(self, repo: RepoInfo, stored: StoredFile) -> None:
        """Drop the file from the pages at once (`repair.withdraw`), once per generation;
        the request still gets its 5xx, whatever happens here."""
        key = stored.storage_key
        if self._withdrawn.get(key) == (repo.id, repo.generation):
            return
        quarantine = self.settings.data / "quarantine"
        try:
            generations = repair.withdraw(self.store, quarantine, key, stored.size, "server")
        except (OSError, MinirepoError, peewee.PeeweeException):
            log.exception("could not withdraw the damaged file %s", key)
            return
        for name in generations or {}:
            self.forget_repo(name)
        if generations and repo.name in generations:
            with self._lock:
                if len(self._withdrawn) > 10_000:
                    self._withdrawn.clear()
                self._withdrawn[key] = (repo.id, generations[repo.name])

    def core_metadata(self, repo: RepoInfo, normalized: str, filename: str) -> bytes:
        stored = self.stored_file(repo, normalized, filename)
        row = models.FileMetadata.get_or_none(models.FileMetadata.file == stored.id)
        if row is None:
            raise NotFound(f"No core metadata for {filename!r}")
        return bytes(row.content)


def _remember(lock: threading.Lock, cache: dict[K, V], key: K, value: V) -> None:
    """Store in a per-generation cache, emptied past 50 000 entries (old generations)."""
    with lock:
        if len(cache) > 50_000:
            cache.clear()
        cache[key] = value
