"""A throwaway PostgreSQL server for the tests, so the suite runs against PostgreSQL too.

A pytest plugin (`pytest_plugins` in tests/conftest.py). `postgres_server` runs `initdb` and
`pg_ctl` from Debian's `postgresql` package in a temp folder, once per session and so once
per xdist worker that asks for it; `postgres_url` gives each test a fresh empty database.

The cluster trusts every connection, and so has no password anywhere: it listens on
127.0.0.1 only, on a port picked at run time, and on a unix socket inside its own folder.
initdb refuses to run as root, so under root the server runs as the `postgres` OS user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import TupleRow

from tests.helpers.serverproc import free_port

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get install postgresql"
SUPERUSER = "postgres"
SERVER_OS_USER = "postgres"  # the OS user Debian's package creates, used when tests run as root
TIMEOUT = 60  # seconds for initdb, for pg_ctl's start or stop, and for a connection
PORT_TRIES = 3  # another process may take the free port before the server binds it
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",  # a throwaway cluster: durability only costs time
    "full_page_writes": "off",
    "synchronous_commit": "off",
}
HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    folder: Path  # holds data/, the unix socket and server.log

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect_admin(self) -> psycopg.Connection[TupleRow]:
        """An autocommit connection to the `postgres` database; the caller closes it."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname="postgres",
            autocommit=True,
            connect_timeout=TIMEOUT,
        )


def find_bindir() -> Path:
    """`pg_config --bindir`, else the highest /usr/lib/postgresql/*/bin, holding initdb."""
    candidates = []
    if pg_config := shutil.which("pg_config"):
        # libpq-dev's pg_config may name a version whose server is not installed: checked below.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))
    versioned = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _version(p.parent.name)]
    candidates += sorted(versioned, key=lambda p: _version(p.parent.name), reverse=True)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    searched = ", ".join(str(p) for p in candidates) or "pg_config, /usr/lib/postgresql/*/bin"
    pytest.fail(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found in {searched}; the suite runs "
        f"against PostgreSQL too. Install them with `sudo {INSTALL_HINT}` (Debian/Ubuntu).",
        pytrace=False,
    )


def _version(name: str) -> tuple[int, ...]:
    """(15,) for the folder "15"; () for a folder that is no version."""
    if not re.fullmatch(r"\d+(\.\d+)*", name):
        return ()
    return tuple(int(part) for part in name.split("."))


class ServerCommandFailed(RuntimeError):
    """initdb or pg_ctl failed; the message holds its output."""


def _run(cmd: list[str], folder: Path, timeout: float) -> None:
    """Run a server command as the server's OS user, in `folder`."""
    as_root = os.geteuid() == 0
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    try:
        subprocess.run(
            cmd,
            cwd=folder,  # the postgres user may not be allowed into the tests' working folder
            env=env,
            user=SERVER_OS_USER if as_root else None,
            group=SERVER_OS_USER if as_root else None,
            extra_groups=[] if as_root else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
        )
    except subprocess.CalledProcessError as exc:
        output = f"{exc.stdout}{exc.stderr}{_log_tail(folder)}"
        raise ServerCommandFailed(f"{cmd} exited with {exc.returncode}:\n{output}") from exc
    except subprocess.TimeoutExpired as exc:
        output = _log_tail(folder)
        raise ServerCommandFailed(f"{cmd} took over {timeout}s:\n{output}") from exc


def _log_tail(folder: Path) -> str:
    path = folder / "server.log"
    return f"--- {path}:\n{path.read_text()[-4000:]}" if path.exists() else ""


def _make_folder() -> Path:
    """A private temp folder the server's OS user owns (pytest's basetemp is root's, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="minirepo-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(SERVER_OS_USER)
        except KeyError:
            shutil.rmtree(folder)
            pytest.fail(
                f"Tests run as root and initdb refuses root, but there is no "
                f"`{SERVER_OS_USER}` OS user to run it as; `{INSTALL_HINT}` creates it.",
                pytrace=False,
            )
        os.chown(folder, account.pw_uid, account.pw_gid)
    return folder


def _init_cluster(bindir: Path, folder: Path) -> Path:
    data = folder / "data"
    initdb = [str(bindir / "initdb"), "--pgdata", str(data), "--username", SUPERUSER]
    initdb += ["--auth", "trust", "--encoding", "UTF8", "--no-locale", "--no-sync"]
    _run(initdb, folder, TIMEOUT * 2)
    settings = {**SETTINGS, "unix_socket_directories": str(folder)}
    lines = [f"{key} = '{_quote(value)}'\n" for key, value in settings.items()]
    with (data / "postgresql.conf").open("a") as conf:
        conf.writelines(lines)
    (data / "pg_hba.conf").write_text(HBA)
    return data


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _start(bindir: Path, folder: Path, data: Path) -> int:
    """Start the server on a free port and wait until it accepts connections; returns the port."""
    server_log = folder / "server.log"
    pg_ctl = [str(bindir / "pg_ctl"), "--pgdata", str(data), "--log", str(server_log)]
    for _ in range(PORT_TRIES - 1):
        port = free_port()
        server_log.unlink(missing_ok=True)  # so the check below reads this try's log only
        try:
            _run([*pg_ctl, *_start_args(port)], folder, TIMEOUT + 30)
        except ServerCommandFailed as exc:
            if "Address already in use" not in str(exc):
                raise
            log.info("Port %s was taken before PostgreSQL bound it; trying another", port)
            continue
        return port
    port = free_port()
    server_log.unlink(missing_ok=True)
    _run([*pg_ctl, *_start_args(port)], folder, TIMEOUT + 30)
    return port


def _start_args(port: int) -> list[str]:
    return ["--wait", "--timeout", str(TIMEOUT), "--options", f"-p {port}", "start"]


def _stop(bindir: Path, server: PostgresServer) -> None:
    pg_ctl = [str(bindir / "pg_ctl"), "--pgdata", str(server.folder / "data"), "--wait"]
    pg_ctl += ["--timeout", str(TIMEOUT)]
    try:
        _run([*pg_ctl, "--mode", "fast", "stop"], server.folder, TIMEOUT + 30)
    except ServerCommandFailed:
        _run([*pg_ctl, "--mode", "immediate", "stop"], server.folder, TIMEOUT + 30)
        raise


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A running throwaway cluster, stopped and deleted on exit (the benchmarks use it
    outside pytest)."""
    bindir = find_bindir()
    folder = _make_folder()
    try:
        data = _init_cluster(bindir, folder)
        port = _start(bindir, folder, data)
        server = PostgresServer("127.0.0.1", port, SUPERUSER, folder)
        try:
            yield server
        finally:
            _stop(bindir, server)
    finally:
        shutil.rmtree(folder)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running throwaway cluster for the session (so per xdist worker)."""
    with running_postgres() as server:
        yield server


@contextlib.contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """Create an empty database with a unique name and yield its URL; drop it afterwards."""
    name = f"test_{uuid.uuid4().hex}"
    with server.connect_admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.url(name)
    finally:
        try:
            with server.connect_admin() as conn:
                # FORCE: a server process a test started may still hold a connection.
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))
        except psycopg.Error as exc:
            # Harmless: the whole cluster is deleted at the end of the session.
            log.warning("Could not drop test database %s: %s", name, exc)


def restore_dump(url: str, dump: Path) -> None:
    """Run a plain `pg_dump` file into the database at `url` with psql, in one transaction;
    raises at its first error. psql runs as this process's user: the dump is read here."""
    # pg_dump from 15.14 (and 13.22, 14.19, 16.10, 17.6) wraps its output in \restrict and
    # \unrestrict, which older psql refuses as unknown commands; a trusted fixture needs neither.
    text = "".join(
        line
        for line in dump.read_text().splitlines(keepends=True)
        if not line.startswith(("\\restrict ", "\\unrestrict "))
    )
    cmd = [str(find_bindir() / "psql"), "--no-psqlrc", "--quiet", "--single-transaction"]
    cmd += ["--set", "ON_ERROR_STOP=1", "--dbname", url]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    try:
        subprocess.run(
            cmd, input=text, env=env, capture_output=True, text=True, check=True, timeout=TIMEOUT
        )
    except subprocess.CalledProcessError as exc:
        raise ServerCommandFailed(
            f"psql could not restore {dump}, exit {exc.returncode}:\n{exc.stdout}{exc.stderr}"
        ) from exc


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """`postgresql://postgres@127.0.0.1:PORT/NAME` of a fresh empty database for this test."""
    with fresh_database(postgres_server) as url:
        yield url
