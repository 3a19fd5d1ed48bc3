"""Seeding a proxy's cache for offline days: `minirepo cache fetch all -r requirements.txt`.

Nothing is resolved here: the list names what to fetch. A pinned list (`pip freeze`,
`uv export`, `pip-compile`) or a `uv.lock` already holds the whole dependency tree; with
hashes (`--hash=sha256:…`, a lock's `hash`) exactly those files are fetched, else every
file of the named version (or, for a range, of the highest version in it). Each name is
looked up the way a client's request would be, so a group fetches only what it would
serve from a proxy: an internal name stays internal.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from minirepo import dists
from minirepo.errors import InvalidUpload, MinirepoError, NotFound, UserError
from minirepo.services.fetches import Fetches
from minirepo.services.index import Index
from minirepo.services.repos import RepoInfo
from minirepo.upstream_pages import UpstreamFile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Wanted:
    """A project's files to fetch: by sha256 when known, else by version."""

    project: str  # normalized
    specifier: str = ""  # "==1.0", ">=2", "" (any)
    hashes: frozenset[str] = frozenset()
    filenames: frozenset[str] = frozenset()  # from a lock: the names with their hashes


@dataclasses.dataclass
class Report:
    fetched: list[str] = dataclasses.field(default_factory=list)
    held: list[str] = dataclasses.field(default_factory=list)  # already cached or hosted
    failed: list[str] = dataclasses.field(default_factory=list)  # "name: reason"


def from_requirements(path: Path) -> list[Wanted]:
    """The requirement lines of a pip requirements file, with their `--hash` options."""
    wanted: list[Wanted] = []
    text = path.read_text().replace("\\\n", " ")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        hashes = {
            word.split(":", 1)[1].lower() for word in words if word.startswith("--hash=sha256:")
        }
        rest = [word for word in words if not word.startswith("--hash=")]
        if not rest or rest[0].startswith("-"):
            log.warning("%s:%d: %s is not a requirement: skipped", path, number, rest[:1])
            continue
        try:
            requirement = Requirement(" ".join(rest))
        except InvalidRequirement as exc:
            raise UserError(f"{path}:{number}: {exc}") from exc
        wanted.append(
            Wanted(
                canonicalize_name(requirement.name),
                str(requirement.specifier),
                frozenset(hashes),
            )
        )
    return wanted


def from_uv_lock(path: Path) -> list[Wanted]:
    """Every registry package of a `uv.lock`, with its files' names and hashes."""
    try:
        lock = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not a uv.lock ({exc})") from exc
    wanted = []
    for package in lock.get("package", []):
        if "registry" not in package.get("source", {}):
            continue  # the project itself, a path or a git dependency
        files = [package["sdist"]] if "sdist" in package else []
        files += package.get("wheels", [])
        hashes = {f["hash"].split(":", 1)[1] for f in files if "hash" in f}
        names = {f["url"].rsplit("/", 1)[-1] for f in files if "url" in f}
        wanted.append(
            Wanted(
                canonicalize_name(package["name"]),
                f"=={package['version']}",
                frozenset(hashes),
                frozenset(names),
            )
        )
    return wanted


def seed(index: Index, fetches: Fetches, repo: RepoInfo, wanted: Iterable[Wanted]) -> Report:
    """Fetch what `wanted` names into the proxy that serves each name at `repo`."""
    report = Report()
    for item in wanted:
        try:
            _seed_one(index, fetches, repo, item, report)
        except MinirepoError as exc:
            report.failed.append(f"{item.project}: {exc.reason}")
    return report


def _seed_one(index: Index, fetches: Fetches, repo: RepoInfo, item: Wanted, report: Report) -> None:
    source = index.member(repo, item.project) if repo.is_group else repo
    if source is None:
        raise NotFound(f"no member of {repo.name} has it")
    if not source.is_proxy:
        report.held.append(f"{item.project} (hosted in {source.name})")
        return
    proxies = index.proxies
    entries = _chosen(proxies.page(source, item.project).files, item)
    if not entries:
        raise NotFound(f"no file matches {item.specifier or 'any version'}")
    for entry in entries:
        if index.holds(source, item.project, entry.filename):
            report.held.append(entry.filename)
            continue
        if entry.metadata_sha256:
            proxies.core_metadata(source, item.project, entry.filename)
        download = fetches.download(source, proxies.client(source), entry, keep=True)
        if download is not None:
            try:
                for _ in download:
                    pass
            finally:
                download.close()
        report.fetched.append(entry.filename)


def _chosen(files: Iterable[UpstreamFile], item: Wanted) -> list[UpstreamFile]:
    """The files `item` names: by hash or lock filename, else those of one version."""
    files = [entry for entry in files if not entry.yanked or item.hashes]
    if item.hashes or item.filenames:
        return [f for f in files if f.sha256 in item.hashes or f.filename in item.filenames]
    by_version: dict[Version, list[UpstreamFile]] = {}
    for entry in files:
        try:
            version = Version(str(dists.parse_filename(entry.filename).version))
        except (InvalidUpload, InvalidVersion):
            continue
        by_version.setdefault(version, []).append(entry)
    matching = list(SpecifierSet(item.specifier).filter(by_version))
    return by_version[max(matching)] if matching else []
