"""Load generation and measurement: wrk runs, bulk uploads, RSS and timing helpers."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import requests

LOAD_CPU = "1"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclasses.dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def on_load_cpu(cmd: list[str]) -> list[str]:
    """Clients (wrk, curl, twine, pip, uv) run on the CPU the servers do not use."""
    return ["taskset", "-c", LOAD_CPU, *cmd] if shutil.which("taskset") else cmd


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _lua(paths: list[str], headers: dict[str, str]) -> str:
    lines = [f'wrk.headers["{key}"] = "{value}"' for key, value in headers.items()]
    quoted = ", ".join(f'"{path}"' for path in paths)
    lines += [
        f"local paths = {{{quoted}}}",
        "local i = 0",
        "request = function()",
        "  i = i % #paths + 1",
        "  return wrk.format(nil, paths[i])",
        "end",
    ]
    return "\n".join(lines) + "\n"


def _latency_ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def wrk(
    base: str, paths: list[str], headers: dict[str, str], connections: int, seconds: float
) -> WrkResult:
    """One bounded wrk run (fixed duration, loopback only), pinned to the load CPU."""
    assert base.startswith(("http://127.0.0.1", "http://[::1]")), base
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(paths, headers))
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "30s",  # a slow peer's long answers count as slow, not as failed
        "-s",
        script.name,
        base,
    ]
    cmd = on_load_cpu(cmd)
    try:
        output = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 60, check=True
        ).stdout
    finally:
        Path(script.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"\s50%\s+(\S+)", output)
    p99 = re.search(r"\s99%\s+(\S+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors:.*", output)
    error_count = int(errors.group(1)) if errors else 0
    if socket_errors:
        error_count += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(0)))
    return WrkResult(
        rps,
        _latency_ms(p50.group(1)) if p50 else float("nan"),
        _latency_ms(p99.group(1)) if p99 else float("nan"),
        error_count,
    )


def rss_mb(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


@contextlib.contextmanager
def frozen(pids: Iterable[int]) -> Iterator[None]:
    """Stop these processes (SIGSTOP) for the block and always resume them (SIGCONT).

    All servers share one CPU: the others' background threads (devpi's) would otherwise
    take time from the one being measured.
    """
    stopped: list[int] = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time these processes have used (all their threads)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def settle(pids: list[int], quiet: float = 1.0, timeout: float = 60.0) -> bool:
    """Wait (bounded) until these processes use under 2% of a CPU for `quiet` seconds.

    After a corpus load devpi keeps indexing in background threads; measured before it is
    done, that work would count against its own first figures.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        used = cpu_seconds(pids)
        time.sleep(quiet)
        if cpu_seconds(pids) - used < 0.02 * quiet:
            return True
    return False


def upload_form(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    name, version = path.name.split("-")[:2]
    return {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version.removesuffix(".tar.gz"),
        "filetype": "bdist_wheel" if path.name.endswith(".whl") else "sdist",
        "pyversion": "py3" if path.name.endswith(".whl") else "source",
        "metadata_version": "2.1",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
    }


def bulk_upload(url: str, headers: dict[str, str], files: list[Path], workers: int = 4) -> None:
    """Load a corpus quickly over the legacy API (the measured upload uses twine)."""
    local = threading.local()

    def one(path: Path) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        for _ in range(5):  # like twine: retry a 5xx (a busy database answers 503)
            with path.open("rb") as handle:
                response = session.post(
                    url,
                    data=upload_form(path),
                    files={"content": (path.name, handle, "application/octet-stream")},
                    headers=headers,
                    timeout=120,
                )
            if response.status_code < 500:
                break
            print(f"    ! {response.status_code} {response.reason} for {path.name}: retrying")
        if response.status_code not in (200, 201, 409):
            raise RuntimeError(
                f"upload of {path.name} to {url}: {response.status_code} {response.reason}"
            )

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, files))


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


class RssSampler:
    """Samples the peak RSS of some processes while a block runs."""

    def __init__(self, pids: list[int], interval: float = 0.01) -> None:
        self.pids = pids
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb(self.pids))

    def __enter__(self) -> RssSampler:
        self.peak = rss_mb(self.pids)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
