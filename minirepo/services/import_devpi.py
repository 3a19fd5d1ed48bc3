"""`minirepo import devpi`: a `devpi-export` folder's users, indexes, ACLs and files.

Each devpi index of uploads (`user/index`) becomes a hosted repository (`user-index`);
its owner becomes the repository's owner, its `acl_upload` users uploaders who also
maintain every project imported there (devpi lets them upload to any project of the
index), and a plugin's read restriction (`acl_read`) becomes a private repository with
readers. A mirror index is not copied (minirepo caches an upstream as a proxy), and an
index's bases become a group, which answers each name from one member where devpi
merges the versions of all of them. The names are all checked before anything is
written, so a clash stops the import before it starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from minirepo import models, names
from minirepo.db import rows
from minirepo.errors import UserError
from minirepo.services import importing, repos
from minirepo.services.datafolder import DataFolder
from minirepo.services.devpi_export import (
    ANONYMOUS,
    AUTHENTICATED,
    DevpiExport,
    DevpiIndex,
    DevpiUser,
)
from minirepo.services.importing import ImportedFile, ImportReport

ACTOR = "import devpi"
GROUP_SUFFIX = "-all"
SPECIAL_PRINCIPALS = (ANONYMOUS, AUTHENTICATED)


@dataclasses.dataclass(frozen=True)
class Access:
    """What a devpi index's ACLs become in a repository."""

    read: str  # "anonymous" | "authenticated"
    default_role: str  # "none" | "reader" | "uploader": any account's role
    grants: tuple[tuple[str, str], ...]  # (user, role), owner first
    uploaders: tuple[str, ...]  # made maintainers of every project imported there
    notes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Plan:
    """The names decided before anything is written: index -> repository, and the groups."""

    repos: dict[str, str]  # devpi stage index -> hosted repository
    groups: dict[str, tuple[str, list[str]]]  # index -> (group name, members)
    make_groups: bool  # False: the groups are only suggested
    mirrors: dict[str, str | None]  # devpi mirror index -> the proxy here with its URL
    notes: list[str]


@dataclasses.dataclass
class RepoOutcome:
    index: str
    repo: str
    created: bool
    imported: int = 0
    skipped: int = 0
    refused: int = 0
    other_files: dict[str, int] = dataclasses.field(default_factory=dict)  # kind -> count
    grants: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass
class GroupOutcome:
    index: str
    name: str
    members: list[str]
    upload_to: str
    status: str  # "created", "already there", or "suggested" (not created)


@dataclasses.dataclass(frozen=True)
class MirrorOutcome:
    index: str
    url: str
    proxy: str | None  # the proxy here with the same upstream, which stands for it


@dataclasses.dataclass
class DevpiResult:
    report: ImportReport
    repos: list[RepoOutcome]
    mirrors: list[MirrorOutcome]
    groups: list[GroupOutcome]


def repo_name_for(index: str) -> str:
    """`alice/dev` -> `alice-dev`: both halves stay readable, lowercase as URLs are."""
    return index.replace("/", "-").lower()


def plan(export: DevpiExport, renames: dict[str, str], *, make_groups: bool = True) -> Plan:
    """Map every index to a name here, refusing clashes and invalid names up front."""
    stages = {ix.name: ix for ix in export.indexes if not ix.is_mirror}
    unknown = sorted(set(renames) - set(stages))
    if unknown:
        raise UserError(f"--rename names no devpi index of uploads: {', '.join(unknown)}")
    mapped = {name: renames.get(name, repo_name_for(name)) for name in stages}
    proxies = _proxies_by_url()
    mirrors = {
        ix.name: proxies.get(_url_key(ix.mirror_url)) for ix in export.indexes if ix.is_mirror
    }
    by_name = {ix.name: ix for ix in export.indexes}
    notes: list[str] = []
    groups: dict[str, tuple[str, list[str]]] = {}
    for name in sorted(stages):
        if not stages[name].bases:
            continue
        members = _members(by_name, name, mapped, mirrors, notes)
        if len(members) > 1:
            groups[name] = (mapped[name] + GROUP_SUFFIX, members)
    targets = [(index, repo, "hosted") for index, repo in mapped.items()]
    if make_groups:
        targets += [(index, group, "group") for index, (group, _) in groups.items()]
    _check_targets(targets)
    return Plan(mapped, groups, make_groups, mirrors, notes)


def _members(
    indexes: dict[str, DevpiIndex],
    start: str,
    mapped: dict[str, str],
    mirrors: dict[str, str | None],
    notes: list[str],
) -> list[str]:
    """The group for `start`: devpi's resolution order (the index, its bases breadth
    first, mirrors last), each as the repository here that stands for it."""
    order, mirror_order, todo, seen = [], [], [start], {start}
    while todo:
        current = todo.pop(0)
        order.append(current)
        for base in indexes[current].bases:
            if base in seen:
                continue
            seen.add(base)
            if base not in indexes:
                notes.append(f"{current} has the base {base}, which the export does not hold")
            elif indexes[base].is_mirror:
                mirror_order.append(base)
            else:
                todo.append(base)
    members = [mapped[name] for name in order]
    for base in mirror_order:
        proxy = mirrors[base]
        if proxy is not None and proxy not in members:  # else: the summary says why not
            members.append(proxy)
    return members


def _proxies_by_url() -> dict[str, str]:
    query = models.Repository.select().where(models.Repository.kind == "proxy")
    return {_url_key(row.upstream): str(row.name) for row in query.order_by(models.Repository.id)}


def _url_key(url: str) -> str:
    return url.rstrip("/").lower()


def _check_targets(targets: list[tuple[str, str, str]]) -> None:
    """Every name valid, none taken twice, none already here as another kind."""
    seen: dict[str, str] = {}
    for index, name, kind in targets:
        hint = f"choose another with --rename {index}=NAME"
        problem = names.repository_name_problem(name)
        if problem:
            raise UserError(f"devpi index {index} maps to {name!r}: {problem}; {hint}")
        if name in seen:
            raise UserError(f"devpi indexes {seen[name]} and {index} both map to {name!r}; {hint}")
        seen[name] = index
        row = models.Repository.get_or_none(models.Repository.name == name)
        if row is not None and row.kind != kind:
            raise UserError(
                f"devpi index {index} maps to {name!r}, already a {row.kind} here "
                f"(a {kind} is needed); {hint}"
            )


def access_for(index: DevpiIndex, users: set[str]) -> Access:
    """devpi's ACLs as minirepo roles. Special principals become the default role;
    devpi groups (`:name`, from an LDAP plugin) have no equivalent and are noted."""
    notes: list[str] = []
    grants: dict[str, str] = {}
    if index.owner in users:
        grants[index.owner] = "owner"
    uploaders = [name for name in index.acl_upload if name in users]
    for name in uploaders:
        grants.setdefault(name, "uploader")
    default_role = "none"
    if set(index.acl_upload) & set(SPECIAL_PRINCIPALS):
        default_role = "uploader"
        if ANONYMOUS in index.acl_upload:
            notes.append(f"{index.name} let anyone upload without logging in; here any account may")
    read = "anonymous" if index.is_public else "authenticated"
    if not index.is_public:
        for name in index.acl_read:
            if name in users:
                grants.setdefault(name, "reader")
        if AUTHENTICATED in index.acl_read and default_role == "none":
            default_role = "reader"
    for acl, listed in (("acl_upload", index.acl_upload), ("acl_read", index.acl_read)):
        for name in listed:
            if name in SPECIAL_PRINCIPALS or name in users:
                continue
            what = "a devpi group" if name.startswith(":") else "not an account here"
            notes.append(f"{index.name}'s {acl} names {name}, {what}: no grant made for it")
    return Access(read, default_role, tuple(grants.items()), tuple(uploaders), tuple(notes))


def password_note(user: DevpiUser) -> str:
    """Why a devpi account needs a new password here: minirepo reads no devpi hash."""
    if user.pwsalt is not None:
        return "devpi's salted SHA-256 hash (devpi-server before 6), which minirepo does not read"
    if user.pwhash is None:
        return "no password in devpi (an account of an external login such as LDAP)"
    if user.pwhash.startswith("$argon2"):
        return "devpi's argon2 hash, which minirepo does not read"
    return "a devpi password hash minirepo does not read"


def run(
    folder: DataFolder,
    export: DevpiExport,
    the_plan: Plan,
    *,
    progress: Callable[[int], None] | None = None,
) -> DevpiResult:
    """The accounts first (files name their uploaders), then each index, then groups."""
    report = ImportReport(notes=list(the_plan.notes))
    for user in export.users:
        kept = None if user.pwsalt is not None else user.pwhash  # no use without its salt
        importing.import_user(
            user.name, kept, actor=ACTOR, report=report, note_if_unusable=password_note(user)
        )
    if any(user.name == "root" for user in export.users):
        report.notes.append("devpi's root is an ordinary account here, not an admin")
    accounts = {str(name) for (name,) in rows(models.User.select(models.User.name).tuples())}
    outcomes = [
        _import_index(folder, index, the_plan.repos[index.name], accounts, report, progress)
        for index in export.indexes
        if not index.is_mirror
    ]
    groups = [
        _group(index, name, members, the_plan, outcomes)
        for index, (name, members) in the_plan.groups.items()
    ]
    mirrors = [
        MirrorOutcome(ix.name, ix.mirror_url, the_plan.mirrors[ix.name])
        for ix in export.indexes
        if ix.is_mirror
    ]
    return DevpiResult(report, outcomes, mirrors, groups)


def distribution_count(export: DevpiExport) -> int:
    """The files `run` will try (its progress bar's length)."""
    return sum(
        1 for ix in export.indexes if not ix.is_mirror for f in ix.files if f.is_distribution
    )


def _import_index(
    folder: DataFolder,
    index: DevpiIndex,
    repo: str,
    accounts: set[str],
    report: ImportReport,
    progress: Callable[[int], None] | None,
) -> RepoOutcome:
    access = access_for(index, accounts)
    created = _ensure_repo(repo, index, access)
    outcome = RepoOutcome(index.name, repo, created, grants=access.grants)
    report.notes.extend(access.notes)
    importing.grant_missing(repo, access.grants, actor=ACTOR)
    files = []
    for item in index.files:
        if item.is_distribution:
            uploader = item.uploader if item.uploader in accounts else None
            files.append(ImportedFile(item.path, item.upload_time, uploader))
        else:
            outcome.other_files[item.kind] = outcome.other_files.get(item.kind, 0) + 1
            report.ignored.append(item.relpath)
    before = (len(report.imported), len(report.skipped), len(report.refused))
    importing.import_files(
        repo,
        sorted(files, key=lambda f: f.upload_time),  # a project's owner: its first uploader
        store=folder.store,
        settings=folder.settings,
        actor=ACTOR,
        report=report,
        progress=progress,
    )
    outcome.imported = len(report.imported) - before[0]
    outcome.skipped = len(report.skipped) - before[1]
    outcome.refused = len(report.refused) - before[2]
    importing.add_maintainers(repo, access.uploaders, {f.project for f in index.files}, actor=ACTOR)
    return outcome


def _ensure_repo(name: str, index: DevpiIndex, access: Access) -> bool:
    """Create the repository with the index's settings; an existing one (a run before
    this) is left as it is. True if created now."""
    if models.Repository.get_or_none(models.Repository.name == name) is not None:
        importing.ensure_hosted_repo(name, actor=ACTOR)
        return False
    repos.create(
        name,
        read=access.read,
        default_role=access.default_role,
        description=index.title or index.description or f"devpi index {index.name}",
        actor=ACTOR,
    )
    return True


def _group(
    index: str, name: str, members: list[str], the_plan: Plan, outcomes: list[RepoOutcome]
) -> GroupOutcome:
    """The group serving the index with its bases, uploads going to the index's
    repository; private if any member is, with the index's roles."""
    upload_to = the_plan.repos[index]
    if not the_plan.make_groups:
        return GroupOutcome(index, name, members, upload_to, "suggested")
    if models.Repository.get_or_none(models.Repository.name == name) is not None:
        return GroupOutcome(index, name, members, upload_to, "already there")
    query = models.Repository.select().where(models.Repository.name.in_(members))
    by_name = {row.name: row for row in query}
    private = any(row.read != "anonymous" for row in by_name.values())
    repos.create(
        name,
        kind="group",
        members=members,
        upload_to=upload_to,
        read="authenticated" if private else "anonymous",
        default_role=str(by_name[upload_to].default_role),
        description=f"devpi index {index} with its bases",
        actor=ACTOR,
    )
    importing.grant_missing(name, next(o.grants for o in outcomes if o.index == index), actor=ACTOR)
    return GroupOutcome(index, name, members, upload_to, "created")
