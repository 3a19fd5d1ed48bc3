"""`import`: bringing another index's files and accounts into this data folder.

One subcommand per kind of index; each ends with `show_report`, so every import sums up
the same way and can be run again until it reports nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

import click

from minirepo.cli.base import main, pass_folder
from minirepo.services import devpi_export, import_devpi, import_pypiserver
from minirepo.services.datafolder import DataFolder
from minirepo.services.importing import ImportReport


@main.group("import")
def import_group() -> None:
    """Bring in the packages and accounts of another index (run again: what is already
    here is skipped).

    \b
    Example:  minirepo import pypiserver /srv/pypiserver/packages --htpasswd /srv/htpasswd
    """


@import_group.command("pypiserver")
@click.argument("packages_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--htpasswd",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="pypiserver's password file (-P): its users become accounts here.",
)
@click.option("--repo", help="The hosted repository to fill (default: the default one).")
@click.option(
    "--owner",
    metavar="USER",
    help="Record USER as the uploader of every file and the owner of each new project "
    "(default: none). The htpasswd accounts maintain every imported project either way.",
)
@pass_folder
def import_pypiserver_cmd(
    folder: DataFolder,
    packages_dir: Path,
    htpasswd: Path | None,
    repo: str | None,
    owner: str | None,
) -> None:
    """Import a pypiserver packages folder (subfolders too) and its htpasswd users.

    Each file's metadata is read from the file itself and checked as an upload is; its
    upload time is its mtime. {SHA} and bcrypt passwords keep working (bcrypt needs
    minirepo-server[bcrypt]) and are replaced by this server's hash at the first login;
    users with other hashes are listed, to be given a password.

    \b
    Example:  minirepo import pypiserver ~/packages --htpasswd ~/.htpasswd --repo main
    """
    target = repo or folder.settings.default_repository
    planned = import_pypiserver.plan(packages_dir, htpasswd=htpasswd, repo=target, owner=owner)
    with click.progressbar(
        length=len(planned.found.files), label=f"Importing into {target}"
    ) as bar:
        report = import_pypiserver.run(folder, planned, progress=bar.update)
    show_report(report, target)


def show_report(report: ImportReport, repo: str) -> None:
    """The summary every import ends with: counts, then each refusal and each account
    that needs a password."""
    click.echo(
        f"Imported {len(report.imported)} file(s) into {repo}; {len(report.skipped)} "
        f"already there; {len(report.refused)} refused; {len(report.ignored)} other "
        "file(s) ignored (not distributions)."
    )
    for filename, reason in report.refused:
        click.echo(f"  refused {filename}: {reason}")
    users = (report.users_created, report.users_existing, report.users_refused)
    if any(users):
        click.echo(
            f"Users: {len(report.users_created)} created, {len(report.users_existing)} "
            f"already here (left as they are), {len(report.users_refused)} refused."
        )
    for name, reason in report.users_refused:
        click.echo(f"  refused user {name}: {reason}")
    if report.to_reset:
        click.echo("These users need a password (minirepo user passwd NAME):")
        for name, note in report.to_reset:
            click.echo(f"  {name}: {note}")
    for note in report.notes:
        click.echo(f"Note: {note}")


@import_group.command("devpi")
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--rename",
    "renames",
    multiple=True,
    metavar="INDEX=REPO",
    help="The repository for a devpi index (default: alice/dev becomes alice-dev).",
)
@click.option(
    "--no-groups", is_flag=True, help="Make no group for an index with bases; print the command."
)
@pass_folder
def import_devpi_cmd(
    folder: DataFolder, export_dir: Path, renames: tuple[str, ...], no_groups: bool
) -> None:
    """Import a devpi-export folder: users, indexes, their ACLs and files.

    Each index of uploads becomes a hosted repository, its owner an owner there, its
    acl_upload users uploaders (and maintainers of its projects), a read restriction a
    private repository; an index with bases also gets a group of it and them. Mirror
    indexes, docs and test results are not imported. devpi's password hashes are not
    read here: the users are listed, to be given a password.

    \b
    Example:  devpi-export --serverdir /var/lib/devpi /tmp/devpi-export
              minirepo import devpi /tmp/devpi-export --rename alice/dev=team
    """
    export = devpi_export.read_export(export_dir)
    plan = import_devpi.plan(export, _pairs(renames), make_groups=not no_groups)
    total = import_devpi.distribution_count(export)
    with click.progressbar(length=total, label="Importing from devpi") as bar:
        result = import_devpi.run(folder, export, plan, progress=bar.update)
    _show_devpi(result)
    show_report(result.report, f"{len(result.repos)} repositories")


# The files of a devpi index that are no distribution, as the summary counts them.
OTHER_FILES = {"doczip": "docs zip(s)", "toxresult": "tox result(s)"}


def _pairs(renames: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for item in renames:
        index, sep, repo = item.partition("=")
        if not sep or not index or not repo:
            raise click.BadParameter(f"{item!r} is not INDEX=REPO", param_hint="--rename")
        pairs[index] = repo
    return pairs


def _show_devpi(result: import_devpi.DevpiResult) -> None:
    """Where each index went, with its roles, then what was left out and why."""
    click.echo("devpi index -> repository here:")
    for repo in result.repos:
        others = ", ".join(
            f"{n} {OTHER_FILES.get(kind, kind)}" for kind, n in sorted(repo.other_files.items())
        )
        click.echo(
            f"  {repo.index} -> {repo.repo}{' (created)' if repo.created else ''}: "
            f"{repo.imported} imported, {repo.skipped} already there, {repo.refused} refused"
            + (f"; skipped {others}" if others else "")
        )
        roles = ", ".join(f"{user} {role}" for user, role in repo.grants)
        if roles:
            click.echo(f"      roles: {roles}")
    for mirror in result.mirrors:
        text = f"Not imported: mirror {mirror.index} ({mirror.url})"
        if mirror.proxy is not None:
            click.echo(f"{text}; the proxy {mirror.proxy} stands for it.")
        else:
            click.echo(
                f"{text}, so no group has it. To cache it here: minirepo repo create NAME "
                f"--kind proxy --upstream {mirror.url}, then add NAME to a group with "
                "minirepo repo set GROUP --members ..."
            )
    for group in result.groups:
        command = (
            f"minirepo repo create {group.name} --kind group --members "
            f"{','.join(group.members)} --upload-to {group.upload_to}"
        )
        if group.status == "suggested":
            click.echo(f"Bases of {group.index}, as a group: {command}")
        else:
            click.echo(
                f"Group {group.name} ({group.status}): {group.index} with its bases, "
                f"{', '.join(group.members)}; each project from the first member that has it"
            )
