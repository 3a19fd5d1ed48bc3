"""Peewee models: repositories, projects, releases, files, users, tokens, the audit log.

Never imports Flask, so the CLI and the server share it.
"""

from __future__ import annotations

import datetime
import time

import peewee

from minirepo.db import COUNTER_MAX_AGE, counters, database, write_transaction


def utcnow() -> datetime.datetime:
    """Naive UTC, the form stored in the database."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class BaseModel(peewee.Model):
    id = peewee.AutoField()

    class Meta:
        database = database


class Repository(BaseModel):
    name = peewee.CharField(unique=True)
    description = peewee.TextField(default="")
    read = peewee.CharField(default="anonymous")
    generation = peewee.IntegerField(default=0)
    created = peewee.DateTimeField(default=utcnow)


class Project(BaseModel):
    repository = peewee.ForeignKeyField(Repository, backref="projects", on_delete="CASCADE")
    name = peewee.CharField()
    normalized = peewee.CharField()
    created = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("repository", "normalized"), True),)


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


class User(BaseModel):
    name = peewee.CharField(unique=True)
    password_hash = peewee.CharField(default="")
    is_admin = peewee.BooleanField(default=False)
    disabled = peewee.BooleanField(default=False)
    created = peewee.DateTimeField(default=utcnow)


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

    class Meta:
        indexes = ((("repository", "filename"), True),)


class FileMetadata(BaseModel):
    """The exact core-metadata bytes served as `<file>.metadata` (PEP 658)."""

    file = peewee.ForeignKeyField(File, unique=True, on_delete="CASCADE")
    content = peewee.BlobField()


class UsedFilename(BaseModel):
    """Every filename ever stored; it stays burned after a delete, as on PyPI."""

    repository = peewee.ForeignKeyField(Repository, on_delete="CASCADE")
    filename = peewee.CharField()

    class Meta:
        indexes = ((("repository", "filename"), True),)


class Token(BaseModel):
    user = peewee.ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    secret_sha256 = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.CharField()
    description = peewee.TextField(default="")
    permission = peewee.CharField(default="upload")
    repositories = peewee.TextField(default="")
    projects = peewee.TextField(default="")
    expires = peewee.DateTimeField(null=True)
    last_used = peewee.DateTimeField(null=True)
    revoked = peewee.BooleanField(default=False)
    created = peewee.DateTimeField(default=utcnow)


class Event(BaseModel):
    time = peewee.DateTimeField(default=utcnow)
    actor = peewee.CharField(default="")
    action = peewee.CharField()
    repository = peewee.CharField(default="")
    project = peewee.CharField(default="")
    filename = peewee.CharField(default="")
    remote_addr = peewee.CharField(default="")


class Counter(BaseModel):
    """Named change counters that other processes poll cheaply, e.g. `auth`."""

    name = peewee.CharField(unique=True)
    value = peewee.IntegerField(default=0)


AUTH_COUNTER = "auth"

MODELS = (
    Repository,
    Project,
    Release,
    User,
    File,
    FileMetadata,
    UsedFilename,
    Token,
    Event,
    Counter,
)


def bump_counter(name: str) -> None:
    """Call inside the write transaction that makes the change the counter announces,
    and `forget_counters` once it has committed."""
    updated = Counter.update(value=Counter.value + 1).where(Counter.name == name).execute()
    if not updated:
        Counter.create(name=name, value=1)


def forget_counters() -> None:
    """Drop the values this process trusts, so a change it committed counts here at once."""
    counters.forget()


def wait_counter_in_force() -> None:
    """Block until every other process has re-read the counters (see COUNTER_MAX_AGE)."""
    time.sleep(COUNTER_MAX_AGE)


def read_counter(name: str) -> int:
    """The counter's value, read from the database at most every COUNTER_MAX_AGE."""
    return counters.read(name)


def create_schema() -> None:
    """One transaction: a statement each would cost the first start a sync per table."""
    with write_transaction():
        database.create_tables(MODELS, safe=True)
