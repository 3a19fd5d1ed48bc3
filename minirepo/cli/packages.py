"""`yank`, `unyank` and `delete`: changing what a repository offers."""

from __future__ import annotations

import click

from minirepo.cli.base import confirm, main, pass_folder
from minirepo.services import projects
from minirepo.services.datafolder import DataFolder


@main.command()
@click.argument("repo")
@click.argument("project")
@click.argument("version")
@click.option("--reason", default="", help="Shown by pip when it warns about the yank.")
@pass_folder
def yank(folder: DataFolder, repo: str, project: str, version: str, reason: str) -> None:
    """Yank a release (PEP 592): pip skips it unless a requirement pins it exactly.

    \b
    Example:  minirepo yank main mypkg 1.2.0 --reason "broken on Python 3.13"
    """
    projects.set_yanked(repo, project, version, yanked=True, reason=reason)
    click.echo(f"Yanked {project} {version} in {repo}.")


@main.command()
@click.argument("repo")
@click.argument("project")
@click.argument("version")
@pass_folder
def unyank(folder: DataFolder, repo: str, project: str, version: str) -> None:
    """Undo a yank.

    \b
    Example:  minirepo unyank main mypkg 1.2.0
    """
    projects.set_yanked(repo, project, version, yanked=False)
    click.echo(f"Unyanked {project} {version} in {repo}.")


@main.command()
@click.argument("repo")
@click.argument("project")
@click.argument("version", required=False)
@click.argument("filename", required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_folder
def delete(
    folder: DataFolder,
    repo: str,
    project: str,
    version: str | None,
    filename: str | None,
    yes: bool,
) -> None:
    """Delete a project's files, a release or one file. Their names stay burned (a new
    upload needs a new version) and the project keeps its owner.

    \b
    Example:  minirepo delete main mypkg 1.2.0 mypkg-1.2.0-py3-none-any.whl --yes
    """
    what = " ".join(filter(None, (project, version, filename)))
    confirm(f"Delete {what} from {repo}? This can't be undone.", yes)
    deleted = projects.delete(repo, project, version, filename)
    for name in deleted:
        click.echo(f"Deleted {name}")
    click.echo(f"Deleted {len(deleted)} file(s) from {repo}.")
