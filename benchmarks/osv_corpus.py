"""Synthetic OSV advisories for PyPI, shaped like OSV's `all.zip`, for the advisories
benchmark and tests.

Seeded, so the same arguments give the same records and a byte-identical zip. The mix follows
OSV's PyPI export: GitHub advisories (GHSA, CVSS vectors and a severity word), PyPA's
(PYSEC, `versions` lists, sometimes a GIT range an importer must ignore) and malicious
packages (MAL, every version affected); a few withdrawn, a few `last_affected` ranges, some
advisories about two packages, names as published (not always normalized), timestamps with
and without fractions of a second.

    python -m benchmarks.osv_corpus /tmp/osv.zip --count 50000 --names 5000
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

_GHSA_ALPHABET = "23456789cfghjmpqrvwx"
_KIND_WEIGHTS = {"GHSA": 40, "PYSEC": 25, "MAL": 35}
_SEVERITIES = ("LOW", "MODERATE", "HIGH", "CRITICAL")
_CWES = ("CWE-20", "CWE-22", "CWE-79", "CWE-89", "CWE-94", "CWE-400", "CWE-502", "CWE-918")
_PROBLEMS = (
    "Cross-site scripting",
    "Path traversal",
    "SQL injection",
    "Remote code execution",
    "Denial of service via crafted input",
    "Unsafe deserialization",
    "Server-side request forgery",
    "Improper certificate validation",
)
_FILLER = (
    "an attacker can craft a request that the parser accepts without validating its length "
    "and the server then evaluates the resulting template with the privileges of the "
    "application allowing data to be read or modified the issue affects deployments that "
    "expose the endpoint to untrusted users and is fixed by escaping the value before use"
)
_WORDS = tuple(_FILLER.split())
_EPOCH = datetime.datetime(2018, 1, 1, tzinfo=datetime.timezone.utc)
_SPAN_SECONDS = 7 * 365 * 86400
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def package_names(count: int) -> list[str]:
    """A pool of `count` distinct PyPI names, when the caller has no names of its own."""
    return [f"osv-pkg-{index:05d}" for index in range(count)]


def generate_records(
    count: int, names: int | Sequence[str] = 1000, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """`count` OSV records with unique ids, about packages drawn from `names` (a pool of
    that many generated names, or the names themselves)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    pool = package_names(names) if isinstance(names, int) else list(names)
    ids: set[str] = set()
    for serial in range(count):
        kind = rng.choices(list(_KIND_WEIGHTS), weights=list(_KIND_WEIGHTS.values()))[0]
        published = _EPOCH + datetime.timedelta(seconds=rng.randrange(_SPAN_SECONDS))
        year = published.year
        record_id = _ghsa_id(rng, ids) if kind == "GHSA" else f"{kind}-{year}-{serial + 1}"
        ids.add(record_id)
        maker = {"GHSA": _ghsa, "PYSEC": _pysec, "MAL": _mal}[kind]
        record = maker(rng, record_id, [_spelled(rng, rng.choice(pool))])
        if rng.random() < 0.05 and kind != "MAL":  # an advisory about two packages
            record["affected"] += _affected(rng, _spelled(rng, rng.choice(pool)), kind)
        modified = published + datetime.timedelta(seconds=rng.randrange(400 * 86400))
        record["published"] = _timestamp(rng, published)
        record["modified"] = _timestamp(rng, modified)
        if rng.random() < 0.01:
            record["withdrawn"] = record["modified"]
        yield record


def write_zip(path: Path, count: int, names: int | Sequence[str] = 1000, seed: int = 0) -> Path:
    """`count` records as OSV lays out its export: one `<ID>.json` per member."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for record in generate_records(count, names, seed):
            info = zipfile.ZipInfo(f"{record['id']}.json", _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, json.dumps(record))  # indent=2 takes json's slow path
    return path


def _ghsa(rng: random.Random, record_id: str, packages: list[str]) -> dict[str, Any]:
    problem = rng.choice(_PROBLEMS)
    cve = _cve(rng)
    severity = rng.choice(_SEVERITIES)
    record: dict[str, Any] = {
        "schema_version": "1.4.0",
        "id": record_id,
        "aliases": [cve] if rng.random() < 0.9 else [],
        "summary": f"{problem} in {packages[0]}",
        "details": _text(rng, 40, 90),
        "affected": _affected(rng, packages[0], "GHSA"),
        "references": [
            {"type": "ADVISORY", "url": f"https://nvd.nist.gov/vuln/detail/{cve}"},
            {"type": "PACKAGE", "url": f"https://github.com/example/{packages[0]}"},
        ],
        "database_specific": {
            "cwe_ids": rng.sample(_CWES, rng.randint(1, 2)),
            "severity": severity,
            "github_reviewed": True,
        },
    }
    if rng.random() < 0.8:
        record["severity"] = [{"type": "CVSS_V3", "score": _cvss(rng)}]
    return record


def _pysec(rng: random.Random, record_id: str, packages: list[str]) -> dict[str, Any]:
    aliases = [_cve(rng)] + ([_ghsa_id(rng, set())] if rng.random() < 0.5 else [])
    return {
        "id": record_id,
        "aliases": aliases,
        "details": _text(rng, 30, 70),
        "affected": _affected(rng, packages[0], "PYSEC"),
        "references": [{"type": "WEB", "url": f"https://example.org/{record_id}"}],
    }


def _mal(rng: random.Random, record_id: str, packages: list[str]) -> dict[str, Any]:
    name = packages[0]
    return {
        "schema_version": "1.5.0",
        "id": record_id,
        "summary": f"Malicious code in {name} (PyPI)",
        "details": "\n---\n\n_-= Per source details. Do not edit below this line.=-_\n\n"
        + _text(rng, 20, 50),
        "affected": _affected(rng, name, "MAL"),
        "credits": [{"name": "OpenSSF: Package Analysis", "type": "FINDER"}],
        "database_specific": {
            "malicious-packages-origins": [
                {"source": "ossf-package-analysis", "sha256": f"{rng.getrandbits(256):064x}"}
            ]
        },
    }


def _affected(rng: random.Random, name: str, kind: str) -> list[dict[str, Any]]:
    """One `affected` entry: an ECOSYSTEM range (a fix, a last affected version, or none
    for malware), `versions` as PYSEC and MAL list them."""
    history = _versions(rng)
    start = rng.randrange(len(history) - 1)
    end = rng.randrange(start + 1, len(history))
    entry: dict[str, Any] = {"package": {"ecosystem": "PyPI", "name": name}}
    entry["package"]["purl"] = f"pkg:pypi/{name.lower().replace('_', '-')}"
    introduced = "0" if rng.random() < 0.4 else history[start]
    events: list[dict[str, str]] = [{"introduced": introduced}]
    if kind == "MAL":
        events = [{"introduced": "0"}]
        entry["versions"] = history[-rng.randint(1, 3) :]
    elif rng.random() < 0.1:
        events.append({"last_affected": history[end - 1]})
    else:
        events.append({"fixed": history[end]})
    entry["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
    if kind == "PYSEC":
        entry["versions"] = history[0 if introduced == "0" else start : end]
        if rng.random() < 0.3:
            commit = f"{rng.getrandbits(160):040x}"
            entry["ranges"].append(
                {
                    "type": "GIT",
                    "repo": f"https://github.com/example/{name}",
                    "events": [{"introduced": "0"}, {"fixed": commit}],
                }
            )
    return [entry]


def _versions(rng: random.Random) -> list[str]:
    """An ascending release history of 2 to 40 versions."""
    major, minor, patch = rng.randint(0, 3), rng.randint(0, 9), 0
    history = []
    for _ in range(rng.randint(2, 40)):
        history.append(f"{major}.{minor}.{patch}")
        step = rng.random()
        if step < 0.6:
            patch += 1
        elif step < 0.9:
            minor, patch = minor + 1, 0
        else:
            major, minor, patch = major + 1, 0, 0
    return history


def _spelled(rng: random.Random, name: str) -> str:
    """`name` as a project may publish it: a tenth not in PEP 503 form."""
    if rng.random() < 0.1:
        return name.replace("-", "_").title()
    return name


def _ghsa_id(rng: random.Random, taken: set[str]) -> str:
    while True:
        groups = ("".join(rng.choices(_GHSA_ALPHABET, k=4)) for _ in range(3))
        candidate = "GHSA-" + "-".join(groups)
        if candidate not in taken:
            return candidate


def _cve(rng: random.Random) -> str:
    return f"CVE-{rng.randint(2018, 2024)}-{rng.randint(1000, 52000)}"


def _cvss(rng: random.Random) -> str:
    metrics = {
        "AV": "NALP",
        "AC": "LH",
        "PR": "NLH",
        "UI": "NR",
        "S": "UC",
        "C": "HLN",
        "I": "HLN",
        "A": "HLN",
    }
    parts = [f"{metric}:{rng.choice(values)}" for metric, values in metrics.items()]
    return "CVSS:3.1/" + "/".join(parts)


def _text(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(_WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + "."


def _timestamp(rng: random.Random, moment: datetime.datetime) -> str:
    """RFC 3339 in UTC as OSV writes it: whole seconds, or microseconds for some sources."""
    if rng.random() < 0.3:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rng.randrange(10**6):06d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    parser = argparse.ArgumentParser(description="Write synthetic OSV PyPI advisories as a zip.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--names", type=int, default=5000, help="size of the package pool")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_zip(args.path, args.count, args.names, args.seed)
    print(f"wrote {args.count} records to {args.path} ({args.path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
