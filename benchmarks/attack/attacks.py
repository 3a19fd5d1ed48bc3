"""The attack plan: what each request-loop attack (c to h) sends, built once before the
clock starts, how its answers are judged, and one thread per worker from the two attacker
addresses, beside the socket-juggling attacks (a, b)."""

from __future__ import annotations

import functools
import itertools
import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from benchmarks.attack.archives import BOMB_MEMBERS, MIB, wheel_bytes
from benchmarks.attack.forms import post, twine_parts, upload_head
from benchmarks.attack.rawhttp import Answer, Attack, Request, Tally, exchange
from benchmarks.attack.slow_clients import SLOW_READERS, SLOWLORIS_SOCKETS, slow_reader, slowloris
from benchmarks.attack.target import PASSWORD, USER
from benchmarks.load import basic_header
from tests.helpers.distfactory import Dist

ATTACKERS = ("127.0.0.2", "127.0.0.3")
CROSS_SITE = "cross-site"
EVIL = "evil.example"
FILL_SIZE = 60 * MIB
TEXT_FIELDS, TEXT_FIELD_SIZE = 16, 4 * MIB
FILE_PARTS = 995
WORKERS = {"c": 5, "d": 2, "e": 3, "f wheel": 1, "f sdist": 1, "g": 1, "h": 1}
ATTEMPT_PAUSE = 0.05
MAX_ATTEMPTS = 100_000  # per worker: with the pause, time always ends a loop first
TITLES = {
    "a": f"slowloris, {SLOWLORIS_SOCKETS} sockets per address",
    "b": f"slow reader, {SLOW_READERS} sockets x 2 pipelined GETs",
    "c": "anonymous 60 MiB POSTs (disk fill)",
    "d": f"{TEXT_FIELDS} text fields of 4 MiB (memory)",
    "e": f"{FILE_PARTS} file parts (fd exhaustion)",
    "f wheel": f"wheel of {BOMB_MEMBERS} entries",
    "f sdist": f"sdist of {BOMB_MEMBERS} members",
    "g": "cross-site form post with a password",
    "h": f"GET /simple with Host: {EVIL}",
}

Build = Callable[[], Request]
Judge = Callable[[Answer], str]


def plain(answer: Answer) -> str:
    return f"{answer.status}" + (" before the body's end" if answer.early else "")


def host_judge(answer: Answer) -> str:
    if answer.location is None:
        return f"{answer.status} without Location"
    if re.match(r"^([a-z][a-z0-9+.-]*:)?//", answer.location, re.IGNORECASE):
        return f"{answer.status} ABSOLUTE Location {answer.location}"
    return f"{answer.status} relative Location"


def request_loop(
    attack: Attack,
    source: str,
    tally: Tally,
    build: Build,
    judge: Judge,
) -> None:
    """Requests one after another from `source`, each on a new connection, until the
    attack ends; every outcome, answer or error, goes into the tally."""
    for _ in range(MAX_ATTEMPTS):
        if attack.over():
            return
        outcome = exchange(attack, source, build())
        tally.note(judge(outcome) if isinstance(outcome, Answer) else outcome)
        attack.stop.wait(ATTEMPT_PAUSE)


def always(request: Request) -> Build:
    return lambda: request


def fill_request(port: int) -> Request:
    """An anonymous upload whose Content-Length is exactly 60 MiB (random bytes)."""
    filename = Dist("filler", "1.0").wheel_name
    overhead = sum(map(len, post(port, [*upload_head("filler"), ("content", filename, b"")]).body))
    content = os.urandom(FILL_SIZE - overhead)
    return post(port, [*upload_head("filler"), ("content", filename, content)])


def request_loops(
    port: int, token: str, bombs: tuple[Path, Path]
) -> dict[str, tuple[Build, Judge]]:
    """What each request-loop attack (c to h) sends, built once before the clock starts."""
    with_token = {"Authorization": basic_header("__token__", token)}
    block = b"x" * TEXT_FIELD_SIZE  # one object, referenced by all 16 fields
    text = [(f"comment_{number}", None, block) for number in range(TEXT_FIELDS)]
    tiny = [("content", f"part{number}.whl", b"x") for number in range(FILE_PARTS)]
    fixed = {
        "c": fill_request(port),
        "d": post(port, [*upload_head("text-fields"), *text], with_token),
        "e": post(port, [*upload_head("many-parts"), *tiny], with_token),
        **{
            f"f {kind}": post(port, twine_parts(path.name, path.read_bytes()), with_token)
            for kind, path in zip(("wheel", "sdist"), bombs, strict=True)
        },
        "h": Request(f"GET /simple HTTP/1.1\r\nHost: {EVIL}\r\n\r\n".encode()),
    }
    cross_site = {
        "Authorization": basic_header(USER, PASSWORD),
        "Origin": f"http://{EVIL}",
        "Sec-Fetch-Site": "cross-site",
    }
    versions = itertools.count(1)

    def cross_site_post() -> Request:
        # A new version each time: an accepted post would publish a file, not find it there.
        dist = Dist(CROSS_SITE, f"1.0.{next(versions)}")
        return post(port, twine_parts(dist.wheel_name, wheel_bytes(dist)), cross_site)

    loops: dict[str, tuple[Build, Judge]] = {
        key: (always(request), host_judge if key == "h" else plain)
        for key, request in fixed.items()
    }
    loops["g"] = (cross_site_post, plain)
    return loops


def start_attacks(
    attack: Attack, loops: Mapping[str, tuple[Build, Judge]], public_path: str, skip: set[str]
) -> tuple[dict[str, Tally], list[threading.Thread]]:
    """One thread per worker; `skip` holds the letters of the attacks left out."""
    tallies = {key: Tally() for key in TITLES if key[0] not in skip}
    jobs: list[Callable[[], None]] = []
    for source in ATTACKERS:
        if "a" in tallies:
            jobs.append(functools.partial(slowloris, attack, source, tallies["a"]))
        if "b" in tallies:
            readers = SLOW_READERS // len(ATTACKERS)
            jobs.append(
                functools.partial(slow_reader, attack, source, tallies["b"], readers, public_path)
            )
    # Workers take the addresses in turn across attacks, so one-worker attacks alternate.
    sources = itertools.cycle(ATTACKERS)
    for key, (build, judge) in loops.items():
        for _ in range(WORKERS[key] if key in tallies else 0):
            tally = tallies[key]
            jobs.append(functools.partial(request_loop, attack, next(sources), tally, build, judge))
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    return tallies, threads
