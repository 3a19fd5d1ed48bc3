"""The `minirepo` command: serve, users and tokens.

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

from minirepo import __version__, config, db, models
from minirepo.config import Settings
from minirepo.errors import MinirepoError
from minirepo.services import accounts, integrity, maintenance

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    click.echo(f"minirepo: {message}", err=True)
    sys.exit(1)


def pass_settings(func: F) -> F:
    """Add `--config` and `--data`, build the settings and open the data folder."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="TOML settings file (default: $MINIREPO_CONFIG).",
    )
    @click.option(
        "--data",
        type=click.Path(file_okay=False, path_type=Path),
        help="Data folder (default: $MINIREPO_DATA or ./minirepo-data).",
    )
    @functools.wraps(func)
    def wrapper(config_path: Path | None, data: Path | None, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in list(kwargs) if name in config.FIELDS}
        try:
            settings = config.from_environment({"data": data, **flags}, config_path)
            return func(settings, **kwargs)
        except MinirepoError as exc:
            _fail(exc.reason)
        except OSError as exc:
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        except peewee.DatabaseError as exc:
            _fail(f"database error: {exc}")
        finally:
            _close_database()

    return wrapper  # type: ignore[return-value]


def _close_database() -> None:
    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()


def _open(settings: Settings) -> None:
    maintenance.open_data(settings)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@click.group()
@click.version_option(__version__, prog_name="minirepo")
def main() -> None:
    """minirepo: a private Python package index.

    \b
    Examples:
      Start it:    minirepo serve --data /var/lib/minirepo --host 0.0.0.0
      Add a user:  minirepo user add alice
      A token:     minirepo token create --user alice
    """


@main.command()
@click.option("--host", help="Address to bind (default 127.0.0.1; 0.0.0.0 for the LAN).")
@click.option("--port", type=int, help="Port to bind (default 8080).")
@pass_settings
def serve(settings: Settings) -> None:
    """Run the index on waitress.

    \b
    Example:  minirepo serve --data ./minirepo-data --host 0.0.0.0 --port 8080
    """
    from minirepo import server

    server.run(settings)


@main.command()
@click.option("--no-checksum", is_flag=True, help="Check existence and size only (fast).")
@pass_settings
def fsck(settings: Settings, no_checksum: bool) -> None:
    """Check every stored file against its row; exit 1 naming each problem.

    \b
    Example:  minirepo fsck --data /var/lib/minirepo
    """
    folder = maintenance.open_data(settings)
    with click.progressbar(length=integrity.count_files(), label="Checking files") as bar:
        problems = integrity.fsck(folder.store, checksum=not no_checksum, progress=bar.update)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        _fail(f"{len(problems)} problem(s) found")
    click.echo("No problems found.")


@main.group()
def user() -> None:
    """Manage accounts.

    \b
    Example:  printf '%s\\n' "$PW" | minirepo user add alice --password-stdin
    """


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Grant admin rights.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@pass_settings
def user_add(settings: Settings, name: str, admin: bool, password_stdin: bool) -> None:
    """Create an account.

    \b
    Example:  printf '%s\\n' "$PW" | minirepo user add alice --password-stdin
    """
    _open(settings)
    password = _read_password(password_stdin)
    accounts.add_user(name, password, method=settings.password_hash, admin=admin)
    click.echo(f"Created user {name}{' (admin)' if admin else ''}.")


@user.command("list")
@pass_settings
def user_list(settings: Settings) -> None:
    """List accounts.

    \b
    Example:  minirepo user list
    """
    _open(settings)
    for account in accounts.list_users():
        roles = (
            ("admin", account.is_admin),
            ("disabled", account.disabled),
            ("no-password", account.password_hash == accounts.NO_PASSWORD),
        )
        flags = ",".join(word for word, on in roles if on) or "-"
        click.echo(f"{account.name}\t{flags}\t{account.created:%Y-%m-%d}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@pass_settings
def user_passwd(settings: Settings, name: str, password_stdin: bool) -> None:
    """Set an account's password.

    \b
    Example:  printf '%s\\n' "$PW" | minirepo user passwd alice --password-stdin
    """
    _open(settings)
    accounts.get_user(name)
    password = _read_password(password_stdin)
    accounts.set_password(name, password, method=settings.password_hash)
    models.wait_counter_in_force()
    click.echo(f"Password of {name} changed.")


@user.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the account again instead.")
@pass_settings
def user_disable(settings: Settings, name: str, enable: bool) -> None:
    """Disable an account: its password and tokens stop working at once.

    \b
    Example:  minirepo user disable bob
    """
    _open(settings)
    accounts.set_disabled(name, not enable)
    models.wait_counter_in_force()
    click.echo(f"User {name} {'enabled' if enable else 'disabled'}.")


@main.group()
def token() -> None:
    """Manage API tokens.

    \b
    Example:  minirepo token create --user alice --project mypkg --expires 90
    """


@token.command("create")
@click.option("--user", "user_name", required=True, help="The account the token acts for.")
@click.option("--repo", "repos", multiple=True, help="Limit to this repository (repeatable).")
@click.option("--project", "projects", multiple=True, help="Limit to this project (repeatable).")
@click.option(
    "--permission",
    type=click.Choice(["read", "upload", "admin"]),
    default="upload",
    show_default=True,
)
@click.option("--expires", type=int, help="Days until the token expires (default: never).")
@click.option("--description", default="", help="A note to recognize the token by.")
@pass_settings
def token_create(
    settings: Settings,
    user_name: str,
    repos: tuple[str, ...],
    projects: tuple[str, ...],
    permission: str,
    expires: int | None,
    description: str,
) -> None:
    """Create a token; it is printed once, alone on the last line.

    \b
    Example:  TOKEN=$(minirepo token create --user alice --project mypkg | tail -n1)
    """
    _open(settings)
    new = accounts.create_token(
        user_name,
        permission=permission,
        repositories=repos,
        projects=projects,
        expires_days=expires,
        description=description,
    )
    click.echo(f"Created token {new.prefix}... for {user_name} ({permission}). It is shown once:")
    click.echo(new.secret)


@token.command("list")
@click.option("--user", "user_name", help="Only this account's tokens.")
@pass_settings
def token_list(settings: Settings, user_name: str | None) -> None:
    """List tokens by their public prefix (the secrets are not stored).

    \b
    Example:  minirepo token list --user alice
    """
    _open(settings)
    for item in accounts.list_tokens(user_name):
        state = "revoked" if item.revoked else "active"
        expires = f"{item.expires:%Y-%m-%d}" if item.expires else "never"
        used = f"{item.last_used:%Y-%m-%d %H:%M}" if item.last_used else "never"
        scope = ",".join(filter(None, (item.repositories, item.projects))) or "all"
        click.echo(
            f"{item.prefix}\t{item.user.name}\t{item.permission}\t{scope}\t{state}\t"
            f"expires {expires}\tlast used {used}\t{item.description}"
        )


@token.command("revoke")
@click.argument("prefix")
@pass_settings
def token_revoke(settings: Settings, prefix: str) -> None:
    """Revoke a token by the prefix `minirepo token list` shows; it fails at once.

    The whole token works too, for one that leaked.

    \b
    Example:  minirepo token revoke mr-AbCdEfGh
    """
    _open(settings)
    count = accounts.revoke_token(prefix)
    models.wait_counter_in_force()
    click.echo(f"Revoked {count} token(s).")
