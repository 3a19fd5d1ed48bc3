"""The servers under test, each in its own temp folder on a free loopback port.

minirepo runs from this checkout; pypiserver 2.x and devpi-server 6.x are installed from
PyPI into a cached venv of their own; nginx (Debian) serves a static PEP 503 tree as the
ceiling, and `benchmarks.ceiling_app` serves the same tree from memory on waitress as the
ceilings of a Python index (Flask, and a bare WSGI callable). Every server is pinned to one
CPU and the load generator to the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

from benchmarks.load import basic_header
from tests.helpers.serverproc import base_env, free_port, wait_answering

SERVER_CPU = "0"
# passlib 1.7.4 (pypiserver's htpasswd reader) breaks with bcrypt >= 4.1 (pyca/bcrypt#684).
PEER_PACKAGES = ["pypiserver[passlib]>=2.4,<3", "waitress", "devpi-server>=6.20,<7", "bcrypt<4.1"]
USER, PASSWORD = "bench", "bench-password-1"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "minirepo-bench"


def cached_venv(name: str, packages: list[str]) -> Path:
    """A venv in the cache holding `packages`, made once and reused (pip only runs when
    the list it was made with differs)."""
    venv = cache_dir() / name
    marker = venv / "installed.json"
    if marker.exists() and json.loads(marker.read_text()) == packages:
        return venv
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", *packages], check=True
    )
    marker.write_text(json.dumps(packages))
    return venv


def peers_venv() -> Path:
    return cached_venv("peers-venv", PEER_PACKAGES)


def minirepo_venv(*extras: str) -> Path:
    """A venv with minirepo's runtime dependencies only, as `pip install minirepo-server` on
    a Pi leaves it: no test extra, so no psycopg, which peewee imports at start whenever it
    is installed (+11 MB RSS and +0.18 s start measured; the postgres extra is opt-in).
    `extras`: those extras' dependencies too (`benchmarks.stacks`: postgres, s3)."""
    runtime = []
    for requirement in importlib.metadata.requires("minirepo-server") or []:
        spec, _, marker = requirement.partition(";")
        if "extra ==" not in marker:
            runtime.append(requirement)
        elif marker.split('"')[1] in extras:
            runtime.append(spec.strip())
    runtime.sort()
    return cached_venv("-".join(("minirepo-venv", *extras)), runtime)


def peer_version(venv: Path, package: str) -> str:
    result = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "show", package], capture_output=True, text=True
    )
    match = re.search(r"^Version: (.+)$", result.stdout, re.MULTILINE)
    return match.group(1) if match else "?"


def _pinned(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", SERVER_CPU, *cmd] if shutil.which("taskset") else cmd


@dataclasses.dataclass
class Handle:
    name: str
    base: str
    simple_prefix: str
    upload_url: str
    proc: subprocess.Popen[bytes] | None
    start_seconds: float
    password_header: str = ""
    token_header: str = ""
    # A read token scoped to a few projects: its root page lists only those (minirepo).
    project_token_header: str = ""
    data: Path | None = None  # minirepo's data folder, for the population step
    source: Path | None = None  # the checkout minirepo runs from
    bulk_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    pids: list[int] = dataclasses.field(default_factory=list)

    def project_path(self, project: str) -> str:
        return f"{self.simple_prefix}{project}/"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM, then SIGKILL if the server has not exited within `grace` seconds: a server
    stuck on a held connection must not keep the run from ending."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)


def _launch(
    cmd: list[str],
    folder: Path,
    probe: str,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], float]:
    """Start a pinned server logging to `<folder>/server.log`; wait until `probe` answers.

    Returns the process and the seconds from start to its first answer.
    """
    log = folder / "server.log"
    start = time.perf_counter()
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            _pinned(cmd), stdout=handle, stderr=subprocess.STDOUT, env=env or base_env(), cwd=cwd
        )
    wait_answering(probe, proc, log, timeout, pause=0.01)
    return proc, time.perf_counter() - start


CHECKOUT = Path(__file__).resolve().parent.parent


def start_minirepo(
    folder: Path,
    threads: int,
    source: Path = CHECKOUT,
    name: str = "minirepo",
    settings: dict[str, str] | None = None,
    venv: Path | None = None,
) -> Handle:
    """minirepo from `source` (this checkout, or another one such as a `git worktree` of
    an older commit: it runs from there, with the same interpreter and packages);
    `settings`: more `MINIREPO_*` variables; `venv`: one with extras (`minirepo_venv`)."""
    # Bytecode as `pip install` leaves it: this checkout may never have written any (for
    # one, under PYTHONDONTWRITEBYTECODE), and compiling at each start is not start-up.
    package = source / "minirepo"
    python = str((venv or minirepo_venv()) / "bin/python")
    subprocess.run([python, "-m", "compileall", "-q", str(package)], check=True)
    port = free_port()
    data = folder / "data"
    env = base_env(
        {
            "MINIREPO_DATA": str(data),
            "MINIREPO_THREADS": str(threads),
            "MINIREPO_LOG_LEVEL": "warning",
            "PYTHONPATH": str(source),
            **(settings or {}),
        }
    )
    base = f"http://127.0.0.1:{port}"
    cmd = [python, "-m", "minirepo", "serve", "--port", str(port)]
    proc, started = _launch(cmd, folder, f"{base}/simple/", 60, env, cwd=source)
    log = (folder / "server.log").read_text()
    token = re.search(r"\bmr-[A-Za-z0-9_-]{20,}", log).group(0)  # type: ignore[union-attr]
    subprocess.run(
        [python, "-m", "minirepo", "user", "add", USER, "--password-stdin"],
        input=PASSWORD + "\n",
        text=True,
        env=env,
        cwd=source,
        check=True,
        capture_output=True,
    )
    handle = Handle(
        name,
        base,
        "/simple/",
        f"{base}/",
        proc,
        started,
        password_header=basic_header(USER, PASSWORD),
        token_header=basic_header("__token__", token),
        bulk_headers={"Authorization": basic_header("__token__", token)},
        pids=[proc.pid],
        data=data,
        source=source,
    )
    return handle


def populate_minirepo(handle: Handle, projects: list[str]) -> dict[str, object]:
    """`benchmarks/population.py` on the handle's data folder, beside the running server,
    with the handle's minirepo: then its token rows use the measured user's read tokens
    (unscoped, and scoped to three projects) instead of the first admin's."""
    assert handle.data is not None
    assert handle.source is not None
    script = Path(__file__).resolve().parent / "population.py"
    cmd = [
        sys.executable,
        str(script),
        "--data",
        str(handle.data),
        "--user",
        USER,
        "--projects",
        ",".join(projects),
    ]
    env = base_env({"PYTHONPATH": str(handle.source)})
    out = subprocess.run(
        cmd, env=env, cwd=handle.source, check=True, capture_output=True, text=True, timeout=600
    ).stdout
    made: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    handle.token_header = str(made["token_header"])
    handle.project_token_header = str(made["project_token_header"])
    return made


def _htpasswd(path: Path, venv: Path) -> None:
    """bcrypt at cost 5, what `htpasswd -B` writes by default."""
    code = f"from passlib.hash import bcrypt; print(bcrypt.using(rounds=5).hash('{PASSWORD}'))"
    hashed = subprocess.run(
        [str(venv / "bin/python"), "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    path.write_text(f"{USER}:{hashed}\n")


def start_pypiserver(folder: Path, venv: Path, packages: Path, authenticated_read: bool) -> Handle:
    port = free_port()
    htpasswd = folder / "htpasswd"
    if not htpasswd.exists():
        _htpasswd(htpasswd, venv)
    auth = "update,download,list" if authenticated_read else "update"
    cmd = [
        str(venv / "bin/pypi-server"),
        "run",
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-P",
        str(htpasswd),
        "-a",
        auth,
        "--disable-fallback",
        "--server",
        "auto",
        "--log-stream",
        "none",
        str(packages),
    ]
    base = f"http://127.0.0.1:{port}"
    header = basic_header(USER, PASSWORD)
    proc, started = _launch(cmd, folder, f"{base}/health", 60)
    return Handle(
        "pypiserver",
        base,
        "/simple/",
        f"{base}/",
        proc,
        started,
        password_header=header,
        bulk_headers={"Authorization": header},
        pids=[proc.pid],
    )


def start_devpi(folder: Path, venv: Path) -> Handle:
    port = free_port()
    serverdir = folder / "devpi"
    if not serverdir.exists():
        subprocess.run(
            [
                str(venv / "bin/devpi-init"),
                "--serverdir",
                str(serverdir),
                "--root-passwd",
                PASSWORD,
            ],
            check=True,
            capture_output=True,
        )
        first = True
    else:
        first = False
    cmd = [
        str(venv / "bin/devpi-server"),
        "--serverdir",
        str(serverdir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    base = f"http://127.0.0.1:{port}"
    proc, started = _launch(cmd, folder, f"{base}/+api", 120)
    if first:
        _devpi_setup(base)
    proxy = _devpi_login(base, USER)
    return Handle(
        "devpi",
        base,
        f"/{USER}/dev/+simple/",
        f"{base}/{USER}/dev/",
        proc,
        started,
        password_header=basic_header(USER, PASSWORD),
        bulk_headers={"X-Devpi-Auth": proxy, "Accept": "application/json"},
        pids=[proc.pid],
    )


def _devpi_login(base: str, user: str) -> str:
    import base64

    response = requests.post(
        f"{base}/+login",
        json={"user": user, "password": PASSWORD},
        headers={"Accept": "application/json"},
        timeout=60,
    )
    response.raise_for_status()
    token = response.json()["result"]["password"]
    return base64.b64encode(f"{user}:{token}".encode()).decode()


def _devpi_setup(base: str) -> None:
    root = {"X-Devpi-Auth": _devpi_login(base, "root"), "Accept": "application/json"}
    requests.put(
        f"{base}/{USER}",
        json={"password": PASSWORD, "email": "b@example.invalid"},
        headers=root,
        timeout=60,
    ).raise_for_status()
    user = {"X-Devpi-Auth": _devpi_login(base, USER), "Accept": "application/json"}
    requests.put(
        f"{base}/{USER}/dev",
        json={"type": "stage", "bases": [], "volatile": False},
        headers=user,
        timeout=60,
    ).raise_for_status()


def write_static_tree(root: Path, files: list[Path]) -> Path:
    """A PEP 503 tree of the corpus for nginx: the ceiling any dynamic server aims at."""
    from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

    by_project: dict[str, list[Path]] = {}
    for path in files:
        name = (
            parse_wheel_filename(path.name)[0]
            if path.name.endswith(".whl")
            else parse_sdist_filename(path.name)[0]
        )
        by_project.setdefault(canonicalize_name(name), []).append(path)
    (root / "files").mkdir(parents=True, exist_ok=True)
    simple = root / "simple"
    simple.mkdir(exist_ok=True)
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(by_project))
    (simple / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    for project, paths in by_project.items():
        (simple / project).mkdir(exist_ok=True)
        anchors = []
        for path in sorted(paths):
            target = root / "files" / path.name
            if not target.exists():
                os.link(path, target) if path.stat().st_dev == root.stat().st_dev else shutil.copy(
                    path, target
                )
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            anchors.append(
                f'<a href="../../files/{html.escape(path.name)}#sha256={digest}">'
                f"{html.escape(path.name)}</a><br>\n"
            )
        (simple / project / "index.html").write_text(
            "<!DOCTYPE html>\n<html><body>\n" + "".join(anchors) + "</body></html>\n"
        )
    return root


def start_nginx(folder: Path, tree: Path) -> Handle:
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ text/html html; application/octet-stream whl gz; }}
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {tree};
        index index.html;
        location / {{ try_files $uri $uri/ =404; }}
    }}
}}
""")
    base = f"http://127.0.0.1:{port}"
    proc, started = _launch(
        ["nginx", "-c", str(conf), "-p", str(folder)], folder, f"{base}/simple/", 30
    )
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    pids = [proc.pid, *(int(pid) for pid in children.stdout.split())]
    return Handle("nginx", base, "/simple/", "", proc, started, pids=pids)


def start_ceiling(folder: Path, tree: Path, mode: str, threads: int) -> Handle:
    """The static tree's pages from memory on waitress (`mode`: "flask" or "wsgi").

    Same threads as minirepo, so the ratio measures minirepo's own work per request.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.ceiling_app",
        "--mode",
        mode,
        "--tree",
        str(tree),
        "--port",
        str(port),
        "--threads",
        str(threads),
    ]
    proc, started = _launch(cmd, folder, f"{base}/simple/", 30)
    return Handle(f"{mode}-ceiling", base, "/simple/", "", proc, started, pids=[proc.pid])
