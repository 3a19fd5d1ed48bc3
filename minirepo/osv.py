"""OSV advisories for PyPI projects: reading a record, deciding whether a version is affected,
its severity, and handing the record back as an OSV document.

Pure functions over frozen values (no database, no Flask), so the importer, the download
policy and the OSV query endpoint share one reading of a record and the tests pin every rule.
Ranges are evaluated as the OSV schema says (https://ossf.github.io/osv-schema/#evaluation)
with PEP 440 ordering, so a pre-release of the fix is still affected and a post-release of
it is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from packaging.version import InvalidVersion, Version

from minirepo.names import normalized_project
from minirepo.severity import SEVERITIES as SEVERITIES  # re-exported: callers read it here
from minirepo.severity import severity_of

_BOUNDS = ("introduced", "fixed", "last_affected")
# Whose id names a group of aliases: a malware report first, then the reviewed GitHub entry.
_PREFERRED_PREFIXES = ("MAL-", "GHSA-", "PYSEC-")
SCHEMA_VERSION = "1.6.0"  # the OSV schema the documents of to_osv follow


@dataclass(frozen=True)
class Window:
    """Versions from `introduced` ("0": from the very first) up to `fixed` (excluded) or
    `last_affected` (included); with neither, every later version is affected."""

    introduced: str
    fixed: str | None = None
    last_affected: str | None = None

    def holds(self, version: Version) -> bool:
        if self.introduced != "0" and version < _version(self.introduced):
            return False
        if self.fixed is not None and version >= _version(self.fixed):
            return False
        return self.last_affected is None or version <= _version(self.last_affected)

    def __str__(self) -> str:
        if self.fixed is not None:
            return f"[{self.introduced}, {self.fixed})"
        if self.last_affected is not None:
            return f"[{self.introduced}, {self.last_affected}]"
        return f"[{self.introduced}, inf)"


@dataclass(frozen=True)
class Affected:
    """One `affected` entry for a PyPI project. `dropped_ranges` counts the ECOSYSTEM ranges
    left out because a bound is not PEP 440: guessing an order for such a bound could mark
    the wrong releases, and the count lets the importer say how much it could not read."""

    name: str  # PEP 503 normalized
    versions: tuple[str, ...]
    windows: tuple[Window, ...]
    dropped_ranges: int = 0


@dataclass(frozen=True)
class Record:
    """An advisory as minirepo keeps it: the fields the policy needs, plus what `to_osv`
    needs to give an OSV document back (the raw `severity` list and GitHub's label)."""

    id: str
    modified: datetime  # naive UTC, like every datetime here
    published: datetime | None
    withdrawn: bool
    aliases: tuple[str, ...]
    summary: str
    details: str
    severity: str  # one of SEVERITIES
    affected: tuple[Affected, ...]  # PyPI entries only
    scores: tuple[tuple[str, str], ...] = ()  # the `severity` list as (type, score) pairs
    label: str | None = None  # `database_specific.severity` as given
    withdrawn_at: datetime | None = None


@dataclass(frozen=True)
class Finding:
    """One vulnerability of a release: records that name each other through aliases (the
    PYSEC, GHSA and CVE ids of one flaw) count once, so a policy does not see it twice."""

    id: str
    ids: tuple[str, ...]
    severity: str
    summary: str
    fixed: tuple[str, ...]
    matched: str


# -- reading a document ---------------------------------------------------------------------


def parse(document: Mapping[str, Any]) -> Record:
    """Read one OSV record. ValueError says why a record is unusable (no id, a bad
    timestamp, a field of the wrong type); a bound that is not PEP 440 only drops its range."""
    if not isinstance(document, Mapping):
        raise ValueError(f"An OSV record is a JSON object, not {type(document).__name__}")
    ident = document.get("id")
    if not isinstance(ident, str) or not ident or any(c.isspace() for c in ident):
        raise ValueError(f"OSV record without a usable id: {ident!r}")
    try:
        modified = _timestamp(document.get("modified"), "modified")
        published = _optional_timestamp(document, "published")
        withdrawn_at = _optional_timestamp(document, "withdrawn")
        aliases = tuple(_strings(document, "aliases"))
        scores = tuple(_score(entry) for entry in _items(document, "severity"))
        label = _mapping(document, "database_specific").get("severity")
        if label is not None and not isinstance(label, str):
            raise ValueError(f"database_specific.severity is not a string: {label!r}")
        affected = tuple(filter(None, (_affected(e) for e in _items(document, "affected"))))
        summary, details = _text(document, "summary"), _text(document, "details")
    except ValueError as exc:
        raise ValueError(f"OSV record {ident}: {exc}") from exc
    return Record(
        id=ident,
        modified=modified,
        published=published,
        withdrawn=withdrawn_at is not None,
        aliases=aliases,
        summary=summary,
        details=details,
        severity=severity_of(ident, scores, label),
        affected=affected,
        scores=scores,
        label=label,
        withdrawn_at=withdrawn_at,
    )


def _affected(entry: Any) -> Affected | None:
    """The entry for a PyPI project, else None: other ecosystems, and names no project of
    an index can have, never match anything here."""
    entry = _as_mapping(entry, "affected entry")
    package = _mapping(entry, "package")
    ecosystem, name = package.get("ecosystem"), package.get("name")
    if not isinstance(ecosystem, str) or ecosystem.partition(":")[0] != "PyPI":
        return None
    normalized = normalized_project(name) if isinstance(name, str) else None
    if normalized is None:
        return None
    windows: list[Window] = []
    dropped = 0
    for range_ in _items(entry, "ranges"):
        range_ = _as_mapping(range_, "range")
        if range_.get("type") != "ECOSYSTEM":
            continue
        found = _windows(_items(range_, "events"))
        if found is None:
            dropped += 1
        else:
            windows.extend(found)
    return Affected(normalized, tuple(_strings(entry, "versions")), tuple(windows), dropped)


def _windows(events: list[Any]) -> list[Window] | None:
    """The windows of one range, or None when a bound is not PEP 440. Events are walked in
    PEP 440 order whatever order the record lists them in; `limit` events (for GIT ranges)
    are ignored."""
    bounds: list[tuple[str, str]] = []
    for event in events:
        event = _as_mapping(event, "event")
        for kind in _BOUNDS:
            if kind not in event:
                continue
            value = event[kind]
            if not isinstance(value, str) or _parsed(value) is None:
                return None
            bounds.append((kind, value))
    bounds.sort(key=lambda bound: _order(*bound))
    windows: list[Window] = []
    start: str | None = None
    for kind, value in bounds:
        if kind == "introduced":
            start = value if start is None else start
        elif start is not None:
            fixed = value if kind == "fixed" else None
            last_affected = value if kind == "last_affected" else None
            windows.append(Window(start, fixed, last_affected))
            start = None
    if start is not None:
        windows.append(Window(start))
    return windows


def _score(entry: Any) -> tuple[str, str]:
    entry = _as_mapping(entry, "severity entry")
    kind, score = entry.get("type"), entry.get("score")
    if not isinstance(kind, str) or not isinstance(score, str):
        raise ValueError(f"severity entry without a type and score: {dict(entry)!r}")
    return kind, score


_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|([+-])(\d\d):(\d\d))?\Z", re.IGNORECASE
)


def _timestamp(value: Any, field: str) -> datetime:
    """Naive UTC. An offset is applied and fractions past microseconds are cut; no offset
    at all is read as UTC, which is what OSV's records mean."""
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{field} is not an RFC 3339 timestamp: {value!r}")
    seconds, fraction, _, sign, hours, minutes = match.groups()
    try:
        moment = datetime.fromisoformat(seconds.upper())
    except ValueError as exc:
        raise ValueError(f"{field} is not a real date and time: {value!r}") from exc
    moment += timedelta(microseconds=int((fraction or "0")[:6].ljust(6, "0")))
    if sign is not None:
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        moment += -offset if sign == "+" else offset
    return moment


def unchanged(document: Mapping[str, Any], known: datetime | None) -> bool:
    """Whether a record we hold as modified at `known` comes again not newer and not
    withdrawn: an update then skips it without parsing it (most of a daily export)."""
    if known is None or "withdrawn" in document:
        return False
    try:
        return _timestamp(document.get("modified"), "modified") <= known
    except ValueError:
        return False


def _optional_timestamp(document: Mapping[str, Any], field: str) -> datetime | None:
    value = document.get(field)
    return None if value is None else _timestamp(value, field)


def _rfc3339(moment: datetime) -> str:
    """The form pip-audit reads (`%Y-%m-%dT%H:%M:%S[.%f]Z`)."""
    fraction = f".{moment.microsecond:06d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _as_mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not an object: {value!r}")
    return value


def _mapping(document: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = document.get(field)
    return {} if value is None else _as_mapping(value, field)


def _items(document: Mapping[str, Any], field: str) -> list[Any]:
    value = document.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field} is not a list: {value!r}")
    return value


def _strings(document: Mapping[str, Any], field: str) -> list[str]:
    values = _items(document, field)
    if not all(isinstance(value, str) for value in values):
        raise ValueError(f"{field} holds something other than strings: {values!r}")
    return values


def _text(document: Mapping[str, Any], field: str) -> str:
    value = document.get(field)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{field} is not a string: {value!r}")
    return value or ""


# -- matching a version ---------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _parsed(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _version(bound: str) -> Version:
    """A bound that parse() has checked, so this does not fail for a parsed record."""
    parsed = _parsed(bound)
    if parsed is None:
        raise ValueError(f"Not a PEP 440 version: {bound!r}")
    return parsed


def _order(kind: str, bound: str) -> tuple[bool, Version]:
    """Sort key of a bound: an `introduced` of "0" comes before everything, 0.dev0 too."""
    return (not (kind == "introduced" and bound == "0"), _version(bound))


def affects(affected: Affected, version: str) -> bool:
    """Whether `version` is listed (PEP 440 equality: 1.0 is 1.0.0) or inside a window. A
    version packaging rejects has no place in the order, so only its exact string counts."""
    parsed = _parsed(version)
    if parsed is None:
        return version in affected.versions
    listed = any(item == version or _parsed(item) == parsed for item in affected.versions)
    return listed or any(window.holds(parsed) for window in affected.windows)


def fixed_in(affected: Affected, version: str) -> list[str]:
    """The `fixed` bounds of the windows holding `version`, PEP 440 sorted. A bound that the
    entry still affects (listed, or inside an overlapping window) is no fix and is left out."""
    parsed = _parsed(version)
    if parsed is None:
        return []
    bounds = [w.fixed for w in affected.windows if w.fixed is not None and w.holds(parsed)]
    return _sorted_versions(bound for bound in bounds if not affects(affected, bound))


def _sorted_versions(versions: Iterable[str]) -> list[str]:
    """Distinct by PEP 440 equality (the first spelling kept), lowest first."""
    distinct: dict[Version, str] = {}
    for version in versions:
        distinct.setdefault(_version(version), version)
    return [distinct[key] for key in sorted(distinct)]


def findings(records: Iterable[Record], name: str, version: str) -> list[Finding]:
    """The vulnerabilities of `name` `version`, worst first. Withdrawn records are left out
    before grouping, so their aliases join nothing."""
    normalized = normalized_project(name)
    if normalized is None:
        return []
    hits: list[tuple[Record, list[Affected]]] = []
    for record in records:
        entries = [a for a in record.affected if a.name == normalized and affects(a, version)]
        if entries and not record.withdrawn:
            hits.append((record, entries))
    found = [_finding(group, version) for group in _alias_groups(hits)]
    return sorted(found, key=lambda f: (-SEVERITIES.index(f.severity), f.id))


def _alias_groups(
    hits: list[tuple[Record, list[Affected]]],
) -> list[list[tuple[Record, list[Affected]]]]:
    """Union-find over shared ids: PYSEC-1 and GHSA-1 that both alias CVE-1 are one flaw."""
    parent = list(range(len(hits)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, (record, _) in enumerate(hits):
        for ident in (record.id, *record.aliases):
            parent[root(i)] = root(owner.setdefault(ident, i))
    groups: dict[int, list[tuple[Record, list[Affected]]]] = {}
    for i, hit in enumerate(hits):
        groups.setdefault(root(i), []).append(hit)
    return list(groups.values())


def _preference(ident: str) -> tuple[int, str]:
    ranks = [i for i, prefix in enumerate(_PREFERRED_PREFIXES) if ident.startswith(prefix)]
    return (ranks[0] if ranks else len(_PREFERRED_PREFIXES), ident)


def _finding(group: list[tuple[Record, list[Affected]]], version: str) -> Finding:
    """The primary id is the most preferred id of a record we hold (not a bare alias), so
    the caller can always show that record."""
    group = sorted(group, key=lambda hit: _preference(hit[0].id))
    records = [record for record, _ in group]
    return Finding(
        id=records[0].id,
        ids=tuple(sorted({i for r in records for i in (r.id, *r.aliases)})),
        severity=max((r.severity for r in records), key=SEVERITIES.index),
        summary=next((r.summary for r in records if r.summary), ""),
        fixed=tuple(
            _sorted_versions(f for _, es in group for e in es for f in fixed_in(e, version))
        ),
        matched="; ".join(_match_reason(record, entries, version) for record, entries in group),
    )


def _match_reason(record: Record, entries: list[Affected], version: str) -> str:
    parsed = _parsed(version)
    for entry in entries:
        for window in entry.windows:
            if parsed is not None and window.holds(parsed):
                return f"{version} in {window} of {record.id}"
    return f"{version} listed in versions of {record.id}"


# -- storing and serving --------------------------------------------------------------------


def to_dict(record: Record) -> dict[str, Any]:
    """A compact JSON-able form (empty fields left out); from_dict gives the record back
    equal, the severity included, so installing `cvss` later changes no stored level."""
    stored: dict[str, Any] = {
        "id": record.id,
        "modified": _rfc3339(record.modified),
        "published": record.published and _rfc3339(record.published),
        "withdrawn": record.withdrawn,
        "withdrawn_at": record.withdrawn_at and _rfc3339(record.withdrawn_at),
        "aliases": list(record.aliases),
        "summary": record.summary,
        "details": record.details,
        "severity": record.severity,
        "scores": [list(score) for score in record.scores],
        "label": record.label,
        "affected": [_affected_dict(entry) for entry in record.affected],
    }
    return {key: value for key, value in stored.items() if value}


def _affected_dict(entry: Affected) -> dict[str, Any]:
    stored: dict[str, Any] = {
        "name": entry.name,
        "versions": list(entry.versions),
        "windows": [[w.introduced, w.fixed, w.last_affected] for w in entry.windows],
        "dropped_ranges": entry.dropped_ranges,
    }
    return {key: value for key, value in stored.items() if value}


def from_dict(stored: Mapping[str, Any]) -> Record:
    """The inverse of to_dict, for what minirepo itself stored (not checked again)."""
    return Record(
        id=stored["id"],
        modified=_timestamp(stored["modified"], "modified"),
        published=_optional_timestamp(stored, "published"),
        withdrawn=stored.get("withdrawn", False),
        aliases=tuple(stored.get("aliases", ())),
        summary=stored.get("summary", ""),
        details=stored.get("details", ""),
        severity=stored.get("severity", "unknown"),
        affected=tuple(
            Affected(
                name=entry["name"],
                versions=tuple(entry.get("versions", ())),
                windows=tuple(Window(*window) for window in entry.get("windows", ())),
                dropped_ranges=entry.get("dropped_ranges", 0),
            )
            for entry in stored.get("affected", ())
        ),
        scores=tuple((kind, score) for kind, score in stored.get("scores", ())),
        label=stored.get("label"),
        withdrawn_at=_optional_timestamp(stored, "withdrawn_at"),
    )


def to_osv(record: Record) -> dict[str, Any]:
    """An OSV document as the query API answers it. Entries of one project are merged into
    one, its windows into one ECOSYSTEM range of disjoint windows: pip-audit takes the fixes
    of the first ECOSYSTEM range of the last matching entry only, and the merge changes no
    affected version. Ranges dropped at import are left out (pip-audit would fail on their
    bounds); `database_specific.dropped_ranges` counts them."""
    document: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "id": record.id}
    document["modified"] = _rfc3339(record.modified)
    if record.published is not None:
        document["published"] = _rfc3339(record.published)
    if record.withdrawn:
        document["withdrawn"] = _rfc3339(record.withdrawn_at or record.modified)
    document["aliases"] = list(record.aliases)
    if record.summary:  # pip-audit shows the summary if the key is there, even empty
        document["summary"] = record.summary
    document["details"] = record.details
    if record.scores:
        document["severity"] = [{"type": kind, "score": score} for kind, score in record.scores]
    names = dict.fromkeys(entry.name for entry in record.affected)
    document["affected"] = [_osv_affected(record, name) for name in names]
    specific = {"severity": record.label} if record.label else {}
    document["database_specific"] = {**specific, "minirepo_severity": record.severity}
    return document


def _osv_affected(record: Record, name: str) -> dict[str, Any]:
    entries = [entry for entry in record.affected if entry.name == name]
    events: list[dict[str, str]] = []
    for window in _merged([w for entry in entries for w in entry.windows]):
        events.append({"introduced": window.introduced})
        if window.fixed is not None:
            events.append({"fixed": window.fixed})
        elif window.last_affected is not None:
            events.append({"last_affected": window.last_affected})
    affected: dict[str, Any] = {
        "package": {"ecosystem": "PyPI", "name": name},
        "ranges": [{"type": "ECOSYSTEM", "events": events}] if events else [],
        "versions": list(dict.fromkeys(v for entry in entries for v in entry.versions)),
    }
    dropped = sum(entry.dropped_ranges for entry in entries)
    if dropped:
        affected["database_specific"] = {"dropped_ranges": dropped}
    return affected


def _merged(windows: list[Window]) -> list[Window]:
    """The union of `windows` as disjoint windows, lowest first, so that one range walked
    in order holds the same versions as the separate ranges did."""
    merged: list[Window] = []
    for window in sorted(windows, key=lambda w: _order("introduced", w.introduced)):
        if merged and _reaches(merged[-1], window.introduced):
            first, farther = merged[-1], max(merged[-1], window, key=_end)
            merged[-1] = Window(first.introduced, farther.fixed, farther.last_affected)
        else:
            merged.append(window)
    return merged


def _end(window: Window) -> tuple[bool, Version, bool]:
    """Sort key of where a window stops: open ones last; `last_affected` X after `fixed` X."""
    if window.fixed is not None:
        return (False, _version(window.fixed), False)
    if window.last_affected is not None:
        return (False, _version(window.last_affected), True)
    return (True, Version("0"), False)


def _reaches(window: Window, start: str) -> bool:
    """Whether a window starting at `start` (not below `window`'s start) overlaps `window`
    or begins right at its `fixed` end, so the two make one."""
    is_open, end, _ = _end(window)
    return is_open or start == "0" or _version(start) <= end
