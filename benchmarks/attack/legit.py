"""The legitimate client on 127.0.0.1: a developer's pip, uv and twine in turn, and a
`/-/health` probe every 100 ms; every operation timed into one journal."""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from uv import find_uv_bin

from benchmarks.attack.rawhttp import why
from benchmarks.attack.target import CHAIN, SERVER
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import client_env

DAILY = "daily-life"
HEALTH_EVERY = 0.1
HEALTH_TIMEOUT = 5.0
CLIENT_TIMEOUT = 60.0  # pip, uv, twine: a stuck one fails and the loop goes on


@dataclasses.dataclass(frozen=True)
class Op:
    kind: str
    phase: str
    ok: bool
    seconds: float
    detail: str = ""


class Journal:
    """Every legitimate operation, appended from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: list[Op] = []

    def add(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def of(self, kind: str, phase: str) -> list[Op]:
        with self._lock:
            return [op for op in self.ops if op.kind == kind and op.phase == phase]


def health_probe(port: int) -> tuple[bool, float, str]:
    """One GET on a new connection from the default address (the server sees 127.0.0.1)."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection(SERVER, port, timeout=HEALTH_TIMEOUT)
    try:
        connection.request("GET", "/-/health")
        response = connection.getresponse()
        response.read()
        ok, detail = response.status == 200, str(response.status)
    except (OSError, http.client.HTTPException) as exc:
        ok, detail = False, why(exc)
    finally:
        connection.close()
    return ok, time.perf_counter() - start, detail


def paced(until: float) -> Iterable[int]:
    """Ticks every HEALTH_EVERY until `until`, skipping those a slow probe ate."""
    start = time.monotonic()
    for tick in range(math.ceil((until - start) / HEALTH_EVERY) + 1):
        if time.monotonic() >= until:
            return
        yield tick
        time.sleep(max(0.0, start + (tick + 1) * HEALTH_EVERY - time.monotonic()))


def health_loop(port: int, journal: Journal, phase: str, until: float) -> None:
    for _ in paced(until):
        ok, seconds, detail = health_probe(port)
        journal.add(Op("health", phase, ok, seconds, detail))


class Legit:
    """A developer's machine: pip, uv and twine in turn, each a fresh process with no cache,
    so that every run asks the server for everything."""

    def __init__(self, base: str, token: str, work: Path, journal: Journal) -> None:
        self.base, self.work, self.journal = base, work, journal
        self.env = client_env(work / "home")
        self.twine_env = {**self.env, "TWINE_USERNAME": "__token__", "TWINE_PASSWORD": token}
        self.uv = find_uv_bin()
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen[bytes]] = set()
        self.stopped = threading.Event()

    def loop(self, phase: str, until: float) -> None:
        """Rounds until `until`, at most one a second: clients failing at once do not spin."""
        for _ in range(math.ceil(max(0.0, until - time.monotonic())) + 1):
            begun = time.monotonic()
            for step in (self.pip, self.uv_install, self.twine):
                if self.stopped.is_set() or time.monotonic() >= until:
                    return
                step(phase)
            self.stopped.wait(max(0.0, begun + 1.0 - time.monotonic()))

    def pip(self, phase: str) -> None:
        with tempfile.TemporaryDirectory(dir=self.work) as target:
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir"]
            cmd += ["--index-url", f"{self.base}/simple/", "--target", target, CHAIN[0]]
            self._timed("pip install", phase, cmd, self.env)

    def uv_install(self, phase: str) -> None:
        with tempfile.TemporaryDirectory(dir=self.work) as venv:
            made = self._call([self.uv, "venv", "--quiet", "--python", sys.executable, venv])
            if made != 0:
                self.journal.add(Op("uv pip install", phase, False, 0.0, f"uv venv: {made}"))
                return
            cmd = [self.uv, "pip", "install", "--quiet", "--no-cache", "--python", venv]
            cmd += ["--index-url", f"{self.base}/simple/", CHAIN[0]]
            self._timed("uv pip install", phase, cmd, self.env)

    def twine(self, phase: str) -> None:
        with tempfile.TemporaryDirectory(dir=self.work) as folder:
            wheel = make_wheel(Path(folder), Dist(DAILY, f"1.0.{next(self._versions)}"))
            cmd = [sys.executable, "-m", "twine", "upload", "--non-interactive"]
            cmd += ["--disable-progress-bar", "--repository-url", f"{self.base}/", str(wheel)]
            self._timed("twine upload", phase, cmd, self.twine_env)

    def _call(self, cmd: list[str], env: dict[str, str] | None = None) -> int | str:
        """The exit status, or the last line of output of a failure, or "timed out"."""
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or self.env
        )
        with self._lock:
            self._children.add(proc)
        try:
            out, _ = proc.communicate(timeout=CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return f"timed out after {CLIENT_TIMEOUT:.0f} s"
        finally:
            with self._lock:
                self._children.discard(proc)
        lines = out.decode(errors="replace").strip().splitlines()
        return proc.returncode if proc.returncode == 0 or not lines else lines[-1][:200]

    def _timed(self, kind: str, phase: str, cmd: list[str], env: dict[str, str]) -> None:
        start = time.perf_counter()
        result = self._call(cmd, env)
        seconds = time.perf_counter() - start
        self.journal.add(Op(kind, phase, result == 0, seconds, "" if result == 0 else str(result)))

    def kill_all(self) -> None:
        self.stopped.set()
        with self._lock:
            for proc in self._children:
                proc.kill()
