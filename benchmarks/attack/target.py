"""The server under attack: a real `minirepo serve` in a temp folder, with its own TMPDIR
so that its spool can be measured, and what it holds before the clock starts (an uploader,
its token, the big public file and the chain the clients install)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from benchmarks.attack.archives import MIB, padded_wheel
from benchmarks.servers import stop_process
from tests.helpers.distfactory import Dist, make_wheel, post_upload
from tests.helpers.serverproc import FAST_HASH, TOKEN_RE, base_env, free_port, wait_answering

SERVER = "127.0.0.1"
USER, PASSWORD = "uploader", "uploader-password-1"
CHAIN = ("chain-a", "chain-b", "chain-c", "chain-d", "chain-e")
PUBLIC = "big-public"
PUBLIC_SIZE = 24 * MIB


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
        stop_process(self.proc)


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


def publish(server: Server, token: str, path: Path) -> None:
    response = post_upload(f"{server.base}/", path, ("__token__", token), timeout=120)
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
