"""Running the app on waitress, and what the operator sees at start."""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import sys
import urllib.parse
from types import FrameType

import click

from minirepo import models, waitress_fixes
from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.services import repos
from minirepo.services.datafolder import (
    ADMIN_NAME,
    ServeLock,
    create_first_admin,
    open_for_serving,
)

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


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One warning per queued request would make a busy index spend its time logging.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def index_is_public(settings: Settings) -> bool:
    """What the database says of the default repository (the setting may be unset)."""
    row = models.Repository.get(models.Repository.name == settings.default_repository)
    return bool(row.read == "anonymous")


def first_start_banner(
    settings: Settings, token: str, is_public: bool = True, group: str | None = None
) -> str:
    """The copy-paste lines printed once, with the real URL and the admin's token.

    With the `group` of the first start, installs go through it (internal packages and
    PyPI's from one URL) and uploads to the default repository. When reading needs
    credentials the install lines carry the token in the URL, so that every printed line
    works as it is.
    """
    base = settings.base_url
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
    lines = [
        f"First start: created {made} and the account {ADMIN_NAME!r}.",
        "The admin's API token (shown only now; keep it safe):",
        "",
        f"    {token}",
        "",
    ]
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
        f"Set a password for {ADMIN_NAME!r}:  minirepo user passwd {ADMIN_NAME}",
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


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(settings: Settings) -> None:
    configure_logging(settings.log_level)
    limit_malloc_arenas()
    lock = ServeLock(settings.data)
    lock.acquire()
    try:
        _serve(settings)
    finally:
        lock.release()


def _serve(settings: Settings) -> None:
    folder = open_for_serving(settings)
    app = create_app(settings, folder)
    server = waitress_fixes.create_server(app, settings, app.extensions["minirepo.preflight"])
    # Not a create_server() keyword, but read from the shared adjustments at each accept.
    server.adj.socket_options = SOCKET_OPTIONS
    with folder.database.activated():
        admin_token = create_first_admin(settings)
        is_public = index_is_public(settings)
        group = repos.first_start_group()
    if admin_token:
        click.echo(first_start_banner(settings, admin_token, is_public, group))
    click.echo(f"minirepo is serving {settings.base_url} (data in {settings.data})")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    finally:
        server.close()
