"""`minirepo setup-client`: point this account's pip, uv and twine at a minirepo server.

The README's client lines work only when typed into every command; this writes them into
the files the clients read by themselves, so `pip install X`, `uv pip install X` and
`twine upload -r minirepo dist/*` need no flags. It runs on a client machine: it opens no
data folder and asks the server nothing but whether the group `all` is there. It takes
--config and --data as every command does; of the settings only `default_repository`
counts (the repository to upload to, `main` unless run with the server's settings). The
token comes from stdin, never the command line, where `ps` and shell history keep it.
"""

from __future__ import annotations

import base64
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click

from minirepo import clientconfig, names
from minirepo.cli.base import main, pass_settings
from minirepo.config import Settings
from minirepo.credentials import TOKEN_USERNAME
from minirepo.errors import UserError
from minirepo.services.repos import GROUP_NAME

PROBE_TIMEOUT = 10


def probe_repository(base: str, token: str | None, fallback: str) -> str:
    """The group `all` when the server serves it to this caller, else `fallback` (the
    default repository, `main`).

    Listing repositories needs an admin, so this asks for the group's index alone: 200
    means it is there and readable. Without credentials the server answers a missing
    repository like a private one (401), and with a token a missing or unreadable one
    with 404: either way not `all`. With a token a 401 means the token is refused,
    which is better said now than later by pip's "No matching distribution found"."""
    url = f"{base}{GROUP_NAME}/simple/"
    request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - server_base: http(s)
    if token is not None:
        basic = base64.b64encode(f"{TOKEN_USERNAME}:{token}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise UserError(
            f"Cannot reach {base} ({reason}); check the URL, or pass --repo to write the "
            "files without asking the server"
        ) from None
    if status == 200:
        return GROUP_NAME
    if status == 401 and token is not None:
        raise UserError(
            f"{base} refused the token (401: revoked, expired or mistyped); make one with: "
            "minirepo token create"
        )
    if status in (401, 404):
        return fallback
    raise UserError(
        f"{url} answered {status}: is {base} a minirepo server? Pass --repo to skip this check"
    )


def read_token() -> str:
    """A hidden prompt at a terminal, else one line of stdin (a pipe from a secret store)."""
    if sys.stdin.isatty():
        value: str = click.prompt("API token", hide_input=True)
    else:
        value = sys.stdin.readline()
    return clientconfig.check_token(value.strip())


def checked_repository(name: str) -> str:
    problem = names.repository_name_problem(name)
    if problem is not None:
        raise UserError(problem)
    return name


def show(files: list[clientconfig.ClientFile], show_token: bool) -> None:
    for file in files:
        notes = ["mode 0600"] if file.token else []
        if file.path.exists():
            notes.append("exists: --force replaces it")
        click.echo(f"# {file.client}: {file.path}" + (f" ({'; '.join(notes)})" if notes else ""))
        click.echo(file.shown(show_token))


def report(files: list[clientconfig.ClientFile], target: clientconfig.Target) -> None:
    for file in files:
        secret = " (0600: it holds the token)" if file.token else ""
        click.echo(f"{file.client}: wrote {file.path}{secret}")
    click.echo(f"Installs come from {target.index_url}, uploads go to {target.upload_url}:")
    click.echo("    pip install PACKAGE  /  uv pip install PACKAGE  /  uv add PACKAGE")
    name = clientconfig.INDEX_NAME
    click.echo(f"    twine upload -r {name} dist/*  /  uv publish --index {name} dist/*")
    if target.token is None:
        click.echo(
            "No token (--token-stdin): installs work while the repository is public; "
            "twine and uv publish ask for a token."
        )


@main.command("setup-client")
@click.argument("url")
@click.option(
    "--repo",
    help=f"Repository or group to install from (default: {GROUP_NAME} if the server serves "
    "it to you, else the upload repository).",
)
@click.option(
    "--upload-repo",
    help="Repository to upload to (default: the setting default_repository, main).",
)
@click.option(
    "--token-stdin",
    is_flag=True,
    help="Read an API token from stdin (a hidden prompt at a terminal) and put it in the "
    "files, which are then written readable by you only.",
)
@click.option("--force", is_flag=True, help="Replace files that exist.")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Write nothing: show what would be written, the token masked.",
)
@click.option("--show-token", is_flag=True, help="With --print: show the token itself.")
@pass_settings()
def setup_client(
    settings: Settings,
    url: str,
    repo: str | None,
    upload_repo: str | None,
    token_stdin: bool,
    force: bool,
    print_only: bool,
    show_token: bool,
) -> None:
    """Write pip's, uv's and twine's user configuration for the minirepo server at URL.

    \b
    pip:    $XDG_CONFIG_HOME/pip/pip.conf (default ~/.config/pip/pip.conf)
    uv:     $XDG_CONFIG_HOME/uv/uv.toml, an [[index]] named minirepo
    twine:  ~/.pypirc, the section [minirepo]: twine upload -r minirepo dist/*
    Poetry keeps its sources per project: the commands for it are printed.

    Existing files are left alone unless --force. Without --repo the server is asked
    whether it serves the group all to you.

    \b
    Example:  printf '%s\\n' "$TOKEN" | minirepo setup-client http://box:8080/ --token-stdin
    """
    if show_token and not print_only:
        raise click.UsageError("--show-token goes with --print only")
    base = clientconfig.server_base(url)
    uploads = checked_repository(upload_repo or settings.default_repository)
    token = read_token() if token_stdin else None
    target = clientconfig.Target(
        base=base,
        repo=checked_repository(repo) if repo else probe_repository(base, token, uploads),
        upload_repo=uploads,
        token=token,
    )
    files = clientconfig.client_files(target, os.environ, Path.home())
    if print_only:
        show(files, show_token)
    else:
        clientconfig.write(files, force)
        report(files, target)
    click.echo("Poetry keeps its sources per project; in a project run:")
    for line in clientconfig.poetry_commands(target):
        click.echo(f"    {line}")
    for warning in clientconfig.overriding_variables(os.environ):
        click.echo(f"minirepo: warning: {warning}", err=True)
