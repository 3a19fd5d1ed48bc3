"""What the access log costs a request: in process, and on a served page, old against new.

    python -m benchmarks.access_log                       # this checkout only
    python -m benchmarks.access_log --old /tmp/old-tree   # and another checkout, interleaved

1. In process: `accesslog.AccessLog` around a WSGI app that answers a cached page (a list
   of bytes, as the fast path does), logging set up by `server.configure_logging` as
   `minirepo serve` does it, the stream a file (`/dev/null`). Microseconds per request,
   above the same call at `log_level = warning` (no line), for the text and the JSON line,
   anonymous and with a Basic header (the caller is parsed from it); each measured in a
   fresh process pinned to CPU 0, `--rounds` times, the checkouts alternating; the median.
2. Served (`--seconds` > 0): three `minirepo serve` per checkout (`log_level = warning`,
   no line, the bar; info with the text line; info with the JSON line) on the benchmark
   corpus (`--projects` x 1 version), each logging to a file; wrk (c=1 and c=16, after a
   1 s warm-up) on 50 cached project pages, each server in turn with the others frozen,
   `--turns` turns; the median.

Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import corpus as corpus_mod
from benchmarks import load, servers
from benchmarks.servers import Handle

NEW = servers.CHECKOUT
# Run as a script with PYTHONPATH set to the checkout measured, so that checkout's minirepo
# is the one imported (and no `benchmarks` package of its own is needed).
PROBE = Path(__file__).resolve().parent / "access_log_probe.py"


def in_process(checkouts: dict[str, Path], rounds: int, requests: int) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in checkouts}
    for turn in range(rounds):
        order = list(checkouts.items())
        for name, source in order if turn % 2 == 0 else order[::-1]:
            env = {**os.environ, "PYTHONPATH": str(source)}
            out = subprocess.run(
                servers._pinned([sys.executable, str(PROBE), str(requests)]),
                env=env,
                cwd=source,
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            ).stdout
            for case, value in json.loads(out.strip().splitlines()[-1]).items():
                samples[name].setdefault(case, []).append(value)
    return {
        name: {case: statistics.median(values) for case, values in cases.items()}
        for name, cases in samples.items()
    }


def served(
    checkouts: dict[str, Path], args: argparse.Namespace, work: Path
) -> dict[str, dict[str, float]]:
    corpus = corpus_mod.build(
        args.cache / f"corpus-{args.projects}-1", args.projects, 1, 0, sdists=False
    )
    sample = corpus.projects[:: max(1, len(corpus.projects) // 50)][:50]
    paths = [f"/simple/{project}/" for project in sample]
    variants = [
        (name, level, fmt)
        for name in checkouts
        for level, fmt in (("warning", "text"), ("info", "text"), ("info", "json"))
    ]
    handles: dict[str, Handle] = {}
    try:
        for name, level, fmt in variants:
            label = f"{name}, {level}" + (f" {fmt}" if level == "info" else "")
            folder = work / label.replace(" ", "-").replace(",", "")
            folder.mkdir()
            handle = servers.start_minirepo(
                folder,
                args.threads,
                checkouts[name],
                label,
                {"MINIREPO_LOG_LEVEL": level, "MINIREPO_LOG_FORMAT": fmt},
            )
            handles[label] = handle
            load.bulk_upload(handle.upload_url, handle.bulk_headers, corpus.files)
        rates: dict[str, dict[str, list[float]]] = {label: {} for label in handles}
        for _ in range(args.turns):
            for connections in (1, 16):
                for label, handle in handles.items():
                    others = [h.proc.pid for key, h in handles.items() if key != label and h.proc]
                    with load.frozen(others):
                        load.wrk(handle.base, paths, {"Accept": "text/html"}, connections, 1)
                        result = load.wrk(
                            handle.base, paths, {"Accept": "text/html"}, connections, args.seconds
                        )
                    rates[label].setdefault(f"c={connections}", []).append(result.rps)
    finally:
        for handle in handles.values():
            handle.stop()
    return {
        label: {key: statistics.median(values) for key, values in cells.items()}
        for label, cells in rates.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", type=Path, help="another checkout, measured beside this one")
    parser.add_argument("--rounds", type=int, default=5, help="in-process rounds per checkout")
    parser.add_argument("--requests", type=int, default=20000, help="requests per batch")
    parser.add_argument("--seconds", type=float, default=3.0, help="each wrk run (0: none)")
    parser.add_argument("--turns", type=int, default=3, help="turns of the served rows")
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=servers.cache_dir())
    args = parser.parse_args()
    if not (
        1 <= args.rounds <= 50
        and 1 <= args.requests <= 1_000_000
        and 0 <= args.seconds <= 60
        and 1 <= args.turns <= 20
    ):
        parser.error("bounds: --rounds 1..50, --requests 1..1e6, --seconds 0..60, --turns 1..20")
    checkouts = {"old": args.old.resolve()} if args.old else {}
    checkouts["new"] = NEW
    results: dict[str, Any] = {
        "in process, us per request": in_process(checkouts, args.rounds, args.requests)
    }
    if args.seconds:
        with tempfile.TemporaryDirectory(prefix="minirepo-access-log-") as tmp:
            results["served, req/s"] = served(checkouts, args, Path(tmp))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
