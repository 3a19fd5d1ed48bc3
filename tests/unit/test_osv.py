"""`minirepo.osv`: which releases an OSV record affects, one finding per flaw, the severity
a record gets, and the forms a record is stored and served in. One row per case.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from typing import Any

import pytest

from minirepo.osv import (
    SEVERITIES,
    Affected,
    Record,
    Window,
    affects,
    findings,
    fixed_in,
    from_dict,
    parse,
    to_dict,
    to_osv,
)

CRITICAL_V3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
CRITICAL_V4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"  # 9.3


def ranges(*events: list[dict[str, str]], kind: str = "ECOSYSTEM") -> list[dict[str, Any]]:
    return [{"type": kind, "events": list(range_events)} for range_events in events]


def osv(
    ident: str = "PYSEC-2024-1",
    *,
    name: str = "demo",
    events: list[dict[str, str]] | None = None,
    versions: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A minimal valid record for `name`: one ECOSYSTEM range of `events`, `versions`."""
    affected: dict[str, Any] = {"package": {"ecosystem": "PyPI", "name": name}}
    if events is not None:
        affected["ranges"] = ranges(events)
    if versions is not None:
        affected["versions"] = versions
    return {"id": ident, "modified": "2024-05-01T10:00:00Z", "affected": [affected], **fields}


INTRO_0 = {"introduced": "0"}


def entry(document: dict[str, Any]) -> Affected:
    (affected,) = parse(document).affected
    return affected


MATCHING = [
    # (case, affected entry of the record, version tested, affected?)
    ("fixed: below", osv(events=[INTRO_0, {"fixed": "1.1"}]), "1.0", True),
    ("fixed: the fix itself", osv(events=[INTRO_0, {"fixed": "1.1"}]), "1.1", False),
    ("fixed: 1.1.0 is 1.1", osv(events=[INTRO_0, {"fixed": "1.1"}]), "1.1.0", False),
    ("introduced: below", osv(events=[{"introduced": "1.0"}, {"fixed": "2"}]), "0.9", False),
    ("introduced: itself", osv(events=[{"introduced": "1.0"}, {"fixed": "2"}]), "1.0", True),
    ("0 is below 0.dev0", osv(events=[INTRO_0, {"fixed": "1"}]), "0.dev0", True),
    ("last_affected: itself", osv(events=[INTRO_0, {"last_affected": "1.5"}]), "1.5", True),
    ("last_affected: above", osv(events=[INTRO_0, {"last_affected": "1.5"}]), "1.5.1", False),
    ("last_affected: post", osv(events=[INTRO_0, {"last_affected": "1.5"}]), "1.5.post1", False),
    ("open-ended: far above", osv(events=[{"introduced": "1.0"}]), "99.0", True),
    ("open-ended: below", osv(events=[{"introduced": "1.0"}]), "0.9", False),
    ("rc of the fix is in", osv(events=[INTRO_0, {"fixed": "2.10.1"}]), "2.10.1rc1", True),
    ("post of the fix is out", osv(events=[INTRO_0, {"fixed": "2.10.1"}]), "2.10.1.post1", False),
    ("local below the fix", osv(events=[INTRO_0, {"fixed": "2.10.1"}]), "2.10.0+local", True),
    ("local of the fix", osv(events=[INTRO_0, {"fixed": "2.10.1"}]), "2.10.1+local", False),
    ("dev of the fix is in", osv(events=[INTRO_0, {"fixed": "2.10.1"}]), "2.10.1.dev3", True),
    ("versions: 1.0 is 1.0.0", osv(versions=["1.0.0"]), "1.0", True),
    ("versions: 1.0.0 is 1.0", osv(versions=["1.0"]), "1.0.0", True),
    ("versions: v1.0 is 1.0", osv(versions=["v1.0"]), "1.0", True),
    ("versions: not listed", osv(versions=["1.0"]), "1.0.1", False),
    ("versions: local differs", osv(versions=["1.0"]), "1.0+local", False),
    ("non-PEP 440: exact", osv(versions=["2.0-custom-x"]), "2.0-custom-x", True),
    ("non-PEP 440: other", osv(versions=["2.0-custom-x"]), "2.0-custom-y", False),
    ("non-PEP 440: no range", osv(events=[INTRO_0]), "2.0-custom-x", False),
]
TWO_WINDOWS = [{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.1"}]
UNSORTED = [{"fixed": "2.1"}, {"introduced": "2.0"}, {"fixed": "1.2"}, {"introduced": "1.0"}]
IN_TWO_WINDOWS = [("0.9", False), ("1.1", True), ("1.5", False), ("2.0.5", True), ("2.1", False)]
MATCHING += [
    (f"{label}: {version}", osv(events=events), version, expected)
    for label, events in (("two windows", TWO_WINDOWS), ("unsorted", UNSORTED))
    for version, expected in IN_TWO_WINDOWS
]


@pytest.mark.parametrize(
    ("document", "version", "expected"),
    [
        pytest.param(document, version, expected, id=case)
        for case, document, version, expected in MATCHING
    ],
)
def test_affects(document: dict[str, Any], version: str, expected: bool) -> None:
    assert affects(entry(document), version) is expected


def test_windows_of_one_range() -> None:
    assert entry(osv(events=UNSORTED)).windows == (Window("1.0", "1.2"), Window("2.0", "2.1"))


@pytest.mark.parametrize(
    "bad_event",
    [
        pytest.param({"fixed": "not a version!"}, id="fixed"),
        pytest.param({"introduced": "2.0-custom-x"}, id="introduced"),
        pytest.param({"last_affected": "latest"}, id="last_affected"),
        pytest.param({"fixed": 2}, id="not a string"),
    ],
)
def test_invalid_bound_drops_its_range(bad_event: dict[str, Any]) -> None:
    document = osv()
    document["affected"][0]["ranges"] = ranges(
        [INTRO_0, bad_event], [{"introduced": "3.0"}, {"fixed": "4.0"}]
    )
    affected = entry(document)
    assert affected.dropped_ranges == 1
    assert affected.windows == (Window("3.0", "4.0"),)
    assert not affects(affected, "0.5")
    assert affects(affected, "3.5")


@pytest.mark.parametrize(
    ("package", "kept"),
    [
        pytest.param({"ecosystem": "PyPI", "name": "Demo_Pkg"}, True, id="PyPI"),
        pytest.param({"ecosystem": "PyPI:suffix", "name": "demo.pkg"}, True, id="PyPI:suffix"),
        pytest.param({"ecosystem": "npm", "name": "demo-pkg"}, False, id="npm"),
        pytest.param({"ecosystem": "PyPIx", "name": "demo-pkg"}, False, id="PyPIx"),
        pytest.param({"ecosystem": "PyPI", "name": "bad name!"}, False, id="invalid name"),
        pytest.param({"name": "demo-pkg"}, False, id="no ecosystem"),
    ],
)
def test_only_pypi_entries_are_kept(package: dict[str, str], kept: bool) -> None:
    document = osv(events=[INTRO_0])
    document["affected"][0]["package"] = package
    assert [a.name for a in parse(document).affected] == (["demo-pkg"] if kept else [])


def test_git_and_semver_ranges_are_ignored() -> None:
    document = osv()
    document["affected"][0]["ranges"] = [
        *ranges([INTRO_0, {"fixed": "abc123"}], kind="GIT"),
        *ranges([INTRO_0, {"fixed": "1.0.0"}], kind="SEMVER"),
    ]
    affected = entry(document)
    assert (affected.windows, affected.dropped_ranges) == ((), 0)
    assert not affects(affected, "0.5")


@pytest.mark.parametrize(
    ("windows", "version", "expected"),
    [
        pytest.param(
            [Window("0", "1.10"), Window("1.0", "1.9")], "1.5", ["1.10"], id="1.9 is no fix"
        ),
        pytest.param(
            [Window("0", "1.10"), Window("1.0", last_affected="1.9")], "1.5", ["1.10"], id="last"
        ),
        pytest.param([Window("0", "1.1"), Window("0", "1.1.0")], "1.0", ["1.1"], id="1.1 once"),
        pytest.param(
            [Window("0", "2.0"), Window("1.0", "3.0")], "1.5", ["3.0"], id="2.0 is no fix"
        ),
        pytest.param([Window("0", "2.0"), Window("3.0", "4.0")], "1.5", ["2.0"], id="other window"),
        pytest.param([Window("0", last_affected="2.0")], "1.5", [], id="no fixed bound"),
        pytest.param([Window("0", "2.0")], "2.0", [], id="not affected"),
        pytest.param([Window("0", "2.0")], "2.0-custom-x", [], id="not PEP 440"),
    ],
)
def test_fixed_in(windows: list[Window], version: str, expected: list[str]) -> None:
    assert fixed_in(Affected("demo", (), tuple(windows)), version) == expected


GHSA_HIGH = osv(
    "GHSA-aaaa-bbbb-cccc",
    events=[INTRO_0, {"fixed": "1.10"}],
    aliases=["CVE-2024-1"],
    summary="Path traversal in demo",
    database_specific={"severity": "HIGH"},
)
PYSEC_LOW = osv(
    "PYSEC-2024-7",
    events=[INTRO_0, {"fixed": "1.9"}],
    aliases=["CVE-2024-1"],
    severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N"}],
)


def test_aliases_make_one_finding() -> None:
    (finding,) = findings([parse(PYSEC_LOW), parse(GHSA_HIGH)], "Demo", "1.0")
    assert finding.id == "GHSA-aaaa-bbbb-cccc"
    assert finding.ids == ("CVE-2024-1", "GHSA-aaaa-bbbb-cccc", "PYSEC-2024-7")
    assert finding.severity == "high"
    assert finding.summary == "Path traversal in demo"
    assert finding.fixed == ("1.9", "1.10")  # PEP 440 order
    assert finding.matched == (
        "1.0 in [0, 1.10) of GHSA-aaaa-bbbb-cccc; 1.0 in [0, 1.9) of PYSEC-2024-7"
    )


def test_aliases_chain_across_records() -> None:
    a = osv("PYSEC-1", versions=["1.0"], aliases=["CVE-1"])
    b = osv("OSV-2", versions=["1.0"], aliases=["CVE-1", "CVE-2"])
    c = osv("GHSA-3", versions=["1.0"], aliases=["CVE-2"])
    other = osv("PYSEC-9", versions=["1.0"])
    found = findings([parse(d) for d in (a, b, c, other)], "demo", "1.0")
    assert [(f.id, f.matched) for f in found] == [
        (
            "GHSA-3",
            "1.0 listed in versions of GHSA-3; 1.0 listed in versions of PYSEC-1; "
            "1.0 listed in versions of OSV-2",
        ),
        ("PYSEC-9", "1.0 listed in versions of PYSEC-9"),
    ]


@pytest.mark.parametrize(
    ("ids", "primary"),
    [
        pytest.param(["PYSEC-1", "GHSA-x", "MAL-2024-1"], "MAL-2024-1", id="MAL first"),
        pytest.param(["PYSEC-1", "OSV-1", "GHSA-x"], "GHSA-x", id="then GHSA"),
        pytest.param(["OSV-1", "PYSEC-2", "PYSEC-1"], "PYSEC-1", id="then PYSEC, by string"),
        pytest.param(["OSV-2", "BIT-1"], "BIT-1", id="others by string"),
    ],
)
def test_primary_id(ids: list[str], primary: str) -> None:
    records = [parse(osv(i, versions=["1.0"], aliases=["CVE-1"])) for i in ids]
    assert [f.id for f in findings(records, "demo", "1.0")] == [primary]


def test_withdrawn_records_are_no_finding_and_join_nothing() -> None:
    withdrawn = osv(
        "GHSA-w", versions=["1.0"], aliases=["CVE-1", "CVE-2"], withdrawn="2024-06-01T00:00:00Z"
    )
    records = [parse(osv("PYSEC-1", versions=["1.0"], aliases=["CVE-1"]))]
    records += [parse(withdrawn), parse(osv("PYSEC-2", versions=["1.0"], aliases=["CVE-2"]))]
    assert records[1].withdrawn
    assert [f.id for f in findings(records, "demo", "1.0")] == ["PYSEC-1", "PYSEC-2"]


@pytest.mark.parametrize(
    ("name", "version", "expected"),
    [
        pytest.param("Demo", "1.0", ["GHSA-aaaa-bbbb-cccc"], id="normalized name"),
        pytest.param("other", "1.0", [], id="other project"),
        pytest.param("demo", "1.10", [], id="fixed version"),
        pytest.param("bad name!", "1.0", [], id="invalid name"),
    ],
)
def test_findings_select_by_name_and_version(name: str, version: str, expected: list[str]) -> None:
    assert [f.id for f in findings([parse(GHSA_HIGH)], name, version)] == expected


def test_findings_worst_first() -> None:
    records = [parse(osv("PYSEC-1", versions=["1.0"])), parse(osv("MAL-2024-9", versions=["1.0"]))]
    records.append(parse(GHSA_HIGH))
    assert [(f.id, f.severity) for f in findings(records, "demo", "1.0")] == [
        ("MAL-2024-9", "malicious"),
        ("GHSA-aaaa-bbbb-cccc", "high"),
        ("PYSEC-1", "unknown"),
    ]


def v3(vector: str) -> list[dict[str, str]]:
    return [{"type": "CVSS_V3", "score": vector}]


@pytest.mark.parametrize(
    ("ident", "fields", "expected"),
    [
        ("MAL-2024-1", {}, "malicious"),
        ("MAL-2024-1", {"database_specific": {"severity": "LOW"}}, "malicious"),
        ("GHSA-x", {"database_specific": {"severity": "LOW"}}, "low"),
        ("GHSA-x", {"database_specific": {"severity": "MODERATE"}}, "medium"),
        ("GHSA-x", {"database_specific": {"severity": "HIGH"}}, "high"),
        ("GHSA-x", {"database_specific": {"severity": "CRITICAL"}}, "critical"),
        ("GHSA-x", {"database_specific": {"severity": "whatever"}}, "unknown"),
        ("PYSEC-1", {}, "unknown"),
        ("PYSEC-1", {"severity": v3(CRITICAL_V3)}, "critical"),
        ("PYSEC-1", {"severity": v3("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H")}, "critical"),
        ("PYSEC-1", {"severity": v3("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N")}, "low"),
        ("PYSEC-1", {"severity": v3("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N")}, "medium"),
        ("PYSEC-1", {"severity": v3("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N")}, "medium"),
        ("PYSEC-1", {"severity": v3("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N")}, "high"),
        ("PYSEC-1", {"severity": v3("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N")}, "unknown"),
        ("PYSEC-1", {"severity": v3("CVSS:3.1/AV:X/AC:L")}, "unknown"),
        (
            "PYSEC-1",
            {"severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:C/I:C/A:C"}]},
            "unknown",
        ),
        (
            "GHSA-x",
            {"database_specific": {"severity": "LOW"}, "severity": v3(CRITICAL_V3)},
            "critical",
        ),
        (
            "GHSA-x",
            {"database_specific": {"severity": "CRITICAL"}, "severity": v3("CVSS:3.1/broken")},
            "critical",
        ),
    ],
)
def test_severity_of_a_record(ident: str, fields: dict[str, Any], expected: str) -> None:
    assert parse(osv(ident, versions=["1.0"], **fields)).severity == expected


@pytest.mark.parametrize(
    ("label", "vector", "expected"),
    [
        pytest.param(None, CRITICAL_V4, "critical", id="9.3"),
        pytest.param(
            "LOW",
            "CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N",
            "low",
            id="low",
        ),
        pytest.param(None, "CVSS:4.0/AV:N", "unknown", id="malformed"),
        pytest.param("HIGH", "CVSS:4.0/AV:N/AV:N", "high", id="malformed, label"),
    ],
)
def test_cvss_v4_with_the_cvss_package(label: str | None, vector: str, expected: str) -> None:
    pytest.importorskip("cvss")  # the test extra installs it
    document = osv(severity=[{"type": "CVSS_V4", "score": vector}])
    if label:
        document["database_specific"] = {"severity": label}
    assert parse(document).severity == expected


def test_cvss_v4_without_the_cvss_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cvss", None)  # `import cvss` now raises ImportError
    document = osv(severity=[{"type": "CVSS_V4", "score": CRITICAL_V4}])
    assert parse(document).severity == "unknown"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        pytest.param({"modified": "2024-05-01T10:00:00Z"}, "without a usable id", id="no id"),
        pytest.param(osv(" "), "without a usable id", id="blank id"),
        pytest.param({"id": "X-1"}, "modified is not an RFC 3339", id="no modified"),
        pytest.param(osv(modified="yesterday"), "modified is not an RFC 3339", id="bad modified"),
        pytest.param(osv(modified="2024-13-01T00:00:00Z"), "not a real date", id="month 13"),
        pytest.param(osv(published="2024"), "published is not an RFC 3339", id="bad published"),
        pytest.param(osv(aliases="CVE-1"), "aliases is not a list", id="aliases a string"),
        pytest.param(osv(affected={"package": {}}), "affected is not a list", id="affected"),
        pytest.param(osv(severity=[{"type": "CVSS_V3"}]), "severity entry", id="no score"),
        pytest.param(osv(summary=["x"]), "summary is not a string", id="summary"),
        pytest.param(osv(versions=[1.0]), "versions holds", id="version a number"),  # type: ignore[list-item]
        pytest.param(
            osv(database_specific={"severity": 3}), "severity is not a string", id="label"
        ),
    ],
)
def test_unusable_records_are_refused(document: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(document)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10)),
        ("2024-05-01T10:00:00.123456789Z", datetime(2024, 5, 1, 10, 0, 0, 123456)),
        ("2024-05-01T10:00:00.5z", datetime(2024, 5, 1, 10, 0, 0, 500000)),
        ("2024-05-01T12:30:00+02:30", datetime(2024, 5, 1, 10)),
        ("2024-05-01T00:00:00-01:00", datetime(2024, 5, 1, 1)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10)),
    ],
)
def test_timestamps_become_naive_utc(text: str, expected: datetime) -> None:
    assert parse(osv(modified=text)).modified == expected


RICH = osv(
    "GHSA-aaaa-bbbb-cccc",
    name="Demo_Pkg",
    events=[{"introduced": "2.0"}, {"fixed": "2.1"}, INTRO_0, {"last_affected": "1.5"}],
    versions=["1.0", "2.0.0"],
    modified="2024-05-01T10:00:00.250Z",
    published="2024-04-01T00:00:00Z",
    withdrawn="2024-06-01T00:00:00Z",
    aliases=["CVE-2024-1", "PYSEC-2024-7"],
    summary="Path traversal",
    details="Long\ntext",
    severity=v3(CRITICAL_V3),
    database_specific={"severity": "MODERATE"},
)
RICH["affected"][0]["ranges"].append({"type": "ECOSYSTEM", "events": [{"fixed": "x y"}]})
RICH["affected"].append(
    {
        "package": {"ecosystem": "PyPI", "name": "demo-pkg"},
        "ranges": ranges([{"introduced": "1.2"}, {"fixed": "1.8"}]),
    }
)
RICH["affected"].append({"package": {"ecosystem": "PyPI", "name": "other"}, "versions": ["0.1"]})


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(parse(RICH), id="rich"),
        pytest.param(parse(osv()), id="minimal"),
        pytest.param(parse(osv("MAL-2024-1", events=[INTRO_0])), id="malware"),
    ],
)
def test_to_dict_round_trips(record: Record) -> None:
    stored = json.loads(json.dumps(to_dict(record)))
    assert from_dict(stored) == record


def test_to_dict_is_compact() -> None:
    assert to_dict(parse(osv(versions=["1.0"]))) == {
        "id": "PYSEC-2024-1",
        "modified": "2024-05-01T10:00:00Z",
        "severity": "unknown",
        "affected": [{"name": "demo", "versions": ["1.0"]}],
    }


def test_to_osv_shape() -> None:
    document = to_osv(parse(RICH))
    assert document == {
        "schema_version": "1.6.0",
        "id": "GHSA-aaaa-bbbb-cccc",
        "modified": "2024-05-01T10:00:00.250000Z",
        "published": "2024-04-01T00:00:00Z",
        "withdrawn": "2024-06-01T00:00:00Z",
        "aliases": ["CVE-2024-1", "PYSEC-2024-7"],
        "summary": "Path traversal",
        "details": "Long\ntext",
        "severity": [{"type": "CVSS_V3", "score": CRITICAL_V3}],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "demo-pkg"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [
                            {"introduced": "0"},
                            {"fixed": "1.8"},
                            {"introduced": "2.0"},
                            {"fixed": "2.1"},
                        ],
                    }
                ],
                "versions": ["1.0", "2.0.0"],
                "database_specific": {"dropped_ranges": 1},
            },
            {
                "package": {"ecosystem": "PyPI", "name": "other"},
                "ranges": [],
                "versions": ["0.1"],
            },
        ],
        "database_specific": {"severity": "MODERATE", "minirepo_severity": "critical"},
    }
    json.dumps(document)  # JSON-able as it is


def pip_audit_fixes(document: dict[str, Any], name: str) -> list[str]:
    """pip-audit's OSV service, as it reads an answer: the `fixed` events of the first
    ECOSYSTEM range of the last entry for the project (pip_audit/_service/osv.py)."""
    fixes: list[str] = []
    for affected in document["affected"]:
        package = affected["package"]
        if package["name"] == name and package["ecosystem"] == "PyPI":
            for range_ in affected["ranges"]:
                if range_["type"] == "ECOSYSTEM":
                    fixes = [event["fixed"] for event in range_["events"] if "fixed" in event]
                    break
    return fixes


@pytest.mark.parametrize(
    "windows",
    [
        pytest.param([Window("0", "1.0"), Window("0.5", "2.0")], id="overlapping"),
        pytest.param([Window("1.0", "2.0"), Window("2.0", "3.0")], id="touching"),
        pytest.param([Window("2.0", "3.0"), Window("0", "1.0")], id="apart"),
        pytest.param(
            [Window("0", last_affected="1.0"), Window("1.0", "1.5")], id="last then fixed"
        ),
        pytest.param([Window("0", last_affected="1.0"), Window("1.0.post1", "2")], id="gap"),
        pytest.param([Window("1.0"), Window("1.5", "2.0")], id="open swallows"),
        pytest.param([Window("0", "1.0"), Window("0", last_affected="1.0")], id="same start"),
    ],
)
def test_to_osv_affects_the_same_versions(windows: list[Window]) -> None:
    half = len(windows) // 2
    two_entries = (
        Affected("demo", ("0.1",), tuple(windows[:half])),
        Affected("demo", (), tuple(windows[half:])),
    )
    record = dataclasses.replace(parse(osv()), affected=two_entries)
    (served,) = parse(to_osv(record)).affected
    probes = [
        "0",
        "0.1",
        "0.5",
        "0.9",
        "1.0",
        "1.0.post1",
        "1.2",
        "1.5",
        "1.9",
        "2.0",
        "2.5",
        "3.0",
        "9",
    ]
    for probe in probes:
        expected = any(affects(entry, probe) for entry in record.affected)
        assert affects(served, probe) is expected, probe
    every_fix = {w.fixed for w in windows if w.fixed} - {p for p in probes if affects(served, p)}
    assert set(pip_audit_fixes(to_osv(record), "demo")) == every_fix


def test_severities_ascend() -> None:
    assert SEVERITIES == ("unknown", "low", "medium", "high", "critical", "malicious")
