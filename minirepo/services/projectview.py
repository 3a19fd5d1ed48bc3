"""The read model of one project for its web page: versions, files, metadata, origins.

A page may draw on several sources: a hosted repository's own rows, a proxy's upstream
listing merged with the files it keeps, or the members of a group. Each source becomes a
`Part`; `assemble` merges the parts (the first part wins a filename two of them hold) and
picks the version to show. Nothing here decides who may see what: the view passes only
the sources the viewer may read, and `suggestions` only names projects a predicate allows.

Metadata comes from the package, so it is hostile until proven otherwise: the template
escapes every field, and `safe_url` keeps only links a browser cannot run as script.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from packaging.utils import canonicalize_version
from packaging.version import InvalidVersion, Version

from minirepo import dists, models
from minirepo.db import rows
from minirepo.errors import InvalidUpload, NotFound
from minirepo.services import provenance
from minirepo.services.proxies import ProxyPage
from minirepo.services.repos import RepoInfo, info_of

# Links a page may carry from metadata; everything else (javascript:, data:, vbscript:,
# file:, relative links, unknown schemes) is dropped, not rewritten.
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
# Browsers drop these anywhere in a URL before reading its scheme ("java\tscript:").
_IGNORED = re.compile(r"[\x00-\x20\x7f-\x9f]+")
MAX_SUGGESTIONS = 5


def safe_url(url: str) -> str | None:
    """`url` without the characters a browser ignores, when its scheme is a safe one."""
    cleaned = _IGNORED.sub("", url)
    scheme, colon, _ = cleaned.partition(":")
    if not colon or scheme.lower() not in SAFE_SCHEMES:
        return None
    return cleaned


@dataclasses.dataclass(frozen=True)
class Metadata:
    """The fields of one release the page shows, as the package wrote them."""

    summary: str = ""
    home_page: str | None = None  # a safe URL, else None
    author: str = ""
    license: str = ""
    requires_dist: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    project_urls: tuple[tuple[str, str], ...] = ()  # (label, safe URL)

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Metadata:
        """From `Release.metadata_json` (`dists.parse_metadata`'s fields)."""
        urls = fields.get("project_urls") or {}
        links = tuple(
            (str(label), link)
            for label, url in (urls.items() if isinstance(urls, dict) else ())
            if (link := safe_url(str(url))) is not None
        )
        return cls(
            summary=_text(fields.get("summary")),
            home_page=safe_url(_text(fields.get("home_page"))),
            author=_text(fields.get("author")) or _text(fields.get("author_email")),
            license=_text(fields.get("license_expression")) or _text(fields.get("license")),
            requires_dist=_texts(fields.get("requires_dist")),
            keywords=_texts(fields.get("keywords")),
            project_urls=links,
        )


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _texts(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else []
    return tuple(text for item in items if (text := _text(item)))


@dataclasses.dataclass(frozen=True)
class FileView:
    filename: str
    version: str
    packagetype: str
    size: int | None
    upload_time: datetime.datetime | None
    sha256: str
    requires_python: str
    yanked: bool
    yanked_reason: str
    id: int | None = None  # a stored file's row; None: listed upstream, not kept here
    origin: str = ""  # the group member or upstream host it comes from; "" for our own
    cached: bool | None = None  # a proxy's file: kept here or not; None: not a proxy's
    attestation: str = ""  # its PEP 740 attestations' status and why; "": none uploaded


@dataclasses.dataclass(frozen=True)
class ReleaseView:
    version: str
    yanked: bool
    yanked_reason: str
    files: int


@dataclasses.dataclass
class Part:
    """One source's files, and its release rows by canonical version (metadata, README)."""

    name: str
    files: list[FileView]
    releases: dict[str, models.Release] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ProjectView:
    name: str
    normalized: str
    releases: list[ReleaseView]  # newest first
    shown: ReleaseView | None  # None: the project has no files left
    latest: str  # the version the page shows by default
    files: list[FileView]  # of the shown version
    metadata: Metadata  # of the shown version
    release: models.Release | None  # the shown version's row, for its README
    file_ids: list[int]  # every stored file of the project, for its download chart


def local_part(repo: RepoInfo, normalized: str, origin: str = "") -> Part | None:
    """The project's rows in `repo` (a proxy: the files it keeps), or None."""
    project = models.Project.get_or_none(
        (models.Project.repository == repo.id) & (models.Project.normalized == normalized)
    )
    if project is None:
        return None
    releases = {
        str(row.canonical_version): row
        for row in models.Release.select().where(models.Release.project == project.id)
    }
    query = (
        models.File.select(
            models.File.id,
            models.File.filename,
            models.Release.version,
            models.File.packagetype,
            models.File.size,
            models.File.upload_time,
            models.File.sha256,
            models.File.requires_python,
            models.File.yanked,
            models.File.yanked_reason,
        )
        .join(models.Release)
        .where(models.Release.project == project.id)
        .tuples()
    )
    cached = True if repo.is_proxy else None
    files = [
        FileView(name, version, kind, size, uploaded, sha, requires, yanked, reason, file_id)
        for file_id, name, version, kind, size, uploaded, sha, requires, yanked, reason in rows(
            query
        )
    ]
    described = provenance.describe([f.id for f in files if f.id is not None])
    files = [
        dataclasses.replace(
            f, origin=origin, cached=cached, attestation=described.get(f.id or 0, "")
        )
        for f in files
    ]
    return Part(str(project.name), files, releases)


def proxy_part(repo: RepoInfo, normalized: str, listing: ProxyPage, origin: str = "") -> Part:
    """An upstream listing merged with the files the proxy keeps (theirs win: they have
    a row, a size and download counts)."""
    kept = local_part(repo, normalized, origin)
    files = list(kept.files) if kept is not None else []
    held = {f.filename for f in files}
    for entry in listing.files:
        if entry.filename in held:
            continue
        try:
            parsed = dists.parse_filename(entry.filename)
        except InvalidUpload:
            continue  # not a file an installer would take either
        files.append(
            FileView(
                entry.filename,
                str(parsed.version),
                parsed.packagetype,
                entry.size,
                _parse_time(entry.upload_time),
                entry.sha256,
                entry.requires_python,
                entry.yanked,
                entry.yanked_reason,
                None,
                origin,
                False,
            )
        )
    return Part(listing.name, files, kept.releases if kept is not None else {})


def upstream_host(repo: RepoInfo) -> str:
    """What a person recognises of a proxy's upstream: its host."""
    try:
        return urllib.parse.urlsplit(repo.upstream).hostname or repo.upstream
    except ValueError:
        return repo.upstream


def _parse_time(text: str | None) -> datetime.datetime | None:
    """PEP 700's ISO 8601 time, as naive UTC like the stored ones; None if unreadable."""
    if not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed


def _canonical(version: str) -> str:
    try:
        return canonicalize_version(version)
    except InvalidVersion:
        return version


def _sort_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def assemble(normalized: str, parts: Sequence[Part], version: str | None = None) -> ProjectView:
    """The page's model; `version` None shows the newest release not yanked. NotFound
    when no part has the project, or `version` is not one of its releases."""
    if not parts:
        raise NotFound(f"No project named {normalized!r}")
    files: dict[str, FileView] = {}
    for part in parts:
        for stored in part.files:
            files.setdefault(stored.filename, stored)
    by_version: dict[str, list[FileView]] = {}
    for stored in files.values():
        by_version.setdefault(_canonical(stored.version), []).append(stored)
    releases = sorted(
        (_release(group) for group in by_version.values()),
        key=lambda release: _sort_key(release.version),
        reverse=True,
    )
    latest = next((r for r in releases if not r.yanked), releases[0] if releases else None)
    wanted = _canonical(version) if version is not None else None
    shown = latest if wanted is None else _find(releases, wanted, normalized, version)
    key = _canonical(shown.version) if shown is not None else ""
    row = next((part.releases[key] for part in parts if key in part.releases), None)
    return ProjectView(
        name=parts[0].name,
        normalized=normalized,
        releases=releases,
        shown=shown,
        latest=latest.version if latest is not None else "",
        files=sorted(by_version.get(key, []), key=lambda f: (f.packagetype, f.filename)),
        metadata=Metadata.of(_fields(row)) if row is not None else Metadata(),
        release=row,
        file_ids=sorted(f.id for f in files.values() if f.id is not None),
    )


def _release(files: list[FileView]) -> ReleaseView:
    """A release is yanked when every file of it is (PEP 592 yanks a whole release)."""
    yanked = all(f.yanked for f in files)
    reason = next((f.yanked_reason for f in files if f.yanked_reason), "") if yanked else ""
    return ReleaseView(files[0].version, yanked, reason, len(files))


def _find(
    releases: list[ReleaseView], wanted: str, normalized: str, version: str | None
) -> ReleaseView:
    for release in releases:
        if _canonical(release.version) == wanted:
            return release
    raise NotFound(f"No version {version} of {normalized}")


def _fields(row: models.Release) -> dict[str, Any]:
    try:
        fields = json.loads(row.metadata_json or "{}")
    except ValueError:
        return {}
    if not isinstance(fields, dict):
        return {}
    return fields


def suggestions(
    normalized: str, readable: Callable[[RepoInfo, str], bool]
) -> list[tuple[str, str]]:
    """(repository, project) names close to `normalized`, among the projects `readable`
    allows: a 404 page must not name what the viewer may not know exists."""
    repos = {row.id: info_of(row) for row in models.Repository.select()}
    query = models.Project.select(models.Project.repository, models.Project.normalized).tuples()
    candidates: dict[str, list[RepoInfo]] = {}
    for repo_id, name in rows(query):
        repo = repos.get(repo_id)
        if repo is not None and readable(repo, name):
            candidates.setdefault(str(name), []).append(repo)
    close = difflib.get_close_matches(normalized, candidates, n=MAX_SUGGESTIONS, cutoff=0.6)
    return [(repo.name, name) for name in close for repo in _first(candidates[name])]


def _first(repos: Iterable[RepoInfo]) -> list[RepoInfo]:
    """One repository per name is enough for a suggestion: the first, by name."""
    ordered = sorted(repos, key=lambda repo: repo.name)
    return ordered[:1]
