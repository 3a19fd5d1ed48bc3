"""Settings: defaults, then `minirepo.toml`, then `MINIREPO_*` variables, then flags.

This is the only module that reads the environment, so every other module sees one frozen
`Settings` and tests can build as many as they like.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from minirepo.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "MINIREPO_"
READ_MODES = ("anonymous", "authenticated")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Addresses that mean "every interface": useless in a URL someone else must type.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 - compared against, never bound here
# The same rule the URL map uses (DESIGN.md); repeated here because config is the floor.
REPO_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}\Z")
RESERVED_REPO_NAMES = frozenset({"simple", "files", "pypi", "legacy", "project", "-"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting has a safe default, so `minirepo serve` works with no file at all."""

    data: Path = Path("minirepo-data")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    default_repository: str = "main"
    read: str = "anonymous"
    max_upload_size: int = 1024**3
    max_metadata_size: int = 4 * 1024**2
    threads: int = 8
    connection_limit: int = 100
    channel_timeout: int = 120
    password_hash: str = "scrypt"  # noqa: S105 - a method name
    auth_cache_seconds: int = 60
    login_failure_limit: int = 10
    login_failure_window: int = 300
    busy_timeout: float = 5.0
    page_cache_seconds: float = 0.25
    log_level: str = "info"
    # For the test suite only: "crash-after-publish" kills the server between linking an
    # upload's blob into place and committing its rows, to prove crash recovery.
    test_fault: str = ""

    @property
    def database_path(self) -> Path:
        return self.data / "minirepo.sqlite3"

    @property
    def base_url(self) -> str:
        """The URL printed for users: `public_url`, else the bind address.

        A wildcard bind address (0.0.0.0, ::) is replaced by this machine's host name, so
        the printed pip, uv and twine lines work from the other machines on the LAN.
        """
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        host = socket.gethostname() if self.host in WILDCARD_HOSTS else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"


FIELDS = {field.name: field for field in dataclasses.fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML or environment value into the type of the setting's default.

    Environment values and flags arrive as text; TOML values must already have the right
    type (a list or table where a string belongs is a mistake, not something to `str()`).
    """
    default = FIELDS[name].default
    try:
        if isinstance(value, (bool, list, dict)):
            raise TypeError(value)
        if isinstance(default, Path):
            if not isinstance(value, (str, Path)):
                raise TypeError(value)
            return Path(value).expanduser()
        if isinstance(default, int):
            if isinstance(value, float):
                raise TypeError(value)
            return int(str(value).strip().replace("_", ""))
        if isinstance(default, float):
            number = float(str(value).strip()) if isinstance(value, str) else float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    except (TypeError, ValueError) as exc:
        raise UserError(f"Setting {name!r} has an invalid value: {value!r}") from exc


POSITIVE = (
    "max_upload_size",
    "max_metadata_size",
    "threads",
    "connection_limit",
    "channel_timeout",
    "login_failure_limit",
    "login_failure_window",
)
NOT_NEGATIVE = ("auth_cache_seconds", "busy_timeout", "page_cache_seconds")


def _check_hash_method(method: str) -> None:
    """Refuse what werkzeug's `generate_password_hash` would refuse, without running it."""
    kind, *args = method.split(":")
    try:
        if kind == "scrypt" and not args:
            return
        if kind == "scrypt" and len(args) == 3:
            n, r, p = map(int, args)
            if n > 1 and n & (n - 1) == 0 and r > 0 and p > 0:
                return
        if kind == "pbkdf2" and len(args) <= 2:
            if args and args[0] not in hashlib.algorithms_available:
                raise ValueError(args[0])
            if len(args) < 2 or int(args[1]) > 0:
                return
    except ValueError:
        pass
    raise UserError(
        f"Setting 'password_hash' is not a werkzeug method: {method!r} "
        "(use 'scrypt', 'scrypt:N:R:P' or 'pbkdf2:sha256:ITERATIONS')"
    )


def _validate(settings: Settings) -> Settings:
    if settings.read not in READ_MODES:
        raise UserError(f"Setting 'read' must be one of {', '.join(READ_MODES)}")
    if not 0 < settings.port < 65536:
        raise UserError("Setting 'port' must be between 1 and 65535")
    for name in POSITIVE:
        if getattr(settings, name) <= 0:
            raise UserError(f"Setting {name!r} must be positive")
    for name in NOT_NEGATIVE:
        if getattr(settings, name) < 0:
            raise UserError(f"Setting {name!r} must not be negative")
    if not settings.host.strip():
        raise UserError("Setting 'host' must not be empty (use 0.0.0.0 for every interface)")
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        raise UserError("Setting 'public_url' must start with http:// or https://")
    repo = settings.default_repository
    if not REPO_NAME_RE.match(repo) or repo in RESERVED_REPO_NAMES:
        raise UserError(f"Setting 'default_repository' is not a usable repository name: {repo!r}")
    if settings.log_level.lower() not in LOG_LEVELS:
        raise UserError(f"Setting 'log_level' must be one of {', '.join(LOG_LEVELS)}")
    _check_hash_method(settings.password_hash)
    return settings


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except OSError as exc:
        raise UserError(f"Cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"Config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise UserError(f"Unknown setting(s) in {path}: {', '.join(unknown)}")
    return table


def load(
    path: Path | None, environ: Mapping[str, str], flags: Mapping[str, Any] | None = None
) -> Settings:
    """Build the settings, later layers winning; `None` flags are ignored."""
    values: dict[str, Any] = {}
    env_path = environ.get(ENV_PREFIX + "CONFIG")
    config_path = path or (Path(env_path) if env_path else None)
    if config_path is not None:
        values.update(read_file(config_path))
    for name in FIELDS:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value:
            values[name] = env_value
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = value
    coerced = {name: _coerce(name, value) for name, value in values.items()}
    return _validate(Settings(**coerced))


def from_environment(flags: Mapping[str, Any] | None = None, path: Path | None = None) -> Settings:
    return load(path, os.environ, flags)
