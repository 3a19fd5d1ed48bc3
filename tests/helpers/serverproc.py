"""A real `minirepo serve` in a temp folder on a free loopback port, and clean client envs."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from tests.helpers.distfactory import post_upload

# The cheapest hash werkzeug accepts: tests create many accounts and must not wait on scrypt.
FAST_HASH = "pbkdf2:sha256:1000"
TOKEN_RE = re.compile(r"\bmr-[A-Za-z0-9_-]{20,}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment minus anything that would point a client at another index."""
    drop = ("PIP_", "UV_", "TWINE_", "MINIREPO_", "POETRY_", "PDM_", "HATCH_", "FLIT_")
    # An activated venv (as in .ci/run) would make poetry install into it, not the project;
    # systemd's variables (a CI runner run as a service) would send the first admin's token
    # to a file instead of the log the tests read.
    kept_out = ("VIRTUAL_ENV", "CONDA_PREFIX", "INVOCATION_ID", "JOURNAL_STREAM")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(drop) and key not in kept_out
    }
    env.update(extra or {})
    return env


def client_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return base_env(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "UV_NO_CONFIG": "1",
            "UV_CACHE_DIR": str(home / "uv-cache"),
            "UV_PYTHON_DOWNLOADS": "never",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }
    )


@dataclasses.dataclass
class Server:
    url: str
    data: Path
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    @property
    def admin_token(self) -> str:
        match = TOKEN_RE.search(self.log.read_text())
        assert match, self.log.read_text()
        return match.group(0)

    def cli(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `minirepo ARGS` on this server's data folder, as an operator would."""
        cmd = [sys.executable, "-m", "minirepo", *args]
        result = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, env=self.env, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{cmd} failed: {result.stderr}")
        return result

    def add_user(self, name: str, password: str, *, admin: bool = False) -> None:
        args = ["user", "add", name, "--password-stdin"] + (["--admin"] if admin else [])
        self.cli(*args, stdin=password + "\n")

    def create_token(self, user: str, *extra: str) -> str:
        result = self.cli("token", "create", "--user", user, *extra)
        return result.stdout.strip().splitlines()[-1]

    def upload(
        self,
        path: Path,
        token: str | None = None,
        *,
        auth: tuple[str, str] | None = None,
        url: str | None = None,
        **fields: str,
    ) -> requests.Response:
        """POST `path` as twine would; the admin's token unless `token` or `auth` is given."""
        credentials = auth or ("__token__", token or self.admin_token)
        return post_upload(url or f"{self.url}/", path, credentials, fields=dict(fields))

    def log_tail(self) -> str:
        """The end of the server's own messages: the access log's line per request would
        crowd out the one a test looks for (tests/integration/test_access_log.py reads it)."""
        lines = self.log.read_text().splitlines(keepends=True)
        return "".join(line for line in lines if " minirepo.access: " not in line)[-4000:]

    def wait_for_log(self, text: str, timeout: float = 15) -> str:
        """The first line of the server's log holding `text`, polled for up to `timeout`
        seconds; fails at once, with the log, if the server exits first."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None  # before the read: its last lines count
            log = self.log.read_text()
            found = next((line for line in log.splitlines() if text in line), None)
            if found is not None:
                return found
            if exited:
                raise AssertionError(f"the server exited ({self.proc.returncode}) first:\n{log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {text!r} within {timeout} s:\n{log}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.05)


def wait_answering(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30, pause: float = 0.05
) -> float:
    """Poll `url` until it answers below 500; returns the seconds that took.

    Between tries it waits on the process itself, so a crash shows at once with its log.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status < 500:
                    return time.perf_counter() - start
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return time.perf_counter() - start
        except (urllib.error.URLError, OSError):
            pass
        try:
            proc.wait(timeout=pause)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text()}")
    raise RuntimeError(f"{url} did not answer within {timeout}s:\n{log.read_text()}")


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    wait_answering(f"{url}/-/health", proc, log)


@contextlib.contextmanager
def running_server(
    data: Path,
    settings: dict[str, str] | None = None,
    preexec_fn: Callable[[], object] | None = None,
    prelude: str = "",
    serve_args: tuple[str, ...] = (),
) -> Iterator[Server]:
    """`prelude`: Python run in the server process before minirepo starts, for a test that
    injects a fault (patching a function) without a hook in minirepo's own code.
    `serve_args`: more `serve` flags (`--no-upstream`, `--offline`)."""
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = base_env(
        {
            "MINIREPO_PASSWORD_HASH": FAST_HASH,
            "MINIREPO_DATA": str(data / "repo"),
            # Not ./minirepo.toml or /etc/minirepo/minirepo.toml of the machine running tests.
            "MINIREPO_CONFIG": os.devnull,
            **(settings or {}),
        }
    )
    start = (
        ["-c", f"{prelude}\nfrom minirepo.cli import main\nmain()"]
        if prelude
        else ["-m", "minirepo"]
    )
    cmd = [sys.executable, *start, "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += serve_args
    log_path = data / "serve.log"
    with log_path.open("ab") as log:  # a pipe nobody reads would block the server
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec_fn
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log_path)
        yield Server(url, data / "repo", log_path, env, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
