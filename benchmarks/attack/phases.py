"""The run's phases after the setup: the daily life alone or beside the attacks, the cut
and the recovery, the refused POST alone; and the outcome they leave for the report."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import threading
import time
from collections.abc import Mapping

from benchmarks.attack.attacks import ATTACKERS, CROSS_SITE, Build, Judge, plain, start_attacks
from benchmarks.attack.legit import (
    CLIENT_TIMEOUT,
    Journal,
    Legit,
    Op,
    health_loop,
    health_probe,
    paced,
)
from benchmarks.attack.monitor import JOIN_TIMEOUT, SAMPLE_EVERY, Monitor, fds_and_spool
from benchmarks.attack.rawhttp import (
    ANSWER_TIMEOUT,
    Answer,
    Attack,
    Request,
    Sockets,
    Tally,
    exchange,
)
from benchmarks.attack.target import Server

PROBE_SAMPLE_EVERY = 0.01
RECOVERY_LIMIT = 60.0
SPOOL_DRAIN = 30.0
RECOVERY_RUN = 10
RECOVERY_FACTOR, RECOVERY_SLACK = 1.5, 0.020


def live(port: int, legit: Legit, journal: Journal, phase: str, until: float) -> None:
    """The daily life until `until`; the operation running then is let finish (bounded)."""
    threads = [
        threading.Thread(target=legit.loop, args=(phase, until), name="legit", daemon=True),
        threading.Thread(
            target=health_loop, args=(port, journal, phase, until), name="health", daemon=True
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()) + 2 * CLIENT_TIMEOUT + JOIN_TIMEOUT)


def recovery(server: Server, journal: Journal, threshold: float, cut_at: float) -> float | None:
    """Seconds from the cut to the first of RECOVERY_RUN probes in a row within
    `threshold`, or None if that did not happen within RECOVERY_LIMIT (or the server died)."""
    run, first = 0, cut_at
    for _ in paced(cut_at + RECOVERY_LIMIT):
        if server.proc.poll() is not None:
            return None
        start = time.monotonic()
        ok, seconds, detail = health_probe(server.port)
        journal.add(Op("health", "recovery", ok, seconds, detail))
        if not (ok and seconds <= threshold):
            run = 0
            continue
        first = start if run == 0 else first
        run += 1
        if run == RECOVERY_RUN:
            return first - cut_at
    return None


def attack_phase(
    server: Server,
    legit: Legit,
    journal: Journal,
    monitor: Monitor,
    plan: tuple[Mapping[str, tuple[Build, Judge]], str, set[str]],
    seconds: float,
    threshold: float,
) -> tuple[dict[str, Tally], float | None]:
    """The attacks and the daily life together; then the cut, and the recovery measured
    while the threads wind down."""
    monitor.phase = "attack"
    attack = Attack(Sockets(server.port), time.monotonic() + seconds)
    tallies, attackers = start_attacks(attack, *plan)
    life = threading.Thread(
        target=live,
        args=(server.port, legit, journal, "attack", attack.deadline),
        name="life",
        daemon=True,
    )
    life.start()
    try:
        attack.stop.wait(seconds)
    finally:
        attack.stop.set()
        attack.sockets.cut_all()
    cut_at = time.monotonic()
    monitor.phase = "recovery"
    back = recovery(server, journal, threshold, cut_at)
    for thread in attackers:
        thread.join(max(0.1, cut_at + JOIN_TIMEOUT - time.monotonic()))
    life.join(2 * CLIENT_TIMEOUT + JOIN_TIMEOUT)
    return tallies, back


def spool_after_drain(server: Server) -> int:
    """The spool bytes once the requests the server still holds from the attack are done
    (it is back to zero), or after SPOOL_DRAIN seconds: then the probe counts from there."""
    spool = 0
    for _ in range(math.ceil(SPOOL_DRAIN / SAMPLE_EVERY)):
        _, spool = fds_and_spool(server.proc.pid, server.spool_dirs)
        if spool == 0:
            break
        time.sleep(SAMPLE_EVERY)
    return spool


def refused_post(server: Server, fill: Request) -> tuple[int, str]:
    """The spool one anonymous 60 MiB POST costs with nothing else running, sampled every
    10 ms; and the answer it got."""
    try:
        before = spool_after_drain(server)
    except FileNotFoundError:
        return 0, "not sent: the server is gone"
    attack = Attack(Sockets(server.port), time.monotonic() + ANSWER_TIMEOUT)
    with Monitor(server, PROBE_SAMPLE_EVERY, ANSWER_TIMEOUT + JOIN_TIMEOUT, "refused") as fast:
        outcome = exchange(attack, ATTACKERS[0], fill)
    peak = fast.peaks.get("refused", {}).get("spool_bytes", 0.0)
    return max(0, int(peak) - before), plain(outcome) if isinstance(outcome, Answer) else outcome


def stored_cross_site(server: Server) -> int | None:
    """The cross-site uploads the server stored, from its audit log: one whose answer was
    lost (a server dying before it answered) is still counted."""
    try:
        lines = server.cli("audit", "--json", "--limit", "10000000").splitlines()
    except (RuntimeError, subprocess.TimeoutExpired):
        return None
    entries: list[dict[str, str]] = [json.loads(line) for line in lines]
    return sum(e["action"] == "upload" and e["project"] == CROSS_SITE for e in entries)


@dataclasses.dataclass(frozen=True)
class Outcome:
    journal: Journal
    peaks: dict[str, dict[str, float]]
    tallies: dict[str, Tally]
    back: float | None  # seconds back to quiet
    threshold: float  # a probe "as quiet" answers within this
    refused: tuple[int, str]  # spool bytes and answer of the refused POST alone
    cross_site_stored: int | None  # None: the audit log could not be read
    server_exit: int | None
    server_log: str  # its tail, kept when the server died: the temp folder goes
