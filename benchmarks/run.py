"""Benchmark minirepo against pypiserver, devpi-server and nginx on the same corpus, in one run.

    python -m benchmarks.run                 # P = 500; add --large-projects 5000 for the big root
    python -m benchmarks.run --quick         # a smoke run: small corpus, 1 s per measurement

Prints one table of figures with minirepo's ratio to each peer and writes it as JSON.
Every load is bounded (fixed wrk duration, fixed counts) and targets loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uv import find_uv_bin

from benchmarks import corpus as corpus_mod
from benchmarks import load, servers
from benchmarks.servers import Handle
from tests.distfactory import Dist, make_wheel
from tests.serverproc import client_env

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
HTML_ACCEPT = "text/html"
HIGHER_IS_BETTER = True


class Results:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, metric: str, unit: str, values: dict[str, float | None], higher: bool) -> None:
        self.rows.append(
            {"metric": metric, "unit": unit, "values": values, "higher_is_better": higher}
        )
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        print(f"  {metric} [{unit}]: {shown}", flush=True)

    def table(self) -> str:
        peers = ["pypiserver", "devpi", "nginx"]
        header = f"{'metric':58} {'unit':6} {'minirepo':>10} " + " ".join(f"{p:>10}" for p in peers)
        header += "  " + " ".join(f"{'x ' + p:>13}" for p in peers)
        lines = [header, "-" * len(header)]
        for row in self.rows:
            values = row["values"]
            mine = values.get("minirepo")
            cells = " ".join(f"{_fmt(values.get(p)):>10}" for p in peers)
            ratios = " ".join(
                f"{_ratio(mine, values.get(p), row['higher_is_better']):>13}" for p in peers
            )
            lines.append(f"{row['metric']:58} {row['unit']:6} {_fmt(mine):>10} {cells}  {ratios}")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _ratio(mine: float | None, other: float | None, higher: bool) -> str:
    """How many times better minirepo is (>1 is better), whichever way the metric points."""
    if not mine or not other:
        return "-"
    return f"{(mine / other) if higher else (other / mine):.2f}x"


def median_wrk(
    base: str, paths: list[str], headers: dict[str, str], conns: int, seconds: float, repeats: int
) -> load.WrkResult:
    runs = [load.wrk(base, paths, headers, conns, seconds) for _ in range(repeats)]
    runs.sort(key=lambda run: run.rps)
    result = runs[len(runs) // 2]
    if result.errors:
        print(
            f"    ! {result.errors} failed requests to {base}{paths[0]}: figure dropped", flush=True
        )
    return result


def serves_json(handle: Handle, project: str, headers: dict[str, str]) -> bool:
    import requests

    response = requests.get(
        handle.base + handle.project_path(project),
        headers={"Accept": JSON_ACCEPT, **headers},
        timeout=30,
    )
    return response.ok and "json" in response.headers.get("Content-Type", "")


def warm_up(handles: list[Handle], sample: list[str]) -> None:
    """Ask every measured URL once: first answers build caches (pypiserver hashes files)."""
    import requests

    for handle in handles:
        with requests.Session() as session:
            for path in [handle.simple_prefix, *(handle.project_path(p) for p in sample)]:
                for accept in (HTML_ACCEPT, JSON_ACCEPT):
                    session.get(handle.base + path, headers={"Accept": accept}, timeout=600)


def measure_pages(
    results: Results,
    handles: list[Handle],
    projects: list[str],
    label: str,
    args: argparse.Namespace,
) -> None:
    sample = projects[:: max(1, len(projects) // 50)][:50]
    warm_up(handles, sample)
    for fmt, accept in (("HTML", HTML_ACCEPT), ("JSON", JSON_ACCEPT)):
        for conns in (1, 16):
            for what in ("project page", "root index"):
                values: dict[str, float | None] = {}
                p99: dict[str, float | None] = {}
                for handle in handles:
                    if fmt == "JSON" and (
                        handle.name == "nginx" or not serves_json(handle, sample[0], {})
                    ):
                        values[handle.name] = p99[handle.name] = None
                        continue
                    paths = (
                        [handle.project_path(p) for p in sample]
                        if what == "project page"
                        else [handle.simple_prefix]
                    )
                    result = median_wrk(
                        handle.base, paths, {"Accept": accept}, conns, args.seconds, args.repeats
                    )
                    ok = result.errors == 0 and result.rps > 0
                    values[handle.name] = result.rps if ok else None
                    p99[handle.name] = result.p99_ms if ok else None
                results.add(f"{what} {fmt} {label} c={conns}", "req/s", values, True)
                results.add(f"{what} {fmt} {label} c={conns} p99", "ms", p99, False)


def measure_auth(
    results: Results, handles: dict[str, Handle], projects: list[str], args: argparse.Namespace
) -> None:
    sample = projects[:: max(1, len(projects) // 50)][:50]
    for kind in ("password", "token"):
        values: dict[str, float | None] = {}
        for name, handle in handles.items():
            header = handle.password_header if kind == "password" else handle.token_header
            if not header:
                values[name] = None
                continue
            paths = [handle.project_path(p) for p in sample]
            result = median_wrk(
                handle.base,
                paths,
                {"Accept": HTML_ACCEPT, "Authorization": header},
                16,
                args.seconds,
                args.repeats,
            )
            values[name] = result.rps if result.errors == 0 else None
        results.add(
            f"project page HTML, basic auth ({kind}) on every request, c=16", "req/s", values, True
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
        lambda: subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=3600)
    )


def download_speed(handle: Handle, path: str) -> tuple[float, float]:
    """(MB/s, RSS growth in MB) for one download with curl, a fast client."""
    cmd = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{speed_download} %{http_code}",
        handle.base + path,
    ]
    with load.RssSampler(handle.pids) as sampler:
        before = load.rss_mb(handle.pids)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    speed, code = out.split()
    if code != "200":
        raise RuntimeError(f"download from {handle.name}: HTTP {code}")
    return float(speed) / 1e6, sampler.peak - before


def install_times(
    handle: Handle, index_url: str, project: str, chain_top: str, work: Path
) -> tuple[float, float]:
    env = client_env(work / f"home-{handle.name}")
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-cache-dir",
        "--target",
        str(work / f"pip-{handle.name}"),
        "--index-url",
        index_url,
        "--trusted-host",
        "127.0.0.1",
        project,
    ]
    pip_time = load.timed(
        lambda: subprocess.run(pip, env=env, check=True, capture_output=True, timeout=600)
    )
    uv_env = {**env, "UV_CACHE_DIR": str(work / f"uv-cache-{handle.name}")}
    uv = [
        find_uv_bin(),
        "pip",
        "install",
        "--target",
        str(work / f"uv-{handle.name}"),
        "--python",
        sys.executable,
        "--index-url",
        index_url,
        chain_top,
    ]
    uv_time = load.timed(
        lambda: subprocess.run(uv, env=uv_env, check=True, capture_output=True, timeout=600)
    )
    return pip_time, uv_time


def load_corpus(handle: Handle, files: list[Path], pypiserver_dir: Path) -> None:
    if handle.name == "pypiserver":
        for path in files:
            target = pypiserver_dir / path.name
            if not target.exists():
                shutil.copy(path, target)
    elif handle.name != "nginx":
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
    tree = servers.write_static_tree(
        folder / "static", corpus.files + ([corpus.big_wheel] if corpus.big_wheel else [])
    )
    handles: dict[str, Handle] = {}
    idle: dict[str, float | None] = {}
    start: dict[str, float | None] = {}
    try:
        for name, starter in _starters(folder, venv, pypi_dir, tree, args).items():
            handles[name] = starter()
            start[name] = handles[name].start_seconds
            idle[name] = load.rss_mb(handles[name].pids)
        everything = corpus.files + ([corpus.big_wheel] if corpus.big_wheel else [])
        for handle in handles.values():
            seconds = load.timed(lambda h=handle: load_corpus(h, everything, pypi_dir))
            print(f"  loaded {len(everything)} files into {handle.name} in {seconds:.1f}s")
        if full:
            results.add("start to first answer", "s", start, False)
            results.add("idle RSS after start", "MB", idle, False)
        measure_pages(results, list(handles.values()), corpus.projects, label, args)
        if full:
            _full_measurements(results, handles, corpus, folder, venv, pypi_dir, args)
            results.add(
                "RSS after load", "MB", {n: load.rss_mb(h.pids) for n, h in handles.items()}, False
            )
    finally:
        for handle in handles.values():
            handle.stop()


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
    handles["pypiserver"].stop()
    handles["pypiserver"] = servers.start_pypiserver(folder / "pypiserver", venv, pypi_dir, True)
    measure_auth(results, {k: v for k, v in handles.items() if k != "nginx"}, corpus.projects, args)
    handles["pypiserver"].stop()
    handles["pypiserver"] = servers.start_pypiserver(folder / "pypiserver", venv, pypi_dir, False)

    upload_dir = folder / "uploads"
    upload_dir.mkdir()
    env = client_env(folder / "twine-home")
    rates: dict[str, float | None] = {"nginx": None}
    for name, handle in handles.items():
        if name == "nginx":
            continue
        batch = upload_dir / name
        batch.mkdir()
        files = [make_wheel(batch, Dist(f"up-{name}-{i:04d}", "1.0")) for i in range(args.uploads)]
        seconds = twine_upload(handle.upload_url, servers.USER, servers.PASSWORD, files, env)
        rates[name] = len(files) / seconds
    results.add(f"twine upload of {args.uploads} files", "file/s", rates, True)

    if corpus.big_wheel is not None:
        speeds: dict[str, float | None] = {}
        growth: dict[str, float | None] = {}
        big = corpus.big_wheel.name
        paths = {
            "minirepo": f"/files/big-wheel/{big}",
            "pypiserver": f"/packages/{big}",
            "nginx": f"/files/{big}",
            "devpi": _devpi_file_path(handles["devpi"], "big-wheel"),
        }
        for name, handle in handles.items():
            speeds[name], growth[name] = download_speed(handle, paths[name])
        results.add(f"{args.big_mb} MB download", "MB/s", speeds, True)
        results.add(f"{args.big_mb} MB download, server RSS growth", "MB", growth, False)

    pip_times: dict[str, float | None] = {}
    uv_times: dict[str, float | None] = {}
    work = folder / "installs"
    work.mkdir()
    for name, handle in handles.items():
        index_url = handle.base + handle.simple_prefix
        pip_times[name], uv_times[name] = install_times(
            handle, index_url, corpus.projects[0], corpus.chain_top, work
        )
    results.add("pip install --no-deps of one project", "s", pip_times, False)
    results.add(f"cold uv pip install of a {len(corpus.chain)}-project chain", "s", uv_times, False)


def _devpi_file_path(handle: Handle, project: str) -> str:
    import re

    import requests

    page = requests.get(handle.base + handle.project_path(project), timeout=30).text
    href = re.search(r'href="([^"#]+)', page).group(1)  # type: ignore[union-attr]
    from urllib.parse import urljoin, urlparse

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
    parser.add_argument("--threads", type=int, default=8, help="minirepo's waitress threads")
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
    args.json.write_text(
        json.dumps(
            {
                "peers": versions,
                "args": {k: str(v) for k, v in vars(args).items()},
                "rows": results.rows,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
