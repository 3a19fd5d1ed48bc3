"""The report: percentiles that count a failure as its timeout, the table, the targets
with their verdicts, and the same as JSON."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
from typing import Any

from benchmarks.attack.archives import MIB
from benchmarks.attack.attacks import ATTACKERS, EVIL, TITLES
from benchmarks.attack.legit import CLIENT_TIMEOUT, HEALTH_TIMEOUT, Op
from benchmarks.attack.phases import RECOVERY_LIMIT, RECOVERY_RUN, Outcome

TARGET_HEALTH_P99 = 1.0
TARGET_RSS_MIB = 120.0
TARGET_RECOVERY = 5.0
TARGET_REFUSED_SPOOL = 64 * 1024
LEGIT_KINDS = ("pip install", "uv pip install", "twine upload", "health")


def quantile(values: list[float], share: float) -> float | None:
    """Nearest rank: the smallest value that `share` of them do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(ops: list[Op]) -> dict[str, Any]:
    """Counts and percentiles; a failure counts as its timeout, not as a fast answer."""
    seconds = [op.seconds if op.ok else max(op.seconds, timeout(op.kind)) for op in ops]
    return {
        "count": len(ops),
        "ok": sum(op.ok for op in ops),
        "p50": quantile(seconds, 0.5),
        "p99": quantile(seconds, 0.99),
    }


def timeout(kind: str) -> float:
    return HEALTH_TIMEOUT if kind == "health" else CLIENT_TIMEOUT


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def fmt_bytes(value: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


@dataclasses.dataclass(frozen=True)
class Check:
    target: str
    figure: str
    passed: bool


def peak(outcome: Outcome, figure: str) -> float:
    return max((peaks[figure] for peaks in outcome.peaks.values()), default=0.0)


def checks(outcome: Outcome, spool_limit: int) -> list[Check]:
    judged = [op for op in outcome.journal.ops if op.phase in ("quiet", "attack")]
    failed = sum(not op.ok for op in judged)
    health = quantile([op.seconds for op in outcome.journal.of("health", "attack")], 0.99)
    rss, spool = peak(outcome, "rss_mib"), peak(outcome, "spool_bytes")
    refused_bytes, refused_answer = outcome.refused
    back = outcome.back
    verdicts = [
        Check(
            "every legitimate operation succeeds (quiet and attack)",
            f"{failed} failed of {len(judged)}",
            failed == 0,
        ),
        Check(
            f"health p99 during the attack <= {fmt_seconds(TARGET_HEALTH_P99)}",
            fmt_seconds(health),
            health is not None and health <= TARGET_HEALTH_P99,
        ),
        Check(f"peak RSS <= {TARGET_RSS_MIB:.0f} MiB", f"{rss:.1f} MiB", rss <= TARGET_RSS_MIB),
        Check(
            f"back to quiet within {fmt_seconds(TARGET_RECOVERY)}",
            fmt_seconds(back) if back is not None else f"not within {RECOVERY_LIMIT:.0f} s",
            back is not None and back <= TARGET_RECOVERY,
        ),
        Check(
            f"a refused POST spools <= {fmt_bytes(TARGET_REFUSED_SPOOL)}",
            f"{fmt_bytes(refused_bytes)} (answer: {refused_answer})",
            refused_answer.startswith("4") and refused_bytes <= TARGET_REFUSED_SPOOL,
        ),
        Check(
            f"peak spool <= the spool limit ({fmt_bytes(spool_limit)})",
            fmt_bytes(spool),
            spool <= spool_limit,
        ),
    ]
    if "g" in outcome.tallies:
        tally = outcome.tallies["g"]
        answered = sum(n for answer, n in tally.answers.items() if answer.startswith("2"))
        stored = outcome.cross_site_stored
        figure = f"{answered} answered 2xx, {'?' if stored is None else stored} stored"
        passed = answered == 0 and stored == 0
        verdicts.append(
            Check("no cross-site post accepted", f"{figure}, of {tally.attempts}", passed)
        )
    if "h" in outcome.tallies:
        tally = outcome.tallies["h"]
        absolute = sum(n for answer, n in tally.answers.items() if "ABSOLUTE" in answer)
        target = f"no absolute Location for Host: {EVIL}"
        verdicts.append(Check(target, f"{absolute} of {tally.attempts}", absolute == 0))
    return verdicts


def render(outcome: Outcome, verdicts: list[Check]) -> str:
    lines = [f"{'legitimate client (127.0.0.1)':30}{'quiet':>30}{'attack':>30}"]
    lines.append(f"{'':30}" + f"{'n':>6}{'ok':>6}{'p50':>9}{'p99':>9}" * 2)
    for kind in LEGIT_KINDS:
        row = f"{kind:30}"
        for phase in ("quiet", "attack"):
            done = summary(outcome.journal.of(kind, phase))
            row += f"{done['count']:>6}{done['ok']:>6}"
            row += f"{fmt_seconds(done['p50']):>9}{fmt_seconds(done['p99']):>9}"
        lines.append(row)
    failures = collections.Counter(
        f"{op.kind} ({op.phase}): {op.detail}"
        for op in outcome.journal.ops
        if not op.ok and op.phase != "recovery"
    )
    lines += [f"  failed {n} x {what}" for what, n in failures.most_common(12)]
    phases = list(outcome.peaks)
    lines += ["", f"{'server, peaks':30}" + "".join(f"{phase:>15}" for phase in phases)]
    for label, figure, show in (
        ("RSS", "rss_mib", lambda value: f"{value:.1f} MiB"),
        ("spool bytes", "spool_bytes", fmt_bytes),
        ("open fds", "fds", lambda value: f"{value:.0f}"),
    ):
        cells = "".join(f"{show(outcome.peaks[phase][figure]):>15}" for phase in phases)
        lines.append(f"{label:30}{cells}")
    if outcome.server_exit is not None:
        lines.append(f"THE SERVER EXITED during the run (status {outcome.server_exit}); its log:")
        lines += ["  | " + line for line in outcome.server_log.splitlines()]
    back = fmt_seconds(outcome.back)
    back = back if outcome.back is not None else f"not within {RECOVERY_LIMIT:.0f} s"
    lines += [
        "",
        f"back to quiet: {back} after the attack's end (the first of {RECOVERY_RUN} health "
        f"probes in a row within {fmt_seconds(outcome.threshold)})",
        f"refused POST alone: {fmt_bytes(outcome.refused[0])} spooled, answer {outcome.refused[1]}",
        "",
        f"{'attacks from ' + ' and '.join(ATTACKERS):42}{'attempts':>9}  answers",
    ]
    for key, tally in outcome.tallies.items():
        answers = ", ".join(f"{answer}: {n}" for answer, n in tally.answers.most_common())
        lines.append(f"{key + '. ' + TITLES[key]:42}{tally.attempts:>9}  {answers or '-'}")
    lines += ["", "targets"]
    lines += [
        f"  {'PASS' if check.passed else 'FAIL'}  {check.target:56} {check.figure}"
        for check in verdicts
    ]
    return "\n".join(lines)


def as_json(
    args: argparse.Namespace, outcome: Outcome, verdicts: list[Check], spool_limit: int
) -> dict[str, Any]:
    journal = outcome.journal
    return {
        "args": {key: str(value) for key, value in vars(args).items()},
        "legit": {
            kind: {phase: summary(journal.of(kind, phase)) for phase in ("quiet", "attack")}
            for kind in LEGIT_KINDS
        },
        "server_peaks": outcome.peaks,
        "server_exit": outcome.server_exit,
        "server_log": outcome.server_log,
        "recovery": {"seconds": outcome.back, "threshold_seconds": outcome.threshold},
        "refused_post": {"spool_bytes": outcome.refused[0], "answer": outcome.refused[1]},
        "cross_site_stored": outcome.cross_site_stored,
        "spool_limit": spool_limit,
        "attacks": {
            key: {"title": TITLES[key], "attempts": tally.attempts, "answers": dict(tally.answers)}
            for key, tally in outcome.tallies.items()
        },
        "targets": [dataclasses.asdict(check) for check in verdicts],
        "operations": [dataclasses.asdict(op) for op in journal.ops],
    }
