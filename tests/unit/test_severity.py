"""`minirepo.severity`: our CVSS v3 base score against published scores and against RedHat's
`cvss` library on every base vector, the v3.1 Roundup, and the rating scale.
"""

from __future__ import annotations

import itertools

import pytest

from minirepo.severity import cvss3_base_score, cvss_score, level, roundup


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        # Published scores, e.g. NVD's for CVE-2021-44228 (10.0) and countless 9.8s and 5.5s.
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1),
        ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        # Metrics in another order, temporal and environmental ones present: same base.
        ("CVSS:3.1/S:U/AV:N/AC:L/PR:N/UI:N/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C/MAV:L", 9.8),
    ],
)
def test_published_scores(vector: str, score: float) -> None:
    assert cvss3_base_score(vector) == score


@pytest.mark.parametrize(
    "vector",
    [
        "",
        "CVSS:3.1",
        "CVSS:3.1/",
        "CVSS:2.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",  # A missing
        "CVSS:3.1/AV:Q/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",  # no such value
        "CVSS:3.1/AV:N/AV:L/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",  # twice
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/XX:Y",  # no such metric
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/",
        "CVSS:3.1/AV=N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    ],
)
def test_malformed_vectors_have_no_score(vector: str) -> None:
    assert cvss3_base_score(vector) is None
    assert level(cvss_score("CVSS_V3", vector)) == "unknown"


def test_every_base_vector_agrees_with_the_cvss_library() -> None:
    """A second implementation (decimal arithmetic, not floats) on all 2 x 2592 vectors."""
    cvss = pytest.importorskip("cvss")
    values = {"AV": "NALP", "AC": "LH", "PR": "NLH", "UI": "NR", "S": "UC"}
    values |= {"C": "HLN", "I": "HLN", "A": "HLN"}
    differ = []
    for version, combination in itertools.product(
        ("3.0", "3.1"), itertools.product(*values.values())
    ):
        metrics = "/".join(f"{key}:{value}" for key, value in zip(values, combination, strict=True))
        vector = f"CVSS:{version}/{metrics}"
        if cvss3_base_score(vector) != float(cvss.CVSS3(vector).base_score):
            differ.append(vector)
    assert differ == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (4.000000000000001, 4.0),  # the float slip the v3.1 Roundup exists for
        (4.02, 4.1),  # the specification's examples
        (4.0, 4.0),
        (9.76, 9.8),
        (0.01, 0.1),
        (10.0, 10.0),
    ],
)
def test_roundup(value: float, expected: float) -> None:
    assert roundup(value) == expected


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (None, "unknown"),
        (0.0, "unknown"),
        (0.1, "low"),
        (3.9, "low"),
        (4.0, "medium"),
        (6.9, "medium"),
        (7.0, "high"),
        (8.9, "high"),
        (9.0, "critical"),
        (10.0, "critical"),
    ],
)
def test_rating_scale(score: float | None, expected: str) -> None:
    assert level(score) == expected


@pytest.mark.parametrize("kind", ["CVSS_V2", "Ubuntu", "cvss_v3"])
def test_other_severity_types_have_no_score(kind: str) -> None:
    assert cvss_score(kind, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") is None
