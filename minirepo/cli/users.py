"""`user` and `token`: accounts and their API tokens."""

from __future__ import annotations

import datetime

import click

from minirepo import models, units
from minirepo.cli.base import main, pass_folder, read_password
from minirepo.credentials import NO_PASSWORD
from minirepo.errors import UserError
from minirepo.services import accounts
from minirepo.services.datafolder import DataFolder


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
@pass_folder
def user_add(folder: DataFolder, name: str, admin: bool, password_stdin: bool) -> None:
    """Create an account.

    \b
    Example:  printf '%s\\n' "$PW" | minirepo user add alice --password-stdin
    """
    password = read_password(password_stdin)
    accounts.add_user(name, password, method=folder.settings.password_hash, admin=admin)
    click.echo(f"Created user {name}{' (admin)' if admin else ''}.")


@user.command("list")
@pass_folder
def user_list(folder: DataFolder) -> None:
    """List accounts.

    \b
    Example:  minirepo user list
    """
    for account in accounts.list_users():
        roles = (
            ("admin", account.is_admin),
            ("disabled", account.disabled),
            ("no-password", account.password_hash == NO_PASSWORD),
        )
        flags = ",".join(word for word, on in roles if on) or "-"
        click.echo(f"{account.name}\t{flags}\t{account.created:%Y-%m-%d}")


@user.command("unlock")
@click.argument("name")
@pass_folder
def user_unlock(folder: DataFolder, name: str) -> None:
    """Forgive an account's failed logins, from every address, in the running server too.

    \b
    Example:  minirepo user unlock alice
    """
    accounts.unlock(name)
    models.wait_counter_in_force()
    click.echo(f"User {name} unlocked.")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@pass_folder
def user_passwd(folder: DataFolder, name: str, password_stdin: bool) -> None:
    """Set an account's password.

    \b
    Example:  printf '%s\\n' "$PW" | minirepo user passwd alice --password-stdin
    """
    accounts.get_user(name)
    password = read_password(password_stdin)
    accounts.set_password(name, password, method=folder.settings.password_hash)
    models.wait_counter_in_force()
    click.echo(f"Password of {name} changed.")


@user.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the account again instead.")
@pass_folder
def user_disable(folder: DataFolder, name: str, enable: bool) -> None:
    """Disable an account: its password and tokens stop working at once.

    \b
    Example:  minirepo user disable bob
    """
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
    help="read: install; upload: also publish; admin: all of the user's rights.",
)
@click.option("--expires", help="Lifetime: 90d, 12h, 30m; a plain number is days (default: never).")
@click.option("--description", default="", help="A note to recognize the token by.")
@pass_folder
def token_create(
    folder: DataFolder,
    user_name: str,
    repos: tuple[str, ...],
    projects: tuple[str, ...],
    permission: str,
    expires: str | None,
    description: str,
) -> None:
    """Create a token; it is printed once, alone on the last line.

    \b
    Example:  TOKEN=$(minirepo token create --user alice --project mypkg | tail -n1)
    """
    lifetime = None
    if expires is not None:
        try:
            lifetime = datetime.timedelta(seconds=units.parse_duration(expires, "d"))
        except ValueError as exc:
            raise UserError(f"--expires: {exc}") from exc
    new = accounts.create_token(
        user_name,
        permission=permission,
        repositories=repos,
        projects=projects,
        expires=lifetime,
        description=description,
    )
    click.echo(f"Created token {new.prefix}... for {user_name} ({permission}). It is shown once:")
    click.echo(new.secret)


@token.command("list")
@click.option("--user", "user_name", help="Only this account's tokens.")
@pass_folder
def token_list(folder: DataFolder, user_name: str | None) -> None:
    """List tokens: id, public prefix, user, permission, scope, state, expiry, last use
    and description (the secrets are not stored).

    \b
    Example:  minirepo token list --user alice
    """
    for item in accounts.list_tokens(user_name):
        expires = f"{item.expires:%Y-%m-%d}" if item.expires else "never"
        used = f"{item.last_used:%Y-%m-%d %H:%M}" if item.last_used else "never"
        click.echo(
            f"{item.id}\t{item.prefix}\t{item.user}\t{item.permission}\t{item.scope}\t"
            f"{item.state}\texpires {expires}\tlast used {used}\t{item.description}"
        )


@token.command("revoke")
@click.argument("handle")
@pass_folder
def token_revoke(folder: DataFolder, handle: str) -> None:
    """Revoke a token by its id or prefix (as `minirepo token list` shows them), or by
    the whole token, for one that leaked; it fails at once everywhere.

    \b
    Example:  minirepo token revoke mr-AbCdEfGh
    """
    prefix = accounts.revoke_token(handle)
    models.wait_counter_in_force()
    click.echo(f"Revoked token {prefix}.")
