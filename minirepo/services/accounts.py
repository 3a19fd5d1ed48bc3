"""Users and API tokens, for the command line and the web alike."""

from __future__ import annotations

import dataclasses
import datetime
import secrets

import peewee

from minirepo import models
from minirepo.auth import MAX_PASSWORD_LENGTH, TOKEN_PREFIX, hash_password, token_digest
from minirepo.db import write_transaction
from minirepo.dists import NAME_RE
from minirepo.errors import UserError
from minirepo.permissions import PERMISSIONS

MIN_PASSWORD_LENGTH = 8


@dataclasses.dataclass(frozen=True)
class NewToken:
    secret: str
    prefix: str


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"Password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"Password too long: use at most {MAX_PASSWORD_LENGTH} characters")


def get_user(name: str) -> models.User:
    user = models.User.get_or_none(models.User.name == name)
    if user is None:
        raise UserError(f"No user named {name!r}")
    return user


def add_user(name: str, password: str, *, method: str, admin: bool = False) -> models.User:
    if not NAME_RE.match(name) or len(name) > 100 or name.startswith("__"):
        raise UserError(f"Invalid user name {name!r}: use letters, digits, '.', '_', '-'")
    _check_password(password)
    try:
        with write_transaction():
            user = models.User.create(
                name=name, password_hash=hash_password(password, method), is_admin=admin
            )
            models.Event.create(actor="cli", action="user add", project=name)
    except peewee.IntegrityError as exc:
        raise UserError(f"User {name!r} already exists") from exc
    return user


def list_users() -> list[models.User]:
    return list(models.User.select().order_by(models.User.name))


def set_password(name: str, password: str, *, method: str) -> None:
    _check_password(password)
    with write_transaction():
        user = get_user(name)
        user.password_hash = hash_password(password, method)
        user.save()
        models.Event.create(actor="cli", action="user passwd", project=name)


def set_disabled(name: str, disabled: bool) -> None:
    with write_transaction():
        user = get_user(name)
        user.disabled = disabled
        user.save()
        models.Event.create(actor="cli", action="user disable", project=name)


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
    if expires_days is not None and expires_days <= 0:
        raise UserError("--expires takes a positive number of days")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    prefix = secret[: len(TOKEN_PREFIX) + 8]
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
            description=description,
            permission=permission,
            repositories=",".join(repositories),
            projects=",".join(projects),
            expires=expires,
        )
        models.Event.create(actor="cli", action="token create", project=user_name)
    return NewToken(secret, prefix)


def list_tokens(user_name: str | None = None) -> list[models.Token]:
    query = models.Token.select(models.Token, models.User).join(models.User)
    if user_name is not None:
        query = query.where(models.User.name == user_name)
    return list(query.order_by(models.Token.created))


def revoke_token(prefix: str) -> int:
    """Revoke every token whose public prefix is `prefix`; returns how many."""
    if len(prefix) < len(TOKEN_PREFIX) + 4:
        raise UserError("Give the token's prefix as `minirepo token list` shows it")
    with write_transaction():
        count = (
            models.Token.update(revoked=True)
            .where((models.Token.prefix == prefix) & (models.Token.revoked == False))  # noqa: E712
            .execute()
        )
        if count:
            models.Event.create(actor="cli", action="token revoke", project=prefix)
    if not count:
        raise UserError(f"No active token with prefix {prefix!r}")
    return int(count)
