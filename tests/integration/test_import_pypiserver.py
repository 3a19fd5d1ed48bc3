"""From a real pypiserver to minirepo: fill pypiserver through its own upload path (twine,
htpasswd logins), import its folder and htpasswd file, install from minirepo with pip, and
log in to minirepo with a pypiserver password, which replaces its hash with ours."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt

from tests.helpers.clients import pip_install_into, run, twine_upload_to
from tests.helpers.distfactory import Dist, make_sdist, make_wheel
from tests.helpers.serverproc import base_env, free_port, running_server, wait_answering

ALICE_PASSWORD = "alice-password-1"  # {SHA}
BOB_PASSWORD = "bob-password-1"  # bcrypt, as Apache's htpasswd -B writes it ($2y$)
PYPI_SERVER = shutil.which("pypi-server", path=str(Path(sys.executable).parent))


def write_htpasswd(path: Path) -> Path:
    sha1 = hashlib.sha1(ALICE_PASSWORD.encode(), usedforsecurity=False).digest()
    hashed = bcrypt.hashpw(BOB_PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    lines = [f"alice:{{SHA}}{base64.b64encode(sha1).decode()}", f"bob:$2y${hashed[4:]}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def pypiserver(packages: Path, htpasswd: Path, log: Path) -> Iterator[str]:
    """`pypi-server run` on a free loopback port, uploads behind the htpasswd file."""
    assert PYPI_SERVER, "pypiserver is in the test extra"
    port = free_port()
    cmd = [PYPI_SERVER, "run", "-i", "127.0.0.1", "-p", str(port), "-P", str(htpasswd)]
    cmd += ["-a", "update", "--disable-fallback", str(packages)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=base_env())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{url}/health", proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def twine_to(url: str, env: dict[str, str], files: list[Path], user: str, password: str) -> None:
    result = twine_upload_to(f"{url}/", env, files, user, password)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_a_real_pypiserver_then_install_and_log_in(
    tmp_path: Path, env: dict[str, str]
) -> None:
    packages, dists = tmp_path / "packages", tmp_path / "dists"
    (packages / "team").mkdir(parents=True)
    dists.mkdir()
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    log = tmp_path / "pypiserver.log"

    # pypiserver stores uploads in its first folder: one run on a subfolder, as a team
    # folder served beside the main one would be, then one on the whole tree.
    lib = [make_wheel(dists, Dist("old_lib", "1.0")), make_sdist(dists, Dist("old_lib", "1.0"))]
    with pypiserver(packages / "team", htpasswd, log) as url:
        twine_to(url, env, lib, "bob", BOB_PASSWORD)
    app = make_wheel(dists, Dist("old-app", "2.0", requires_dist=("old-lib>=1",)))
    with pypiserver(packages, htpasswd, log) as url:
        twine_to(url, env, [app], "alice", ALICE_PASSWORD)
        result = run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--dest",
                str(tmp_path / "check"),
                "--index-url",
                f"{url}/simple/",
                "old-lib",
            ],
            env,
        )
        assert result.returncode == 0, result.stdout + result.stderr  # served from team/
    assert sorted(p.relative_to(packages).as_posix() for p in packages.rglob("*.*")) == [
        "old_app-2.0-py3-none-any.whl",
        "team/old_lib-1.0-py3-none-any.whl",
        "team/old_lib-1.0.tar.gz",
    ]

    with running_server(tmp_path / "minirepo", {"MINIREPO_PAGE_CACHE_SECONDS": "0"}) as server:
        result = server.cli("import", "pypiserver", str(packages), "--htpasswd", str(htpasswd))
        assert "Imported 3 file(s) into main; 0 already there; 0 refused" in result.stdout
        assert "Users: 2 created" in result.stdout
        assert "need a password" not in result.stdout

        landed = pip_install_into(tmp_path / "target", f"{server.url}/simple/", "old-app", env)
        assert {"old_app", "old_lib"} <= landed

        database = server.data / "minirepo.sqlite3"
        for user, password, before in (
            ("alice", ALICE_PASSWORD, "{SHA}"),
            ("bob", BOB_PASSWORD, "$2y$"),
        ):
            assert stored_hash(database, user).startswith(before)
            new = [make_wheel(dists, Dist(f"{user}-new", "1.0"))]
            twine_to(server.url, env, new, user, password)
            assert stored_hash(database, user).startswith("pbkdf2:")


def stored_hash(database: Path, user: str) -> str:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        row = connection.execute(
            "SELECT password_hash FROM user WHERE name = ?", (user,)
        ).fetchone()
    return str(row[0])
