"""What a repository does with files that advisories name: its block level, the exceptions
admins grant (`minirepo advisories allow`), and the verdict on each version.

A blocked file stays in the database and on disk: pages list it as yanked with the
reason (so an unpinned install takes the newest clean version and a pinned one warns
with it), and the file itself is refused with 403 (`views.files`). Verdicts are worked out
once per page render and kept until the advisories or exceptions change (the advisory
counter) or the earliest exception expires.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from collections.abc import Sequence

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from minirepo import dists, models, osv
from minirepo.db import rows, write_transaction
from minirepo.errors import InvalidUpload, UserError
from minirepo.services import advisories, audit, pages

# Weakest first: each level blocks what the one before it did and more.
LEVELS = ("none", "warn", "malicious", "critical", "high", "medium", "all")
DEFAULTS = {"hosted": "warn", "proxy": "malicious", "group": "malicious"}
# The least severity each blocking level refuses.
_BLOCKS_FROM = {"malicious": "malicious", "critical": "critical", "high": "high"}
_BLOCKS_FROM |= {"medium": "medium", "all": "unknown"}
ANY_ADVISORY = "*"
DEFAULT_EXPIRY = datetime.timedelta(days=90)


def effective(kind: str, block: str) -> str:
    """A repository's level: its own, or its kind's default when it set none."""
    return block or DEFAULTS[kind]


def stricter(first: str, second: str) -> str:
    return max(first, second, key=LEVELS.index)


def check_level(level: str) -> None:
    if level not in LEVELS:
        raise UserError(f"--block must be one of {', '.join(LEVELS)}, not {level!r}")


def blocks(level: str, severity: str) -> bool:
    least = _BLOCKS_FROM.get(level)
    return least is not None and osv.SEVERITIES.index(severity) >= osv.SEVERITIES.index(least)


def now() -> datetime.datetime:
    """The server's clock (naive UTC); tests move it."""
    return models.utcnow()


@dataclasses.dataclass(frozen=True)
class Allowance:
    """An exception as verdicts use it."""

    advisory: str
    versions: str
    reason: str
    expires: datetime.datetime | None

    def covers(self, finding: osv.Finding, version: str) -> bool:
        if self.advisory != ANY_ADVISORY and self.advisory not in finding.ids:
            return False
        if not self.versions:
            return True
        try:
            return SpecifierSet(self.versions).contains(version, prereleases=True)
        except InvalidVersion:
            return False


@dataclasses.dataclass(frozen=True)
class Decision:
    """One finding on one version and what the policy does with it."""

    finding: osv.Finding
    action: str  # "blocked", "excepted", "warned"
    allowance: Allowance | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    version: str
    decisions: tuple[Decision, ...]

    @property
    def blocked(self) -> tuple[Decision, ...]:
        return tuple(each for each in self.decisions if each.action == "blocked")

    @property
    def reason(self) -> str:
        """The line pip and uv print: what blocks it and where the fix is; "" if nothing."""
        blocking = self.blocked
        if not blocking:
            return ""
        named = ", ".join(f"{each.finding.id} ({each.finding.severity})" for each in blocking[:3])
        if len(blocking) > 3:
            named += f" and {len(blocking) - 3} more"
        return f"blocked by minirepo policy: {named}; {_fix_text(blocking)}"


def _fix_text(blocking: Sequence[Decision]) -> str:
    """The lowest version that leaves every blocking finding: for each finding its first
    fix, the highest of those."""
    firsts = []
    for each in blocking:
        if not each.finding.fixed:
            return "no fixed version yet"
        firsts.append(each.finding.fixed[0])
    return f"fixed in {max(firsts, key=_version_order)}"


def _version_order(text: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)


class ProjectVerdicts:
    """The verdicts for one project in one repository at one level, made on demand."""

    def __init__(
        self,
        level: str,
        name: str,
        records: tuple[osv.Record, ...],
        allowances: tuple[Allowance, ...],
    ) -> None:
        self.level = level
        self.name = name
        self.records = records
        self.allowances = allowances
        # The page is stale once the first exception it depends on runs out.
        expiries = [each.expires for each in allowances if each.expires is not None]
        self.valid_until = min(expiries) if expiries else None
        self._made: dict[str, Verdict] = {}

    def of(self, version: str) -> Verdict:
        made = self._made.get(version)
        if made is None:
            made = self._make(version)
            self._made[version] = made
        return made

    def _make(self, version: str) -> Verdict:
        if not self.records or self.level == "none":
            return Verdict(version, ())
        decisions = []
        for finding in osv.findings(self.records, self.name, version):
            allowance = next(
                (each for each in self.allowances if each.covers(finding, version)), None
            )
            if allowance is not None:
                decisions.append(Decision(finding, "excepted", allowance))
            elif blocks(self.level, finding.severity):
                decisions.append(Decision(finding, "blocked"))
            else:
                decisions.append(Decision(finding, "warned"))
        order = osv.SEVERITIES.index
        decisions.sort(key=lambda each: (-order(each.finding.severity), each.finding.id))
        return Verdict(version, tuple(decisions))


def allowances(repo_id: int, normalized: str, at: datetime.datetime) -> tuple[Allowance, ...]:
    query = (
        models.AdvisoryException.select(
            models.AdvisoryException.advisory,
            models.AdvisoryException.versions,
            models.AdvisoryException.reason,
            models.AdvisoryException.expires,
        )
        .where(
            (models.AdvisoryException.repository == repo_id)
            & (models.AdvisoryException.normalized == normalized)
            & (models.AdvisoryException.expires.is_null() | (models.AdvisoryException.expires > at))
        )
        .order_by(models.AdvisoryException.id)
        .tuples()
    )
    return tuple(Allowance(*row) for row in rows(query))


@dataclasses.dataclass(frozen=True)
class Stamp:
    """What a rendered page's verdicts depend on: it is served while this holds."""

    counter: int
    valid_until: datetime.datetime | None = None

    @property
    def etag_part(self) -> str:
        return f"a{self.counter}"


class Verdicts:
    """Per process: (repository, level, project) -> its verdicts, until the advisory
    counter moves or the earliest exception expires."""

    def __init__(self) -> None:
        self.lookup = advisories.Lookup()
        self._cache: dict[tuple[int, str, str], tuple[int, ProjectVerdicts]] = {}
        self._lock = threading.Lock()

    def counter(self) -> int:
        return models.read_counter(models.ADVISORY_COUNTER)

    def stamp(self) -> Stamp:
        return Stamp(self.counter())

    def is_current(self, stamp: Stamp) -> bool:
        if stamp.counter != self.counter():
            return False
        return stamp.valid_until is None or now() < stamp.valid_until

    def judge(
        self, repo_id: int, level: str, normalized: str, files: list[pages.FileRow]
    ) -> tuple[list[pages.FileRow], Stamp]:
        """The rows as the repository lists them: a blocked file is yanked, with the
        reason; and the stamp the rendered page is valid under."""
        counter = self.counter()
        verdicts = self.project(repo_id, level, normalized)
        judged = []
        for row in files:
            reason = verdicts.of(row.version).reason if row.version else ""
            judged.append(
                dataclasses.replace(row, yanked=True, yanked_reason=reason) if reason else row
            )
        return judged, Stamp(counter, verdicts.valid_until)

    def of_file(self, repo_id: int, level: str, normalized: str, filename: str) -> Verdict:
        """The verdict on a file's version (none for a name that gives no version)."""
        try:
            version = str(dists.parse_filename(filename).version)
        except InvalidUpload:
            return Verdict("", ())
        return self.project(repo_id, level, normalized).of(version)

    def project(self, repo_id: int, level: str, normalized: str) -> ProjectVerdicts:
        key = (repo_id, level, normalized)
        counter = self.counter()
        at = now()
        cached = self._cache.get(key)
        if cached is not None and cached[0] == counter:
            valid_until = cached[1].valid_until
            if valid_until is None or at < valid_until:
                return cached[1]
        records = self.lookup.records(normalized) if level != "none" else ()
        found = ProjectVerdicts(
            level, normalized, records, allowances(repo_id, normalized, at) if records else ()
        )
        with self._lock:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[key] = (counter, found)
        return found


def allow(
    repo: models.Repository,
    normalized: str,
    advisory: str,
    *,
    versions: str,
    reason: str,
    expires: datetime.datetime | None,
    actor: str,
) -> None:
    """Add or replace the exception for (repository, project, advisory)."""
    if not reason.strip():
        raise UserError("--reason is required: say why the finding may be installed")
    if versions:
        try:
            SpecifierSet(versions)
        except InvalidSpecifier as exc:
            raise UserError(f"--versions {versions!r} is not a PEP 440 specifier: {exc}") from exc
    with write_transaction():
        models.AdvisoryException.delete().where(
            (models.AdvisoryException.repository == repo.id)
            & (models.AdvisoryException.normalized == normalized)
            & (models.AdvisoryException.advisory == advisory)
        ).execute()
        models.AdvisoryException.create(
            repository=repo.id,
            normalized=normalized,
            advisory=advisory,
            versions=versions,
            reason=" ".join(reason.split()),
            expires=expires,
            actor=actor,
        )
        until = expires.strftime("%Y-%m-%dT%H:%M:%SZ") if expires else "never"
        audit.record(
            actor,
            "advisory allow",
            repository=repo.name,
            project=normalized,
            detail=f"{advisory} versions={versions or '*'} expires={until}: {reason}",
        )
        models.bump_counter(models.ADVISORY_COUNTER)
    models.forget_counters()


def revoke(repo: models.Repository, normalized: str, advisory: str, *, actor: str) -> None:
    with write_transaction():
        deleted = (
            models.AdvisoryException.delete()
            .where(
                (models.AdvisoryException.repository == repo.id)
                & (models.AdvisoryException.normalized == normalized)
                & (models.AdvisoryException.advisory == advisory)
            )
            .execute()
        )
        if not deleted:
            raise UserError(
                f"No exception for {advisory} on {normalized} in {repo.name} "
                "(minirepo audit-packages lists them)"
            )
        audit.record(
            actor,
            "advisory revoke-allow",
            repository=repo.name,
            project=normalized,
            detail=advisory,
        )
        models.bump_counter(models.ADVISORY_COUNTER)
    models.forget_counters()
