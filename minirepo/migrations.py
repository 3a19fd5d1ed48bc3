"""The schema version a database is at, and the ordered steps that bring it up to date.

Data folders exist in the field, so a schema change is never made by `create_tables`
alone: it gets a version and a step here, tested by upgrading a folder made by the
release before it (`tests/fixtures/datafolders/`). Only `minirepo serve` upgrades, after
copying a SQLite database aside (`VACUUM INTO`); other commands refuse an old schema, so
a CLI of the new release never writes into a folder an old server still runs on.

On PostgreSQL several processes (several boxes) may start at once on one database, so
the check and the upgrade run under an advisory lock: one migrates, the others wait and
then find the schema at the latest version. SQLite needs none (`serve.lock`, and the
write lock that `schema_change` takes).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee
from playhouse import migrate

from minirepo import models, search_index
from minirepo.db import Database, MissingDataFolder, rows
from minirepo.errors import UserError

log = logging.getLogger(__name__)

# 1: minirepo 0.1.0, which stored no version. 2: repositories with kinds and roles,
# grants, project owners and maintainers, token scope rows, tombstones, audit details.
# 3: proxy and group repositories: upstreams, members, origins, tracked names.
# 4: the proxies' cache: upstream pages and metadata, fetch jobs, files' last use.
# 5: hosted repositories' retention rules, applied daily by the server.
# 6: the web UI: rendered READMEs, daily download counts, the search index (SQLite).
# 7: instance-wide values (the session secret's fingerprint); PostgreSQL's search index.
# 8: advisories and their exceptions, repositories' block and attestation policies,
#    files' PEP 740 attestations.
LATEST = 8

# The key of the PostgreSQL advisory lock migrations hold: "minirepo" as a bigint.
MIGRATION_LOCK = int.from_bytes(b"minirepo", "big")


def version_of(database: Database) -> int | None:
    """The stored schema version; None when the database holds no minirepo schema."""
    tables = set(database.handle.get_tables())
    if models.SchemaVersion._meta.table_name in tables:
        with database.activated():
            row = models.SchemaVersion.select().first()
        return int(row.version) if row is not None else None
    if models.Repository._meta.table_name in tables:
        return 1
    return None


def check(database: Database) -> None:
    """For commands other than `serve`: refuse a database this code must not touch."""
    version = version_of(database)
    if version is None:
        raise MissingDataFolder(database.label)
    if version < LATEST:
        raise UserError(
            f"The data folder at {database.label} was made by an older minirepo (schema "
            f"{version}, this one needs {LATEST}): run minirepo serve once to upgrade it "
            "(it copies the database aside first)"
        )
    _refuse_newer(database, version)


def prepare(database: Database, backups: Path) -> bool:
    """For `serve`: create a fresh schema, or upgrade an old one after a backup copy.
    True when the schema was created now (a first start); of several processes starting
    at once on one PostgreSQL database, exactly one creates or upgrades it."""
    with _migration_lock(database):
        return _prepare(database, backups)


@contextlib.contextmanager
def _migration_lock(database: Database) -> Iterator[None]:
    """PostgreSQL: a session advisory lock around the check and the upgrade, released
    after (also when it fails). Taken outside any transaction, so the upgrade's own
    transaction commits before the next process reads the version."""
    if database.is_sqlite:
        yield
        return
    handle = database.handle
    got = handle.execute_sql("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK,)).fetchone()  # type: ignore[no-untyped-call]
    if not got[0]:
        log.warning("another process is creating or upgrading the schema; waiting for it")
        handle.execute_sql("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        handle.execute_sql("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))  # type: ignore[no-untyped-call]


def _prepare(database: Database, backups: Path) -> bool:
    version = version_of(database)
    if version is None:
        with database.activated(), database.write_transaction():
            database.handle.create_tables(models.MODELS, safe=True)
            search_index.create(database.handle)
            models.SchemaVersion.create(version=LATEST)
        return True
    _refuse_newer(database, version)
    if version == LATEST:
        return False
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if database.is_sqlite:
        copy = str(database.copy_to(backups / f"minirepo-schema{version}-{stamp}.sqlite3"))
    else:
        copy = "schema " + database.copy_aside(f"minirepo_schema{version}_{stamp.lower()}")
    log.warning("upgrading the database from schema %d to %d; copy at %s", version, LATEST, copy)
    with database.activated(), database.schema_change():
        if version_of(database) != version:
            return False  # another process upgraded it meanwhile
        migrator = migrate.SchemaMigrator.from_database(database.handle)
        for step_version, step in STEPS:
            if step_version > version:
                step(database.handle, migrator)
        models.SchemaVersion.delete().execute()
        models.SchemaVersion.create(version=LATEST)
    return False


def _refuse_newer(database: Database, version: int) -> None:
    if version > LATEST:
        raise UserError(
            f"The data folder at {database.label} was made by a newer minirepo (schema "
            f"{version}, this one knows up to {LATEST}): install that release or newer"
        )


def _to_v2(handle: peewee.Database, migrator: migrate.SchemaMigrator) -> None:
    """Repositories get kinds and roles, projects owners, tokens scope rows."""
    migrate.migrate(
        migrator.add_column("repository", "kind", peewee.CharField(default="hosted")),
        migrator.add_column("repository", "overwrite", peewee.CharField(default="never")),
        migrator.add_column("repository", "default_role", peewee.CharField(default="none")),
        migrator.add_column("user", "unlocked_at", peewee.DateTimeField(null=True)),
        migrator.add_column(
            "project",
            "owner_id",
            peewee.ForeignKeyField(
                models.User, null=True, field=models.User.id, on_delete="SET NULL"
            ),
        ),
        migrator.add_column("event", "detail", peewee.TextField(default="")),
        migrator.add_index("event", ("time",)),
    )
    handle.create_tables(
        [
            models.ProjectMaintainer,
            models.Grant,
            models.Tombstone,
            models.TokenRepository,
            models.TokenProject,
            models.SchemaVersion,
        ]
    )
    # 0.1.0 let every account upload a new project anywhere: its repositories keep that.
    models.Repository.update(default_role="uploader").execute()
    _owners_from_first_uploads()
    _token_scope_rows(handle)
    migrate.migrate(
        migrator.drop_column("token", "repositories"),
        migrator.drop_column("token", "projects"),
    )


def _owners_from_first_uploads() -> None:
    """Each project's owner is the uploader of its earliest file."""
    for project in models.Project.select():
        first = (
            models.File.select(models.File.uploader)
            .join(models.Release)
            .where((models.Release.project == project.id) & models.File.uploader.is_null(False))
            .order_by(models.File.upload_time, models.File.id)
            .first()
        )
        if first is not None:
            models.Project.update(owner=first.uploader).where(
                models.Project.id == project.id
            ).execute()


def _token_scope_rows(handle: peewee.Database) -> None:
    """Comma-joined scopes become rows; a token naming a missing repository is revoked
    (dropping the name would widen it to every repository)."""
    old = peewee.Table("token").bind(handle)
    columns = [peewee.Column(old, name) for name in ("id", "repositories", "projects")]
    for token_id, repositories, projects in rows(old.select(*columns).tuples()):
        for name in filter(None, (repositories or "").split(",")):
            # Only the columns schema 2 has: later steps add more to the model.
            repo = (
                models.Repository.select(models.Repository.id)
                .where(models.Repository.name == name)
                .first()
            )
            if repo is None:
                log.warning("token %d named a missing repository %r: revoked", token_id, name)
                models.Token.update(revoked=True).where(models.Token.id == token_id).execute()
                continue
            models.TokenRepository.create(token=token_id, repository=repo.id)
        for normalized in sorted(set(filter(None, (projects or "").split(",")))):
            models.TokenProject.create(token=token_id, normalized=normalized)


def _to_v3(handle: peewee.Database, migrator: migrate.SchemaMigrator) -> None:
    """Proxy and group repositories. Existing folders gain none (README, Upgrading)."""
    migrate.migrate(
        migrator.add_column("repository", "upstream", peewee.CharField(default="")),
        migrator.add_column("repository", "proxy_options", peewee.TextField(default="{}")),
        migrator.add_column(
            "repository",
            "upload_to_id",
            peewee.ForeignKeyField(
                models.Repository,
                null=True,
                field=models.Repository.id,
                on_delete="SET NULL",
            ),
        ),
    )
    handle.create_tables([models.GroupMember, models.ProjectOrigin, models.TrackedProject])


def _to_v4(handle: peewee.Database, migrator: migrate.SchemaMigrator) -> None:
    """The proxies' cache."""
    migrate.migrate(migrator.add_column("file", "last_used", peewee.DateTimeField(null=True)))
    handle.create_tables([models.CachedPage, models.CachedMetadata, models.FetchJob])


def _to_v5(handle: peewee.Database, migrator: migrate.SchemaMigrator) -> None:
    """Retention rules: existing repositories get none, so nothing is pruned."""
    migrate.migrate(
        migrator.add_column("repository", "retention", peewee.TextField(default="")),
        migrator.add_column("repository", "retention_applied_at", peewee.DateTimeField(null=True)),
    )


def _to_v6(handle: peewee.Database, migrator: migrate.SchemaMigrator) -> None:
    """The web UI's tables; on SQLite the search index, filled from the projects there."""
    handle.create_tables([models.ReadmeHtml, models.DownloadCount])
    if isinstance(handle, peewee.SqliteDatabase):
        search_index.create(handle)


def _to_v7(handle: peewee.Database, migrator: migrate.SchemaMigrator) -> None:
    """Instance-wide values (the secret's fingerprint is stored at the next start); one
    account per name whatever its case, as a unique index; on PostgreSQL the search
    index, filled from the projects there."""
    handle.create_tables([models.Instance])
    lower = peewee.fn.LOWER(models.User.name)
    clashes = models.User.select(lower).group_by(lower).having(peewee.fn.COUNT(models.User.id) > 1)
    if names := sorted(str(name) for (name,) in rows(clashes.tuples())):
        raise UserError(
            f"Accounts whose names differ only in case ({', '.join(names)}) were made by "  # noqa: S608 - a message
            "servers racing on one database: rename all but one of each in the database "
            "(psql: UPDATE \"user\" SET name = 'NEW' WHERE id = ID), then start again"
        )
    handle.execute_sql('CREATE UNIQUE INDEX "user_name_lower" ON "user" (LOWER("name"))')  # type: ignore[no-untyped-call]
    if not isinstance(handle, peewee.SqliteDatabase):
        search_index.create(handle)


def _to_v8(handle: peewee.Database, migrator: migrate.SchemaMigrator) -> None:
    """Advisories (none until `advisories update`) and provenance; every repository keeps
    its kind's default policy ("") and `auto` attestations."""
    migrate.migrate(
        migrator.add_column("repository", "block", peewee.CharField(default="")),
        migrator.add_column("repository", "attestations", peewee.CharField(default="auto")),
    )
    handle.create_tables(
        [
            models.FileProvenance,
            models.AdvisoryImport,
            models.Advisory,
            models.AdvisoryPackage,
            models.AdvisoryException,
        ]
    )


STEPS: tuple[tuple[int, Callable[[peewee.Database, migrate.SchemaMigrator], None]], ...] = (
    (2, _to_v2),
    (3, _to_v3),
    (4, _to_v4),
    (5, _to_v5),
    (6, _to_v6),
    (7, _to_v7),
    (8, _to_v8),
)
