"""A proxy repository's options: how long its pages count as fresh, how big its cache may
grow, how it reaches the upstream.

They live in the database as JSON (`Repository.proxy_options`), set by `repo create` and
`repo set`, never in the TOML file: the database is the truth for repositories. Secrets
are never stored: `upstream_password_env` names the environment variable that holds one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any
from urllib.parse import urlsplit

from minirepo.errors import UserError

DAY = 86400.0


@dataclasses.dataclass(frozen=True)
class ProxyOptions:
    page_ttl: float = 600.0
    stale_max: float = 30 * DAY
    cache_max: int = 0  # bytes; 0: no cap
    min_free_disk: int = 1024**3  # below it, files stream through and nothing is kept
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    offline: bool = False
    upstream_user: str = ""
    upstream_password_env: str = ""
    upstream_proxy: str = ""
    ca_bundle: str = ""

    def to_json(self) -> str:
        changed = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != field.default
        }
        return json.dumps(changed, sort_keys=True, separators=(",", ":"))

    def replaced(self, **changes: Any) -> ProxyOptions:
        """A copy with the given (non-None) options changed, checked."""
        kept = {key: value for key, value in changes.items() if value is not None}
        options = dataclasses.replace(self, **kept)
        options.check()
        return options

    def check(self) -> None:
        for name in ("stale_max", "connect_timeout", "read_timeout"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be more than 0")
        if self.upstream_password_env and not self.upstream_user:
            raise UserError("--upstream-password-env needs --upstream-user")
        if self.upstream_proxy:
            check_url(self.upstream_proxy, "--upstream-proxy")
        if self.ca_bundle and not os.path.isfile(self.ca_bundle):
            raise UserError(f"--ca-bundle {self.ca_bundle}: no such file")

    @property
    def password(self) -> str:
        """The upstream password, read from its variable each time it is needed."""
        return os.environ.get(self.upstream_password_env, "") if self.upstream_password_env else ""


@functools.lru_cache(maxsize=256)
def options_of(text: str) -> ProxyOptions:
    """The options stored as `text` (parsed once per distinct text: pages ask per request)."""
    known = {field.name for field in dataclasses.fields(ProxyOptions)}
    stored = json.loads(text or "{}")
    return ProxyOptions(**{key: value for key, value in stored.items() if key in known})


def check_url(url: str, what: str = "--upstream") -> str:
    """An http(s) URL with a host; a simple index's URL gets its trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{what} must be an http:// or https:// URL, not {url!r}")
    if parts.username or parts.password:
        raise UserError(
            f"{what} must not carry credentials (they would be stored and shown): use "
            "--upstream-user and --upstream-password-env"
        )
    return url
