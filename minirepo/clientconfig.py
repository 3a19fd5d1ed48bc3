"""The client configuration `minirepo setup-client` writes: pip's, uv's and twine's files.

Apart from the command (no click, no network), so that each file's text and place is
tested without a server, and so that there is one way to write a file that may hold a
token: mode 0600 from its first byte, complete or not there at all, and never over an
existing file unless asked.

Where each client looks (the user-wide file, so the one configuration serves every
project and every venv of this account):

- pip: `$XDG_CONFIG_HOME/pip/pip.conf` (default `~/.config`); on macOS
  `~/Library/Application Support/pip/pip.conf` when that folder exists (pip prefers it
  then); on Windows `%APPDATA%\\pip\\pip.ini`. pip also reads the machine's files
  (`/etc/pip.conf`, `$XDG_CONFIG_DIRS/pip/pip.conf`) first: the user file's `index-url`
  wins over theirs, their `extra-index-url` and `find-links` stay.
- uv: `$XDG_CONFIG_HOME/uv/uv.toml` (Linux and macOS), `%APPDATA%\\uv\\uv.toml` on
  Windows. A project's own `pyproject.toml`/`uv.toml` settings win over it.
- twine: `~/.pypirc`, used with `twine upload -r minirepo`.

Credentials: pip and uv both send the user info of an index URL pre-emptively, on pages,
`.metadata` and files, and uv takes it in `[[index]] url` (and `publish-url`, for
`uv publish --index minirepo`). uv.toml has no username/password keys (only the
`UV_INDEX_<NAME>_USERNAME`/`_PASSWORD` variables), and `~/.netrc` is read by uv only after a
401, for every URL again; so the token goes into the URLs of files only this user can read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

from minirepo.credentials import TOKEN_PREFIX, TOKEN_USERNAME, public_prefix
from minirepo.errors import UserError

# The name of the index in uv.toml, the section in ~/.pypirc and poetry's source: what a
# user types (`twine upload -r minirepo`, `uv publish --index minirepo`).
INDEX_NAME = "minirepo"
# What new_token_secret makes; a token is put into URLs and INI/TOML files unquoted, so
# anything else (an account password, a pasted line with a space) is refused up front.
TOKEN_RE = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]+")
MASK = "***"
# Variables that make a client ignore or outrank the file written for it.
OVERRIDING_VARIABLES = {
    "PIP_CONFIG_FILE": "pip reads that file instead of its user configuration",
    "PIP_INDEX_URL": "pip installs from that URL",
    "UV_CONFIG_FILE": "uv reads that file instead of its user configuration",
    "UV_NO_CONFIG": "uv reads no configuration file",
    "UV_DEFAULT_INDEX": "uv installs from that URL",
    "UV_INDEX_URL": "uv installs from that URL",
    "TWINE_REPOSITORY_URL": "twine uploads there, whatever -r names",
}


@dataclasses.dataclass(frozen=True)
class Target:
    """The server's URLs for installs and uploads, and the token for both (None: none)."""

    base: str
    repo: str
    upload_repo: str
    token: str | None = None

    @property
    def index_url(self) -> str:
        return f"{self.base}{self.repo}/simple/"

    @property
    def upload_url(self) -> str:
        return f"{self.base}{self.upload_repo}/"

    def with_token(self, url: str) -> str:
        """`url` with `__token__:TOKEN@` in it: the one form pip and uv both read."""
        if self.token is None:
            return url
        parts = urllib.parse.urlsplit(url)
        return parts._replace(netloc=f"{TOKEN_USERNAME}:{self.token}@{parts.netloc}").geturl()

    @property
    def trusted_host(self) -> str | None:
        """pip ignores a plain-http index on any host but loopback unless it is trusted."""
        parts = urllib.parse.urlsplit(self.base)
        return parts.netloc if parts.scheme == "http" else None


@dataclasses.dataclass(frozen=True)
class ClientFile:
    """One file to write: for which client, where, what, and the token it holds."""

    client: str
    path: Path
    text: str
    token: str | None

    def shown(self, show_token: bool) -> str:
        """The text for a terminal: the token as its public prefix (what `minirepo token
        list` shows) and `***`, unless asked, since terminals end up in logs and tickets."""
        if self.token is None or show_token:
            return self.text
        return self.text.replace(self.token, public_prefix(self.token) + MASK)


def server_base(url: str) -> str:
    """The server's base URL with one trailing slash, or a UserError saying what is wrong.

    Refuses user info (the token would land in shell history; it comes from
    --token-stdin), an index or query URL, and whitespace, which no file format here
    could hold unquoted."""
    if not url or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UserError(f"{url!r} is not a URL; give the server's, e.g. http://box:8080/")
    parts = urllib.parse.urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UserError(f"{url!r} is not an http(s) URL; give the server's, e.g. http://box:8080/")
    if "@" in parts.netloc:
        raise UserError("Put no credentials in the URL: pass the token with --token-stdin")
    if parts.query or parts.fragment:
        raise UserError(f"{url!r}: give the server's base URL, without ?query or #fragment")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    if path.endswith("/simple/"):
        raise UserError(
            f"{url!r} is an index URL; give the server's base URL (e.g. http://box:8080/) "
            "and the repository with --repo"
        )
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def check_token(token: str) -> str:
    if not TOKEN_RE.fullmatch(token):
        raise UserError(
            f"That is not a minirepo API token (they start with {TOKEN_PREFIX!r}); "
            "make one with: minirepo token create"
        )
    return token


def _config_home(env: Mapping[str, str], home: Path, platform: str) -> Path:
    """`%APPDATA%` on Windows, else `$XDG_CONFIG_HOME` when absolute (the XDG rule uv
    follows), else `~/.config`."""
    if platform == "win32":
        appdata = env.get("APPDATA", "")
        if not appdata:
            raise UserError("APPDATA is not set: no place for pip's and uv's configuration")
        return Path(appdata)
    xdg = env.get("XDG_CONFIG_HOME", "")
    return Path(xdg) if os.path.isabs(xdg) else home / ".config"


def pip_config_path(env: Mapping[str, str], home: Path, platform: str = sys.platform) -> Path:
    if platform == "darwin":
        preferred = home / "Library" / "Application Support" / "pip"
        if preferred.is_dir():
            return preferred / "pip.conf"
    name = "pip.ini" if platform == "win32" else "pip.conf"
    return _config_home(env, home, platform) / "pip" / name


def uv_config_path(env: Mapping[str, str], home: Path, platform: str = sys.platform) -> Path:
    return _config_home(env, home, platform) / "uv" / "uv.toml"


def _header(target: Target) -> str:
    return f"# Written by `minirepo setup-client` for {target.base}\n"


def pip_conf(target: Target) -> str:
    return _header(target) + pip_settings(target)


def pip_settings(target: Target) -> str:
    """pip.conf's settings, also shown as a snippet on the repository page."""
    lines = ["[global]\n", f"index-url = {target.with_token(target.index_url)}\n"]
    if target.trusted_host is not None:
        lines.append(f"trusted-host = {target.trusted_host}\n")
    return "".join(lines)


def uv_toml(target: Target) -> str:
    """One default index: uv then asks no other (PyPI comes through the group, if at all).
    TOML's basic strings take JSON's escapes, so json.dumps quotes them."""
    return (
        _header(target)
        + "[[index]]\n"
        + f"name = {json.dumps(INDEX_NAME)}\n"
        + f"url = {json.dumps(target.with_token(target.index_url))}\n"
        + f"publish-url = {json.dumps(target.with_token(target.upload_url))}\n"
        + "default = true\n"
    )


def pypirc(target: Target) -> str:
    """twine reads it with RawConfigParser: no `%` interpolation to escape. Without a
    token twine asks for the password (or takes TWINE_PASSWORD)."""
    return _header(target) + pypirc_settings(target)


def pypirc_settings(target: Target) -> str:
    """~/.pypirc's sections, also shown as a snippet on the repository page."""
    lines = [
        "[distutils]\n",
        f"index-servers =\n    {INDEX_NAME}\n",
        "\n",
        f"[{INDEX_NAME}]\n",
        f"repository = {target.upload_url}\n",
        f"username = {TOKEN_USERNAME}\n",
    ]
    if target.token is not None:
        lines.append(f"password = {target.token}\n")
    return "".join(lines)


def client_files(
    target: Target, env: Mapping[str, str], home: Path, platform: str = sys.platform
) -> list[ClientFile]:
    files = [
        ("pip", pip_config_path(env, home, platform), pip_conf(target)),
        ("uv", uv_config_path(env, home, platform), uv_toml(target)),
        ("twine", home / ".pypirc", pypirc(target)),
    ]
    return [ClientFile(client, path, text, target.token) for client, path, text in files]


def poetry_commands(target: Target) -> list[str]:
    """Poetry has no user-wide index: its sources live in each project's pyproject.toml,
    and its user config.toml holds every other `poetry config` setting too. So these are
    printed, not written; `http-basic` without a password asks for it (poetry then keeps
    it in the keyring, or in its auth.toml), so no token is shown or lands in history."""
    return [
        f"poetry source add --priority=primary {INDEX_NAME} {target.index_url}",
        f"poetry config repositories.{INDEX_NAME} {target.upload_url}",
        f"poetry config http-basic.{INDEX_NAME} {TOKEN_USERNAME}",
    ]


def overriding_variables(env: Mapping[str, str]) -> list[str]:
    """One line per variable set in `env` that would hide a written file from its client."""
    return [
        f"{name} is set: {effect}" for name, effect in OVERRIDING_VARIABLES.items() if env.get(name)
    ]


def write(files: Sequence[ClientFile], force: bool) -> None:
    """Write every file, or none when one exists and `force` is not set.

    Each is written to a temporary file beside it, created with its final mode (0600 if
    it holds a token, so the token is never readable by others for a moment) and then
    linked into place (fails if a file appeared meanwhile) or, with `force`, renamed over
    the old one. A client's folder made here is 0700: it holds credentials."""
    existing = [str(file.path) for file in files if file.path.exists()]
    if existing and not force:
        listed = " and ".join(
            [", ".join(existing[:-1]), existing[-1]] if existing[1:] else existing
        )
        raise UserError(
            f"{listed} already exist{'' if existing[1:] else 's'}; nothing written (pass "
            "--force to replace, or --print to see the contents)"
        )
    for file in files:
        file.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = file.path.with_name(f".{file.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if file.token else 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(file.text)
                out.flush()
                os.fsync(out.fileno())
            if force:
                os.replace(temp, file.path)
            else:
                try:
                    os.link(temp, file.path)
                except FileExistsError:
                    raise UserError(
                        f"{file.path} appeared meanwhile; nothing more written (pass --force "
                        "to replace it)"
                    ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
