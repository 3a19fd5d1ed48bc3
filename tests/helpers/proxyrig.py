"""A proxy box for the real-client tests: `minirepo serve` whose `pypi-proxy` caches an
upstream (a `FakeUpstream`, or a second `minirepo serve --no-upstream`), and the clients
(pip, uv) driven against its group `all`.

Every wait here is a bounded poll; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
from uv import find_uv_bin

from tests.helpers.distfactory import Dist, escaped, make_wheel, wheel_members
from tests.helpers.serverproc import Server, running_server
from tests.helpers.upstreamfake import FakeUpstream

PY = sys.executable
UV = find_uv_bin()
JSON_V1 = "application/vnd.pypi.simple.v1+json"
CLIENT_TIMEOUT = 180


@contextlib.contextmanager
def box(
    data: Path,
    upstream_url: str,
    *,
    settings: dict[str, str] | None = None,
    serve_args: tuple[str, ...] = (),
    proxy_options: tuple[str, ...] = (),
) -> Iterator[Server]:
    """A first start with `upstream_url` as the upstream of `pypi-proxy`, then
    `repo set pypi-proxy --min-free-disk 0 PROXY_OPTIONS`. No request has touched the proxy
    yet when this returns, so the options are in force for the first one (the server
    reads a repository's row when it is first asked for it)."""
    env = {
        "MINIREPO_UPSTREAM": upstream_url,
        # Loopback upstreams are reached directly, whatever the machine's proxy settings.
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **(settings or {}),
    }
    with running_server(data, env, serve_args=serve_args) as server:
        server.cli("repo", "set", "pypi-proxy", "--min-free-disk", "0", *proxy_options)
        yield server


def publish_upstream(
    upstream: FakeUpstream, folder: Path, dist: Dist, *, metadata: bool = True, **kw: object
) -> Path:
    """A wheel of `dist` listed on the fake upstream (with its PEP 658 metadata unless
    `metadata=False`); returns the wheel written in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = make_wheel(folder, dist)
    core = wheel_members(dist)[f"{escaped(dist.name)}-{dist.version}.dist-info/METADATA"]
    upstream.add_file(
        dist.name,
        path.name,
        path.read_bytes(),
        metadata=core if metadata else None,
        **kw,  # type: ignore[arg-type]
    )
    return path


def run(
    cmd: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        input="",
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def flat(text: str) -> str:
    """Every run of whitespace made one space: uv wraps its messages."""
    return " ".join(text.split())


def pip_install(
    index: str, env: dict[str, str], target: Path, *specs: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """pip with no cache of its own, into a fresh `target`."""
    cmd = [PY, "-m", "pip", "install", "--no-cache-dir", "--target", str(target)]
    cmd += ["--index-url", index, "--trusted-host", "127.0.0.1", *extra, *specs]
    return run(cmd, env)


def uv_install(
    index: str, env: dict[str, str], target: Path, *specs: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """uv with a cache folder of its own beside `target`: nothing from an earlier run."""
    cache = target.with_name(target.name + "-uv-cache")
    cmd = [UV, "pip", "install", "--cache-dir", str(cache), "--target", str(target)]
    cmd += ["--python", PY, "--index-url", index, *extra, *specs]
    return run(cmd, env)


def installed(target: Path) -> set[str]:
    """The `.dist-info` folders in `target`."""
    if not target.is_dir():
        return set()
    return {path.name for path in target.iterdir() if path.name.endswith(".dist-info")}


def wait_until(
    predicate: Callable[[], object], what: str, timeout: float = 15.0, pause: float = 0.05
) -> None:
    """Poll `predicate` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(pause)
    raise AssertionError(f"not within {timeout} s: {what}")


def page_files(url: str, **kw: object) -> list[str]:
    """The filenames the JSON simple page at `url` lists (asserting a 200)."""
    answer = requests.get(url, headers={"Accept": JSON_V1}, timeout=30, **kw)  # type: ignore[arg-type]
    assert answer.status_code == 200, (url, answer.status_code, answer.reason)
    return [entry["filename"] for entry in answer.json()["files"]]


def cached_files(server: Server, repo: str = "pypi-proxy") -> str:
    """What `minirepo cache list REPO` prints."""
    return server.cli("cache", "list", repo).stdout


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
