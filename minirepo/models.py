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
    # What known-vulnerable files it refuses (`services.policy`): "" is its kind's default.
    block = peewee.CharField(default="")
    # What it does with PEP 740 attestations uploaded with a file (`services.provenance`).
    attestations = peewee.CharField(default="auto")


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


# One account per name whatever its case, decided by the database itself: two servers
# adding "Alice" and "alice" at once both pass a check made before either commits.
User.add_index(User.index(peewee.fn.LOWER(User.name), unique=True, name="user_name_lower"))


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


class FileProvenance(BaseModel):
    """A file's PEP 740 attestations: for a hosted file the ones uploaded with it, checked
    (`status` verified or unverified, and why), with the publisher they name."""

    file = peewee.ForeignKeyField(File, unique=True, on_delete="CASCADE")
    status = peewee.CharField()
    reason = peewee.TextField(default="")
    publisher = peewee.TextField(default="")  # JSON, "" when not known
    attestations = peewee.TextField()  # the JSON array as uploaded


class AdvisoryImport(BaseModel):
    """One `advisories update`. The advisories in force are those of the newest finished
    import's `generation`: rows are staged under a new generation in small transactions
    and setting `finished` is the one short write that switches them in."""

    generation = peewee.IntegerField(unique=True)
    source = peewee.TextField(default="")
    started = peewee.DateTimeField(default=utcnow)
    finished = peewee.DateTimeField(null=True)
    checked = peewee.DateTimeField(null=True)  # the last update that found nothing new
    records = peewee.IntegerField(default=0)
    added = peewee.IntegerField(default=0)
    changed = peewee.IntegerField(default=0)
    removed = peewee.IntegerField(default=0)
    bad = peewee.IntegerField(default=0)
    dropped_ranges = peewee.IntegerField(default=0)


class Advisory(BaseModel):
    """One OSV record of one import generation, as `osv.to_dict` (what matching needs)."""

    generation = peewee.IntegerField()
    osv_id = peewee.CharField()
    modified = peewee.DateTimeField()
    severity = peewee.CharField()
    record = peewee.TextField()

    class Meta:
        indexes = ((("generation", "osv_id"), True),)


class AdvisoryPackage(BaseModel):
    """A normalized PyPI name an advisory of that generation is about: the lookup a page
    makes, one query per project rendered."""

    generation = peewee.IntegerField()
    normalized = peewee.CharField()
    osv_id = peewee.CharField()

    class Meta:
        indexes = ((("generation", "normalized", "osv_id"), True),)


class AdvisoryException(BaseModel):
    """`minirepo advisories allow`: a finding (an id, or every one: "*") that stops
    blocking a project's versions (`versions`, a PEP 440 specifier; "" all) in one
    repository until `expires` (None: never)."""

    repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    normalized = peewee.CharField()
    advisory = peewee.CharField()
    versions = peewee.CharField(default="")
    reason = peewee.TextField()
    expires = peewee.DateTimeField(null=True)
    actor = peewee.CharField(default="")
    created = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("repository", "normalized", "advisory"), True),)


class Counter(BaseModel):
    """Named change counters that other processes poll cheaply, e.g. `auth`."""

    name = peewee.CharField(unique=True)
    value = peewee.IntegerField(default=0)


class Instance(BaseModel):
    """Values of the whole installation, one row each, shared by every process and box
    that uses this database (e.g. `SECRET_FINGERPRINT`)."""

    name = peewee.CharField(unique=True)
    value = peewee.TextField()


class SchemaVersion(BaseModel):
    """One row: the schema version this database is at (see `migrations.py`)."""

    version = peewee.IntegerField()


AUTH_COUNTER = "auth"
# Bumped when the advisories in force or an exception change: part of every page's ETag.
ADVISORY_COUNTER = "advisories"
# The HMAC of a fixed label under the secret that signs sessions, never the secret: boxes
# sharing a database must share that secret (`services.datafolder`).
SECRET_FINGERPRINT = "secret_fingerprint"  # noqa: S105 - a row name

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
    FileProvenance,
    AdvisoryImport,
    Advisory,
    AdvisoryPackage,
    AdvisoryException,
    Counter,
    Instance,
    SchemaVersion,
)


def bump_counter(name: str) -> None:
    """Call inside the write transaction that makes the change the counter announces,
    and `forget_counters` once it has committed."""
    # One statement: an update-or-insert would let two processes both insert the first.
    Counter.insert(name=name, value=1).on_conflict(
        conflict_target=[Counter.name], update={Counter.value: Counter.value + 1}
    ).execute()


def forget_counters() -> None:
    """Drop the values this process trusts, so a change it committed counts here at once;
    where other processes serve the same database (`Database.shared`: the workers of one
    server, or several servers on PostgreSQL), wait until they have re-read it too, so a
    token revoked through one is refused by all the others when its answer is sent."""
    database = current()
    database.counters.forget()
    if database.shared:
        wait_counter_in_force()


def wait_counter_in_force() -> None:
    """Block until every other process has re-read the counters (see COUNTER_MAX_AGE)."""
    time.sleep(COUNTER_MAX_AGE)


def read_counter(name: str) -> int:
    """The counter's value, read from the database at most every COUNTER_MAX_AGE."""
    return current().counters.read(name)
