"""SQLite + files against PostgreSQL + SeaweedFS: cached pages, uploads, a 100 MB download.

    python -m benchmarks.stacks [--projects 500 --seconds 3 --repeats 3 --uploads 50
                                 --big-mb 100]

Issue 18's rows: on the second stack cached pages >= 0.9x, uploads >= 0.5x and a 100 MB
download through the server >= 0.5x the first. Both servers run side by side from one venv
holding the postgres and s3 extras, pinned to CPU 0 as the other rows are (wrk and curl on
CPU 1); PostgreSQL and SeaweedFS run unpinned, as a database and a store on their own hosts
would. Each row alternates the servers turn by turn (the order flipping each turn), and
each figure is the median turn. The download row also has a third server, the second stack
with `s3_redirect` (curl follows the 307 to the bucket). Not a timed test: the figures vary
with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import load, pagerun, run, servers
from tests.helpers.distfactory import Dist, make_wheel, wheel_members, write_zip
from tests.helpers.postgres import fresh_database, running_postgres
from tests.helpers.seaweed import BUCKET, REGION, SeaweedServer, running_seaweed

CONNECTIONS = 16
STACKS = ("sqlite + files", "postgresql + seaweedfs")
# The second stack answering a download with a 307 to the bucket (`s3_redirect`): the
# download row only, since its pages and uploads are the second stack's.
REDIRECTED = "postgresql + seaweedfs, s3_redirect"


def big_wheel(folder: Path, version: str, size: int) -> Path:
    """A wheel holding `size` random bytes, stored uncompressed (as the bytes go on the wire)."""
    dist = Dist("big-file", version)
    members = wheel_members(dist)
    members[f"{dist.module}/blob.bin"] = os.urandom(size)
    folder.mkdir(parents=True, exist_ok=True)
    return write_zip(folder / dist.wheel_name, members)


def curl_seconds(args: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        load.on_load_cpu(["curl", "-sS", "--fail", "-o", "/dev/null", *args]),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"curl {args[-1]}: {result.stderr}")
    return time.perf_counter() - started


def pages(handle: servers.Handle, sample: list[str], seconds: float) -> float:
    paths = [handle.project_path(project) for project in sample]
    result = load.wrk(handle.base, paths, {"Accept": run.HTML_ACCEPT}, CONNECTIONS, seconds)
    if result.errors:
        raise SystemExit(f"{handle.name}: {result.errors} failed requests")
    return result.rps


def uploads(handle: servers.Handle, folder: Path, turn: int, count: int) -> float:
    """Files a second, `count` small wheels of new projects, four uploads at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels = [make_wheel(folder, Dist(f"up-{turn}-{i}", "1.0")) for i in range(count)]
    seconds = load.timed(lambda: load.bulk_upload(handle.upload_url, handle.bulk_headers, wheels))
    return count / seconds


def download(handle: servers.Handle, folder: Path, turn: int, size: int) -> float:
    """MB/s of one download of a `size`-byte wheel uploaded just before."""
    path = big_wheel(folder, f"1.{turn}", size)
    load.bulk_upload(handle.upload_url, handle.bulk_headers, [path], workers=1)
    url = f"{handle.base}/files/big-file/{path.name}"
    curl_seconds(
        ["--location", url]
    )  # the first read of a local blob hashes it once (verified.json)
    megabytes = path.stat().st_size / 1e6
    path.unlink()
    return megabytes / curl_seconds(["--location", url])


def interleaved(
    handles: dict[str, servers.Handle], repeats: int, measure: Callable[[str, int], float]
) -> dict[str, float]:
    turns: dict[str, list[float]] = {name: [] for name in handles}
    for turn in range(repeats):
        order = list(handles) if turn % 2 == 0 else list(reversed(handles))
        for name in order:
            turns[name].append(measure(name, turn))
            print(f"    turn {turn + 1}, {name}: {turns[name][-1]:.1f}", flush=True)
    return {name: statistics.median(values) for name, values in turns.items()}


def measure(
    handles: dict[str, servers.Handle], args: argparse.Namespace, sample: list[str], root: Path
) -> dict[str, dict[str, float]]:
    def page_turn(name: str, _turn: int) -> float:
        return pages(handles[name], sample, args.seconds)

    def upload_turn(name: str, turn: int) -> float:
        return uploads(handles[name], root / "up" / name[:6], turn, args.uploads)

    def download_turn(name: str, turn: int) -> float:
        return download(handles[name], root / "big", turn, args.big_mb * 1024 * 1024)

    served = {name: handle for name, handle in handles.items() if name in STACKS}
    rows = {}
    for row, turn, measured in (
        (f"cached project pages c={CONNECTIONS} (req/s)", page_turn, served),
        (f"uploads of {args.uploads} wheels (files/s)", upload_turn, served),
        (f"{args.big_mb} MB download (MB/s)", download_turn, handles),
    ):
        print(row)
        rows[row] = interleaved(measured, args.repeats, turn)
    return rows


def stack_settings(seaweed: SeaweedServer, databases: list[str]) -> dict[str, dict[str, str]]:
    def s3_stack(database: str, prefix: str) -> dict[str, str]:
        return {
            **seaweed.env(),
            "MINIREPO_DATABASE": database,
            "MINIREPO_STORAGE": f"s3://{BUCKET}/{prefix}",
            "MINIREPO_S3_ENDPOINT_URL": seaweed.endpoint,
            "MINIREPO_S3_REGION": REGION,
        }

    return {
        STACKS[0]: {},
        STACKS[1]: s3_stack(databases[0], "bench"),
        REDIRECTED: {**s3_stack(databases[1], "redirected"), "MINIREPO_S3_REDIRECT": "true"},
    }


def main() -> None:
    parser = pagerun.parser(__doc__, "stacks", seconds=3.0, repeats=3)
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--big-mb", type=int, default=100)
    args = parser.parse_args()
    run.ensure_tools()
    corpus = pagerun.build_corpus(args)
    sample = run.page_sample(corpus.projects)
    venv = servers.minirepo_venv("postgres", "s3")
    handles: dict[str, servers.Handle] = {}
    with (
        tempfile.TemporaryDirectory(prefix="minirepo-stacks-") as temp,
        running_postgres() as postgres,
        fresh_database(postgres) as database,
        fresh_database(postgres) as redirected,
    ):
        root = Path(temp)
        (root / "weed").mkdir()
        with running_seaweed(root / "weed") as seaweed:
            try:
                for number, (name, env) in enumerate(
                    stack_settings(seaweed, [database, redirected]).items()
                ):
                    folder = root / str(number)
                    folder.mkdir()
                    handle = servers.start_minirepo(
                        folder, args.threads, name=name, settings=env, venv=venv
                    )
                    handles[name] = handle
                    load.bulk_upload(handle.upload_url, handle.bulk_headers, corpus.files)
                    pages(handle, sample, 1)  # the first view renders and caches each page
                rows = measure(handles, args, sample, root)
            finally:
                for handle in handles.values():
                    handle.stop()
    print()
    print(f"{'row':<40} {STACKS[0]:>16} {STACKS[1]:>24} {'ratio':>7}")
    for row, medians in rows.items():
        first, second = medians[STACKS[0]], medians[STACKS[1]]
        print(f"{row:<40} {first:16.1f} {second:24.1f} {second / first:6.2f}x")
        if REDIRECTED in medians:
            third = medians[REDIRECTED]
            print(f"{'  ' + REDIRECTED:<40} {'':16} {third:24.1f} {third / first:6.2f}x")
    saved = {"args": vars(args) | {"json": str(args.json), "cache": ""}, "rows": rows}
    args.json.write_text(json.dumps(saved, indent=2))


if __name__ == "__main__":
    main()
