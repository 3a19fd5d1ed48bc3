"""This checkout's minirepo against another checkout's, in one run, interleaved.

    git worktree add /tmp/minirepo-old <commit>
    python -m benchmarks.before_after --old /tmp/minirepo-old
    git worktree remove --force /tmp/minirepo-old

For targets such as "at least 0.95x today's rows": both run from the same interpreter and
packages, each in its own data folder with the same corpus (P x V, uploaded) and the same
population (`benchmarks/population.py`: what each schema allows), pinned like the main run,
the one not measured frozen, and repeats going round the two. It measures the anonymous
page rows (project page and root, HTML and JSON, c=1 and c=16), the auth phase's cells
(`run.auth_figures`), then twine uploads of `--uploads` new wheels (files/s,
`run.upload_rates`) and the download of a `--big-mb` MiB wheel both serve (MB/s,
`run.download_figures`), and prints each figure, new/old, and each authenticated cell's
ratio to the anonymous cell of the same page and phase. Peers take no part.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from pathlib import Path

from benchmarks import corpus as corpus_mod
from benchmarks import load, run, servers
from benchmarks.servers import Handle
from tests.helpers.distfactory import Dist

OLD, NEW = "minirepo-old", "minirepo"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", type=Path, required=True, help="the other checkout")
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3, help="turns of the page rows")
    parser.add_argument("--auth-repeats", type=int, default=run.AUTH_REPEATS)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--no-population", action="store_true")
    parser.add_argument(
        "--no-pages", action="store_true", help="no page rows (the auth phase and the rest run)"
    )
    parser.add_argument(
        "--uploads", type=int, default=100, help="new wheels per twine upload (0: no upload row)"
    )
    parser.add_argument("--upload-repeats", type=int, default=5, help="turns of the upload row")
    parser.add_argument(
        "--big-mb", type=int, default=100, help="MiB of the downloaded wheel (0: no download row)"
    )
    parser.add_argument("--download-repeats", type=int, default=7, help="turns of the download")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/before_after.json"))
    parser.add_argument("--cache", type=Path, default=servers.cache_dir())
    args = parser.parse_args()
    run.ensure_tools()
    corpus = corpus_mod.build(
        args.cache / f"corpus-{args.projects}-{args.versions}-full",
        args.projects,
        args.versions,
        0,  # the big wheel comes after the pages (`_big_wheel`), at --big-mb
        sdists=True,
    )
    label = f"P={args.projects}"
    out: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="minirepo-before-after-") as tmp:
        handles: dict[str, Handle] = {}
        try:
            for name, source in ((OLD, args.old.resolve()), (NEW, servers.CHECKOUT)):
                folder = Path(tmp) / name
                folder.mkdir()
                with load.frozen(run.pids_of(handles.values())):
                    handles[name] = servers.start_minirepo(folder, args.threads, source, name)
            for handle in handles.values():
                seconds = load.timed(
                    functools.partial(
                        load.bulk_upload, handle.upload_url, handle.bulk_headers, corpus.files
                    )
                )
                print(f"  loaded {len(corpus.files)} files into {handle.name} in {seconds:.1f}s")
                if not args.no_population:
                    made = servers.populate_minirepo(handle, corpus.projects)
                    out[f"population {handle.name}"] = made
                    print(f"  populated {handle.name}: {_summary(made)}", flush=True)
            load.settle(run.pids_of(handles.values()))
            rows: dict[str, dict[str, float | None]] = {}
            units: dict[str, str] = {}
            if not args.no_pages:
                rows.update(_page_rows(handles, corpus.projects, label, args))
            medians = run.auth_figures(handles, corpus.projects, args.auth_repeats, args.seconds)
            for cell in run.auth_cells(handles[NEW]):
                what, conns, kind = cell
                rows[run.auth_metric(what, label, kind, conns)] = {
                    name: medians[name].get(cell) for name in handles
                }
            ratios = {
                name: {
                    run.auth_metric(what, label, kind, conns): run.quotient(
                        figures.get((what, conns, kind)), figures.get((what, conns, "anonymous"))
                    )
                    for what, conns, kind in run.auth_cells(handles[name])
                    if kind != "anonymous"
                }
                for name, figures in medians.items()
            }
            units.update(dict.fromkeys(rows, "req/s"))
            # After the pages: the uploaded projects would grow the root page.
            if args.uploads:
                metric = f"twine upload of {args.uploads} files"
                rates = run.upload_rates(
                    handles, handles, Path(tmp), args.uploads, args.upload_repeats
                )
                rows[metric], units[metric] = dict(rates), "file/s"
                print(f"  {metric}: {rows[metric]}", flush=True)
            if args.big_mb:
                big = _big_wheel(args.cache, args.big_mb)
                for handle in handles.values():
                    load.bulk_upload(handle.upload_url, handle.bulk_headers, [big])
                load.settle(run.pids_of(handles.values()))
                paths = run.big_wheel_paths(handles, big.name)
                speeds, growth = run.download_figures(handles, paths, args.download_repeats)
                metric = f"{args.big_mb} MB download"
                rows[metric], units[metric] = dict(speeds), "MB/s"
                out["download RSS growth, MB (worst repeat)"] = growth
                print(f"  {metric}: {rows[metric]}, RSS growth (MB): {growth}", flush=True)
        finally:
            for handle in handles.values():
                handle.stop()
    width = max(map(len, rows))
    print(f"\n{'metric':{width}} {'unit':6} {OLD:>12} {NEW:>10} {'new/old':>8}")
    for metric, values in rows.items():
        old, new = values.get(OLD), values.get(NEW)
        times = run.quotient(new, old)
        print(
            f"{metric:{width}} {units[metric]:6} {run._fmt(old):>12} {run._fmt(new):>10} "
            f"{'-' if times is None else f'{times:.3f}x':>8}"
        )
    print(f"\n{'authenticated / anonymous, same phase':{width + 7}} {OLD:>12} {NEW:>10}")
    for metric in ratios[NEW]:
        shown = [ratios[name].get(metric) for name in (OLD, NEW)]
        cells = [("-" if r is None else f"{r:.3f}x") for r in shown]
        print(f"{metric:{width + 7}} {cells[0]:>12} {cells[1]:>10}")
    out.update({"rows": rows, "units": units, "auth_ratios": ratios})
    args.json.write_text(json.dumps(out, indent=2))
    print(f"\nwritten to {args.json}")


def _summary(made: dict[str, object]) -> str:
    return (
        f"{made['repositories']} repositories, {made['users']} users, {made['grants']} grants, "
        f"{made['tokens']} tokens ({made['schema']} schema) in {made['seconds']}s"
    )


def _big_wheel(cache: Path, size_mb: int) -> Path:
    """The corpus's big wheel at `size_mb` MiB, cached per size (`corpus.build` keeps the
    first size it made in a corpus folder), written whole or not at all."""
    wheel = cache / f"big-wheel-{size_mb}" / Dist("big-wheel", "1.0").wheel_name
    if not wheel.exists():
        wheel.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheel.parent) as part:
            corpus_mod.make_big_wheel(Path(part), size_mb).rename(wheel)
    return wheel


def _page_rows(
    handles: dict[str, Handle], projects: list[str], label: str, args: argparse.Namespace
) -> dict[str, dict[str, float | None]]:
    """The anonymous page rows of `run.measure_pages`, for the two handles."""
    sample = run.page_sample(projects)
    run.warm_up(handles.values(), sample)
    rows = {}
    for fmt, accept in (("HTML", run.HTML_ACCEPT), ("JSON", run.JSON_ACCEPT)):
        for conns in (1, 16):
            for what in ("project page", "root index"):
                asks = {
                    name: run.Ask(
                        [h.project_path(p) for p in sample]
                        if what == "project page"
                        else [h.simple_prefix],
                        {"Accept": accept},
                    )
                    for name, h in handles.items()
                }
                figures = run.wrk_figures(asks, handles, conns, args)
                metric = run.page_metric(what, fmt, label, conns)
                rows[metric] = {name: f.rps if f else None for name, f in figures.items()}
                print(f"  {metric}: {rows[metric]}", flush=True)
    return rows


if __name__ == "__main__":
    main()
