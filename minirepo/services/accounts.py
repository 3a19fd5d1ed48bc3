"""Users and API tokens, for the command line and the web alike."""

from __future__ import annotations

import dataclasses
import datetime
import secrets

import peewee
from packaging.utils import canonicalize_name

from minirepo import models
from minirepo.auth import MAX_PASSWORD_LENGTH, TOKEN_PREFIX, hash_password, token_digest
from minirepo.config import REPO_NAME_RE
from minirepo.db import write_transaction
from minirepo.dists import NAME_RE
from minirepo.errors import UserError
from minirepo.permissions import PERMISSIONS

MIN_PASSWORD_LENGTH = 8
# No KDF output looks like this, so no password matches it (and checking one still costs
# the dummy KDF run). The first admin starts so: a start-up pays no KDF run.
NO_PASSWORD = "!"  # noqa: S105 - a marker, not a password
MAX_USER_NAME_LENGTH = 100
# A hundred years: past that `datetime` overflows, and nobody means it.
MAX_EXPIRES_DAYS = 36_500
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8


@dataclasses.dataclass(frozen=True)
class NewToken:
    secret: str
    prefix: str


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"Password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"Password too long: use at most {MAX_PASSWORD_LENGTH} characters")
    if password.startswith(TOKEN_PREFIX):
        # The server reads any password starting so as a token; this one could never log in.
        raise UserError(f"A password may not start with {TOKEN_PREFIX!r} (tokens do)")


def get_user(name: str) -> models.User:
    user = models.User.get_or_none(models.User.name == name)
    if user is None:
        raise UserError(f"No user named {name!r}")
    return user


def add_user(name: str, password: str | None, *, method: str, admin: bool = False) -> models.User:
    """Without a password (None) the account logs in with tokens only, until `user passwd`."""
    if not NAME_RE.match(name) or len(name) > MAX_USER_NAME_LENGTH or name.startswith("__"):
        raise UserError(f"Invalid user name {name!r}: use letters, digits, '.', '_', '-'")
    if password is None:
        password_hash = NO_PASSWORD
    else:
        _check_password(password)
        password_hash = hash_password(password, method)  # the slow part, outside the lock
    try:
        with write_transaction():
            same = models.User.select().where(peewee.fn.LOWER(models.User.name) == name.lower())
            if same.exists():
                raise peewee.IntegrityError(name)
            user = models.User.create(name=name, password_hash=password_hash, is_admin=admin)
            models.Event.create(actor="cli", action="user add", project=name)
    except peewee.IntegrityError as exc:
        raise UserError(f"User {name!r} already exists") from exc
    return user


def list_users() -> list[models.User]:
    return list(models.User.select().order_by(models.User.name))


def set_password(name: str, password: str, *, method: str) -> None:
    _check_password(password)
    password_hash = hash_password(password, method)
    with write_transaction():
        user = get_user(name)
        user.password_hash = password_hash
        user.save()
        models.bump_counter(models.AUTH_COUNTER)
        models.Event.create(actor="cli", action="user passwd", project=name)
    models.forget_counters()


def set_disabled(name: str, disabled: bool) -> None:
    with write_transaction():
        user = get_user(name)
        user.disabled = disabled
        user.save()
        models.bump_counter(models.AUTH_COUNTER)
        models.Event.create(actor="cli", action="user disable", project=name)
    models.forget_counters()


def _repository_scope(repositories: tuple[str, ...]) -> str:
    """Existing repositories only: a typo would make a token that works nowhere."""
    for name in repositories:
        if not REPO_NAME_RE.match(name):
            raise UserError(f"Invalid repository name {name!r}")
        if not models.Repository.select().where(models.Repository.name == name).exists():
            raise UserError(f"No repository named {name!r}")
    return ",".join(sorted(set(repositories)))


def _project_scope(projects: tuple[str, ...]) -> str:
    """Normalized names (PEP 503), which is what `may()` compares against."""
    for name in projects:
        if not NAME_RE.match(name) or len(name) > 200:
            raise UserError(f"Invalid project name {name!r}")
    return ",".join(sorted({canonicalize_name(name) for name in projects}))


def create_token(
    user_name: str,
    *,
    permission: str = "upload",
    repositories: tuple[str, ...] = (),
    projects: tuple[str, ...] = (),
    expires_days: int | None = None,
    description: str = "",
) -> NewToken:
    """Make a token; its secret is returned once and only its SHA-256 is stored."""
    if permission not in PERMISSIONS:
        raise UserError(f"Unknown permission {permission!r}: use read, upload or admin")
    if expires_days is not None and not 0 < expires_days <= MAX_EXPIRES_DAYS:
        raise UserError(f"--expires takes a number of days from 1 to {MAX_EXPIRES_DAYS}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    prefix = secret[:PREFIX_LENGTH]
    expires = (
        None if expires_days is None else models.utcnow() + datetime.timedelta(days=expires_days)
    )
    with write_transaction():
        user = get_user(user_name)
        if permission == "admin" and not user.is_admin:
            raise UserError(f"User {user_name!r} is not an admin: no admin token for them")
        models.Token.create(
            user=user,
            secret_sha256=token_digest(secret),
            prefix=prefix,
            description=" ".join(description.split()),
            permission=permission,
            repositories=_repository_scope(repositories),
            projects=_project_scope(projects),
            expires=expires,
        )
        models.Event.create(actor="cli", action="token create", project=user_name)
    return NewToken(secret, prefix)


def list_tokens(user_name: str | None = None) -> list[models.Token]:
    query = models.Token.select(models.Token, models.User).join(models.User)
    if user_name is not None:
        get_user(user_name)
        query = query.where(models.User.name == user_name)
    return list(query.order_by(models.Token.created))


def revoke_token(prefix: str) -> int:
    """Revoke every token whose public prefix is `prefix`; returns how many.

    A whole token (one that leaked, say) works too: it is matched by its SHA-256.
    """
    prefix = prefix.strip()
    if not prefix.startswith(TOKEN_PREFIX) or len(prefix) < PREFIX_LENGTH:
        raise UserError("Give the token's prefix as `minirepo token list` shows it")
    if len(prefix) > PREFIX_LENGTH:
        match = models.Token.secret_sha256 == token_digest(prefix)
    else:
        match = models.Token.prefix == prefix
    with write_transaction():
        count = (
            models.Token.update(revoked=True)
            .where(match & (models.Token.revoked == False))  # noqa: E712
            .execute()
        )
        if count:
            models.bump_counter(models.AUTH_COUNTER)
            models.Event.create(actor="cli", action="token revoke", project=prefix[:PREFIX_LENGTH])
    models.forget_counters()
    if not count:
        raise UserError(f"No active token with prefix {prefix[:PREFIX_LENGTH]!r}")
    return int(count)
