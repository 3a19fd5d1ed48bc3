"""Benchmark minirepo against pypiserver, devpi-server, nginx and two waitress ceilings, in one run.

    python -m benchmarks.run                 # P = 500; add --large-projects 5000 for the big root
    python -m benchmarks.run --quick         # a smoke run: small corpus, 1 s per measurement

Prints one table of figures with minirepo's ratio to each peer, then PERFORMANCE.md's targets
met or missed, and writes both as JSON. Every load is bounded (fixed wrk duration, fixed
counts) and targets loopback only. While one server is measured every other is frozen
(SIGSTOP), and repeats go round all servers in turn, so noise hits them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from uv import find_uv_bin

from benchmarks import corpus as corpus_mod
from benchmarks import load, servers
from benchmarks.servers import Handle
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import client_env

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
HTML_ACCEPT = "text/html"
CEILINGS = ("flask-ceiling", "wsgi-ceiling")
# These serve the static tree: HTML pages and files only, no uploads, no credentials.
STATIC = ("nginx", *CEILINGS)
PEERS = ("pypiserver", "devpi", *STATIC)
SERVERS = ("minirepo", *PEERS)
# An untimed wrk run before each measured one: the first run after a pause is often low.
WARMUP_SECONDS = 1.0

# PERFORMANCE.md's targets: a ratio ("x") or minirepo's own figure, and its limit.
# Page req/s, x the minimal Flask app with precomputed pages (the target) and x a bare WSGI
# callable with the same pages (the aim).
PAGES_VS_CEILING = {"flask-ceiling": 0.9, "wsgi-ceiling": 0.75}
AUTH_VS_ANONYMOUS = 0.9
# Its ratio is of two figures a few percent apart, so it gets more turns than the others:
# with 3, three runs gave 0.83x to 1.04x for the same code.
AUTH_REPEATS = 5
UPLOADS_VS_PYPISERVER = 1.2
DOWNLOAD_VS_NGINX = 1.0
DOWNLOAD_RSS_GROWTH_MB = 5.0
UV_VS_DEVPI = 1.0  # cold uv install time, x devpi's
START_SECONDS = 0.25
IDLE_RSS_MB = 40.0
LOADED_RSS_MB = 45.0

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One of PERFORMANCE.md's targets against this run's figure."""

    target: str
    value: float | None
    unit: str
    limit: float
    at_least: bool

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self, width: int) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = {True: "met", False: "missed", None: "no figure"}[self.met]
        figure = self._show(self.value) if self.value is not None else "-"
        limit = f"{sign} {self._show(self.limit)}"
        return f"{self.target:{width}} {figure:>9}  (target {limit})  {verdict}"

    def _show(self, number: float) -> str:
        return f"{number:.3f}x" if self.unit == "x" else f"{_fmt(number)} {self.unit}"

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "met": self.met}


class Results:
    """The table's rows and the targets' verdicts, in the order they were measured."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.verdicts: list[Verdict] = []

    def add(self, metric: str, unit: str, values: Mapping[str, float | None], higher: bool) -> None:
        """A row; servers that took no part get None."""
        every = {name: values.get(name) for name in SERVERS}
        self.rows.append(
            {"metric": metric, "unit": unit, "values": every, "higher_is_better": higher}
        )
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in every.items() if v is not None)
        print(f"  {metric} [{unit}]: {shown}", flush=True)

    def value(self, metric: str, server: str) -> float | None:
        return next((r["values"][server] for r in self.rows if r["metric"] == metric), None)

    def check(
        self, target: str, value: float | None, unit: str, limit: float, at_least: bool = True
    ) -> None:
        self.verdicts.append(Verdict(target, value, unit, limit, at_least))

    def check_against(
        self,
        target: str,
        values: Mapping[str, float | None],
        peer: str,
        limit: float,
        at_least: bool = True,
    ) -> None:
        """A target that is minirepo's figure as a ratio to a peer's in the same row."""
        ratio = quotient(values.get("minirepo"), values.get(peer))
        self.check(target, ratio, "x", limit, at_least)

    def table(self) -> str:
        metric_width = max(len(row["metric"]) for row in self.rows)
        widths = {name: max(10, len(name)) for name in SERVERS}
        header = f"{'metric':{metric_width}} {'unit':6} " + " ".join(
            f"{name:>{widths[name]}}" for name in SERVERS
        )
        header += "  " + " ".join(f"{'x ' + peer:>{widths[peer] + 2}}" for peer in PEERS)
        lines = [header, "-" * len(header)]
        for row in self.rows:
            values, higher = row["values"], row["higher_is_better"]
            mine = values["minirepo"]
            cells = " ".join(f"{_fmt(values[name]):>{widths[name]}}" for name in SERVERS)
            ratios = " ".join(
                f"{_better(mine, values[peer], higher):>{widths[peer] + 2}}" for peer in PEERS
            )
            lines.append(f"{row['metric']:{metric_width}} {row['unit']:6} {cells}  {ratios}")
        return "\n".join(lines)

    def targets(self) -> str:
        width = max(len(verdict.target) for verdict in self.verdicts)
        met = sum(verdict.met is True for verdict in self.verdicts)
        lines = [f"targets (PERFORMANCE.md): {met} of {len(self.verdicts)} met"]
        return "\n".join(lines + ["  " + verdict.line(width) for verdict in self.verdicts])


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _better(mine: float | None, other: float | None, higher: bool) -> str:
    """How many times better minirepo is (>1 is better), whichever way the metric points."""
    times = quotient(mine, other) if higher else quotient(other, mine)
    return "-" if times is None else f"{times:.2f}x"


def quotient(top: float | None, bottom: float | None) -> float | None:
    """top / bottom, or None when either figure is missing (or zero)."""
    return top / bottom if top and bottom else None


def pids_of(handles: Iterable[Handle]) -> list[int]:
    return [pid for handle in handles for pid in handle.pids]


def interleaved(
    names: Iterable[str],
    handles: dict[str, Handle],
    repeats: int,
    measure: Callable[[Handle], T],
) -> dict[str, list[T]]:
    """Each named server's `repeats` measurements, each with every other server frozen.

    Repeats go round the servers in turn (repeats outside, servers inside), so a drift of
    the machine hits every server alike instead of whichever was measured at that time.
    """
    names = list(names)
    runs: dict[str, list[T]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            others = (handle for other, handle in handles.items() if other != name)
            with load.frozen(pids_of(others)):
                runs[name].append(measure(handles[name]))
    return runs


@dataclasses.dataclass(frozen=True)
class Ask:
    """What one server is asked in a wrk figure: its own paths and headers."""

    paths: list[str]
    headers: dict[str, str]


def wrk_figures(
    asks: dict[str, Ask], handles: dict[str, Handle], conns: int, args: argparse.Namespace
) -> dict[str, load.WrkResult | None]:
    """Each asked server's median wrk run; None if it had failed requests or no answers."""

    def run(handle: Handle) -> load.WrkResult:
        ask = asks[handle.name]
        load.wrk(handle.base, ask.paths, ask.headers, conns, WARMUP_SECONDS)
        return load.wrk(handle.base, ask.paths, ask.headers, conns, args.seconds)

    figures: dict[str, load.WrkResult | None] = {}
    for name, runs in interleaved(asks, handles, args.repeats, run).items():
        median = sorted(runs, key=lambda result: result.rps)[len(runs) // 2]
        figures[name] = median if median.errors == 0 and median.rps > 0 else None
        if figures[name] is None:
            print(
                f"    ! {name}: {median.errors} failed requests, {median.rps} req/s to "
                f"{asks[name].paths[0]}: figure dropped",
                flush=True,
            )
    return figures


def serves_json(handle: Handle, project: str) -> bool:
    import requests

    response = requests.get(
        handle.base + handle.project_path(project), headers={"Accept": JSON_ACCEPT}, timeout=30
    )
    return response.ok and "json" in response.headers.get("Content-Type", "")


def warm_up(handles: Iterable[Handle], sample: list[str]) -> None:
    """Ask every measured URL once: first answers build caches (pypiserver hashes files)."""
    import requests

    for handle in handles:
        with requests.Session() as session:
            for path in [handle.simple_prefix, *(handle.project_path(p) for p in sample)]:
                for accept in (HTML_ACCEPT, JSON_ACCEPT):
                    session.get(handle.base + path, headers={"Accept": accept}, timeout=600)


def page_sample(projects: list[str]) -> list[str]:
    return projects[:: max(1, len(projects) // 50)][:50]


def page_metric(what: str, fmt: str, label: str, conns: int) -> str:
    return f"{what} {fmt} {label} c={conns}"


def measure_pages(
    results: Results,
    handles: dict[str, Handle],
    projects: list[str],
    label: str,
    args: argparse.Namespace,
) -> None:
    sample = page_sample(projects)
    warm_up(handles.values(), sample)
    json_servers = [
        name for name, h in handles.items() if name not in STATIC and serves_json(h, sample[0])
    ]
    html_rows: dict[tuple[str, int], dict[str, float | None]] = {}
    for fmt, accept in (("HTML", HTML_ACCEPT), ("JSON", JSON_ACCEPT)):
        for conns in (1, 16):
            for what in ("project page", "root index"):
                asks = {
                    name: Ask(
                        [handles[name].project_path(p) for p in sample]
                        if what == "project page"
                        else [handles[name].simple_prefix],
                        {"Accept": accept},
                    )
                    for name in (handles if fmt == "HTML" else json_servers)
                }
                figures = wrk_figures(asks, handles, conns, args)
                metric = page_metric(what, fmt, label, conns)
                values = {name: f.rps if f else None for name, f in figures.items()}
                results.add(metric, "req/s", values, True)
                results.add(
                    f"{metric} p99",
                    "ms",
                    {name: f.p99_ms if f else None for name, f in figures.items()},
                    False,
                )
                # The ceilings serve HTML only: JSON pages are held to their HTML figure.
                if fmt == "HTML":
                    html_rows[(what, conns)] = values
                ceilings = html_rows[(what, conns)]
                suffix = " (its HTML)" if fmt == "JSON" else ""
                against = {**ceilings, "minirepo": values.get("minirepo")}
                for ceiling, limit in PAGES_VS_CEILING.items():
                    results.check_against(f"{metric} vs {ceiling}{suffix}", against, ceiling, limit)


AUTH_PAGES = ("project page", "root index")
AUTH_KINDS = ("anonymous", "password", "token", "project token")
# The peers take part in the cell they always did (their auth has no cache to measure).
PEER_AUTH_CELL = ("project page", 16)
AuthCell = tuple[str, int, str]  # (page, connections, kind)


def auth_header(handle: Handle, kind: str) -> str:
    return {
        "anonymous": "",
        "password": handle.password_header,
        "token": handle.token_header,
        "project token": handle.project_token_header,
    }[kind]


def auth_cells(handle: Handle) -> list[AuthCell]:
    """What one server is asked in the auth phase: each page at c=1 and c=16, anonymous and
    with each kind of credentials it has; a project-scoped token on the root page only (it
    may read nothing else of the sample), where it gets its own filtered, cached page."""
    cells = []
    for what in AUTH_PAGES:
        for conns in (1, 16):
            if not handle.name.startswith("minirepo") and (what, conns) != PEER_AUTH_CELL:
                continue
            for kind in AUTH_KINDS:
                if kind != "anonymous" and not auth_header(handle, kind):
                    continue
                if kind == "project token" and what != "root index":
                    continue
                cells.append((what, conns, kind))
    return cells


def auth_figures(
    handles: dict[str, Handle], projects: list[str], repeats: int, seconds: float
) -> dict[str, dict[AuthCell, float | None]]:
    """Each server's median req/s per auth cell, anonymous and authenticated side by side.

    In each turn a server runs all its cells, each kind of a page right after the others
    (their order rotating from turn to turn), so the anonymous figure a ratio divides by
    is measured in the same phase, interleaved, never in another part of the run.
    """
    sample = page_sample(projects)
    turns = {name: itertools.count() for name in handles}

    def run(handle: Handle) -> dict[AuthCell, load.WrkResult]:
        turn = next(turns[handle.name])
        cells = auth_cells(handle)
        groups = [[c for c in cells if c[:2] == (what, conns)] for what, conns, _ in cells]
        figures = {}
        for group in dict.fromkeys(map(tuple, groups)):
            shift = turn % len(group)
            for what, conns, kind in group[shift:] + group[:shift]:
                paths = (
                    [handle.project_path(p) for p in sample]
                    if what == "project page"
                    else [handle.simple_prefix]
                )
                header = auth_header(handle, kind)
                headers = {"Accept": HTML_ACCEPT} | ({"Authorization": header} if header else {})
                load.wrk(handle.base, paths, headers, conns, WARMUP_SECONDS)
                figures[(what, conns, kind)] = load.wrk(handle.base, paths, headers, conns, seconds)
        return figures

    names = [name for name, handle in handles.items() if handle.password_header]
    runs = interleaved(names, handles, repeats, run)
    medians: dict[str, dict[AuthCell, float | None]] = {}
    for name, done in runs.items():
        medians[name] = {}
        for cell in auth_cells(handles[name]):
            results = sorted((r[cell] for r in done if cell in r), key=lambda run: run.rps)
            median = results[len(results) // 2] if results else None
            ok = median is not None and median.errors == 0 and median.rps > 0
            medians[name][cell] = median.rps if ok else None  # type: ignore[union-attr]
            if not ok:
                print(f"    ! {name}: {cell}: failed requests or no answers", flush=True)
    return medians


def auth_metric(what: str, label: str, kind: str, conns: int) -> str:
    if kind == "anonymous":
        return f"{what} HTML {label}, anonymous (auth phase), c={conns}"
    return f"{what} HTML {label}, basic auth ({kind}) on every request, c={conns}"


def measure_auth(
    results: Results,
    handles: dict[str, Handle],
    projects: list[str],
    label: str,
    args: argparse.Namespace,
) -> None:
    """Pages with credentials on every request, and minirepo's ratio to anonymous.

    Each authenticated row is held to the anonymous row of the same page and connections,
    measured in the same turns (`auth_figures`), with at least AUTH_REPEATS turns.
    """
    medians = auth_figures(handles, projects, max(args.repeats, AUTH_REPEATS), args.seconds)
    cells = dict.fromkeys(cell for name in medians for cell in auth_cells(handles[name]))
    for what, conns, kind in cells:
        values = {name: figures.get((what, conns, kind)) for name, figures in medians.items()}
        metric = auth_metric(what, label, kind, conns)
        results.add(metric, "req/s", values, True)
        if kind != "anonymous":
            anonymous = medians["minirepo"].get((what, conns, "anonymous"))
            pair = {"minirepo": values.get("minirepo"), "anonymous": anonymous}
            results.check_against(
                f"{metric} vs anonymous (same phase)", pair, "anonymous", AUTH_VS_ANONYMOUS
            )


def twine_upload(
    url: str, user: str, password: str, files: list[Path], env: dict[str, str]
) -> float:
    cmd = [
        sys.executable,
        "-m",
        "twine",
        "upload",
        "--non-interactive",
        "--disable-progress-bar",
        "--repository-url",
        url,
        "-u",
        user,
        "-p",
        password,
        *map(str, files),
    ]
    return load.timed(
        lambda: subprocess.run(
            load.on_load_cpu(cmd), env=env, check=True, capture_output=True, timeout=3600
        )
    )


def upload_rates(
    handles: dict[str, Handle], names: Iterable[str], folder: Path, uploads: int, repeats: int
) -> dict[str, float]:
    """Each named server's median files/s over `repeats` twine uploads of `uploads` new
    wheels, interleaved; in each repeat every server gets the same new files."""
    env = client_env(folder / "twine-home")
    batches: list[list[Path]] = []
    for repeat in range(repeats):
        batch = folder / "uploads" / str(repeat)
        batch.mkdir(parents=True)
        batches.append(
            [make_wheel(batch, Dist(f"up-{repeat}-{i:04d}", "1.0")) for i in range(uploads)]
        )
    turns = {name: itertools.count() for name in handles}

    def upload(handle: Handle) -> float:
        files = batches[next(turns[handle.name])]
        seconds = twine_upload(handle.upload_url, servers.USER, servers.PASSWORD, files, env)
        return len(files) / seconds

    runs = interleaved(names, handles, repeats, upload)
    return {name: statistics.median(rates) for name, rates in runs.items()}


def measure_uploads(
    results: Results, handles: dict[str, Handle], folder: Path, args: argparse.Namespace
) -> None:
    uploaders = [name for name, handle in handles.items() if handle.upload_url]
    rates = upload_rates(handles, uploaders, folder, args.uploads, 1)
    metric = f"twine upload of {args.uploads} files"
    results.add(metric, "file/s", rates, True)
    results.check_against(f"{metric} vs pypiserver", rates, "pypiserver", UPLOADS_VS_PYPISERVER)


def curl_speed(url: str) -> float:
    """MB/s of one download with curl, a fast client."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{http_code}", url]
    out = subprocess.run(
        load.on_load_cpu(cmd), capture_output=True, text=True, check=True, timeout=600
    ).stdout
    speed, code = out.split()
    if code != "200":
        raise RuntimeError(f"download from {url}: HTTP {code}")
    return float(speed) / 1e6


def download_speed(handle: Handle, path: str) -> tuple[float, float]:
    """(MB/s, RSS growth in MB) of a second download; growth counts from before the first.

    The first, untimed, warms the path like the wrk warm-up; what it leaves behind in the
    server still counts as growth.
    """
    with load.RssSampler(handle.pids) as sampler:
        before = sampler.peak
        curl_speed(handle.base + path)
        speed = curl_speed(handle.base + path)
    return speed, sampler.peak - before


def big_wheel_paths(handles: Mapping[str, Handle], big: str) -> dict[str, str]:
    """The big wheel's path on each server (any minirepo checkout, the peers, the static)."""
    paths = {}
    for name, handle in handles.items():
        if name.startswith("minirepo"):
            paths[name] = f"/files/big-wheel/{big}"
        elif name == "pypiserver":
            paths[name] = f"/packages/{big}"
        elif name == "devpi":
            paths[name] = _devpi_file_path(handle, "big-wheel")
        elif name in STATIC:
            paths[name] = f"/files/{big}"
    return paths


def download_figures(
    handles: dict[str, Handle], paths: dict[str, str], repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Each server's median MB/s over `repeats` interleaved downloads of its path, and its
    RSS growth in the worst repeat: a bound, and only the first repeat sees memory that
    stays."""
    runs = interleaved(
        paths, handles, repeats, lambda handle: download_speed(handle, paths[handle.name])
    )
    speeds = {name: statistics.median(speed for speed, _ in r) for name, r in runs.items()}
    growth = {name: max(grown for _, grown in r) for name, r in runs.items()}
    return speeds, growth


def measure_download(
    results: Results, handles: dict[str, Handle], big: str, args: argparse.Namespace
) -> None:
    paths = big_wheel_paths(handles, big)
    speeds, growth = download_figures(handles, paths, args.repeats)
    metric = f"{args.big_mb} MB download"
    results.add(metric, "MB/s", speeds, True)
    results.add(f"{metric}, server RSS growth", "MB", growth, False)
    results.check_against(f"{metric} vs nginx", speeds, "nginx", DOWNLOAD_VS_NGINX)
    results.check(
        f"{metric}, server RSS growth",
        growth.get("minirepo"),
        "MB",
        DOWNLOAD_RSS_GROWTH_MB,
        at_least=False,
    )


def install_times(handle: Handle, project: str, chain_top: str, work: Path) -> tuple[float, float]:
    """Cold installs: `work` is new for each call, so no cache or target carries over."""
    index_url = handle.base + handle.simple_prefix
    env = client_env(work / "home")
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-cache-dir",
        "--target",
        str(work / "pip"),
        "--index-url",
        index_url,
        "--trusted-host",
        "127.0.0.1",
        project,
    ]
    pip_time = load.timed(
        lambda: subprocess.run(
            load.on_load_cpu(pip), env=env, check=True, capture_output=True, timeout=600
        )
    )
    uv_env = {**env, "UV_CACHE_DIR": str(work / "uv-cache")}
    uv = [
        find_uv_bin(),
        "pip",
        "install",
        "--target",
        str(work / "uv"),
        "--python",
        sys.executable,
        "--index-url",
        index_url,
        chain_top,
    ]
    uv_time = load.timed(
        lambda: subprocess.run(
            load.on_load_cpu(uv), env=uv_env, check=True, capture_output=True, timeout=600
        )
    )
    return pip_time, uv_time


def measure_installs(
    results: Results,
    handles: dict[str, Handle],
    corpus: corpus_mod.Corpus,
    folder: Path,
    args: argparse.Namespace,
) -> None:
    work = folder / "installs"
    work.mkdir()
    # The static tree has no requires-python, JSON or metadata: nginx stands for it alone.
    installers = [name for name in handles if name not in CEILINGS]
    tries = itertools.count()

    def cold_install(handle: Handle) -> tuple[float, float]:
        fresh = work / f"{handle.name}-{next(tries)}"
        return install_times(handle, corpus.projects[0], corpus.chain_top, fresh)

    runs = interleaved(installers, handles, args.repeats, cold_install)
    pip_times = {name: statistics.median(pip for pip, _ in r) for name, r in runs.items()}
    uv_times = {name: statistics.median(uv for _, uv in r) for name, r in runs.items()}
    uv_metric = f"cold uv pip install of a {len(corpus.chain)}-project chain"
    results.add("pip install --no-deps of one project", "s", pip_times, False)
    results.add(uv_metric, "s", uv_times, False)
    results.check_against(
        f"{uv_metric}, time vs devpi's", uv_times, "devpi", UV_VS_DEVPI, at_least=False
    )


def load_corpus(handle: Handle, files: list[Path], pypiserver_dir: Path) -> None:
    if handle.name == "pypiserver":
        for path in files:
            target = pypiserver_dir / path.name
            if not target.exists():
                shutil.copy(path, target)
    elif handle.upload_url:
        load.bulk_upload(handle.upload_url, handle.bulk_headers, files)


def run_size(
    results: Results,
    projects: int,
    versions: int,
    args: argparse.Namespace,
    work: Path,
    venv: Path,
    full: bool,
) -> None:
    label = f"P={projects}"
    print(f"== corpus {label} x {versions} versions", flush=True)
    # The large corpus is wheels only: loading 10 000 files into devpi alone takes minutes.
    corpus = corpus_mod.build(
        args.cache / f"corpus-{projects}-{versions}-{'full' if full else 'wheels'}",
        projects,
        versions,
        args.big_mb if full else 0,
        sdists=full,
    )
    folder = work / label
    pypi_dir = folder / "pypiserver-packages"
    pypi_dir.mkdir(parents=True)
    everything = corpus.files + ([corpus.big_wheel] if corpus.big_wheel else [])
    tree = servers.write_static_tree(folder / "static", everything)
    handles: dict[str, Handle] = {}
    try:
        for name, starter in _starters(folder, venv, pypi_dir, tree, args).items():
            # The servers already up are frozen: each starts on a quiet CPU, as the first did.
            with load.frozen(pids_of(handles.values())):
                handles[name] = starter()
        idle = {name: load.rss_mb(handle.pids) for name, handle in handles.items()}
        for handle in handles.values():
            seconds = load.timed(functools.partial(load_corpus, handle, everything, pypi_dir))
            print(f"  loaded {len(everything)} files into {handle.name} in {seconds:.1f}s")
        if "minirepo" in handles:
            made = servers.populate_minirepo(handles["minirepo"], corpus.projects)
            print(
                f"  populated minirepo: {made['repositories']} repositories, {made['users']} "
                f"users, {made['grants']} grants, {made['tokens']} tokens in {made['seconds']}s",
                flush=True,
            )
        if not load.settle(pids_of(handles.values())):
            print("    ! the servers were still busy a minute after the load", flush=True)
        if full:
            first = {name: handle.start_seconds for name, handle in handles.items()}
            start = measure_starts(first, handles, folder, venv, pypi_dir, tree, args)
            results.add("start to first answer", "s", start, False)
            results.add("idle RSS after start", "MB", idle, False)
            results.check(
                "start to first answer", start["minirepo"], "s", START_SECONDS, at_least=False
            )
            results.check(
                "idle RSS after start", idle["minirepo"], "MB", IDLE_RSS_MB, at_least=False
            )
        measure_pages(results, handles, corpus.projects, label, args)
        if full:
            _full_measurements(results, handles, corpus, folder, venv, pypi_dir, args)
            loaded = {name: load.rss_mb(handle.pids) for name, handle in handles.items()}
            results.add("RSS after load", "MB", loaded, False)
            results.check("RSS after load", loaded["minirepo"], "MB", LOADED_RSS_MB, at_least=False)
    finally:
        for handle in handles.values():
            handle.stop()


def measure_starts(
    first: dict[str, float],
    handles: dict[str, Handle],
    folder: Path,
    venv: Path,
    pypi_dir: Path,
    tree: Path,
    args: argparse.Namespace,
) -> dict[str, float]:
    """Start to first answer: the median of `--repeats` starts, each on an empty folder.

    A single start is a short figure this machine's noise swings by a third. The extra
    starts run with the measured servers frozen, and are stopped once they answer.
    """
    times = {name: [seconds] for name, seconds in first.items()}
    for repeat in range(1, args.repeats):
        again = folder / f"start-{repeat}"
        again.mkdir()
        for name, starter in _starters(again, venv, pypi_dir, tree, args).items():
            with load.frozen(pids_of(handles.values())):
                extra = starter()
                extra.stop()
            times[name].append(extra.start_seconds)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def _starters(
    folder: Path, venv: Path, pypi_dir: Path, tree: Path, args: argparse.Namespace
) -> dict[str, Callable[[], Handle]]:
    def sub(name: str) -> Path:
        path = folder / name
        path.mkdir(exist_ok=True)
        return path

    return {
        "minirepo": lambda: servers.start_minirepo(sub("minirepo"), args.threads),
        "pypiserver": lambda: servers.start_pypiserver(sub("pypiserver"), venv, pypi_dir, False),
        "devpi": lambda: servers.start_devpi(sub("devpi"), venv),
        "nginx": lambda: servers.start_nginx(sub("nginx"), tree),
        "flask-ceiling": lambda: servers.start_ceiling(
            sub("flask-ceiling"), tree, "flask", args.threads
        ),
        "wsgi-ceiling": lambda: servers.start_ceiling(
            sub("wsgi-ceiling"), tree, "wsgi", args.threads
        ),
    }


def _full_measurements(
    results: Results,
    handles: dict[str, Handle],
    corpus: corpus_mod.Corpus,
    folder: Path,
    venv: Path,
    pypi_dir: Path,
    args: argparse.Namespace,
) -> None:
    # Authenticated pages: pypiserver only checks credentials when reads need them.
    label = f"P={len(corpus.projects)}"
    handles["pypiserver"].stop()
    handles["pypiserver"] = servers.start_pypiserver(folder / "pypiserver", venv, pypi_dir, True)
    measure_auth(results, handles, corpus.projects, label, args)
    handles["pypiserver"].stop()
    handles["pypiserver"] = servers.start_pypiserver(folder / "pypiserver", venv, pypi_dir, False)
    measure_uploads(results, handles, folder, args)
    if corpus.big_wheel is not None:
        measure_download(results, handles, corpus.big_wheel.name, args)
    measure_installs(results, handles, corpus, folder, args)


def _devpi_file_path(handle: Handle, project: str) -> str:
    import re
    from urllib.parse import urljoin, urlparse

    import requests

    page = requests.get(handle.base + handle.project_path(project), timeout=30).text
    href: str = re.search(r'href="([^"#]+)', page).group(1)  # type: ignore[union-attr]
    return urlparse(urljoin(handle.base + handle.project_path(project), href)).path


def ensure_tools() -> None:
    missing = [tool for tool in ("wrk", "nginx", "curl") if not shutil.which(tool)]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = ["nginx-light" if t == "nginx" else t for t in missing]
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *packages],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    still = [tool for tool in ("wrk", "nginx", "curl") if not shutil.which(tool)]
    if still:
        raise SystemExit(
            f"benchmarks need {', '.join(still)} (Debian: apt-get install wrk nginx-light curl)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument(
        "--large-projects", type=int, default=0, help="also measure pages at this P (e.g. 5000)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each wrk run")
    parser.add_argument("--repeats", type=int, default=1, help="wrk runs per figure (median)")
    parser.add_argument("--uploads", type=int, default=400)
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument(
        "--threads", type=int, default=8, help="waitress threads of minirepo and the ceilings"
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--cache", type=Path, default=servers.cache_dir())
    args = parser.parse_args()
    if args.quick:
        args.projects, args.versions, args.seconds, args.uploads, args.big_mb = 50, 2, 1.0, 40, 10
    ensure_tools()
    venv = servers.peers_venv()
    results = Results()
    versions = {
        "pypiserver": servers.peer_version(venv, "pypiserver"),
        "devpi-server": servers.peer_version(venv, "devpi-server"),
    }
    print(f"peers: {versions}", flush=True)
    with tempfile.TemporaryDirectory(prefix="minirepo-bench-") as tmp:
        os.chmod(tmp, 0o755)  # noqa: S103 - nginx's workers run as another user and must reach the tree
        run_size(results, args.projects, args.versions, args, Path(tmp), venv, full=True)
        if args.large_projects:
            run_size(results, args.large_projects, 1, args, Path(tmp), venv, full=False)
    print()
    print(results.table())
    print()
    print(results.targets())
    args.json.write_text(
        json.dumps(
            {
                "peers": versions,
                "args": {k: str(v) for k, v in vars(args).items()},
                "rows": results.rows,
                "targets": [verdict.as_json() for verdict in results.verdicts],
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
