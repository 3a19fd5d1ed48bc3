"""Settings: defaults, then `minirepo.toml`, then `MINIREPO_*` variables, then flags.

This is the only module that reads the environment, so every other module sees one frozen
`Settings` and tests can build as many as they like.
"""

from __future__ import annotations

import dataclasses
import os
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

    @property
    def database_path(self) -> Path:
        return self.data / "minirepo.sqlite3"

    @property
    def base_url(self) -> str:
        """The URL printed for users: `public_url`, else the bind address."""
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


FIELDS = {field.name: field for field in dataclasses.fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML or environment value into the type of the setting's default."""
    default = FIELDS[name].default
    try:
        if isinstance(default, Path):
            return Path(str(value)).expanduser()
        if isinstance(default, bool):
            return str(value).lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError(value)
            return int(str(value).replace("_", ""))
        if isinstance(default, float):
            return float(value)
        return str(value)
    except ValueError as exc:
        raise UserError(f"Setting {name!r} has an invalid value: {value!r}") from exc


def _validate(settings: Settings) -> Settings:
    if settings.read not in READ_MODES:
        raise UserError(f"Setting 'read' must be one of {', '.join(READ_MODES)}")
    if not 0 < settings.port < 65536:
        raise UserError("Setting 'port' must be between 1 and 65535")
    for name in ("max_upload_size", "max_metadata_size", "threads", "connection_limit"):
        if getattr(settings, name) <= 0:
            raise UserError(f"Setting {name!r} must be positive")
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
