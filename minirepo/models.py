"""Peewee models: repositories, projects, releases, files, users, tokens, the audit log.

Never imports Flask, so the CLI and the server share it. Every change to these classes is
a new schema version with its migration step in `migrations.py`.
"""

from __future__ import annotations

import datetime
import time

import peewee

from minirepo.db import COUNTER_MAX_AGE, current, database


def utcnow() -> datetime.datetime:
    """Naive UTC, the form stored in the database."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class BaseModel(peewee.Model):
    id = peewee.AutoField()

    class Meta:
        database = database


class Repository(BaseModel):
    name = peewee.CharField(unique=True)
    kind = peewee.CharField(default="hosted")
    description = peewee.TextField(default="")
    read = peewee.CharField(default="anonymous")
    overwrite = peewee.CharField(default="never")
    default_role = peewee.CharField(default="none")
    generation = peewee.IntegerField(default=0)
    created = peewee.DateTimeField(default=utcnow)
    # A proxy's upstream simple index, and its options as JSON (`services.repos`).
    upstream = peewee.CharField(default="")
    proxy_options = peewee.TextField(default="{}")
    # The hosted member a group stores uploads in; none: the group takes no uploads.
    upload_to = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL", backref="+")
    # A hosted repository's retention rule as JSON (`services.retention.Rule`), "" for
    # none, and when the server last applied it (it does so daily).
    retention = peewee.TextField(default="")
    retention_applied_at = peewee.DateTimeField(null=True)


class GroupMember(BaseModel):
    """A hosted or proxy repository in a group, asked in `position` order."""

    group = peewee.ForeignKeyField(Repository, backref="members", on_delete="CASCADE")
    member = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    position = peewee.IntegerField()

    class Meta:
        indexes = ((("group", "member"), True), (("group", "position"), True))


class ProjectOrigin(BaseModel):
    """The member a group serves a project name from, fixed when it first answered it (or
    by `minirepo origin set`): a public name can never take an internal one's place."""

    group = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    normalized = peewee.CharField()
    member = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    since = peewee.DateTimeField(default=utcnow)
    actor = peewee.CharField(default="")  # empty: recorded by first use

    class Meta:
        indexes = ((("group", "normalized"), True),)


class TrackedProject(BaseModel):
    """A name a group merges across its members (`minirepo repo track`, PEP 708)."""

    group = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    normalized = peewee.CharField()

    class Meta:
        indexes = ((("group", "normalized"), True),)


class CachedPage(BaseModel):
    """A proxy's copy of one upstream project page (`services.proxies`)."""

    repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    normalized = peewee.CharField()
    page_json = peewee.TextField(default="")  # `upstream_pages.to_json`; "" until a 200
    etag = peewee.CharField(default="")  # the upstream's, for If-None-Match
    gone = peewee.BooleanField(default=False)  # the upstream answered 404 or 410
    fetched_at = peewee.DateTimeField(null=True)  # the last 200 or 304
    error = peewee.TextField(default="")  # the last failure, kept until the next success
    error_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("repository", "normalized"), True),)


class CachedMetadata(BaseModel):
    """A proxied file's PEP 658 metadata, fetched once and checked against its page:
    resolvers read it before (or instead of) the file."""

    repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    normalized = peewee.CharField()
    filename = peewee.CharField()
    content = peewee.BlobField()

    class Meta:
        indexes = ((("repository", "filename"), True),)


class FetchJob(BaseModel):
    """A file a proxy is fetching from upstream now: the one-fetch rule holds across
    processes sharing the database, so it lives here, not in a thread lock."""

    repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    filename = peewee.CharField()
    owner = peewee.CharField()  # host:pid of the fetching process
    started = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("repository", "filename"), True),)


class User(BaseModel):
    name = peewee.CharField(unique=True)
    password_hash = peewee.CharField(default="")
    is_admin = peewee.BooleanField(default=False)
    disabled = peewee.BooleanField(default=False)
    # Failed logins before this time no longer count (`minirepo user unlock`).
    unlocked_at = peewee.DateTimeField(null=True)
    created = peewee.DateTimeField(default=utcnow)


class Project(BaseModel):
    repository = peewee.ForeignKeyField(Repository, backref="projects", on_delete="CASCADE")
    name = peewee.CharField()
    normalized = peewee.CharField()
    # Its first uploader; kept when they are disabled, until `project set-owner`.
    owner = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
    created = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("repository", "normalized"), True),)


class ProjectMaintainer(BaseModel):
    """Accounts the owner lets upload to the project (not yank, delete or manage it)."""

    project = peewee.ForeignKeyField(Project, backref="maintainers", on_delete="CASCADE")
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")

    class Meta:
        indexes = ((("project", "user"), True),)


class Grant(BaseModel):
    """A user's role in one repository: reader, uploader or owner."""

    user = peewee.ForeignKeyField(User, backref="grants", on_delete="CASCADE")
    repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    role = peewee.CharField()

    class Meta:
        indexes = ((("user", "repository"), True),)


class Release(BaseModel):
    project = peewee.ForeignKeyField(Project, backref="releases", on_delete="CASCADE")
    version = peewee.CharField()
    canonical_version = peewee.CharField()
    summary = peewee.TextField(default="")
    requires_python = peewee.CharField(default="")
    metadata_json = peewee.TextField(default="{}")
    created = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("project", "canonical_version"), True),)


class File(BaseModel):
    release = peewee.ForeignKeyField(Release, backref="files", on_delete="CASCADE")
    repository = peewee.ForeignKeyField(Repository)
    filename = peewee.CharField()
    packagetype = peewee.CharField()
    python_version = peewee.CharField(default="")
    requires_python = peewee.CharField(default="")
    size = peewee.BigIntegerField()
    sha256 = peewee.CharField(max_length=64)
    blake2b_256 = peewee.CharField(max_length=64)
    md5 = peewee.CharField(max_length=32)
    metadata_sha256 = peewee.CharField(max_length=64, null=True)
    yanked = peewee.BooleanField(default=False)
    yanked_reason = peewee.TextField(default="")
    upload_time = peewee.DateTimeField(default=utcnow)
    uploader = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
    storage_key = peewee.CharField()
    # When a proxy last served it (written in batches, `services.cache`): the LRU order.
    last_used = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("repository", "filename"), True),)


class FileMetadata(BaseModel):
    """The exact core-metadata bytes served as `<file>.metadata` (PEP 658)."""

    file = peewee.ForeignKeyField(File, unique=True, on_delete="CASCADE")
    content = peewee.BlobField()


class ReadmeHtml(BaseModel):
    """A release's README as sanitised HTML, rendered at its first view (`services.readme`)
    rather than at upload or start; `renderer` is the version that made it, so a change of
    renderer renders again."""

    release = peewee.ForeignKeyField(Release, unique=True, on_delete="CASCADE")
    html = peewee.TextField()
    renderer = peewee.CharField()


class DownloadCount(BaseModel):
    """Downloads of one file on one day (UTC), counted in memory and written in batches
    (`services.downloads`): one row per file and day, not per download."""

    file = peewee.ForeignKeyField(File, on_delete="CASCADE")
    day = peewee.DateField()
    count = peewee.IntegerField(default=0)

    class Meta:
        indexes = ((("file", "day"), True),)


class UsedFilename(BaseModel):
    """Every filename ever stored; it stays burned after a delete, as on PyPI."""

    repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    filename = peewee.CharField()

    class Meta:
        indexes = ((("repository", "filename"), True),)


class Tombstone(BaseModel):
    """A deleted or replaced file: its name stays burned and its blob is still referenced
    (by key, shared across repositories) until garbage collection counts no live row."""

    repository = peewee.CharField()  # the name: the repository itself may be gone
    project = peewee.CharField()
    filename = peewee.CharField()
    storage_key = peewee.CharField(index=True)
    sha256 = peewee.CharField(max_length=64)
    size = peewee.BigIntegerField()
    reason = peewee.CharField()
    actor = peewee.CharField(default="")
    deleted_at = peewee.DateTimeField(default=utcnow)


def bury(stored: File, repository: str, project: str, reason: str, actor: str) -> None:
    """Replace a file row by its tombstone (inside the caller's write transaction)."""
    Tombstone.create(
        repository=repository,
        project=project,
        filename=stored.filename,
        storage_key=stored.storage_key,
        sha256=stored.sha256,
        size=stored.size,
        reason=reason,
        actor=actor,
    )
    stored.delete_instance(recursive=True)


class Token(BaseModel):
    user = peewee.ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    secret_sha256 = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.CharField()
    description = peewee.TextField(default="")
    permission = peewee.CharField(default="upload")
    expires = peewee.DateTimeField(null=True)
    last_used = peewee.DateTimeField(null=True)
    revoked = peewee.BooleanField(default=False)
    created = peewee.DateTimeField(default=utcnow)


class TokenRepository(BaseModel):
    """One repository a token is limited to; none means every repository."""

    token = peewee.ForeignKeyField(Token, backref="repository_scope", on_delete="CASCADE")
    repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")

    class Meta:
        indexes = ((("token", "repository"), True),)


class TokenProject(BaseModel):
    """One project (normalized name) a token is limited to; none means every project."""

    token = peewee.ForeignKeyField(Token, backref="project_scope", on_delete="CASCADE")
    normalized = peewee.CharField()

    class Meta:
        indexes = ((("token", "normalized"), True),)


class Event(BaseModel):
    time = peewee.DateTimeField(default=utcnow, index=True)
    actor = peewee.CharField(default="")
    action = peewee.CharField()
    repository = peewee.CharField(default="")
    project = peewee.CharField(default="")
    filename = peewee.CharField(default="")
    remote_addr = peewee.CharField(default="")
    detail = peewee.TextField(default="")


class Counter(BaseModel):
    """Named change counters that other processes poll cheaply, e.g. `auth`."""

    name = peewee.CharField(unique=True)
    value = peewee.IntegerField(default=0)


class SchemaVersion(BaseModel):
    """One row: the schema version this database is at (see `migrations.py`)."""

    version = peewee.IntegerField()


AUTH_COUNTER = "auth"

MODELS = (
    Repository,
    GroupMember,
    ProjectOrigin,
    TrackedProject,
    CachedPage,
    CachedMetadata,
    FetchJob,
    User,
    Project,
    ProjectMaintainer,
    Grant,
    Release,
    File,
    FileMetadata,
    ReadmeHtml,
    DownloadCount,
    UsedFilename,
    Tombstone,
    Token,
    TokenRepository,
    TokenProject,
    Event,
    Counter,
    SchemaVersion,
)


# SQLite only: the search index (FTS5), one row per project that has a release (rowid =
# project.id): its name, the name without separators (so "alicepkg" finds "alice-pkg"),
# and the summary and keywords of its latest release (by upload order). Triggers keep it,
# so every path that writes projects or releases (upload, delete, retention, import, a
# proxy's fetch, a repository deleted with its projects) keeps it right with no code of
# its own. PostgreSQL has none: `services.search` matches with ILIKE there.
SEARCH_TABLE = "project_search"
_INDEX_PROJECTS = (
    "INSERT INTO project_search (rowid, name, compact, summary, keywords) "
    "SELECT p.id, p.name, replace(p.normalized, '-', ''), r.summary, "
    "coalesce((SELECT group_concat(k.value, ' ') FROM json_each(CASE WHEN "
    "json_valid(r.metadata_json) THEN r.metadata_json ELSE '{{}}' END, '$.keywords') k), '') "
    'FROM "project" p JOIN "release" r ON r.id = (SELECT id FROM "release" '
    "WHERE project_id = p.id ORDER BY created DESC, id DESC LIMIT 1){where}"
)


def _reindex(project: str) -> str:
    """The statements that make `project`'s row right again, whatever changed."""
    return (  # `project` is a column of the trigger's row (new.id), never a value
        f"DELETE FROM project_search WHERE rowid = {project}; "  # noqa: S608
        f"{_INDEX_PROJECTS.format(where=f' WHERE p.id = {project}')};"
    )


SEARCH_DDL = (
    "CREATE VIRTUAL TABLE project_search USING fts5("
    "name, compact, summary, keywords, tokenize = 'unicode61 remove_diacritics 2', "
    "prefix = '1 2 3 4')",
    # Ranked by bm25 with these weights of name, compact name, summary and keywords.
    "INSERT INTO project_search (project_search, rank) VALUES ('rank', 'bm25(10, 10, 1, 4)')",
    'CREATE TRIGGER project_search_drop AFTER DELETE ON "project" BEGIN '
    "DELETE FROM project_search WHERE rowid = old.id; END",
    'CREATE TRIGGER project_search_rename AFTER UPDATE OF name, normalized ON "project" BEGIN '
    f"{_reindex('new.id')} END",
    'CREATE TRIGGER project_search_release_add AFTER INSERT ON "release" BEGIN '
    f"{_reindex('new.project_id')} END",
    'CREATE TRIGGER project_search_release_drop AFTER DELETE ON "release" BEGIN '
    f"{_reindex('old.project_id')} END",
    "CREATE TRIGGER project_search_release_change AFTER UPDATE OF "
    'project_id, summary, metadata_json, created ON "release" BEGIN '
    f"{_reindex('old.project_id')} {_reindex('new.project_id')} END",
)
# Fills the index from the rows already there (a new database, the upgrade to schema 6).
SEARCH_FILL = (_INDEX_PROJECTS.format(where=""),)


def create_search_index(handle: peewee.Database) -> None:
    """The SQLite search index and its triggers, filled from the existing rows (inside
    the caller's schema transaction); nothing on PostgreSQL."""
    if not isinstance(handle, peewee.SqliteDatabase):
        return
    for statement in (*SEARCH_DDL, *SEARCH_FILL):
        handle.execute_sql(statement)  # type: ignore[no-untyped-call]


def bump_counter(name: str) -> None:
    """Call inside the write transaction that makes the change the counter announces,
    and `forget_counters` once it has committed."""
    updated = Counter.update(value=Counter.value + 1).where(Counter.name == name).execute()
    if not updated:
        Counter.create(name=name, value=1)


def forget_counters() -> None:
    """Drop the values this process trusts, so a change it committed counts here at once."""
    current().counters.forget()


def wait_counter_in_force() -> None:
    """Block until every other process has re-read the counters (see COUNTER_MAX_AGE)."""
    time.sleep(COUNTER_MAX_AGE)


def read_counter(name: str) -> int:
    """The counter's value, read from the database at most every COUNTER_MAX_AGE."""
    return current().counters.read(name)
