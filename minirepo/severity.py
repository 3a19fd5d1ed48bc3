"""How bad an advisory is, on one scale: GitHub's label and the CVSS base score.

Our own CVSS v3 arithmetic, because the score decides what a download policy blocks and a
library's rounding or parsing change must not silently move a flaw across a threshold; the
v4 score, a large lookup table, comes from the optional `cvss` package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SEVERITIES = ("unknown", "low", "medium", "high", "critical", "malicious")  # ascending
# GitHub's labels in `database_specific.severity` (MEDIUM is what other databases write).
_LABELS = {
    "LOW": "low",
    "MODERATE": "medium",
    "MEDIUM": "medium",
    "HIGH": "high",
    "CRITICAL": "critical",
}


def severity_of(ident: str, scores: Iterable[tuple[str, str]], label: str | None) -> str:
    """MAL- records are malware whatever else they say; otherwise the higher of GitHub's
    label and the CVSS scores (OSV `severity` entries as (type, score) pairs), as a policy
    blocks on the worst reading of a flaw."""
    if ident.startswith("MAL-"):
        return "malicious"
    levels = [_LABELS.get(label.upper(), "unknown")] if label else []
    levels += [level(cvss_score(kind, vector)) for kind, vector in scores]
    return max(levels, key=SEVERITIES.index, default="unknown")


def level(score: float | None) -> str:
    """CVSS's rating scale. A 0.0 score ("none") counts as unknown, not low: an advisory
    exists, so a zero says the scoring went wrong, not that the flaw is harmless."""
    if not score:
        return "unknown"
    if score >= 9:
        return "critical"
    if score >= 7:
        return "high"
    return "medium" if score >= 4 else "low"


def cvss_score(kind: str, vector: str) -> float | None:
    """The score of one OSV `severity` entry, or None when there is none we can compute:
    CVSS v2 and unknown types, a malformed vector, or a v4 vector without the optional
    `cvss` package (pip install 'minirepo-server[cvss]')."""
    if kind == "CVSS_V3":
        return cvss3_base_score(vector)
    if kind == "CVSS_V4":
        return _cvss4_score(vector)
    return None


_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "PR": {"N": 0.85, "L": 0.62, "H": 0.27},
    "UI": {"N": 0.85, "R": 0.62},
    "S": {"U": 0.0, "C": 1.0},  # not a weight: 1.0 marks a changed scope
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_PR_SCOPE_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_TEMPORAL_AND_ENVIRONMENTAL = frozenset(
    {"E", "RL", "RC", "CR", "IR", "AR", "MAV", "MAC", "MPR", "MUI", "MS", "MC", "MI", "MA"}
)


def cvss3_base_score(vector: str) -> float | None:
    """The base score of a CVSS v3.0 or v3.1 vector (FIRST's v3.1 specification, 7.1), or
    None when the vector is malformed. Temporal and environmental metrics may be present
    and do not count. v3.0 vectors get the v3.1 Roundup too: it only removes the
    floating-point slips of v3.0's plain rounding up."""
    prefix, _, rest = vector.partition("/")
    if prefix not in ("CVSS:3.0", "CVSS:3.1"):
        return None
    metrics: dict[str, str] = {}
    for part in rest.split("/"):
        key, colon, value = part.partition(":")
        known = key in _WEIGHTS or key in _TEMPORAL_AND_ENVIRONMENTAL
        if not colon or not known or key in metrics:
            return None
        metrics[key] = value
    try:
        weight = {key: table[metrics[key]] for key, table in _WEIGHTS.items()}
    except KeyError:  # a base metric missing or with a value it does not have
        return None
    changed = weight["S"] == 1.0
    if changed:
        weight["PR"] = _PR_SCOPE_CHANGED[metrics["PR"]]
    iss = 1 - (1 - weight["C"]) * (1 - weight["I"]) * (1 - weight["A"])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    if impact <= 0:
        return 0.0
    exploitability = 8.22 * weight["AV"] * weight["AC"] * weight["PR"] * weight["UI"]
    return roundup(min((impact + exploitability) * (1.08 if changed else 1.0), 10.0))


def roundup(value: float) -> float:
    """CVSS v3.1 Appendix A: the smallest one-decimal number >= value, after rounding to
    five decimals so that float noise (4.000000000000001) does not become 4.1."""
    scaled = math.floor(value * 100_000 + 0.5)
    if scaled % 10_000 == 0:
        return scaled / 100_000
    return (scaled // 10_000 + 1) / 10


def _cvss4_score(vector: str) -> float | None:
    """RedHat's `cvss`, imported here on the first v4 vector so that it stays optional. The
    score is of the vector as given (threat metrics count if present), as advisories show."""
    try:
        from cvss import CVSS4
        from cvss.exceptions import CVSSError
    except ImportError:
        return None
    try:
        return float(CVSS4(vector).base_score)
    except CVSSError:
        return None
