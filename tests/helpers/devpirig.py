"""devpi for the import tests: a real devpi-server in a temp folder (users, indexes and
uploads through its own HTTP API and twine, then `devpi-export` of its state), and
hand-made exports in the same format for the fast tests."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from packaging.utils import canonicalize_name

from tests.helpers.clients import twine_upload_to
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import base_env, free_port, wait_answering

BIN = Path(sys.executable).parent
# devpi-server derives its login key from its secret with argon2 at 512 MiB and 16 passes:
# half a minute on a busy 2-CPU machine. The minimum costs make its start take a second.
FAST_SECRET_KEY = (
    *("--argon2-memory-cost", "8"),
    *("--argon2-time-cost", "1"),
    *("--argon2-parallelism", "1"),
)


@dataclasses.dataclass
class Devpi:
    url: str
    env: dict[str, str]  # the clients' (twine's) environment

    def create_user(self, name: str, password: str) -> None:
        """Anyone may create an account on a default devpi-server, as `devpi user -c` does."""
        self._call("PUT", f"/{name}", None, {"password": password})

    def create_index(self, user: str, password: str, index: str, **config: Any) -> None:
        self._call("PUT", f"/{user}/{index}", (user, password), config)

    def push(
        self, user: str, password: str, source: str, name: str, version: str, target: str
    ) -> None:
        """`devpi push`: a release's files (and docs) copied to another index."""
        body = {"name": name, "version": version, "targetindex": target}
        self._call("PUSH", f"/{source}", (user, password), body)

    def upload_docs(
        self, user: str, password: str, index: str, name: str, version: str, docs: Path
    ) -> None:
        """`devpi upload --only-docs`: a zip of built docs, stored beside the release."""
        fields = {":action": "doc_upload", "protocol_version": "1", "name": name}
        with docs.open("rb") as content:
            answer = requests.post(
                f"{self.url}/{index}/",
                data={**fields, "version": version},
                files={"content": (docs.name, content)},
                auth=(user, password),
                timeout=60,
            )
        answer.raise_for_status()

    def twine(
        self, user: str, password: str, index: str, files: list[Path]
    ) -> subprocess.CompletedProcess[str]:
        return twine_upload_to(f"{self.url}/{index}/", self.env, files, user, password)

    def _call(
        self, method: str, path: str, auth: tuple[str, str] | None, body: dict[str, Any]
    ) -> None:
        answer = requests.request(
            method,
            self.url + path,
            json=body,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=60,
        )
        assert answer.ok, f"{method} {path}: {answer.status_code} {answer.text}"


def _check(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=120)
    assert done.returncode == 0, f"{cmd} failed:\n{log.read_text()[-4000:]}"


@contextlib.contextmanager
def running_devpi(folder: Path, root_password: str, client_env: dict[str, str]) -> Iterator[Devpi]:
    """`devpi-init` (with its root/pypi mirror) and `devpi-server --offline-mode` on a free
    loopback port: the mirror is never asked for anything."""
    serverdir, log, env = folder / "devpi-server", folder / "devpi.log", base_env()
    folder.mkdir(parents=True, exist_ok=True)
    _check(
        [str(BIN / "devpi-init"), "--serverdir", str(serverdir), "--root-passwd", root_password],
        env,
        log,
    )
    port = free_port()
    # No --secretfile: a random secret per start, which is all a one-shot server needs.
    cmd = [str(BIN / "devpi-server"), "--serverdir", str(serverdir), *FAST_SECRET_KEY]
    cmd += ["--offline-mode", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{url}/+api", proc, log, timeout=60)
        yield Devpi(url, client_env)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def export(folder: Path, dest: Path) -> Path:
    """`devpi-export` of a stopped server's folder (made by `running_devpi`)."""
    cmd = [str(BIN / "devpi-export"), "--serverdir", str(folder / "devpi-server"), str(dest)]
    _check(cmd, base_env(), folder / "devpi.log")
    return dest


# Hand-made exports, shaped as devpi-server 6.20's devpi-export writes them (dumpversion 2).
ARGON2_HASH = "$argon2id$v=19$m=65536,t=3,p=4$UoqRUgqBcK5VSinF2FuLEQ$no2W0NqcKJUnV2AssmbWMdwl6z6L7X0CM6nn97yKXeQ"  # noqa: E501


def log_entry(what: str, who: str | None, when: datetime.datetime, **extra: str) -> dict[str, Any]:
    """One line of a file's history: devpi records UTC as six numbers."""
    return {"what": what, "who": who, "when": list(when.timetuple()[:6]), **extra}


def file_entry(
    relpath: str,
    project: str,
    version: str,
    *,
    kind: str = "releasefile",
    log: list[dict[str, Any]] | None = None,
    last_modified: str | None = "Wed, 02 Dec 2026 19:49:28 GMT",
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "version": version,
        "entrymapping": {"project": project, "version": version},
        "type": kind,
        "projectname": project,
        "relpath": relpath,
    }
    if last_modified is not None:
        entry["entrymapping"]["last_modified"] = last_modified
    if log is not None:
        entry["log"] = log
    return entry


def stage(files: list[dict[str, Any]] | None = None, **config: Any) -> dict[str, Any]:
    """A devpi index of uploads with devpi's defaults, `config` overriding them."""
    indexconfig = {
        "type": "stage",
        "bases": [],
        "acl_upload": [],
        "acl_toxresult_upload": [":ANONYMOUS:"],
        "volatile": True,
        "mirror_whitelist": [],
        "mirror_whitelist_inheritance": "intersection",
        **config,
    }
    return {"indexconfig": indexconfig, "projects": {}, "files": files or []}


def mirror(url: str = "https://pypi.org/simple/") -> dict[str, Any]:
    return {"indexconfig": {"type": "mirror", "volatile": False, "mirror_url": url}}


def add_dist(
    folder: Path, index: str, dist: Dist, who: str | None, when: datetime.datetime
) -> dict[str, Any]:
    """A wheel of `dist` where devpi-export puts it, and its entry (uploaded by `who`)."""
    project = canonicalize_name(dist.name)
    place = folder / index / project / dist.version
    place.mkdir(parents=True, exist_ok=True)
    wheel = make_wheel(place, dist)
    relpath = wheel.relative_to(folder).as_posix()
    return file_entry(
        relpath, project, dist.version, log=[log_entry("upload", who, when, dst=index)]
    )


def write_export(
    folder: Path,
    users: dict[str, dict[str, Any]],
    indexes: dict[str, dict[str, Any]],
    dumpversion: str = "2",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "users": {name: {"username": name, **config} for name, config in users.items()},
        "indexes": indexes,
        "dumpversion": dumpversion,
        "pythonversion": [3, 11, 7, "final", 0],
        "devpi_server": "6.20.3",
    }
    (folder / "dataindex.json").write_text(json.dumps(data, indent=2))
    return folder
