"""`cache`: what a proxy holds, and making room."""

from __future__ import annotations

import click

from minirepo import units
from minirepo.cli.base import main, pass_folder
from minirepo.cli.groups import project_name
from minirepo.errors import UserError
from minirepo.services import cache, repos
from minirepo.services.datafolder import DataFolder
from minirepo.services.proxy_options import options_of
from minirepo.services.repos import RepoInfo


def _proxy(name: str) -> RepoInfo:
    info = repos.info_of(repos.get(name))
    if not info.is_proxy:
        raise UserError(f"{name} is not a proxy (see minirepo repo list)")
    return info


@main.group("cache")
def cache_group() -> None:
    """The files a proxy repository holds.

    \b
    Example:  minirepo cache list pypi-proxy --project requests
    """


@cache_group.command("list")
@click.argument("repo_name", metavar="REPO")
@click.option("--project", help="Only this project's files.")
@click.option("--gone", is_flag=True, help="Only files of projects gone upstream.")
@pass_folder
def cache_list(folder: DataFolder, repo_name: str, project: str | None, gone: bool) -> None:
    """List a proxy's files, least recently used first: project, file, bytes, last use.

    \b
    Example:  minirepo cache list pypi-proxy --gone
    """
    info = _proxy(repo_name)
    normalized = project_name(project) if project is not None else None
    click.echo("project\tfile\tbytes\tlast-used")
    for item in cache.listing(info, normalized, gone):
        mark = "\tgone upstream" if item.gone else ""
        click.echo(
            f"{item.project}\t{item.filename}\t{item.size}\t{item.last_used:%Y-%m-%d %H:%M}{mark}"
        )


@cache_group.command("prune")
@click.argument("repo_name", metavar="REPO")
@click.option("--to", "target", help="Keep at most this much (default: the proxy's cache-max).")
@pass_folder
def cache_prune(folder: DataFolder, repo_name: str, target: str | None) -> None:
    """Remove the least recently used files until the proxy holds at most --to.

    \b
    Example:  minirepo cache prune pypi-proxy --to 5GiB
    """
    info = _proxy(repo_name)
    if target is not None:
        try:
            limit = units.parse_size(target)
        except ValueError as exc:
            raise UserError(f"--to: {exc}") from exc
    else:
        limit = options_of(info.proxy_options).cache_max
        if not limit:
            raise UserError(f"{repo_name} has no --cache-max: say how much to keep with --to")
    removed = cache.evict(folder.store, info, limit)
    click.echo(f"Removed {len(removed)} file(s) from {repo_name}.")
