"""`repo`, `grant`, `revoke` and `project`: repositories, roles and project ownership."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from minirepo import models, units
from minirepo.cli.base import confirm, main, parse_days, pass_folder
from minirepo.errors import UserError
from minirepo.services import policy, projects, repos, retention
from minirepo.services.datafolder import DataFolder
from minirepo.services.proxy_options import ProxyOptions
from minirepo.services.retention_rule import Rule


def _repo_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The settings `repo create` and `repo set` share; unset ones are left as they are."""
    options = (
        click.option("--description", help="A line shown with the repository."),
        click.option(
            "--default-role",
            type=click.Choice(repos.DEFAULT_ROLES),
            help="What any account may do without a grant (create: none).",
        ),
        click.option(
            "--overwrite",
            type=click.Choice(repos.OVERWRITE_MODES),
            help="allow: owners may replace a file under its name (create: never).",
        ),
        click.option(
            "--read",
            type=click.Choice(repos.READ_MODES),
            help="Who may install from it (create: anonymous).",
        ),
        click.option(
            "--members",
            help="A group's repositories, comma-separated, in the order they are asked.",
        ),
        click.option(
            "--upload-to",
            help="The member a group stores uploads in (set: '' for none).",
        ),
    )
    for option in options:
        func = option(func)
    return func


_DURATIONS = ("page_ttl", "stale_max", "connect_timeout", "read_timeout")
_SIZES = ("cache_max", "min_free_disk")


def _proxy_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """A proxy's options, for `repo create --kind proxy` and `repo set`; durations and
    sizes as `units` reads them (10m, 30d, 10GiB)."""
    options = (
        click.option("--upstream", help="The simple index a proxy caches."),
        click.option("--page-ttl", help="How long a cached page counts as fresh (10m)."),
        click.option("--stale-max", help="How long a stale page stands in for it (30d)."),
        click.option("--cache-max", help="Evict least used files past this size (none)."),
        click.option("--min-free-disk", help="Keep no fetched file below this free space (1GiB)."),
        click.option("--connect-timeout", help="Seconds to connect to the upstream (5s)."),
        click.option("--read-timeout", help="Seconds between the upstream's bytes (30s)."),
        click.option(
            "--offline/--online",
            default=None,
            help="Offline: ask the upstream nothing; serve only what is cached.",
        ),
        click.option("--upstream-user", help="A user name for the upstream."),
        click.option(
            "--upstream-password-env",
            metavar="VAR",
            help="The environment variable that holds its password (never stored).",
        ),
        click.option("--upstream-proxy", metavar="URL", help="An HTTP proxy to reach it."),
        click.option("--ca-bundle", metavar="FILE", help="CA certificates to verify it."),
    )
    for option in options:
        func = option(func)
    return func


def _parsed_proxy_options(given: dict[str, Any]) -> dict[str, Any]:
    """The proxy options given on the command line, parsed (None: not given)."""
    parsed: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            parsed[name] = None
            continue
        try:
            if name in _DURATIONS:
                parsed[name] = units.parse_duration(value)
            elif name in _SIZES:
                parsed[name] = units.parse_size(value)
            else:
                parsed[name] = value
        except ValueError as exc:
            raise UserError(f"--{name.replace('_', '-')}: {exc}") from exc
    return parsed


def _retention_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """A hosted repository's retention rule, which the server applies daily; unset fields
    stay as they are."""
    options = (
        click.option(
            "--keep",
            type=click.IntRange(0),
            help="Retention: keep the newest N releases of each project.",
        ),
        click.option(
            "--older-than",
            help="Retention: only prune releases older than this (a number is days; 30d).",
        ),
        click.option(
            "--dev-only/--all-releases",
            default=None,
            help="Retention: only prune .devN releases (create: all releases).",
        ),
        click.option("--no-retention", is_flag=True, help="Remove the retention rule."),
    )
    for option in options:
        func = option(func)
    return func


def _retention_changes(
    keep: int | None, older_than: str | None, dev_only: bool | None
) -> dict[str, Any]:
    return {
        "keep": keep,
        "older_than": parse_days("--older-than", older_than) if older_than is not None else None,
        "dev_only": dev_only,
    }


def _describe_retention(name: str, rule: Rule) -> None:
    """What a new rule means now: the first run removes these at once."""
    if not rule.is_set:
        click.echo(f"{name} has no retention rule: nothing is pruned by itself.")
        return
    doomed = retention.prune(name, rule, dry_run=True)
    files = sum(len(release.files) for release in doomed)
    click.echo(
        f"Retention of {name}: {rule.describe()}. The server applies it within the hour, "
        f"then daily; today it would prune {files} file(s) of {len(doomed)} release(s) "
        f"(minirepo prune {name} --dry-run with the same options lists them)."
    )


@main.group()
def repo() -> None:
    """Manage repositories.

    \b
    Example:  minirepo repo create team --read authenticated --default-role reader
    """


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [name.strip() for name in value.split(",") if name.strip()]


@repo.command("create")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(repos.KINDS),
    default="hosted",
    show_default=True,
    help="hosted stores uploads; proxy caches an --upstream index; group serves its "
    "--members' projects under one URL.",
)
@_repo_options
@_proxy_options
@pass_folder
def repo_create(
    folder: DataFolder,
    name: str,
    kind: str,
    read: str | None,
    overwrite: str | None,
    default_role: str | None,
    description: str | None,
    members: str | None,
    upload_to: str | None,
    upstream: str | None,
    **proxy: Any,
) -> None:
    """Create a repository, served at /NAME/simple/ and uploaded to at /NAME/.

    A group answers each project name from one member: the first that has it, recorded
    then, so that a later upload of that name elsewhere never takes its place.

    \b
    Examples:  minirepo repo create team --read authenticated
               minirepo repo create pypi-proxy --kind proxy --upstream https://pypi.org/simple/
               minirepo repo create all --kind group --members main,pypi-proxy --upload-to main
    """
    parsed = _parsed_proxy_options(proxy)
    options = None
    if kind == "proxy" or any(value is not None for value in parsed.values()):
        options = ProxyOptions().replaced(**parsed)
    repos.create(
        name,
        kind=kind,
        read=read or "anonymous",
        overwrite=overwrite or "never",
        default_role=default_role or "none",
        description=description or "",
        members=_names(members) or (),
        upload_to=upload_to or None,
        upstream=upstream or "",
        options=options,
    )
    settings = folder.settings
    # The CLI knows the server's address only from a setting; else it says the paths.
    known = any(settings.is_set(setting) for setting in ("public_url", "host", "port"))
    url = settings.base_url if known else "http://YOUR-SERVER/"
    click.echo(
        f"Created repository {name}: install from {url}{name}/simple/, upload to {url}{name}/"
    )


@repo.command("set")
@click.argument("name")
@_repo_options
@_proxy_options
@_retention_options
@click.option(
    "--block",
    type=click.Choice([*policy.LEVELS, "default"]),
    help="Which files advisories name it refuses: none, warn (count downloads only), "
    "malicious, critical, high, medium (and worse), all; default: hosted warn, proxy "
    "and group malicious. A group blocks the stricter of its own and the member's.",
)
@click.option(
    "--attestations",
    type=click.Choice(repos.ATTESTATION_MODES),
    help="PEP 740 attestations uploaded with a file: off (dropped), store, verify, "
    "require (refuse an upload without a verified one); auto: verify when the "
    "attestations extra is installed, else store.",
)
@pass_folder
def repo_set(
    folder: DataFolder,
    name: str,
    read: str | None,
    overwrite: str | None,
    default_role: str | None,
    description: str | None,
    members: str | None,
    upload_to: str | None,
    upstream: str | None,
    keep: int | None,
    older_than: str | None,
    dev_only: bool | None,
    no_retention: bool,
    block: str | None,
    attestations: str | None,
    **proxy: Any,
) -> None:
    """Change a repository's settings; those not given stay as they are.

    A hosted repository's retention rule (--keep, --older-than, --dev-only) is applied
    by the server daily, as minirepo prune would: pruned files become tombstones.

    \b
    Examples:  minirepo repo set main --read authenticated
               minirepo repo set all --members main,team --upload-to ''
               minirepo repo set pypi-proxy --offline
               minirepo repo set ci --keep 10 --older-than 30d --dev-only
               minirepo repo set main --block critical
    """
    changes = _retention_changes(keep, older_than, dev_only)
    if no_retention and any(value is not None for value in changes.values()):
        raise UserError("--no-retention removes the rule: give it alone, not with its fields")
    row = repos.update(
        name,
        read=read,
        overwrite=overwrite,
        default_role=default_role,
        description=description,
        members=_names(members),
        upload_to=upload_to,
        upstream=upstream,
        options=_parsed_proxy_options(proxy),
        retention=changes,
        no_retention=no_retention,
        block=block,
        attestations=attestations,
    )
    models.wait_counter_in_force()
    click.echo(f"Updated repository {name}.")
    if no_retention or any(value is not None for value in changes.values()):
        _describe_retention(name, Rule.from_json(row.retention))


@repo.command("list")
@pass_folder
def repo_list(folder: DataFolder) -> None:
    """List repositories: name, kind, read, overwrite, default role, projects, files, bytes.

    \b
    Example:  minirepo repo list
    """
    click.echo(
        "name\tkind\tread\toverwrite\tdefault-role\tprojects\tfiles\tbytes\tmembers\tretention"
        "\tblock"
    )
    for item in repos.summaries():
        info = item.info
        members = ",".join(item.members) + (
            f" (uploads: {info.upload_to})" if info.upload_to else ""
        )
        if info.is_proxy:
            members = f"upstream {info.upstream}"
        click.echo(
            f"{info.name}\t{info.kind}\t{info.read}\t{info.overwrite}\t{info.default_role}\t"
            f"{item.projects}\t{item.files}\t{item.bytes}\t{members or '-'}\t"
            f"{item.retention.describe() if item.retention.is_set else '-'}\t{info.level}"
        )


@repo.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete it even though it holds files.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_folder
def repo_delete(folder: DataFolder, name: str, force: bool, yes: bool) -> None:
    """Delete a repository: its URLs answer 404 at once; its files wait for garbage
    collection; tokens scoped to it alone are revoked.

    \b
    Example:  minirepo repo delete scratch --force --yes
    """
    repos.check_deletable(name, folder.settings.default_repository)
    confirm(f"Delete the repository {name}?", yes)
    count = repos.delete(name, force=force)
    models.wait_counter_in_force()
    click.echo(f"Deleted repository {name} ({count} file(s)).")


@main.command()
@click.argument("user_name", metavar="USER")
@click.argument("repo_name", metavar="REPO")
@click.argument("role", type=click.Choice(["reader", "uploader", "owner"]))
@pass_folder
def grant(folder: DataFolder, user_name: str, repo_name: str, role: str) -> None:
    """Give USER a ROLE in REPO (replacing any role they had there).

    \b
    reader: install; uploader: also create projects; owner: every project of the
    repository, yank, delete and grants.
    Example:  minirepo grant alice team uploader
    """
    repos.grant(user_name, repo_name, role)
    models.wait_counter_in_force()
    click.echo(f"{user_name} is now {role} in {repo_name}.")


@main.command()
@click.argument("user_name", metavar="USER")
@click.argument("repo_name", metavar="REPO")
@pass_folder
def revoke(folder: DataFolder, user_name: str, repo_name: str) -> None:
    """Take USER's grant in REPO away (the repository's default role applies again).

    \b
    Example:  minirepo revoke bob team
    """
    repos.revoke(user_name, repo_name)
    models.wait_counter_in_force()
    click.echo(f"{user_name} has no grant in {repo_name} any more.")


@main.group()
def project() -> None:
    """Project owners and maintainers.

    \b
    Example:  minirepo project add-maintainer main mypkg bob
    """


@project.command("show")
@click.argument("repo_name", metavar="REPO")
@click.argument("name", metavar="PROJECT")
@pass_folder
def project_show(folder: DataFolder, repo_name: str, name: str) -> None:
    """Show a project's owner, maintainers and versions.

    \b
    Example:  minirepo project show main mypkg
    """
    details = projects.show(repo_name, name)
    click.echo(f"project\t{details.name} ({details.normalized}) in {details.repository}")
    click.echo(f"owner\t{details.owner or '-'}")
    click.echo(f"maintainers\t{', '.join(details.maintainers) or '-'}")
    for version, files, yanked in details.versions:
        click.echo(f"version\t{version}\t{files} file(s){' yanked' if yanked else ''}")


def _people_command(name: str, change: Callable[..., None], done: str, example: str) -> None:
    """`project add-maintainer|remove-maintainer|set-owner REPO PROJECT USER`."""
    help_text = f"{change.__doc__}\n\n\b\nExample:  minirepo project {name} {example}"

    @project.command(name, help=help_text)
    @click.argument("repo_name", metavar="REPO")
    @click.argument("project_name", metavar="PROJECT")
    @click.argument("user_name", metavar="USER")
    @pass_folder
    def command(folder: DataFolder, repo_name: str, project_name: str, user_name: str) -> None:
        change(repo_name, project_name, user_name)
        click.echo(done.format(user=user_name, project=project_name, repo=repo_name))


_people_command(
    "add-maintainer",
    projects.add_maintainer,
    "{user} now maintains {project} in {repo}.",
    "main mypkg bob",
)
_people_command(
    "remove-maintainer",
    projects.remove_maintainer,
    "{user} no longer maintains {project} in {repo}.",
    "main mypkg bob",
)
_people_command(
    "set-owner", projects.set_owner, "{user} now owns {project} in {repo}.", "main mypkg carol"
)
