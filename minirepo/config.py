"""Settings: defaults, then `minirepo.toml`, then `MINIREPO_*` variables, then flags.

This is the only module that reads the environment, so every other module sees one frozen
`Settings` and tests can build as many as they like.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import socket
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from minirepo import names
from minirepo.errors import UserError
from minirepo.units import parse_duration, parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "MINIREPO_"
READ_MODES = ("anonymous", "authenticated")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
METRICS_MODES = ("admin", "open", "off")
# Addresses that mean "every interface": useless in a URL someone else must type.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 - compared against, never bound here
# The same rule the URL map uses (DESIGN.md); repeated here because config is the floor.


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
    # Processes answering on the shared socket (`minirepo.workers`); "auto": one per core.
    workers: int = 1
    connection_limit: int = 100
    channel_timeout: int = 120
    # On SIGTERM or Ctrl-C, how long requests in flight (an upload still arriving) may take
    # to finish before they are cut (`minirepo.shutdown`); 0 cuts them at once. Below the
    # systemd unit's TimeoutStopSec.
    stop_timeout: int = 60
    # The defences of a server on a shared LAN (README, "Security"; waitress_fixes.py).
    header_timeout: int = 10
    max_idle_connections_per_address: int = 20
    # 0 means twice `max_upload_size`: two full uploads can be received at once.
    max_spool_bytes: int = 0
    max_archive_members: int = 100_000
    # Behind nginx or Caddy: the proxy's address, whose X-Forwarded-* headers are believed.
    trusted_proxy: str = ""
    trusted_proxy_headers: str = "x-forwarded-for x-forwarded-proto x-forwarded-host"
    # The proxies (README, "PyPI through minirepo"): the index the first start's
    # `pypi-proxy` caches ("" : no proxy and no `all` group), how many files they fetch at
    # once, and whether they may ask upstream at all (`serve --offline`).
    upstream: str = "https://pypi.org/simple/"
    fetch_workers: int = 4
    offline: bool = False
    password_hash: str = "scrypt"  # noqa: S105 - a method name
    auth_cache_seconds: int = 60
    login_failure_limit: int = 10
    login_failure_window: int = 300
    busy_timeout: float = 5.0
    page_cache_seconds: float = 0.25
    log_level: str = "info"
    # "json": one JSON object per log line, for a log shipper (`accesslog.JsonFormatter`).
    log_format: str = "text"
    # Who may scrape /-/metrics: "admin" (an admin's credentials), "open" (anyone), "off".
    metrics: str = "admin"
    # A database URL; empty means `database_path`. Kept out of repr: it may hold a password.
    database: str = dataclasses.field(default="", repr=False)
    # Where the files live: "" is `<data>/files`; "s3://bucket/prefix" a bucket
    # (`minirepo.s3store`) at `s3_endpoint_url` ("": AWS) in `s3_region` ("": boto3's
    # default). Credentials come from AWS_* variables or AWS_PROFILE, never a setting.
    # `s3_redirect`: answer a file download with a presigned URL instead of streaming it.
    storage: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_redirect: bool = False
    # Where `minirepo advisories update` reads OSV advisories when given no --from: OSV's
    # PyPI export (a zip URL), or a path for a machine without internet. `serve` never
    # downloads. Older data than `advisories_max_age` makes /-/health say "degraded".
    advisories_source: str = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
    advisories_max_age: int = 14 * 86400
    # Whether admins may read and publish every package without being granted it.
    admin_package_access: bool = True
    # The key that signs sessions, the same on every server sharing one database; "": the
    # data folder's `secret` file, made at the first start. Never shown: not in repr, not
    # in `config show`, never logged.
    secret_key: str = dataclasses.field(default="", repr=False)
    # Which settings some layer (file, environment, flag) set: those left at their
    # default must not overwrite what the database stores (a repository's `read`).
    explicit: frozenset[str] = dataclasses.field(default=frozenset(), repr=False)
    # Where each of those came from ("file PATH", "env MINIREPO_X", "flag"), and the
    # settings file read, if any: `minirepo config show` answers "why is it this value?".
    sources: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False, compare=False)
    config_file: Path | None = dataclasses.field(default=None, repr=False, compare=False)

    def is_set(self, name: str) -> bool:
        return name in self.explicit

    def source(self, name: str) -> str:
        return dict(self.sources).get(name, "default")

    @property
    def database_path(self) -> Path:
        return self.data / "minirepo.sqlite3"

    @property
    def spool_limit(self) -> int:
        """The bytes of request bodies that may be spooled at once, over all requests."""
        return self.max_spool_bytes or 2 * self.max_upload_size

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


# What `Settings` records about its layers; not settings themselves.
_LAYER_FIELDS = ("explicit", "sources", "config_file")
FIELDS = {
    field.name: field for field in dataclasses.fields(Settings) if field.name not in _LAYER_FIELDS
}

# Settings whose values are sizes or durations (`minirepo.units`); a plain number is in
# bytes or seconds, as it was before units were accepted.
SIZES = ("max_upload_size", "max_metadata_size", "max_spool_bytes")
WHOLE_SECONDS = (
    "channel_timeout",
    "header_timeout",
    "stop_timeout",
    "auth_cache_seconds",
    "login_failure_window",
    "advisories_max_age",
)
SECONDS = ("busy_timeout", "page_cache_seconds")
# Settings that also take "auto": a number the machine decides (`auto_value`).
AUTO = ("workers",)
# The forwarding headers waitress can read from a trusted proxy (its KNOWN_PROXY_HEADERS).
PROXY_HEADERS = frozenset(
    {
        "forwarded",
        "x-forwarded-by",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
    }
)
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
DATABASE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")
# Variables that are not settings but are still ours; every other MINIREPO_* is a typo.
ENV_EXTRA_NAMES = (ENV_PREFIX + "CONFIG",)
# Where every command looks for its settings file when neither --config nor MINIREPO_CONFIG
# names one, the first found winning: the current folder (a checkout, a trial run), then the
# system's (the systemd unit's), so an admin's CLI command reads what the service reads.
# Module constants: tests monkeypatch them, and no variable in a service's environment can
# quietly point them elsewhere.
LOCAL_CONFIG = Path("minirepo.toml")
SYSTEM_CONFIG = Path("/etc/minirepo/minirepo.toml")
# Set by systemd for every service it starts (systemd.exec(5)).
SYSTEMD_VARIABLES = ("INVOCATION_ID", "JOURNAL_STREAM")
TOML_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _toml_type(value: object) -> str:
    return TOML_TYPES.get(type(value), "a date or time")


def _from_toml(name: str, value: Any) -> Any:
    """A TOML value already has a type, and it must be the setting's: `port = "8093"` is
    refused, not read as a number, so a file means one thing whoever reads it.
    """
    default = FIELDS[name].default
    if name in AUTO and value == "auto":
        return _from_text(name, value)
    if name in SIZES or name in WHOLE_SECONDS or name in SECONDS:
        if isinstance(value, str) and not value.strip()[-1:].isalpha():
            raise ValueError(f"{value!r} is a string without a unit; write it without quotes")
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise ValueError(f"{value!r} is {_toml_type(value)}, not a number or a quantity")
        return _from_text(name, value)
    expected = type(default) if not isinstance(default, Path) else str
    if type(value) is not expected:
        raise ValueError(f"{value!r} is {_toml_type(value)}, not {TOML_TYPES[expected]}")
    return _from_text(name, value)


def _from_text(name: str, value: Any) -> Any:
    """An environment value (text), a flag (text or already typed) or a checked TOML value."""
    default = FIELDS[name].default
    if name in AUTO and isinstance(value, str) and value.strip().lower() == "auto":
        return auto_value()
    if name in SIZES:
        return parse_size(value)
    if name in SECONDS or name in WHOLE_SECONDS:
        seconds = parse_duration(value)
        if name in SECONDS:
            return seconds
        if not seconds.is_integer():
            raise ValueError(f"{value!r} is not a whole number of seconds")
        return int(seconds)
    if isinstance(default, bool):  # before int: a bool is an int to Python
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"{value!r} is not a boolean ({'/'.join(TRUE_WORDS + FALSE_WORDS)})")
        return word in TRUE_WORDS
    if isinstance(default, Path):
        if not isinstance(value, (str, Path)):
            raise ValueError(f"{value!r} is not a path")
        return Path(value).expanduser()
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not an integer")
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _coerce(name: str, value: object, *, from_toml: bool) -> Any:
    """Turn a TOML, environment or flag value into the setting's type, or say why not."""
    try:
        return _from_toml(name, value) if from_toml else _from_text(name, value)
    except ValueError as exc:
        raise UserError(f"Setting {name!r} has an invalid value: {exc}") from exc


# Settings whose value is never shown (`config show` prints *** for them).
SECRET_SETTINGS = frozenset({"secret_key"})
SECRET_KEY_MIN = 32  # characters: what `secrets.token_urlsafe(24)` gives

POSITIVE = (
    "max_upload_size",
    "max_metadata_size",
    "threads",
    "workers",
    "fetch_workers",
    "connection_limit",
    "channel_timeout",
    "header_timeout",
    "max_idle_connections_per_address",
    "max_archive_members",
    "login_failure_limit",
    "login_failure_window",
)


def auto_value() -> int:
    """`workers = "auto"`: the cores this process may run on (its CPU affinity, which
    taskset and a container's cpuset narrow), not every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - macOS has no affinity


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


def check_database_url(url: str) -> None:
    """Refuse an unknown scheme, without echoing the URL: it may carry a password."""
    if url and not (url.startswith(DATABASE_SCHEMES) and url not in DATABASE_SCHEMES):
        raise UserError(
            "Setting 'database' must be empty (the SQLite file in the data folder) or a URL "
            "starting with sqlite:///, postgresql:// or postgres://, followed by the database"
        )


def _check_proxy_headers(headers: set[str]) -> None:
    """Refuse what waitress would refuse with a traceback at start."""
    unknown = headers - PROXY_HEADERS
    if unknown:
        raise UserError(
            f"Setting 'trusted_proxy_headers' has unknown headers {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(PROXY_HEADERS))})"
        )
    if "forwarded" in headers and len(headers) > 1:
        raise UserError(
            "Setting 'trusted_proxy_headers': 'forwarded' cannot be combined with x-forwarded-*"
        )


def _check_storage(settings: Settings) -> None:
    """The blob store's settings, checked before anything is opened."""
    if settings.storage and not (
        settings.storage.startswith("s3://") and settings.storage[5:].strip("/")
    ):
        raise UserError(
            "Setting 'storage' must be empty (the data folder's files/) or s3://BUCKET/PREFIX"
        )
    endpoint = settings.s3_endpoint_url
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise UserError("Setting 's3_endpoint_url' must start with http:// or https://")
    if settings.s3_redirect and not settings.storage:
        raise UserError("Setting 's3_redirect' needs 'storage' to be an s3:// bucket")


def _validate(settings: Settings) -> Settings:
    if settings.read not in READ_MODES:
        raise UserError(f"Setting 'read' must be one of {', '.join(READ_MODES)}")
    if not 0 < settings.port < 65536:
        raise UserError("Setting 'port' must be between 1 and 65535")
    for name in POSITIVE:
        if getattr(settings, name) <= 0:
            raise UserError(f"Setting {name!r} must be positive")
    if not settings.host.strip():
        raise UserError("Setting 'host' must not be empty (use 0.0.0.0 for every interface)")
    check_database_url(settings.database)
    for name in ("public_url", "upstream"):
        value = getattr(settings, name)
        if value and not value.startswith(("http://", "https://")):
            raise UserError(f"Setting {name!r} must start with http:// or https://")
    repo = settings.default_repository
    if not names.is_repository_name(repo):
        raise UserError(f"Setting 'default_repository' is not a usable repository name: {repo!r}")
    if settings.log_level.lower() not in LOG_LEVELS:
        raise UserError(f"Setting 'log_level' must be one of {', '.join(LOG_LEVELS)}")
    if settings.log_format.lower() not in LOG_FORMATS:
        raise UserError(f"Setting 'log_format' must be one of {', '.join(LOG_FORMATS)}")
    if settings.metrics not in METRICS_MODES:
        raise UserError(f"Setting 'metrics' must be one of {', '.join(METRICS_MODES)}")
    _check_hash_method(settings.password_hash)
    if settings.max_spool_bytes and settings.max_spool_bytes < settings.max_upload_size:
        raise UserError(
            "Setting 'max_spool_bytes' must be at least max_upload_size (or 0 for twice it)"
        )
    _check_proxy_headers(set(settings.trusted_proxy_headers.lower().split()))
    _check_storage(settings)
    if settings.secret_key and len(settings.secret_key) < SECRET_KEY_MIN:
        raise UserError(
            f"Setting 'secret_key' must be at least {SECRET_KEY_MIN} characters; make one with "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return settings


def _did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """A hint for a misspelt name; the shared `prefix` is left out of the comparison, or
    every MINIREPO_ name would look close to every other.
    """
    close = difflib.get_close_matches(word.removeprefix(prefix), choices, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except OSError as exc:
        raise UserError(f"Cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"Config file {path} is not valid TOML: {exc}") from exc
    unknown = [key + _did_you_mean(key.lower(), FIELDS) for key in sorted(set(table) - set(FIELDS))]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise UserError(f"Unknown setting{plural} in {path}: {', '.join(unknown)}")
    return table


def _read_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings given as `MINIREPO_*` variables; an empty value counts as unset.

    A variable with our prefix that names no setting is refused like an unknown TOML key:
    `MINIREPO_PROT=9000` silently ignored would leave the server on the wrong port.
    """
    names = {ENV_PREFIX + name.upper(): name for name in FIELDS}
    known = [*names, *ENV_EXTRA_NAMES]
    suffixes = [key.removeprefix(ENV_PREFIX) for key in known]
    unknown = [
        key + _did_you_mean(key.upper(), suffixes, ENV_PREFIX)
        for key in sorted(environ)
        if key.startswith(ENV_PREFIX) and key not in known
    ]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise UserError(f"Unknown environment variable{plural} {', '.join(unknown)}")
    return {name: environ[key] for key, name in names.items() if environ.get(key)}


def _present(path: Path) -> bool:
    """Whether a searched-for settings file is there.

    One in a folder we may not look into counts when the folder is named (/etc/minirepo
    kept from users outside the service's group), so the error names it instead of a
    missing data folder; the current folder does not (`sudo -u minirepo` from a private home).
    """
    try:
        return path.is_file()
    except PermissionError:
        return path.is_absolute()


def find_config(
    path: Path | None, environ: Mapping[str, str], search: Iterable[Path] = ()
) -> Path | None:
    """`path` (--config), else MINIREPO_CONFIG, else the first of `search` that exists.

    A file named by the first two must exist (reading it fails otherwise): a mistyped path
    must not fall back to defaults or to another file.
    """
    env_path = environ.get(ENV_PREFIX + "CONFIG")
    if path is not None or env_path:
        return path or Path(str(env_path))
    return next((candidate for candidate in search if _present(candidate)), None)


def load(
    path: Path | None,
    environ: Mapping[str, str],
    flags: Mapping[str, Any] | None = None,
    search: Iterable[Path] = (),
) -> Settings:
    """Build the settings, later layers winning; `None` flags are ignored.

    TOML values must have the setting's type; environment values are text and flags text
    or already typed, so those two are converted. `search`: where to look for a settings
    file none names (empty here, so that tests and benchmarks see only what they pass).
    """
    env_values = _read_environment(environ)
    config_path = find_config(path, environ, search)
    # Every layer's values are checked, even those a later layer overrides: a mistake is
    # reported where it was made, not when the override is removed.
    table = read_file(config_path) if config_path is not None else {}
    coerced = {name: _coerce(name, value, from_toml=True) for name, value in table.items()}
    sources = dict.fromkeys(coerced, f"file {config_path}")
    for name, text in env_values.items():
        coerced[name] = _coerce(name, text, from_toml=False)
        sources[name] = f"env {ENV_PREFIX}{name.upper()}"
    for name, value in (flags or {}).items():
        if value is not None:
            coerced[name] = _coerce(name, value, from_toml=False)
            sources[name] = "flag"
    settings = Settings(
        **coerced,
        explicit=frozenset(coerced),
        sources=tuple(sorted(sources.items())),
        config_file=config_path,
    )
    return _validate(settings)


def from_environment(flags: Mapping[str, Any] | None = None, path: Path | None = None) -> Settings:
    """The settings of a command: its flags, this process's environment, and the settings
    file it names or the first of ./minirepo.toml and /etc/minirepo/minirepo.toml."""
    return load(path, os.environ, flags, (LOCAL_CONFIG, SYSTEM_CONFIG))


def started_by_systemd(environ: Mapping[str, str] | None = None) -> bool:
    """Whether systemd started this process: its output then goes to the journal, which
    keeps it and shows it to more people than the admin (the `adm` group)."""
    variables = os.environ if environ is None else environ
    return any(variables.get(name) for name in SYSTEMD_VARIABLES)
