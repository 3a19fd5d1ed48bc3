"""`minirepo audit-packages`: every finding on every version a repository holds, with
what its policy does about it. Excepted findings stay listed (with the exception's reason)
but never fail the audit; a group holds nothing itself, so its members are audited.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from minirepo import models, osv
from minirepo.db import rows
from minirepo.services import advisories, policy


@dataclasses.dataclass(frozen=True)
class Row:
    repository: str
    project: str
    version: str
    id: str
    aliases: tuple[str, ...]
    severity: str
    fixed: tuple[str, ...]
    matched: str
    action: str  # blocked, excepted, warned (the level blocks nothing this severe)
    exception: str  # the exception's reason, when excepted

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def audit(repo_names: Iterable[str] = (), min_severity: str = "unknown") -> list[Row]:
    """Rows for the repositories named (none: every hosted and proxy one), sorted."""
    wanted = set(repo_names)
    query = (
        models.Repository.select(
            models.Repository.id,
            models.Repository.name,
            models.Repository.kind,
            models.Repository.block,
            models.Project.normalized,
            models.Release.version,
        )
        .join(models.Project)
        .join(models.Release)
        .join(models.File)
        .where(models.Repository.kind != "group")
        .distinct()
        .tuples()
    )
    held: dict[tuple[int, str, str, str], set[str]] = {}
    for repo_id, name, kind, block, normalized, version in rows(query):
        if wanted and name not in wanted:
            continue
        held.setdefault((repo_id, name, policy.effective(kind, block), normalized), set()).add(
            version
        )
    generation = advisories.generation_in_force()
    least = osv.SEVERITIES.index(min_severity)
    found = []
    at = policy.now()
    for (repo_id, name, level, normalized), versions in held.items():
        records = tuple(advisories.records_for(generation, normalized))
        if not records:
            continue
        # Every finding is listed, even under a level that acts on none ("none").
        verdicts = policy.ProjectVerdicts(
            "warn" if level == "none" else level,
            normalized,
            records,
            policy.allowances(repo_id, normalized, at),
        )
        for version in versions:
            for decision in verdicts.of(version).decisions:
                finding = decision.finding
                if osv.SEVERITIES.index(finding.severity) < least:
                    continue
                found.append(
                    Row(
                        name,
                        normalized,
                        version,
                        finding.id,
                        tuple(each for each in finding.ids if each != finding.id),
                        finding.severity,
                        finding.fixed,
                        finding.matched,
                        decision.action,
                        decision.allowance.reason if decision.allowance else "",
                    )
                )
    return sorted(found, key=lambda row: (row.repository, row.project, row.version, row.id))


def fails(found: Iterable[Row], fail_on: str) -> list[Row]:
    """The rows `--fail-on` counts: at least that severe and not excepted."""
    least = osv.SEVERITIES.index(fail_on)
    return [
        row
        for row in found
        if row.action != "excepted" and osv.SEVERITIES.index(row.severity) >= least
    ]
