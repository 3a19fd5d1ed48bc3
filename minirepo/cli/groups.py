"""`origin`: which member of a group serves a project name, and moving it."""

from __future__ import annotations

import click

from minirepo import names
from minirepo.cli.base import main, pass_folder
from minirepo.cli.repos import repo
from minirepo.services import groups, repos
from minirepo.services.datafolder import DataFolder


def project_name(name: str) -> str:
    """The normalized name, or a usage error."""
    normalized = names.normalized_project(name)
    if normalized is None:
        raise click.UsageError(f"Not a project name: {name!r}")
    return normalized


@main.group()
def origin() -> None:
    """Which member of a group serves each project name.

    A group records the member that first answered a name and keeps serving it from
    there, so a later upload of that name to another member never takes its place.

    \b
    Example:  minirepo origin show all
    """


@origin.command("show")
@click.argument("group")
@click.argument("project", required=False)
@pass_folder
def origin_show(folder: DataFolder, group: str, project: str | None) -> None:
    """List the recorded origins of GROUP (or of one PROJECT): project, member, since, by.

    \b
    Example:  minirepo origin show all requests
    """
    row = repos.get(group)
    found = groups.origins(row, project_name(project) if project is not None else None)
    click.echo("project\tmember\tsince\tby")
    for item in found:
        by = item.actor or "first use"
        click.echo(f"{item.project}\t{item.member}\t{item.since:%Y-%m-%d %H:%M}\t{by}")


@origin.command("set")
@click.argument("group")
@click.argument("project")
@click.option("--member", required=True, help="The member to serve PROJECT from.")
@pass_folder
def origin_set(folder: DataFolder, group: str, project: str, member: str) -> None:
    """Serve PROJECT from MEMBER in GROUP from now on (audited).

    \b
    Example:  minirepo origin set all lab-tool --member main
    """
    normalized = project_name(project)
    groups.set_origin(repos.get(group), normalized, member, actor="cli")
    click.echo(f"{group} now serves {normalized} from {member}.")


@repo.command("track")
@click.argument("group")
@click.argument("project", required=False)
@click.option("--remove", is_flag=True, help="Stop merging PROJECT.")
@pass_folder
def repo_track(folder: DataFolder, group: str, project: str | None, remove: bool) -> None:
    """Merge PROJECT across GROUP's members (audited); without PROJECT, list them.

    A group serves each name from one member, so a public upload can never replace an
    internal package. For a fork kept beside the public project, tracking lists both
    members' files on one page, which says (PEP 708 `tracks`) that it follows the
    upstream project.

    \b
    Example:  minirepo repo track all requests
    """
    row = repos.get(group)
    if project is None:
        for name in groups.tracked(row):
            click.echo(name)
        return
    normalized = project_name(project)
    groups.track(row, normalized, remove=remove, actor="cli")
    state = "no longer merges" if remove else "now merges"
    click.echo(f"{group} {state} {normalized} across its members.")
