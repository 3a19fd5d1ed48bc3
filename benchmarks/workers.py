"""`serve --workers 2` against one worker: cached simple pages at c=16, in one run.

    python -m benchmarks.workers [--projects 500 --versions 3 --seconds 5 --repeats 5]

Issue 18's target: on this 2-core machine two workers answer cached pages at c=16 at least
1.3x the req/s of one. Unlike the other rows, nothing is pinned: the servers may use both
cores (that is the point) and wrk shares them, as it would on a box serving its LAN. Two
servers with the same corpus run side by side, each in its own data folder, and their
runs alternate turn by turn (the order flipping each turn) so a drift of the machine hits
both alike; each figure is the median turn.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks import load, pagerun, run, servers

ALL_CORES = "0-1"
CONNECTIONS = 16


def main() -> None:
    parser = pagerun.parser(__doc__, "workers", seconds=5.0, repeats=5)
    args = parser.parse_args()
    run.ensure_tools()
    # Read at each launch: the servers and wrk may run on every core.
    servers.SERVER_CPU = load.LOAD_CPU = ALL_CORES
    corpus = pagerun.build_corpus(args)
    sample = run.page_sample(corpus.projects)
    figures: dict[str, list[float]] = {"1 worker": [], "2 workers": []}
    with tempfile.TemporaryDirectory(prefix="minirepo-workers-") as tmp:
        handles = {}
        try:
            for what, count in (("1 worker", "1"), ("2 workers", "2")):
                folder = Path(tmp) / what.replace(" ", "-")
                folder.mkdir()
                handle = servers.start_minirepo(
                    folder, args.threads, name=what, settings={"MINIREPO_WORKERS": count}
                )
                handles[what] = handle
                load.bulk_upload(handle.upload_url, handle.bulk_headers, corpus.files)
            for handle in handles.values():  # the first view renders and caches each page
                paths = [handle.project_path(project) for project in sample]
                load.wrk(handle.base, paths, {"Accept": run.HTML_ACCEPT}, 1, 1)
            for turn in range(args.repeats):
                order = list(handles) if turn % 2 == 0 else list(reversed(handles))
                for what in order:
                    handle = handles[what]
                    paths = [handle.project_path(project) for project in sample]
                    result = load.wrk(
                        handle.base, paths, {"Accept": run.HTML_ACCEPT}, CONNECTIONS, args.seconds
                    )
                    if result.errors:
                        raise SystemExit(f"{what}: {result.errors} failed requests")
                    figures[what].append(result.rps)
                    print(f"  turn {turn + 1}, {what}: {result.rps:.0f} req/s", flush=True)
        finally:
            for handle in handles.values():
                handle.stop()
    medians = {what: sorted(rps)[len(rps) // 2] for what, rps in figures.items()}
    ratio = medians["2 workers"] / medians["1 worker"]
    print()
    for what, rps in medians.items():
        print(f"cached project pages, c={CONNECTIONS}, {what}: {rps:.0f} req/s")
    print(f"2 workers / 1 worker: {ratio:.2f}x (target >= 1.3x)")
    args.json.write_text(
        json.dumps(
            {
                "args": vars(args) | {"json": str(args.json), "cache": ""},
                "turns": figures,
                "medians": medians,
                "ratio": ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
