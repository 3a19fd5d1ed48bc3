"""OSV advisories: pages with 50 000 records in force, the import's time and memory, pages
while an import runs, and the optional extras left unimported, in one run.

    python -m benchmarks.advisories [--records 50000 --names 5000 --seconds 5 --repeats 5
                                     --imports 3 --block high]
    python -m benchmarks.advisories --quick    # a smoke run: 2 000 records, 1 s runs

Issue 19's targets, each against a baseline measured in the same run:
- (a) cached simple project pages with the records in force >= 0.95x the same pages
  without any advisory, at c=1 and c=16. Two servers with the same corpus, both with
  `repo set main --block <level>`: one never imports, the other imports the records, whose
  package names include every corpus project (so verdicts are really worked out, and
  some files are listed as yanked). Rounds alternate the two servers, the other one frozen,
  each measured wrk run after an untimed 1 s one; figures are medians.
- (b) `minirepo advisories update --from <zip>` of the records: wall time <= 60 s and the
  CLI process's peak RSS (its own `wait4` rusage) <= 150 MiB. The first import fills empty
  tables; the next ones alternate two zips of different seeds (every record new or
  changed, the old generation deleted), the worst a full export can do. Each import runs
  the benchmark venv's `python -m minirepo`, pinned to the load CPU: the server keeps its
  core, as a second core of the box would leave it (on the server's own core the import
  takes half the CPU whatever the code does).
- (c) cached pages at c=16 while an import runs >= 0.8x the same server's pages with none
  running: in each import turn, `--quiet-runs` wrk runs before (or after, every other
  turn) and as many runs as fit inside the import; only runs that ended before the
  import did count. Medians of all quiet and all during runs.
- (d) the extras load lazily: both servers run in a venv holding the `attestations` and
  `cvss` extras, with `PYTHONPROFILEIMPORTTIME=1`, so their logs name every module they
  ever imported; after all the load, none of sigstore, pypi_attestations or cvss may be
  among them. Idle RSS after start on an empty data folder, with and without the extras
  installed, is printed beside it.

The zips (`benchmarks/osv_corpus.py`, ~20 s for 50 000 records) are cached beside the
corpus in `--cache`. Prints each figure and target, writes `--json` (benchmarks/
advisories.json; `--quick` writes nothing unless given one) and exits 1 when a target is
missed. Loopback only; every wrk run and import is bounded in time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks import load, osv_corpus, pagerun, run, servers
from tests.helpers.serverproc import base_env

CONNECTIONS = (1, 16)
DURING_CONNECTIONS = 16
EXTRAS = ("attestations", "cvss")
LAZY_MODULES = ("sigstore", "pypi_attestations", "cvss")
WITHOUT, WITH = "without advisories", "with advisories"
IMPORT_TIMEOUT = 900.0
# Issue 19's targets.
PAGES_WITH_VS_WITHOUT = 0.95
IMPORT_SECONDS = 60.0
IMPORT_RSS_MIB = 150.0
PAGES_DURING_VS_QUIET = 0.8


def osv_zip(args: argparse.Namespace, projects: list[str], seed: int) -> Path:
    """`--records` records about a pool of `--names` names, the corpus' projects first,
    written once into the cache."""
    path: Path = args.cache / f"osv-{args.records}-{len(projects)}of{args.names}-seed{seed}.zip"
    if not path.exists():
        print(f"writing {path.name} (once)", flush=True)
        pool = projects + osv_corpus.package_names(max(0, args.names - len(projects)))
        partial = path.with_suffix(".partial")
        osv_corpus.write_zip(partial, args.records, pool, seed)
        partial.rename(path)
    return path


def cli_env(handle: servers.Handle) -> dict[str, str]:
    assert handle.data is not None
    return base_env({"MINIREPO_DATA": str(handle.data), "PYTHONPATH": str(handle.source)})


def cli(handle: servers.Handle, venv: Path, *args: str) -> str:
    done = subprocess.run(
        [str(venv / "bin/python"), "-m", "minirepo", *args],
        env=cli_env(handle),
        cwd=handle.source,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


@dataclasses.dataclass(frozen=True)
class Imported:
    """One `advisories update`: its wall time, peak RSS and CPU (from `wait4`), and the
    line it printed."""

    zip: str
    seconds: float
    peak_rss_mib: float
    cpu_seconds: float
    said: str


class ImportRun:
    """`minirepo advisories update --from ZIP` in the background, pinned to the load CPU.

    A thread reaps it with `wait4` the moment it exits, so its wall time is not stretched
    by the wrk run in progress, and its rusage is its own (RUSAGE_CHILDREN would be the
    largest child so far, wrk included)."""

    def __init__(self, handle: servers.Handle, venv: Path, archive: Path, log: Path) -> None:
        self.archive = archive
        self.log = log
        cmd = [str(venv / "bin/python"), "-m", "minirepo", "advisories", "update"]
        cmd += ["--from", str(archive)]
        with log.open("w") as out:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                load.on_load_cpu(cmd),
                env=cli_env(handle),
                cwd=handle.source,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.done = threading.Event()
        self._result: Imported | None = None
        self._reaper = threading.Thread(target=self._reap, daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        _, status, usage = os.wait4(self.proc.pid, 0)
        seconds = time.perf_counter() - self.started
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._result = Imported(
            self.archive.name,
            seconds,
            usage.ru_maxrss / 1024,
            usage.ru_utime + usage.ru_stime,
            self.log.read_text().strip(),
        )
        self.done.set()

    def result(self) -> Imported:
        if not self.done.wait(IMPORT_TIMEOUT):
            self.proc.kill()
            self.done.wait(60)
            raise SystemExit(f"advisories update of {self.archive.name}: over {IMPORT_TIMEOUT} s")
        assert self._result is not None
        if self.proc.returncode != 0:
            raise SystemExit(f"advisories update failed: {self._result.said}")
        return self._result


@dataclasses.dataclass(frozen=True)
class PageRun:
    rps: float
    server_cpu: float  # the server's CPU seconds per second of the run (1.0: its core)


def page_run(handle: servers.Handle, sample: list[str], conns: int, seconds: float) -> PageRun:
    paths = [handle.project_path(project) for project in sample]
    used = load.cpu_seconds(handle.pids)
    started = time.perf_counter()
    result = load.wrk(handle.base, paths, {"Accept": run.HTML_ACCEPT}, conns, seconds)
    share = (load.cpu_seconds(handle.pids) - used) / (time.perf_counter() - started)
    if result.errors:
        raise SystemExit(f"{handle.name}: {result.errors} failed requests")
    return PageRun(result.rps, share)


def quiet_block(
    handle: servers.Handle, sample: list[str], args: argparse.Namespace
) -> list[PageRun]:
    page_run(handle, sample, DURING_CONNECTIONS, run.WARMUP_SECONDS)
    return [
        page_run(handle, sample, DURING_CONNECTIONS, args.seconds) for _ in range(args.quiet_runs)
    ]


def import_block(
    handle: servers.Handle, venv: Path, archive: Path, sample: list[str], args: argparse.Namespace
) -> tuple[Imported, list[PageRun]]:
    """The import, and the wrk runs that fit entirely inside it."""
    assert handle.data is not None
    running = ImportRun(handle, venv, archive, handle.data.parent / "import.log")
    during: list[PageRun] = []
    for _ in range(int(IMPORT_TIMEOUT // max(1.0, args.seconds))):
        if running.done.is_set():
            break
        figure = page_run(handle, sample, DURING_CONNECTIONS, args.seconds)
        if not running.done.is_set():
            during.append(figure)
    return running.result(), during


def import_turns(
    handle: servers.Handle,
    others: list[int],
    venv: Path,
    zips: list[Path],
    sample: list[str],
    args: argparse.Namespace,
) -> tuple[list[Imported], list[PageRun], list[PageRun]]:
    """(b) and (c): `--imports` imports into the server, the first into empty tables,
    then the two zips in turn; quiet runs before the import in even turns, after it in
    odd ones."""
    imports: list[Imported] = []
    quiet: list[PageRun] = []
    during: list[PageRun] = []
    with load.frozen(others):
        for turn in range(args.imports):
            if turn % 2 == 0:
                quiet += quiet_block(handle, sample, args)
            done, runs = import_block(handle, venv, zips[turn % 2], sample, args)
            if turn % 2 == 1:
                quiet += quiet_block(handle, sample, args)
            imports.append(done)
            during += runs
            print(
                f"  import {turn + 1} ({done.zip}): {done.seconds:.1f} s, peak RSS "
                f"{done.peak_rss_mib:.1f} MiB, CPU {done.cpu_seconds:.1f} s; pages during: "
                + ", ".join(f"{each.rps:.0f}" for each in runs)
                + f" req/s; {done.said}",
                flush=True,
            )
    return imports, quiet, during


def blocked_files(handle: servers.Handle, sample: list[str]) -> dict[str, int]:
    """What the sample's pages list: files, files yanked by the policy, pages with one."""
    counts = {"files": 0, "blocked": 0, "pages_with_blocked": 0}
    with requests.Session() as session:
        for project in sample:
            response = session.get(
                handle.base + handle.project_path(project),
                headers={"Accept": run.HTML_ACCEPT},
                timeout=60,
            )
            response.raise_for_status()
            blocked = response.text.count("blocked by minirepo policy")
            counts["files"] += response.text.count("<a ")
            counts["blocked"] += blocked
            counts["pages_with_blocked"] += blocked > 0
    return counts


def page_rounds(
    handles: dict[str, servers.Handle], sample: list[str], args: argparse.Namespace
) -> dict[int, dict[str, list[float]]]:
    """(a): for each c, `--repeats` rounds going round both servers, the other frozen."""

    def measure(handle: servers.Handle) -> float:
        page_run(handle, sample, conns, run.WARMUP_SECONDS)
        return page_run(handle, sample, conns, args.seconds).rps

    rounds = {}
    for conns in CONNECTIONS:
        rounds[conns] = run.interleaved(handles, handles, args.repeats, measure)
        for name, figures in rounds[conns].items():
            shown = ", ".join(f"{figure:.0f}" for figure in figures)
            print(f"  c={conns}, {name}: {shown} req/s", flush=True)
    return rounds


def imported_modules(log: Path) -> set[str]:
    """The top-level packages a process started with PYTHONPROFILEIMPORTTIME imported."""
    found = re.findall(r"^import time:.*\|\s+(\S+)\s*$", log.read_text(), re.MULTILINE)
    return {name.split(".")[0] for name in found}


def idle_rss(folder: Path, venv: Path, threads: int) -> float:
    """RSS after the first answer, on an empty data folder."""
    folder.mkdir()
    handle = servers.start_minirepo(folder, threads, venv=venv)
    try:
        return load.rss_mb(handle.pids)
    finally:
        handle.stop()


def extras_check(
    handles: dict[str, servers.Handle], venv: Path, root: Path, threads: int
) -> dict[str, Any]:
    """(d): the extras are installed where the servers ran, and neither server imported
    them; idle RSS with and without them installed."""
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in %r))"
    importable = (
        subprocess.run([str(venv / "bin/python"), "-c", probe % (LAZY_MODULES,)]).returncode == 0
    )
    loaded = {}
    for name, handle in handles.items():
        assert handle.data is not None
        modules = imported_modules(handle.data.parent / "server.log")
        assert modules, "no import lines in the server log: PYTHONPROFILEIMPORTTIME unset?"
        loaded[name] = sorted(modules & set(LAZY_MODULES))
    return {
        "extras_installed": importable,
        "lazy_modules_imported": loaded,
        "idle_rss_mib_without_extras": idle_rss(root / "plain", servers.minirepo_venv(), threads),
        "idle_rss_mib_with_extras": idle_rss(root / "extras", venv, threads),
    }


def verdicts(
    rounds: dict[int, dict[str, list[float]]],
    imports: list[Imported],
    quiet: list[PageRun],
    during: list[PageRun],
    extras: dict[str, Any],
) -> list[run.Verdict]:
    found = []
    for conns, figures in rounds.items():
        target = f"(a) pages c={conns}, {WITH} / {WITHOUT}"
        ratio = statistics.median(figures[WITH]) / statistics.median(figures[WITHOUT])
        found.append(run.Verdict(target, ratio, "x", PAGES_WITH_VS_WITHOUT, True))
    worst_seconds = max(each.seconds for each in imports)
    worst_rss = max(each.peak_rss_mib for each in imports)
    found.append(run.Verdict("(b) import, slowest", worst_seconds, "s", IMPORT_SECONDS, False))
    found.append(run.Verdict("(b) import, peak RSS", worst_rss, "MiB", IMPORT_RSS_MIB, False))
    during_ratio = run.quotient(
        statistics.median(each.rps for each in during) if during else None,
        statistics.median(each.rps for each in quiet),
    )
    target = f"(c) pages c={DURING_CONNECTIONS} during import / quiet"
    found.append(run.Verdict(target, during_ratio, "x", PAGES_DURING_VS_QUIET, True))
    imported = sum(len(modules) for modules in extras["lazy_modules_imported"].values())
    # No figure when the extras are not installed: then nothing shows they load lazily.
    count = float(imported) if extras["extras_installed"] else None
    found.append(run.Verdict("(d) extras' modules the servers imported", count, "", 0, False))
    return found


def start(
    root: Path, name: str, venv: Path, args: argparse.Namespace, corpus_files: list[Path]
) -> servers.Handle:
    folder = root / name.replace(" ", "-")
    folder.mkdir()
    handle = servers.start_minirepo(
        folder, args.threads, name=name, settings={"PYTHONPROFILEIMPORTTIME": "1"}, venv=venv
    )
    load.bulk_upload(handle.upload_url, handle.bulk_headers, corpus_files)
    cli(handle, venv, "repo", "set", "main", "--block", args.block)
    return handle


def arguments() -> argparse.Namespace:
    parser = pagerun.parser(__doc__, "advisories", seconds=5.0, repeats=5)
    parser.set_defaults(json=None)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--names", type=int, default=5000, help="advisories' package name pool")
    parser.add_argument("--imports", type=int, default=3)
    parser.add_argument("--quiet-runs", type=int, default=3)
    parser.add_argument("--block", default="high", help="the block level of both servers' main")
    parser.add_argument("--quick", action="store_true", help="a smoke run, about a minute")
    args = parser.parse_args()
    if args.quick:
        args.projects, args.versions, args.records, args.names = 50, 2, 2000, 500
        args.seconds, args.repeats, args.imports, args.quiet_runs = 1.0, 2, 2, 1
    elif args.json is None:
        args.json = Path("benchmarks/advisories.json")
    return args


def main() -> None:
    args = arguments()
    run.ensure_tools()
    corpus = pagerun.build_corpus(args)
    sample = run.page_sample(corpus.projects)
    zips = [osv_zip(args, corpus.projects, seed) for seed in (0, 1)]
    venv = servers.minirepo_venv(*EXTRAS)
    handles: dict[str, servers.Handle] = {}
    with tempfile.TemporaryDirectory(prefix="minirepo-advisories-") as tmp:
        root = Path(tmp)
        try:
            for name in (WITHOUT, WITH):
                with load.frozen(run.pids_of(handles.values())):
                    handles[name] = start(root, name, venv, args, corpus.files)
            upload_rss = {name: load.rss_mb(handle.pids) for name, handle in handles.items()}
            for name, handle in handles.items():
                with load.frozen(run.pids_of(h for n, h in handles.items() if n != name)):
                    page_run(handle, sample, 1, run.WARMUP_SECONDS)  # renders each page
            load.settle(run.pids_of(handles.values()))
            print(f"(b), (c): {args.imports} imports of {args.records} records", flush=True)
            imports, quiet, during = import_turns(
                handles[WITH], handles[WITHOUT].pids, venv, zips, sample, args
            )
            blocked = {name: blocked_files(handle, sample) for name, handle in handles.items()}
            print(f"  sample pages: {blocked}", flush=True)
            if not blocked[WITH]["blocked"] or blocked[WITHOUT]["blocked"]:
                raise SystemExit("the advisories block nothing: no verdict is being measured")
            print(f"(a): pages {WITH} against {WITHOUT}", flush=True)
            rounds = page_rounds(handles, sample, args)
        finally:
            for handle in handles.values():
                handle.stop()
        extras = extras_check(handles, venv, root, args.threads)
    found = verdicts(rounds, imports, quiet, during, extras)
    report(args, zips, upload_rss, imports, quiet, during, blocked, rounds, extras, found)


def report(
    args: argparse.Namespace,
    zips: list[Path],
    upload_rss: dict[str, float],
    imports: list[Imported],
    quiet: list[PageRun],
    during: list[PageRun],
    blocked: dict[str, dict[str, int]],
    rounds: dict[int, dict[str, list[float]]],
    extras: dict[str, Any],
    found: list[run.Verdict],
) -> None:
    print()
    for conns, figures in rounds.items():
        for name, values in figures.items():
            print(f"pages c={conns}, {name}: {statistics.median(values):.0f} req/s (median)")
    for label, runs in (("quiet", quiet), ("during an import", during)):
        rps = statistics.median(each.rps for each in runs) if runs else 0.0
        cpu = statistics.median(each.server_cpu for each in runs) if runs else 0.0
        print(
            f"pages c={DURING_CONNECTIONS}, {label}: {rps:.0f} req/s over {len(runs)} runs "
            f"(server CPU {cpu:.2f} of its core)"
        )
    print(f"server RSS after the corpus upload: {upload_rss}")
    print(f"extras: {extras}")
    width = max(len(verdict.target) for verdict in found)
    print(f"\ntargets (issue 19): {sum(v.met is True for v in found)} of {len(found)} met")
    for verdict in found:
        print("  " + verdict.line(width))
    if args.json is not None:
        saved = {
            "args": vars(args) | {"json": str(args.json), "cache": ""},
            "zips": {path.name: path.stat().st_size for path in zips},
            "server_rss_mib_after_upload": upload_rss,
            "imports": [dataclasses.asdict(each) for each in imports],
            "pages_during_import": {
                "quiet": [dataclasses.asdict(each) for each in quiet],
                "during": [dataclasses.asdict(each) for each in during],
            },
            "sample_pages": blocked,
            "pages": {str(conns): figures for conns, figures in rounds.items()},
            "extras": extras,
            "targets": [verdict.as_json() for verdict in found],
        }
        args.json.write_text(json.dumps(saved, indent=2) + "\n")
        print(f"\nwritten to {args.json}")
    if not all(verdict.met for verdict in found):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
