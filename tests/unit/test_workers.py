"""The supervisor of `serve --workers N` (`minirepo.workers`) with stand-in workers, in a
process of its own (it blocks signals and forks), plus the pieces that change with N: the
`workers` setting, the limiter's share, the kept UI pages' epoch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minirepo import config
from minirepo.db import open_database
from minirepo.errors import TooManyRequests, UserError
from minirepo.limiter import FailureLimiter
from minirepo.services.downloads import DownloadCounter

WAIT = 20.0

# A supervisor of two stand-in workers: each notes its start, then either crashes at once
# ("crash") or waits for the parent's stop and notes it.
SUPERVISED = """
import os, signal, sys, threading
from pathlib import Path
from minirepo import workers
workers.FIRST_BACKOFF = 0.01
out, mode = Path(sys.argv[1]), sys.argv[2]

def work(index):
    (out / f"started-{index}-{os.getpid()}").touch()
    if mode == "crash":
        os._exit(3)
    stop = threading.Event()
    signal.signal(workers.WORKER_STOP, lambda *args: stop.set())
    stop.wait(60)
    (out / f"stopped-{os.getpid()}").touch()

try:
    workers.Supervisor(2, work, grace=1.0).run()
except workers.GaveUp:
    sys.exit(7)
"""


def supervised(out: Path, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SUPERVISED, str(out), mode])


def started(out: Path) -> list[int]:
    return sorted(int(path.name.rsplit("-", 1)[1]) for path in out.glob("started-*"))


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_dead_worker_is_started_again_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    parent = supervised(tmp_path, "serve")
    try:
        wait_for(lambda: len(started(tmp_path)) == 2, "two workers")
        victim = started(tmp_path)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(started(tmp_path)) == 3, "a third start")
        os.kill(parent.pid, signal.SIGTERM)
        assert parent.wait(timeout=WAIT) == 0
    finally:
        parent.kill()
        parent.wait(timeout=WAIT)
    stopped = {int(path.name.split("-")[1]) for path in tmp_path.glob("stopped-*")}
    assert stopped == set(started(tmp_path)) - {victim}


def test_a_worker_ignores_sigterm_from_outside(tmp_path: Path) -> None:
    """systemd's KillMode=control-group signals every process: only the parent's word counts,
    so a worker's drain is not cut short by a second signal."""
    parent = supervised(tmp_path, "serve")
    try:
        wait_for(lambda: len(started(tmp_path)) == 2, "two workers")
        for pid in started(tmp_path):
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.3)
        assert not list(tmp_path.glob("stopped-*"))
        assert len(started(tmp_path)) == 2
        os.kill(parent.pid, signal.SIGINT)
        assert parent.wait(timeout=WAIT) == 0
    finally:
        parent.kill()
        parent.wait(timeout=WAIT)
    assert len(list(tmp_path.glob("stopped-*"))) == 2


def test_workers_crashing_at_start_make_the_parent_give_up(tmp_path: Path) -> None:
    parent = supervised(tmp_path, "crash")
    try:
        assert parent.wait(timeout=WAIT) == 7
    finally:
        parent.kill()
        parent.wait(timeout=WAIT)
    # Five crashes in a row for the slot that gave up, not a hot loop.
    assert 5 <= len(started(tmp_path)) <= 10


def test_the_workers_setting() -> None:
    assert config.load(None, {}).workers == 1
    assert config.load(None, {"MINIREPO_WORKERS": "3"}).workers == 3
    assert config.load(None, {}, {"workers": "auto"}).workers == len(os.sched_getaffinity(0))
    with pytest.raises(UserError, match="'workers' must be positive"):
        config.load(None, {}, {"workers": "0"})
    with pytest.raises(UserError, match="'workers' has an invalid value"):
        config.load(None, {}, {"workers": "many"})


def test_the_workers_setting_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "minirepo.toml"
    path.write_text('workers = "auto"\n')
    assert config.load(path, {}).workers == len(os.sched_getaffinity(0))
    path.write_text("workers = 2\n")
    assert config.load(path, {}).workers == 2
    path.write_text('workers = "2"\n')
    with pytest.raises(UserError, match="'workers' has an invalid value"):
        config.load(path, {})


def test_each_worker_allows_its_share_of_the_failures() -> None:
    limiter = FailureLimiter(limit=10, window=300, processes=3)
    assert limiter.share(10) == 4  # 3 workers x 4 = 12 at most, not 30
    for _ in range(3):
        limiter.record("user:x")
    limiter.check("user:x", 10)
    limiter.record("user:x")
    with pytest.raises(TooManyRequests, match="Too many failed logins"):
        limiter.check("user:x", 10)
    assert FailureLimiter(limit=10, window=300).share(10) == 10


def test_a_workers_kept_ui_pages_age_with_the_flush_interval(tmp_path: Path) -> None:
    """Other workers' flushes do not bump this worker's epoch, so where workers share the
    database the epoch also moves each flush interval; one process keeps its pages."""
    shared = open_database("", tmp_path / "db.sqlite3", 1.0, create=True, shared=True)
    alone = open_database("", tmp_path / "db.sqlite3", 1.0, create=True)
    interval = 0.05
    counters = DownloadCounter(shared, interval), DownloadCounter(alone, interval)
    before = [counter.epoch for counter in counters]
    time.sleep(2 * interval)
    assert counters[0].epoch > before[0]
    assert counters[1].epoch == before[1]
