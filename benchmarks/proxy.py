"""Proxy repositories (issue 15's targets): cached pages against hosted ones, first fetches
against fetching straight from the upstream, and what a fetch costs in memory.

    python -m benchmarks.proxy [--projects 100] [--big-mb 100] [--repeats 5]

One `minirepo serve` (this checkout) with `MINIREPO_UPSTREAM` pointing at a fake upstream
index in this process (`tests/helpers/upstreamfake.py`, loopback only). Rows, each the
median of `--repeats` turns, the rows of a turn interleaved:

- pages (wrk, c=1 and c=16): a hosted project page of `main`, a cached page of
  `pypi-proxy` and the same page through the group `all`. Target: cached >= 0.9x hosted.
- first fetch of a `--big-mb` MiB wheel through the proxy, against the same bytes fetched
  from the upstream directly, with the server's RSS growth. Targets: <= 1.2x, <= 10 MB.
- 20 clients asking at once for a file nobody fetched yet, each retrying a 503 as pip
  does (honouring Retry-After), against one direct fetch. Target: <= 1.2x.

`--upstream-mbps` throttles the fake upstream (0: as fast as loopback goes): an upstream
on the internet is slower than the box's disk, which is the case the tee is for.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import requests

from benchmarks import load, servers
from benchmarks.servers import Handle
from tests.helpers.distfactory import Dist, make_wheel, wheel_members
from tests.helpers.upstreamfake import FakeUpstream

TARGET_PAGES = 0.9
TARGET_FETCH = 1.2
TARGET_RSS_MB = 10.0
PARALLEL = 20
CHUNK = 64 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--upstream-mbps", type=float, default=0.0)
    parser.add_argument("--no-pages", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="minirepo-proxy-bench-") as tmp, FakeUpstream() as up:
        folder = Path(tmp)
        if args.upstream_mbps:
            up.trickle = CHUNK / (args.upstream_mbps * 1024 * 1024)
        handle = _box(folder, up, args)
        try:
            if not args.no_pages:
                _pages(folder, handle, up, args)
            _fetches(folder, handle, up, args)
        finally:
            handle.stop()


def _box(folder: Path, up: FakeUpstream, args: argparse.Namespace) -> Handle:
    box = folder / "box"
    box.mkdir()
    handle = servers.start_minirepo(box, args.threads, settings={"MINIREPO_UPSTREAM": up.url})
    _cli(handle, "repo", "set", "pypi-proxy", "--min-free-disk", "0", "--page-ttl", "1h")
    return handle


def _cli(handle: Handle, *args: str) -> None:
    python = str(servers.minirepo_venv() / "bin/python")
    env = servers.base_env({"MINIREPO_DATA": str(handle.data), "PYTHONPATH": str(handle.source)})
    subprocess.run([python, "-m", "minirepo", *args], env=env, check=True, capture_output=True)


def _pages(folder: Path, handle: Handle, up: FakeUpstream, args: argparse.Namespace) -> None:
    wheels = folder / "wheels"
    wheels.mkdir()
    hosted = [f"h{i}" for i in range(args.projects)]
    proxied = [f"u{i}" for i in range(args.projects)]
    files = [make_wheel(wheels, Dist(name, "1.0")) for name in hosted]
    load.bulk_upload(f"{handle.base}/main/", handle.bulk_headers, files)
    for name in proxied:
        path = make_wheel(wheels, Dist(name, "1.0"))
        up.add_file(name, path.name, path.read_bytes())
    rows = {
        "hosted /main/simple/<p>/": [f"/main/simple/{name}/" for name in hosted],
        "cached /pypi-proxy/simple/<p>/": [f"/pypi-proxy/simple/{name}/" for name in proxied],
        "cached through /all/simple/<p>/": [f"/all/simple/{name}/" for name in proxied],
    }
    with requests.Session() as session:  # fills the caches: a page, and the group's origin
        for paths in rows.values():
            for path in paths:
                for accept in ("text/html", "application/vnd.pypi.simple.v1+json"):
                    session.get(handle.base + path, headers={"Accept": accept}, timeout=60)
    asked = len(up.requests)
    print(f"pages ({args.repeats} turns of {args.seconds:.0f} s, median req/s):")
    for conns in (1, 16):
        runs: dict[str, list[float]] = {label: [] for label in rows}
        for _ in range(args.repeats):
            for label, paths in rows.items():
                runs[label].append(load.wrk(handle.base, paths, {}, conns, args.seconds).rps)
        base = statistics.median(runs["hosted /main/simple/<p>/"])
        for label, figures in runs.items():
            median = statistics.median(figures)
            print(f"  c={conns:<2} {label:36} {median:8.0f}  {median / base:.3f}x hosted")
    print(f"  upstream requests during the page rows: {len(up.requests) - asked} (target 0)")


def _big(folder: Path, up: FakeUpstream, size_mb: int, number: int) -> tuple[str, str, str]:
    """A wheel of incompressible bytes at the upstream: (project, filename, sha256)."""
    project = f"big{number}"
    dist = Dist(project, "1.0")
    path = folder / dist.wheel_name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for member, data in wheel_members(dist).items():
            archive.writestr(member, data)
        filler = random.Random(number).randbytes(size_mb * 1024 * 1024)  # noqa: S311
        archive.writestr(f"{project}/data.bin", filler)
    content = path.read_bytes()
    up.add_file(project, path.name, content)
    return project, path.name, hashlib.sha256(content).hexdigest()


def _get(url: str, sha256: str, retry_503: bool = False) -> None:
    """Stream the body and check it; 503s retried after their Retry-After, as pip does."""
    for _ in range(60):
        with requests.get(url, stream=True, timeout=120) as answer:
            if answer.status_code == 503 and retry_503:
                time.sleep(float(answer.headers.get("Retry-After", "1")))
                continue
            answer.raise_for_status()
            digest = hashlib.sha256()
            for block in answer.iter_content(CHUNK):
                digest.update(block)
            if digest.hexdigest() != sha256:
                raise RuntimeError(f"{url}: other bytes than the upstream's")
            return
    raise RuntimeError(f"{url}: still 503 after 60 tries")


def _timed_get(url: str, sha256: str) -> float:
    start = time.perf_counter()
    _get(url, sha256)
    return time.perf_counter() - start


def _first_fetch(
    handle: Handle, up: FakeUpstream, big: tuple[str, str, str], proxy_first: bool
) -> tuple[float, float, float]:
    """(direct seconds, through-the-proxy seconds, RSS growth MB), the order alternating."""
    project, filename, sha256 = big
    direct = f"{up.base}files/{filename}"
    through = f"{handle.base}/pypi-proxy/files/{project}/{filename}"
    requests.get(f"{handle.base}/pypi-proxy/simple/{project}/", timeout=60)
    timings: dict[str, float] = {}
    for which in ("proxy", "direct") if proxy_first else ("direct", "proxy"):
        if which == "direct":
            timings[which] = _timed_get(direct, sha256)
            continue
        with load.RssSampler(handle.pids) as sampler:
            before = sampler.peak
            timings[which] = _timed_get(through, sha256)
        growth = sampler.peak - before
    return timings["direct"], timings["proxy"], growth


def _curl(url: str, target: Path) -> subprocess.Popen[bytes]:
    """A curl download on the load CPU, retrying a 503 after its Retry-After as pip does;
    many of them are many clients, where threads of this process would be one GIL."""
    cmd = ["curl", "-sSf", "--retry", "60", "--retry-max-time", "300", "-o", str(target), url]
    return subprocess.Popen(load.on_load_cpu(cmd))


def _all_at_once(
    handle: Handle, up: FakeUpstream, big: tuple[str, str, str], folder: Path
) -> tuple[float, float, int]:
    """(seconds for one curl straight from the upstream, seconds until PARALLEL curls
    asking the proxy at once all have the file, the upstream GETs that cost)."""
    project, filename, sha256 = big
    url = f"{handle.base}/pypi-proxy/files/{project}/{filename}"
    requests.get(f"{handle.base}/pypi-proxy/simple/{project}/", timeout=60)
    start = time.perf_counter()
    if _curl(f"{up.base}files/{filename}", folder / "direct").wait() != 0:
        raise RuntimeError("the direct download failed")
    one = time.perf_counter() - start
    before = up.count(f"/files/{filename}")
    start = time.perf_counter()
    clients = [_curl(url, folder / f"client{number}") for number in range(PARALLEL)]
    codes = [client.wait() for client in clients]
    elapsed = time.perf_counter() - start
    for number in range(PARALLEL):
        got = hashlib.sha256((folder / f"client{number}").read_bytes()).hexdigest()
        if codes[number] != 0 or got != sha256:
            raise RuntimeError(f"client {number}: exit {codes[number]}, other bytes")
    return one, elapsed, up.count(f"/files/{filename}") - before


def _fetches(folder: Path, handle: Handle, up: FakeUpstream, args: argparse.Namespace) -> None:
    wheels = folder / "big"
    wheels.mkdir()
    ratios, growths, parallel = [], [], []
    print(f"first fetch of a {args.big_mb} MiB wheel ({args.repeats} turns):")
    for turn in range(args.repeats):
        direct, proxied, growth = _first_fetch(
            handle, up, _big(wheels, up, args.big_mb, 2 * turn), turn % 2 == 1
        )
        ratios.append(proxied / direct)
        growths.append(growth)
        big = _big(wheels, up, args.big_mb, 2 * turn + 1)
        one, elapsed, gets = _all_at_once(handle, up, big, wheels)
        parallel.append(elapsed / one)
        print(
            f"  turn {turn + 1}: direct {direct:.2f} s, proxy {proxied:.2f} s "
            f"({ratios[-1]:.2f}x), RSS +{growth:.1f} MB; {PARALLEL} at once {elapsed:.2f} s "
            f"vs one direct {one:.2f} s ({parallel[-1]:.2f}x), upstream GETs {gets}"
        )
        _cli(handle, "cache", "prune", "pypi-proxy", "--to", "0")
    print(
        f"  median: first fetch {statistics.median(ratios):.2f}x direct "
        f"(target <= {TARGET_FETCH}), RSS growth {statistics.median(growths):.1f} MB "
        f"(max {max(growths):.1f}; target <= {TARGET_RSS_MB}), {PARALLEL} at once "
        f"{statistics.median(parallel):.2f}x one direct (target <= {TARGET_FETCH})"
    )


if __name__ == "__main__":
    main()
