"""`advisories` and `audit-packages`: OSV advisories kept offline in the database, the
exceptions admins grant, and what the repositories hold that they name."""

from __future__ import annotations

import datetime
import json
import sys

import click

from minirepo import models, names, osv, units
from minirepo.cli.base import main, pass_folder
from minirepo.errors import UserError
from minirepo.osv_source import open_source
from minirepo.services import advisories, package_audit, policy, repos
from minirepo.services.datafolder import DataFolder

_SEVERITY = click.Choice(osv.SEVERITIES)


@main.group("advisories")
def advisories_group() -> None:
    """OSV advisories: update them, see what is in force, grant exceptions.

    \b
    Examples:  minirepo advisories update
               minirepo advisories update --from /media/usb/all.zip
               minirepo advisories allow main demo --id GHSA-xxxx-xxxx-xxxx --reason "not reachable"
    """


@advisories_group.command("update")
@click.option(
    "--from",
    "source",
    help="An OSV export zip (OSV's PyPI all.zip), a folder of *.json, one file, or an "
    "https URL of a zip (default: the advisories_source setting).",
)
@click.option(
    "--no-prune",
    is_flag=True,
    help="Keep advisories a full export no longer lists (a zip or folder prunes them).",
)
@pass_folder
def update(folder: DataFolder, source: str | None, no_prune: bool) -> None:
    """Import OSV advisories. Nothing changes unless every record was read: a breached
    size cap or a file that is not an export leaves the advisories in force as they were.

    \b
    Examples:  minirepo advisories update
               minirepo advisories update --from /media/usb/all.zip
    """
    source = source or folder.settings.advisories_source
    if not source:
        raise UserError("No source: give --from, or set advisories_source")
    with open_source(source, folder.settings.data / "tmp") as (documents, stats):
        outcome = advisories.update(
            source, documents, prune=stats.full and not no_prune, unreadable=lambda: stats.bad
        )
    models.wait_counter_in_force()  # a running server lists the new verdicts when we return
    skipped = f"; {outcome.bad} unreadable record(s) skipped" if outcome.bad else ""
    if outcome.dropped_ranges:
        skipped += f"; {outcome.dropped_ranges} range(s) with a non-PEP 440 bound left out"
    if outcome.generation is None:
        click.echo(f"No change: {outcome.records} advisories in force, checked now{skipped}.")
        return
    click.echo(
        f"{outcome.records} advisories in force (generation {outcome.generation}): "
        f"{outcome.added} added, {outcome.changed} changed, {outcome.removed} removed{skipped}."
    )


@advisories_group.command("status")
@pass_folder
def status(folder: DataFolder) -> None:
    """The advisories in force: where from, how many, how old.

    \b
    Example:  minirepo advisories status
    """
    found = advisories.status()
    if found is None:
        click.echo("No advisories yet: run minirepo advisories update (a daily timer: systemd/).")
        return
    age = (policy.now() - found.checked).total_seconds()
    click.echo(f"source\t{found.source}")
    click.echo(f"generation\t{found.generation}")
    click.echo(f"records\t{found.records}")
    click.echo(f"imported\t{_when(found.finished)}")
    click.echo(f"checked\t{_when(found.checked)} ({_age(age)} ago)")
    if found.bad or found.dropped_ranges:
        click.echo(f"skipped\t{found.bad} unreadable, {found.dropped_ranges} ranges left out")
    if age > folder.settings.advisories_max_age:
        click.echo(
            f"warning: older than advisories_max_age "
            f"({_age(folder.settings.advisories_max_age)}): "
            "run minirepo advisories update",
            err=True,
        )


@advisories_group.command("show")
@click.argument("advisory_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The OSV document.")
@pass_folder
def show(folder: DataFolder, advisory_id: str, as_json: bool) -> None:
    """One advisory in force, by its id or an alias (a CVE).

    \b
    Example:  minirepo advisories show CVE-2024-35195
    """
    record = advisories.record(advisory_id)
    if as_json:
        click.echo(json.dumps(osv.to_osv(record), indent=2))
        return
    click.echo(f"{record.id} ({record.severity})")
    if record.aliases:
        click.echo(f"aliases\t{', '.join(record.aliases)}")
    click.echo(f"summary\t{record.summary}")
    click.echo(f"modified\t{_when(record.modified)}")
    for entry in record.affected:
        spans = ", ".join(str(window) for window in entry.windows)
        listed = ", ".join(entry.versions)
        click.echo(f"affects\t{entry.name}: {spans or listed or '-'}")


@advisories_group.command("allow")
@click.argument("repo_name", metavar="REPO")
@click.argument("project_name", metavar="PROJECT")
@click.option("--id", "advisory_id", required=True, help="The advisory id, or '*' for every one.")
@click.option("--versions", default="", help="A PEP 440 specifier (default: every version).")
@click.option("--reason", required=True, help="Why it may be installed (kept in the audit log).")
@click.option(
    "--expires",
    default="90d",
    show_default=True,
    help="When the exception ends (a number is days; 12h, 2w), or 'never'.",
)
@pass_folder
def allow(
    folder: DataFolder,
    repo_name: str,
    project_name: str,
    advisory_id: str,
    versions: str,
    reason: str,
    expires: str,
) -> None:
    """Let a finding be installed from one repository despite its block level. It stays in
    audit-packages (as excepted) and blocks again when the exception expires.

    \b
    Example:  minirepo advisories allow main requests --id GHSA-9wx4-h78v-vm56 \\
                  --versions '<2.32' --reason "no untrusted URLs" --expires 30d
    """
    repo = repos.get(repo_name)
    normalized = names.normalized_project(project_name)
    if normalized is None:
        raise UserError(f"{project_name!r} is not a valid project name")
    until = None
    if expires != "never":
        try:
            seconds = units.parse_duration(expires, "d")
        except ValueError as exc:
            raise UserError(f"--expires: {exc}") from exc
        until = policy.now() + datetime.timedelta(seconds=seconds)
    policy.allow(
        repo,
        normalized,
        advisory_id,
        versions=versions,
        reason=reason,
        expires=until,
        actor="cli",
    )
    models.wait_counter_in_force()
    click.echo(
        f"Allowed {advisory_id} for {normalized} {versions or '(every version)'} in "
        f"{repo_name} until {_when(until) if until else 'never'}."
    )


@advisories_group.command("revoke-allow")
@click.argument("repo_name", metavar="REPO")
@click.argument("project_name", metavar="PROJECT")
@click.option("--id", "advisory_id", required=True, help="The advisory id the exception names.")
@pass_folder
def revoke_allow(folder: DataFolder, repo_name: str, project_name: str, advisory_id: str) -> None:
    """End an exception now: the finding blocks again.

    \b
    Example:  minirepo advisories revoke-allow main requests --id GHSA-9wx4-h78v-vm56
    """
    normalized = names.normalized_project(project_name) or project_name
    policy.revoke(repos.get(repo_name), normalized, advisory_id, actor="cli")
    models.wait_counter_in_force()
    click.echo(f"Removed the exception for {advisory_id} on {normalized} in {repo_name}.")


@main.command("audit-packages")
@click.option("--repo", "repo_names", multiple=True, help="Only this repository (repeatable).")
@click.option("--min-severity", type=_SEVERITY, default="unknown", help="Leave out milder ones.")
@click.option("--format", "form", type=click.Choice(["table", "json"]), default="table")
@click.option(
    "--fail-on",
    type=_SEVERITY,
    help="Exit 1 when a finding at least this severe is not excepted (for CI).",
)
@pass_folder
def audit_packages(
    folder: DataFolder,
    repo_names: tuple[str, ...],
    min_severity: str,
    form: str,
    fail_on: str | None,
) -> None:
    """Every advisory finding on the versions the repositories hold, one row each, with
    what matched and what the repository's policy does (blocked, warned, excepted).

    \b
    Example:  minirepo audit-packages --repo main --fail-on high
    """
    for name in repo_names:
        repos.get(name)
    if advisories.status() is None:
        click.echo("warning: no advisories yet: run minirepo advisories update", err=True)
    found = package_audit.audit(repo_names, min_severity)
    if form == "json":
        click.echo(json.dumps([row.as_dict() for row in found], indent=2))
    else:
        click.echo("repository\tproject\tversion\tid\tseverity\taction\tfixed\tmatched")
        for row in found:
            action = f"{row.action} ({row.exception})" if row.exception else row.action
            click.echo(
                f"{row.repository}\t{row.project}\t{row.version}\t{row.id}\t{row.severity}\t"
                f"{action}\t{','.join(row.fixed) or '-'}\t{row.matched}"
            )
    if fail_on is not None and (failing := package_audit.fails(found, fail_on)):
        click.echo(
            f"{len(failing)} finding(s) at or above {fail_on} are not excepted "
            "(minirepo advisories allow, or upgrade)",
            err=True,
        )
        sys.exit(1)


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / 3600:.1f} hours"
