"""PyPI's JSON API documents (`/pypi/<project>/json`), built from a repository's rows.

Tools such as Renovate and Dependabot ask private registries for these: the shape is
PyPI's (https://docs.pypi.org/api/json/), with `last_serial` the repository's
generation. A proxy repository answers from the files it has stored, not from its
upstream's whole list. The description comes from stored core metadata only: an old
sdist (before Metadata-Version 2.2) has none stored, and re-reading its archive on every
poll would cost more than the answer is worth (its page shows the README).
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from typing import Any
from urllib.parse import quote

from packaging.utils import canonicalize_version
from packaging.version import InvalidVersion, Version

from minirepo import dists, models, osv
from minirepo.db import rows
from minirepo.services import policy, readme
from minirepo.services.pages import upload_time_text, version_key
from minirepo.services.repos import RepoInfo

# Stored fields whose PyPI form differs (set in `_info`): `platforms` is PyPI's `platform`.
_RESHAPED = frozenset({"summary", "keywords", "requires_python", "project_urls", "platforms"})


@dataclasses.dataclass(frozen=True)
class Links:
    """Absolute URLs of the repository as the request reached it (the view builds them):
    `files` ends in `/files`, `pages` in `/<repo>/project`."""

    files: str
    pages: str


@dataclasses.dataclass(frozen=True)
class _Release:
    id: int
    version: str
    summary: str
    requires_python: str
    metadata: dict[str, Any]
    files: list[dict[str, Any]]

    @property
    def is_yanked(self) -> bool:
        return bool(self.files) and all(item["yanked"] for item in self.files)


def document(
    repo: RepoInfo,
    normalized: str,
    version: str | None,
    links: Links,
    verdicts: policy.ProjectVerdicts | None = None,
) -> dict[str, Any] | None:
    """The project's document (`version` None) or one release's; None when the project,
    or that version of it, is not in `repo`. `verdicts`: the repository's, whose findings
    on the release fill `vulnerabilities` as PyPI's do."""
    project = (
        models.Project.select(models.Project.id, models.Project.name)
        .where((models.Project.repository == repo.id) & (models.Project.normalized == normalized))
        .first()
    )
    if project is None:
        return None
    releases = _releases(project.id, normalized, links)
    if not releases:
        return None
    if version is None:
        chosen = latest(releases)
    else:
        found = _find(releases, version)
        if found is None:
            return None
        chosen = found
    answer: dict[str, Any] = {"info": _info(project.name, normalized, chosen, links)}
    answer["last_serial"] = repo.generation
    if version is None:
        answer["releases"] = {release.version: release.files for release in releases}
    answer["urls"] = chosen.files
    decisions = verdicts.of(chosen.version).decisions if verdicts is not None else ()
    answer["vulnerabilities"] = [_vulnerability(decision.finding) for decision in decisions]
    return answer


def _vulnerability(finding: osv.Finding) -> dict[str, Any]:
    return {
        "id": finding.id,
        "aliases": [each for each in finding.ids if each != finding.id],
        "summary": finding.summary,
        "details": finding.summary,
        "fixed_in": list(finding.fixed),
        "link": f"https://osv.dev/vulnerability/{finding.id}",
        "source": "osv",
        "withdrawn": None,
    }


def latest(releases: list[_Release]) -> _Release:
    """PyPI's pick: the highest final release that is not yanked, else the highest that
    is not yanked, else the highest."""
    ordered = sorted(releases, key=lambda release: version_key(release.version), reverse=True)
    live = [release for release in ordered if not release.is_yanked]
    final = [release for release in live if not _is_prerelease(release.version)]
    return (final or live or ordered)[0]


def _is_prerelease(text: str) -> bool:
    try:
        return Version(text).is_prerelease
    except InvalidVersion:
        return True


def _find(releases: list[_Release], version: str) -> _Release | None:
    try:
        wanted = canonicalize_version(version)
    except InvalidVersion:
        return None
    for release in releases:
        if canonicalize_version(release.version) == wanted:
            return release
    return None


def _releases(project_id: int, normalized: str, links: Links) -> list[_Release]:
    release_rows = rows(
        models.Release.select(
            models.Release.id,
            models.Release.version,
            models.Release.summary,
            models.Release.requires_python,
            models.Release.metadata_json,
        )
        .where(models.Release.project == project_id)
        .tuples()
    )
    files = _files(project_id, normalized, links)
    return [
        _Release(release_id, version, summary, requires, json.loads(metadata), files[release_id])
        for release_id, version, summary, requires, metadata in release_rows
    ]


def _files(project_id: int, normalized: str, links: Links) -> dict[int, list[dict[str, Any]]]:
    query = (
        models.File.select(
            models.File.release,
            models.File.filename,
            models.File.packagetype,
            models.File.python_version,
            models.File.requires_python,
            models.File.size,
            models.File.sha256,
            models.File.md5,
            models.File.blake2b_256,
            models.File.upload_time,
            models.File.yanked,
            models.File.yanked_reason,
        )
        .join(models.Release)
        .where(models.Release.project == project_id)
        .order_by(models.File.filename)
        .tuples()
    )
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows(query):
        (release_id, filename, packagetype, python_version, requires) = row[:5]
        size, sha256, md5, blake2b, uploaded, yanked, reason = row[5:]
        found[release_id].append(
            {
                "comment_text": "",
                "digests": {"blake2b_256": blake2b, "md5": md5, "sha256": sha256},
                "downloads": -1,
                "filename": filename,
                "has_sig": False,
                "md5_digest": md5,
                "packagetype": packagetype,
                "python_version": python_version,
                "requires_python": requires or None,
                "size": size,
                "upload_time": uploaded.strftime("%Y-%m-%dT%H:%M:%S"),
                "upload_time_iso_8601": upload_time_text(uploaded),
                "url": f"{links.files}/{normalized}/{quote(filename)}",
                "yanked": bool(yanked),
                "yanked_reason": (reason or None) if yanked else None,
            }
        )
    return found


def _info(name: str, normalized: str, release: _Release, links: Links) -> dict[str, Any]:
    metadata = release.metadata
    found = readme.description(release.id, None)
    project_url = f"{links.pages}/{normalized}/"
    info: dict[str, Any] = {
        field: metadata.get(field) for field in dists.METADATA_FIELDS if field not in _RESHAPED
    }
    info["classifiers"] = info["classifiers"] or []
    keywords = metadata.get("keywords")
    info.update(
        {
            "name": name,
            "version": release.version,
            "summary": release.summary or None,
            "description": found[0] if found else "",
            "keywords": ",".join(keywords) if isinstance(keywords, list) else keywords,
            "platform": ",".join(metadata.get("platforms", [])) or None,
            "project_urls": metadata.get("project_urls") or None,
            "requires_python": release.requires_python or None,
            "package_url": project_url,
            "project_url": project_url,
            "release_url": f"{project_url}{quote(release.version)}/",
            "docs_url": None,
            "bugtrack_url": None,
            "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
            "dynamic": None,
            "yanked": release.is_yanked,
            "yanked_reason": _yanked_reason(release),
        }
    )
    if found and not info["description_content_type"]:
        info["description_content_type"] = found[1] or None
    return info


def _yanked_reason(release: _Release) -> str | None:
    if not release.is_yanked:
        return None
    return next((item["yanked_reason"] for item in release.files if item["yanked_reason"]), None)
