"""`minirepo config show`: every effective setting and the layer it came from.

Four layers and a search for the settings file make "why does the server listen there?" a
real question; this answers it from the same code every command loads its settings with.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import click

from minirepo import config
from minirepo.cli.base import main, pass_settings
from minirepo.config import Settings

HIDDEN = "***"
# Values padded to this width at most, so one long URL does not push every source far right.
MAX_PAD = 48


def redact(text: str) -> str:
    """A URL with its password (in the user part or a `password=` parameter, as libpq
    takes it) replaced, for output that ends up in terminals, tickets and chat logs."""
    if "://" not in text:
        return text
    try:
        parts = urllib.parse.urlsplit(text)
        password = parts.password
    except ValueError:  # unparseable (a bad IPv6 host): show no more than the scheme
        return text.split("://", 1)[0] + "://" + HIDDEN
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    in_query = any(key.lower() == "password" for key, _ in query)
    if password is None and not in_query:
        return text  # as written: urlunsplit would turn sqlite://// into sqlite://
    if password is not None:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        parts = parts._replace(netloc=f"{userinfo.partition(':')[0]}:{HIDDEN}@{hostport}")
    if in_query:
        hidden = [(key, HIDDEN if key.lower() == "password" else value) for key, value in query]
        parts = parts._replace(query=urllib.parse.urlencode(hidden, safe="*"))
    return urllib.parse.urlunsplit(parts)


def toml_value(value: object) -> str:
    """The value as it would be written in minirepo.toml (sizes in bytes, times in seconds)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value) if isinstance(value, Path) else redact(str(value))
    return json.dumps(text, ensure_ascii=False)  # JSON's string escapes are TOML's too


def describe(settings: Settings) -> list[str]:
    """A header naming the settings file, then one `name = value  # source` line each."""
    if settings.config_file is not None:
        header = f"# settings file: {settings.config_file}"
    else:
        searched = ", ".join(
            str(path) if path.is_absolute() else f"./{path}"
            for path in (config.LOCAL_CONFIG, config.SYSTEM_CONFIG)
        )
        header = f"# settings file: none (no --config, no MINIREPO_CONFIG, none of {searched})"
    pairs = [(f"{name} = {_shown(settings, name)}", name) for name in config.FIELDS]
    pad = min(MAX_PAD, max(len(text) for text, _ in pairs))
    return [header] + [f"{text:<{pad}}  # {settings.source(name)}" for text, name in pairs]


def _shown(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    if name in config.SECRET_SETTINGS and value:
        return toml_value(HIDDEN)
    return toml_value(value)


@main.group("config")
def config_group() -> None:
    """Inspect the settings the commands and the server run with.

    \b
    Example:  minirepo config show --config /etc/minirepo/minirepo.toml
    """


@config_group.command("show")
@pass_settings()
def show(settings: Settings) -> None:
    """Print every effective setting and where it came from: default, file PATH,
    env MINIREPO_X or flag. Passwords in URLs are shown as ***.

    \b
    Example:  sudo -u minirepo /opt/minirepo/bin/minirepo config show \\
                  --config /etc/minirepo/minirepo.toml
    """
    for line in describe(settings):
        click.echo(line)
