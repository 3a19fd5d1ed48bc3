"""`cache`: what a proxy holds, and making room."""

from __future__ import annotations

from pathlib import Path

import click

from minirepo import units
from minirepo.cli.base import main, pass_folder
from minirepo.cli.groups import project_name
from minirepo.errors import UserError
from minirepo.services import cache, repos
from minirepo.services.datafolder import DataFolder
from minirepo.services.fetches import Fetches
from minirepo.services.index import Index
from minirepo.services.proxies import Proxies
from minirepo.services.proxy_options import options_of
from minirepo.services.repos import RepoInfo
from minirepo.services.upload import UploadService


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


@cache_group.command("fetch")
@click.argument("repo_name", metavar="REPO")
@click.option(
    "-r",
    "--requirement",
    "requirements",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A pinned requirements file (pip freeze, uv export; --hash lines honoured).",
)
@click.option(
    "--lock",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A uv.lock: every registry package's listed files.",
)
@pass_folder
def cache_fetch(
    folder: DataFolder, repo_name: str, requirements: Path | None, lock: Path | None
) -> None:
    """Fetch what a requirements file or a uv.lock names into the proxy that serves each
    name at REPO (a proxy or a group), for offline days. Nothing is resolved: list every
    package (pip freeze, uv export and uv.lock do).

    \b
    Examples:  minirepo cache fetch all -r requirements.txt
               minirepo cache fetch all --lock uv.lock
    """
    # Here, not at the top: packaging's requirement parser would cost every `serve` ~20 ms.
    from minirepo.services import seed

    if requirements is not None and lock is None:
        wanted = seed.from_requirements(requirements)
    elif lock is not None and requirements is None:
        wanted = seed.from_uv_lock(lock)
    else:
        raise click.UsageError("give one of -r FILE and --lock FILE")
    info = repos.info_of(repos.get(repo_name))
    if not (info.is_proxy or info.is_group):
        raise UserError(f"{repo_name} is hosted: give a proxy or a group")
    settings = folder.settings
    proxies = Proxies(settings, folder.store)
    fetches = Fetches(
        folder.database,
        folder.store,
        UploadService(folder.store, settings.max_metadata_size),
        settings,
        after_publish=proxies.after_fetch,
    )
    try:
        report = seed.seed(Index(settings, folder.store, proxies), fetches, info, wanted)
    finally:
        fetches.close()
        proxies.close()
    for line in report.failed:
        click.echo(f"failed\t{line}", err=True)
    click.echo(
        f"Fetched {len(report.fetched)} file(s); {len(report.held)} already there; "
        f"{len(report.failed)} failed."
    )
    if report.failed:
        raise SystemExit(1)


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
