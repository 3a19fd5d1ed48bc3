"""Running the app on waitress, and what the operator sees at start."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import logging
import shutil
import signal
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import click
from waitress.adjustments import Adjustments

from minirepo import accesslog, config, metrics, models, netaddrs, shutdown, waitress_fixes, workers
from minirepo.app import create_app
from minirepo.config import WILDCARD_HOSTS, Settings
from minirepo.db import open_database
from minirepo.errors import UserError
from minirepo.services import repos
from minirepo.services.datafolder import (
    ADMIN_NAME,
    FIRST_TOKEN_FILE,
    DataFolder,
    ServeLock,
    create_first_admin,
    open_for_serving,
)
from minirepo.services.housekeeping import Housekeeping

log = logging.getLogger(__name__)

# waitress reads a file download in chunks of the socket's send buffer, which Linux sizes
# at about 4 MB on loopback: two such chunks per download in flight. A fixed 256 KiB
# (512 KiB once the kernel doubles it) keeps a download's memory flat at full speed.
SOCKET_OPTIONS = [
    (socket.SOL_TCP, socket.TCP_NODELAY, 1),
    (socket.SOL_SOCKET, socket.SO_SNDBUF, 128 * 1024),
]

# glibc's mallopt() option for the arena count (malloc.h), and the count we keep.
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2

# Stands for the admin's token in the lines printed when it went to a file instead.
TOKEN_PLACEHOLDER = "mr-…"  # noqa: S105 - not a token


def configure_logging(level: str, log_format: str = "text") -> None:
    formatter: logging.Formatter = (
        accesslog.JsonFormatter()
        if log_format.lower() == "json"
        else logging.Formatter(accesslog.TEXT_FORMAT)
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # One warning per queued request would make a busy index spend its time logging.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # peewee logs every query at DEBUG with its parameters (token digests, password
    # hashes): `log_level = "debug"` is for minirepo's own lines, never for those.
    logging.getLogger("peewee").setLevel(logging.INFO)
    # boto3 (`storage = "s3://…"`) says at INFO where it found its credentials, at each start
    # and in each worker: not news for an operator who set them.
    logging.getLogger("botocore").setLevel(logging.WARNING)


def _address(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.port}"


def listen_error(settings: Settings, exc: OSError) -> UserError:
    if exc.errno == errno.EADDRINUSE:
        return UserError(
            f"Address {_address(settings)} is already in use: "
            "stop the other server or pick another with --port"
        )
    return UserError(
        f"Cannot listen on {_address(settings)}: {exc.strerror or exc} (check --host and --port)"
    )


def check_address(settings: Settings) -> None:
    """Bind each address `serve` will listen on and let go: a busy port is reported before
    anything is made in the data folder (or the folder itself).

    With one process waitress binds when its server is made, which needs the app and so
    the open folder; handing it sockets bound here would mean giving up its host and port
    handling. So the probe resolves the host as waitress does and sets its options:
    SO_REUSEADDR, so that a port a stopped server left in TIME_WAIT counts as free, as it
    will for waitress. A process taking the port in the moment between is reported the
    same way by `_serve`.
    """
    for probe in bound_sockets(settings):
        probe.close()


def bound_sockets(settings: Settings) -> list[socket.socket]:
    """A socket bound to each address waitress would listen on, with its options; the
    caller closes them (the workers' parent listens on them)."""
    try:
        wanted = Adjustments(host=settings.host, port=settings.port).listen
    except ValueError as exc:
        raise UserError(
            f"Cannot listen on {_address(settings)}: no such address (check --host)"
        ) from exc
    made: list[socket.socket] = []
    try:
        for family, kind, proto, address in wanted:
            sock = socket.socket(family, kind, proto)
            made.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in made:
            sock.close()
        raise listen_error(settings, exc) from exc
    return made


def index_is_public(settings: Settings) -> bool:
    """What the database says of the default repository (the setting may be unset)."""
    row = models.Repository.get(models.Repository.name == settings.default_repository)
    return bool(row.read == "anonymous")


def served_urls(settings: Settings) -> list[str]:
    """The URLs to print: `public_url` or the bind address; for a bind to every interface,
    one per address of this machine that other machines can reach (waitress binds 0.0.0.0
    to IPv4 only and :: to IPv6 only), or its host name when none is found."""
    if settings.public_url or settings.host not in WILDCARD_HOSTS:
        return [settings.base_url]
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    hosts = (
        f"[{address}]" if ":" in address else address
        for address in netaddrs.interface_addresses(family)
    )
    return [f"http://{host}:{settings.port}/" for host in hosts] or [settings.base_url]


def first_start_banner(
    settings: Settings,
    token: str,
    is_public: bool = True,
    group: str | None = None,
    token_file: Path | None = None,
) -> str:
    """The copy-paste lines printed once, with the real URL and the admin's token.

    With the `group` of the first start, installs go through it (internal packages and
    PyPI's from one URL) and uploads to the default repository. When reading needs
    credentials the install lines carry the token in the URL, so that every printed line
    works as it is. With `token_file` (under systemd: the journal keeps what is printed)
    the lines name the file and show a placeholder instead of the token.
    """
    urls = served_urls(settings)
    base = urls[0]
    if token_file is not None:
        token = TOKEN_PLACEHOLDER
    parts = urllib.parse.urlsplit(base)
    host = parts.hostname or ""
    simple = f"{group}/simple/" if group else "simple/"
    upload_url = f"{base}{settings.default_repository}/" if group else base
    index_url = f"{base}{simple}"
    if not is_public:
        index_url = urllib.parse.urlunsplit(
            parts._replace(netloc=f"__token__:{token}@{parts.netloc}", path=f"{parts.path}{simple}")
        )
    trusted = f" --trusted-host {host}" if parts.scheme == "http" else ""
    made = f"the repository {settings.default_repository!r}"
    if group:
        made = (
            f"the repository {settings.default_repository!r} for uploads, the proxy "
            f"{repos.PROXY_NAME!r} of {settings.upstream} and the group {group!r} of both "
            "for installs,"
        )
    lines = [f"First start: created {made} and the account {ADMIN_NAME!r}."]
    if token_file is None:
        lines += ["The admin's API token (shown only now; keep it safe):", "", f"    {token}", ""]
    else:
        lines += [
            f"The admin's API token is in {token_file}, readable by this service's user only:",
            f"    sudo cat {token_file}",
            f"Keep it safe, delete that file, and put it in place of {token} below.",
            "",
        ]
    if len(urls) > 1:
        lines.append(f"This machine's other addresses: {', '.join(urls[1:])}")
    if not is_public:
        lines.append("Reading needs credentials (read = authenticated); they are in the URLs.")
    lines += [
        "Install from it:",
        f"    pip install --index-url {index_url}{trusted} PACKAGE",
        f"    uv pip install --index-url {index_url} PACKAGE",
        "Publish to it:",
        f"    twine upload --repository-url {upload_url} -u __token__ -p {token} dist/*",
        f"    uv publish --publish-url {upload_url} --token {token} dist/*",
        "Poetry:",
        f"    poetry source add --priority=primary minirepo {base}{simple}",
        f"    poetry config repositories.minirepo {upload_url}",
        f"    poetry config http-basic.minirepo __token__ {token}",
        f"Set a password for {ADMIN_NAME!r} (the web UI at {base} logs in with it):  "
        f"minirepo user passwd {ADMIN_NAME}",
        "",
    ]
    return "\n".join(lines)


def limit_malloc_arenas() -> None:
    """Keep glibc to two malloc arenas, as MALLOC_ARENA_MAX=2 would, however we are started.

    glibc allows eight arenas per core, each keeping its own high-water mark, and the
    waitress threads would each take one. The benchmark's RSS after load moves within
    its noise with or without this (44.4-46.7 MB in quick runs), so it is a bound, not a
    measured saving. Must run before the worker threads start; a libc without mallopt
    (musl) is left alone.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def run(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    limit_malloc_arenas()
    check_address(settings)  # before the lock, which makes the data folder
    lock = ServeLock(settings.data)
    lock.acquire()
    try:
        if settings.workers > 1:
            _serve_workers(settings)
        else:
            _serve(settings)
    finally:
        lock.release()


def _serve(settings: Settings) -> None:
    folder = open_for_serving(settings)
    folder.database.shared = not folder.database.is_sqlite  # other servers may use it
    app = create_app(settings, folder)
    server = _waitress(app, settings)
    _announce(settings, folder)
    _answer(settings, folder, app, server, housekeeping=True)


def _serve_workers(settings: Settings) -> None:
    """The parent of `--workers N` (`minirepo.workers`): the folder opened, the port bound
    and the first start announced once, then N workers forked, each with its own database
    connection; retention's daily look runs in worker 0 only."""
    folder = open_for_serving(settings)
    sockets = bound_sockets(settings)
    counted = settings.data / "tmp" / "worker-metrics"  # the next start's sweep clears it too
    try:
        for sock in sockets:
            sock.listen(Adjustments().backlog)
        _announce(settings, folder)
        folder.database.close()  # no connection may cross the fork
        metrics.prepare_shared_folder(counted)

        def work(index: int) -> None:
            metrics.share_across_processes(counted)
            database = open_database(
                settings.database,
                settings.database_path,
                settings.busy_timeout,
                create=False,
                shared=True,
            )
            own = dataclasses.replace(folder, database=database)
            app = create_app(settings, own)
            server = _waitress(app, settings, sockets)
            _answer(settings, own, app, server, index == 0, (workers.WORKER_STOP,))

        supervisor = workers.Supervisor(
            settings.workers,
            work,
            settings.stop_timeout,
            on_exit=lambda pid: metrics.forget_process(counted, pid),
        )
        try:
            supervisor.run()
        except workers.GaveUp as exc:
            raise UserError(f"Stopped: {exc} (its error is in the log above)") from exc
    finally:
        for sock in sockets:
            sock.close()
        shutil.rmtree(counted, ignore_errors=True)


def _waitress(app: Any, settings: Settings, sockets: list[socket.socket] | None = None) -> Any:
    try:
        server = waitress_fixes.create_server(
            app,
            settings,
            app.extensions["minirepo.preflight"],
            app.extensions["minirepo.spool"],
            sockets,
        )
    except OSError as exc:
        raise listen_error(settings, exc) from exc
    # Not a create_server() keyword, but read from the shared adjustments at each accept.
    server.adj.socket_options = SOCKET_OPTIONS
    return server


def _announce(settings: Settings, folder: DataFolder) -> None:
    """The first start's admin and banner, and the line that says where we serve."""
    # Under systemd the token goes to a file, not into the journal (readable by `adm`).
    token_file = settings.data.resolve() / FIRST_TOKEN_FILE if config.started_by_systemd() else None
    with folder.database.activated():
        admin_token = create_first_admin(settings, token_file)
        is_public = index_is_public(settings)
        group = repos.first_start_group()
    if admin_token:
        click.echo(first_start_banner(settings, admin_token, is_public, group, token_file))
    urls = " and ".join(served_urls(settings))
    processes = f", {settings.workers} workers" if settings.workers > 1 else ""
    click.echo(f"minirepo is serving {urls} (data in {settings.data}{processes})")
    sys.stdout.flush()


def _answer(
    settings: Settings,
    folder: DataFolder,
    app: Any,
    server: Any,
    housekeeping: bool,
    stop_signals: tuple[signal.Signals, ...] = shutdown.STOP_SIGNALS,
) -> None:
    """Serve until a stop signal; `housekeeping`: this process runs the daily jobs."""
    keeper = Housekeeping(folder.database) if housekeeping else None
    if keeper is not None:
        keeper.start()
    try:
        shutdown.GracefulServer(server, settings.stop_timeout, stop_signals).serve()
    finally:
        if keeper is not None:
            keeper.stop()
        app.extensions["minirepo"].downloads.close()  # the last minute's counts
