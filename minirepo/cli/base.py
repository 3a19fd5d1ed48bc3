"""The `minirepo` command's frame: the group, settings, the data folder, failures.

A `MinirepoError` becomes one line on stderr and exit status 1, never a traceback. No
secret is ever taken on the command line, where `ps` and shell history would see it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import peewee

from minirepo import __version__, config, units
from minirepo.errors import MinirepoError, UserError
from minirepo.services import datafolder

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> None:
    click.echo(f"minirepo: {message}", err=True)
    sys.exit(1)


def parse_days(option: str, value: str) -> float:
    """Seconds; a plain number is days, as retention and grace periods are counted."""
    try:
        return units.parse_duration(value, "d")
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from exc


def _settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--data",
        type=click.Path(file_okay=False, path_type=Path),
        help="Data folder (default: $MINIREPO_DATA, the settings file's, or ./minirepo-data).",
    )(func)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="TOML settings file (default: $MINIREPO_CONFIG, else the first of ./minirepo.toml "
        "and /etc/minirepo/minirepo.toml that exists).",
    )(func)


def _run(
    func: Callable[..., Any], open_folder: bool, setting_flags: tuple[str, ...] = ()
) -> Callable[..., Any]:
    """`setting_flags`: the command's options that are settings (serve's --host, --port);
    any other option, even one named like a setting (repo create's --read), is its own."""

    @functools.wraps(func)
    def wrapper(config_path: Path | None, data: Path | None, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in setting_flags}
        try:
            settings = config.from_environment({"data": data, **flags}, config_path)
            if not open_folder:
                return func(settings, **kwargs)
            folder = datafolder.open_data(settings)
            try:
                with folder.database.activated():
                    return func(folder, **kwargs)
            finally:
                folder.database.close()
        except MinirepoError as exc:
            fail(exc.reason)
        except OSError as exc:
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        except peewee.DatabaseError as exc:
            fail(f"database error: {exc}")

    return _settings_options(wrapper)


def pass_settings(*setting_flags: str) -> Callable[[F], F]:
    """Add `--config` and `--data` and pass the settings, with `setting_flags` options
    as their top layer (for `serve`, which opens the folder itself, creating it)."""

    def decorate(func: F) -> F:
        return _run(func, False, setting_flags)  # type: ignore[return-value]

    return decorate


def pass_folder(func: F) -> F:
    """Add `--config` and `--data` and pass the opened, existing data folder: refused
    when there is none there (no empty folder is made by a command run in the wrong
    place) or when its schema is not this version's."""
    return _run(func, open_folder=True)  # type: ignore[return-value]


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def confirm(question: str, assume_yes: bool) -> None:
    """Ask before something that can't be undone; with nobody to ask, --yes is needed."""
    if assume_yes:
        return
    try:
        answer = click.confirm(question, default=False)
    except click.Abort:
        answer = False
        click.echo("", err=True)
    if not answer:
        fail("Nothing changed (pass --yes to confirm without a question).")


@click.group()
@click.version_option(__version__, prog_name="minirepo")
def main() -> None:
    """minirepo: a private Python package index.

    \b
    Examples:
      Start it:        minirepo serve --data /var/lib/minirepo --host 0.0.0.0
      Add a user:      minirepo user add alice
      A token:         minirepo token create --user alice --expires 90d
      A repository:    minirepo repo create team --read authenticated
      A role in it:    minirepo grant alice team uploader
    """
