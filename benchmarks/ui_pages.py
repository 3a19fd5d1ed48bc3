"""The web UI's anonymous pages against the simple page, on one server, in one run.

    python -m benchmarks.ui_pages [--projects 500 --versions 3 --seconds 3 --repeats 3]

Issue 17's target: a repository page (`/main/`) and a project page
(`/main/project/<name>/`) viewed anonymously answer at least 0.9x the req/s of the simple
page, at c=1 and c=16: each against the simple page of its kind (the project page against
`/simple/<name>/`, the repository page, a listing of 50 projects and the setup panel, about
15 KB, against the root index `/simple/`, a listing of all of them, about 20 KB), and both
also against the simple project page (2 KB), the smallest page there is. All come from the same
`minirepo serve` with the same corpus; the rows go round in turns (repeats outside, rows
inside) so a drift of the machine hits each row alike, and each figure is the median
turn. A browser's `Accept` is sent to the UI pages, pip's to the simple page.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks import load, pagerun, run, servers

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def main() -> None:
    parser = pagerun.parser(__doc__, "ui_pages", seconds=3.0, repeats=3)
    args = parser.parse_args()
    run.ensure_tools()
    corpus = pagerun.build_corpus(args)
    sample = run.page_sample(corpus.projects)
    rows: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="minirepo-ui-pages-") as tmp:
        handle = servers.start_minirepo(Path(tmp), args.threads)
        try:
            load.bulk_upload(handle.upload_url, handle.bulk_headers, corpus.files)
            asks = {
                "simple project page": ([handle.project_path(p) for p in sample], run.HTML_ACCEPT),
                "simple root index": ([handle.simple_prefix], run.HTML_ACCEPT),
                "UI project page": ([f"/main/project/{p}/" for p in sample], BROWSER_ACCEPT),
                "UI repository page": (["/main/", "/main/?page=2"], BROWSER_ACCEPT),
            }
            for paths, accept in asks.values():  # the first view renders and caches each
                load.wrk(handle.base, paths, {"Accept": accept}, 1, 1)
            load.settle(handle.pids)
            for conns in (1, 16):
                turns: dict[str, list[float]] = {what: [] for what in asks}
                for _ in range(args.repeats):
                    for what, (paths, accept) in asks.items():
                        result = load.wrk(
                            handle.base, paths, {"Accept": accept}, conns, args.seconds
                        )
                        if result.errors:
                            raise SystemExit(f"{what}: {result.errors} failed requests")
                        turns[what].append(result.rps)
                for what, figures in turns.items():
                    rows.setdefault(what, {})[conns] = sorted(figures)[len(figures) // 2]
                    print(f"  {what} c={conns}: {rows[what][conns]:.0f} req/s", flush=True)
        finally:
            handle.stop()
    print()
    pairs = (
        ("UI project page", "simple project page"),
        ("UI repository page", "simple root index"),
        ("UI repository page", "simple project page"),
    )
    for what, baseline in pairs:
        for conns in (1, 16):
            ratio = rows[what][conns] / rows[baseline][conns]
            print(f"{what} / {baseline}, c={conns}: {ratio:.2f}x (target >= 0.9x)")
    args.json.write_text(
        json.dumps(
            {"args": vars(args) | {"json": str(args.json), "cache": ""}, "rows": rows}, indent=2
        )
    )


if __name__ == "__main__":
    main()
