"""`gc` and `prune`: making room on the disk, deliberately and after a grace."""

from __future__ import annotations

import click

from minirepo.cli.base import main, parse_days, pass_folder
from minirepo.services import gc, retention
from minirepo.services.datafolder import DataFolder
from minirepo.services.retention_rule import Rule
from minirepo.units import format_size


@main.command("gc")
@click.option(
    "--grace",
    default="7d",
    show_default=True,
    help="Keep the files of deletes younger than this (a number is days; 12h, 2w).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be freed.")
@pass_folder
def gc_command(folder: DataFolder, grace: str, dry_run: bool) -> None:
    """Free the stored files of deleted, replaced and pruned files, and of deleted
    repositories, once their grace is over. A file still named by any repository (the
    same bytes under the same name) stays. The deletes' records stay in the database.

    \b
    Example:  minirepo gc --grace 30d
    """
    freed = gc.collect(
        folder.store, folder.settings.data / "tmp", parse_days("--grace", grace), dry_run=dry_run
    )
    verb = "would free" if dry_run else "freed"
    for item in freed:
        click.echo(f"{verb} {item.key} ({format_size(item.size)})")
    total = sum(item.size for item in freed)
    click.echo(
        f"{'Would free' if dry_run else 'Freed'} {len(freed)} file(s), {format_size(total)}."
    )


@main.command()
@click.argument("repo_name", metavar="REPO")
@click.option("--keep", type=click.IntRange(0), help="Keep the newest N releases of each project.")
@click.option(
    "--older-than",
    help="Only prune releases uploaded longer ago than this (a number is days; 30d, 8w).",
)
@click.option("--dev-only", is_flag=True, help="Only prune .devN releases.")
@click.option("--dry-run", is_flag=True, help="Only list what would be pruned.")
@pass_folder
def prune(
    folder: DataFolder,
    repo_name: str,
    keep: int | None,
    older_than: str | None,
    dev_only: bool,
    dry_run: bool,
) -> None:
    """Delete the releases of REPO a retention rule leaves out: all but the newest
    --keep of each project, only those older than --older-than (both: both must hold).
    Pruned files are deleted as by hand: audited, their names never usable again, their
    stored files freed by minirepo gc after its grace.

    \b
    Example:  minirepo prune main --keep 5 --older-than 30d --dev-only --dry-run
    """
    rule = Rule(
        keep=keep,
        older_than=parse_days("--older-than", older_than) if older_than is not None else None,
        dev_only=dev_only,
    )
    pruned = retention.prune(repo_name, rule, dry_run=dry_run)
    for release in pruned:
        names = ", ".join(sorted(name for _, name in release.files))
        click.echo(
            f"{'would prune' if dry_run else 'pruned'} {release.project} {release.version}: {names}"
        )
    files = sum(len(release.files) for release in pruned)
    if dry_run:
        click.echo(f"Would prune {files} file(s) of {len(pruned)} release(s) in {repo_name}.")
    else:
        click.echo(
            f"Pruned {files} file(s) of {len(pruned)} release(s) in {repo_name}; "
            "minirepo gc frees their space after its grace."
        )
