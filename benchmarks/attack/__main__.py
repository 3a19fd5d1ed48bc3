"""`python -m benchmarks.attack`: the options, and the run from the server's start to the
report; the package's docstring (`__init__.py`) is the help text."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import requests

import benchmarks.attack
from benchmarks.attack.archives import cached_bombs
from benchmarks.attack.attacks import TITLES, request_loops
from benchmarks.attack.legit import CLIENT_TIMEOUT, Journal, Legit
from benchmarks.attack.monitor import SAMPLE_EVERY, Monitor
from benchmarks.attack.phases import (
    RECOVERY_FACTOR,
    RECOVERY_LIMIT,
    RECOVERY_SLACK,
    SPOOL_DRAIN,
    Outcome,
    attack_phase,
    live,
    refused_post,
    stored_cross_site,
)
from benchmarks.attack.rawhttp import ANSWER_TIMEOUT
from benchmarks.attack.report import as_json, checks, render, summary
from benchmarks.attack.target import set_up, start_server
from benchmarks.servers import CHECKOUT, cache_dir, minirepo_venv
from minirepo import config
from minirepo.errors import UserError


def run(args: argparse.Namespace, folder: Path, python: str, pin: bool) -> Outcome:
    """Setup, quiet, attack, recovery and the refused POST, in order; the server, the
    clients and the monitor live only within the ExitStack, so that an error or a SIGTERM
    anywhere still stops them all."""
    journal = Journal()
    bombs = cached_bombs(args.cache)
    total = args.quiet_seconds + args.seconds + 4 * CLIENT_TIMEOUT + RECOVERY_LIMIT
    total += SPOOL_DRAIN + ANSWER_TIMEOUT
    with contextlib.ExitStack() as stack:
        server = start_server(folder, python, args.source, dict(args.server_setting), pin)
        stack.callback(server.stop)
        print(f"minirepo serving {server.base} (pid {server.proc.pid}); setting up", flush=True)
        try:
            token, public_path = set_up(server, folder)
        except (RuntimeError, requests.RequestException) as exc:
            raise RuntimeError(f"{exc}\nThe server's log ends with:\n{server.log_tail()}") from exc
        loops = request_loops(server.port, token, bombs)
        work = folder / "client"
        work.mkdir()
        legit = Legit(server.base, token, work, journal)
        stack.callback(legit.kill_all)
        monitor = stack.enter_context(Monitor(server, SAMPLE_EVERY, total, "quiet"))
        print(f"quiet for {args.quiet_seconds:g} s", flush=True)
        live(server.port, legit, journal, "quiet", time.monotonic() + args.quiet_seconds)
        quiet_p99 = summary(journal.of("health", "quiet"))["p99"] or 0.0
        threshold = max(RECOVERY_FACTOR * quiet_p99, quiet_p99 + RECOVERY_SLACK)
        print(f"attack for {args.seconds:g} s, then recovery", flush=True)
        tallies, back = attack_phase(
            server,
            legit,
            journal,
            monitor,
            (loops, public_path, set(args.skip)),
            args.seconds,
            threshold,
        )
        print("the refused POST alone", flush=True)
        monitor.phase = "drain+refused"
        refused = refused_post(server, loops["c"][0]())
        stored = stored_cross_site(server)
        died = server.proc.poll()
        tail = server.log_tail() if died is not None else ""
        outcome = Outcome(
            journal, monitor.peaks, tallies, back, threshold, refused, stored, died, tail
        )
    return outcome


def positive(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 3600 seconds")
    return value


def setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return config.ENV_PREFIX + key.strip().upper(), value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.attack",  # not "__main__.py"
        description=benchmarks.attack.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quiet-seconds", type=positive, default=20.0)
    parser.add_argument("--seconds", type=positive, default=60.0, help="the attack's length")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--server-setting",
        type=setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a minirepo setting, given to the server as MINIREPO_KEY (repeatable)",
    )
    parser.add_argument(
        "--python",
        choices=("runtime", "current"),
        default="runtime",
        help="the server's interpreter: the cached venv of minirepo's runtime dependencies "
        "(as on a server: no psycopg) or this one; the code is this checkout's either way",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=CHECKOUT,
        help="the checkout whose minirepo runs (default: this one), e.g. an older commit's "
        "tree from `git archive`, to see the attacks against it",
    )
    parser.add_argument(
        "--skip",
        choices=sorted({key[0] for key in TITLES}),
        action="append",
        default=[],
        help="leave this attack out (repeatable), to see what another one does alone",
    )
    parser.add_argument("--no-pin", action="store_true", help="leave server and clients unpinned")
    parser.add_argument("--cache", type=Path, default=cache_dir(), help="where the bombs are kept")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit status 1 when a target fails, so that a script can gate on the run."""
    args = parse_args(argv)
    try:
        effective = config.load(None, dict(args.server_setting))
    except UserError as exc:
        raise SystemExit(f"--server-setting: {exc}") from exc
    # A SIGTERM must run the cleanup too: sockets, clients, server, temp folder.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    pin = not args.no_pin and {0, 1} <= os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, {1})  # this thread: every later thread and child inherits it
    python = str(minirepo_venv() / "bin/python") if args.python == "runtime" else sys.executable
    with tempfile.TemporaryDirectory(prefix="minirepo-attack-", ignore_cleanup_errors=True) as tmp:
        outcome = run(args, Path(tmp), python, pin)
    verdicts = checks(outcome, effective.spool_limit)
    print()
    print(render(outcome, verdicts))
    if args.json:
        args.json.write_text(
            json.dumps(as_json(args, outcome, verdicts, effective.spool_limit), indent=2)
        )
        print(f"\nwritten to {args.json}")
    return 0 if all(check.passed for check in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
