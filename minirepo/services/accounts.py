"""Users and API tokens, for the command line and the JSON API alike."""

from __future__ import annotations

import dataclasses
import datetime

import peewee
from packaging.utils import canonicalize_name

from minirepo import models, names, units
from minirepo.credentials import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    NO_PASSWORD,
    PUBLIC_PREFIX_LENGTH,
    TOKEN_PREFIX,
    hash_password,
    new_token_secret,
    public_prefix,
    token_digest,
)
from minirepo.db import rows, write_transaction
from minirepo.errors import UserError
from minirepo.permissions import PERMISSIONS
from minirepo.services import audit

# A hundred years: past that `datetime` overflows, and nobody means it.
MAX_EXPIRES = datetime.timedelta(days=36_500)


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


def add_user(
    name: str, password: str | None, *, method: str, admin: bool = False, actor: str = "cli"
) -> models.User:
    """Without a password (None) the account logs in with tokens only, until `user passwd`."""
    problem = names.user_name_problem(name)
    if problem:
        raise UserError(problem)
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
            audit.record(actor, "user add", detail=name + (" (admin)" if admin else ""))
    except peewee.IntegrityError as exc:
        raise UserError(f"User {name!r} already exists") from exc
    return user


def list_users() -> list[models.User]:
    return list(models.User.select().order_by(models.User.name))


def set_password(name: str, password: str, *, method: str, actor: str = "cli") -> None:
    _check_password(password)
    password_hash = hash_password(password, method)
    with write_transaction():
        user = get_user(name)
        user.password_hash = password_hash
        user.save()
        models.bump_counter(models.AUTH_COUNTER)
        audit.record(actor, "user passwd", detail=name)
    models.forget_counters()


def set_disabled(name: str, disabled: bool, *, actor: str = "cli") -> None:
    with write_transaction():
        user = get_user(name)
        user.disabled = disabled
        user.save()
        models.bump_counter(models.AUTH_COUNTER)
        audit.record(actor, "user disable" if disabled else "user enable", detail=name)
    models.forget_counters()


def unlock(name: str, *, actor: str = "cli") -> None:
    """Forgive the account's failed logins so far, from every address, in every process."""
    with write_transaction():
        user = get_user(name)
        user.unlocked_at = models.utcnow()
        user.save()
        models.bump_counter(models.AUTH_COUNTER)
        audit.record(actor, "user unlock", detail=name)
    models.forget_counters()


def _repositories(names_given: tuple[str, ...]) -> list[models.Repository]:
    """Existing repositories only: a typo would make a token that works nowhere."""
    rows = []
    for name in sorted(set(names_given)):
        problem = names.repository_name_problem(name)
        if problem:
            raise UserError(problem)
        row = models.Repository.get_or_none(models.Repository.name == name)
        if row is None:
            raise UserError(f"No repository named {name!r}")
        rows.append(row)
    return rows


def _projects(projects: tuple[str, ...]) -> list[str]:
    """Normalized names (PEP 503), which is what the permission rules compare against."""
    for name in projects:
        if not names.is_project_name(name):
            raise UserError(f"Invalid project name {name!r}")
    return sorted({canonicalize_name(name) for name in projects})


def token_lifetime(text: str | None) -> datetime.timedelta | None:
    """A token's lifetime as people write it (`90d`, `12h`; a plain number is days, as
    `--expires` takes it); None or "" for a token that never expires."""
    if not text:
        return None
    try:
        return datetime.timedelta(seconds=units.parse_duration(text, "d"))
    except ValueError as exc:
        raise UserError(f"'expires': {exc}") from exc
    except OverflowError as exc:  # past what `datetime` holds
        raise UserError(f"'expires': at most {MAX_EXPIRES.days} days") from exc


def create_token(
    user_name: str,
    *,
    permission: str = "upload",
    repositories: tuple[str, ...] = (),
    projects: tuple[str, ...] = (),
    expires: datetime.timedelta | None = None,
    description: str = "",
    actor: str = "cli",
) -> NewToken:
    """Make a token; its secret is returned once and only its SHA-256 is stored.

    Its rights are always the intersection of this scope and permission with what its
    user may do at the time of each request, so an admin token of a non-admin is only
    as strong as that account.
    """
    if permission not in PERMISSIONS:
        raise UserError(f"Unknown permission {permission!r}: use read, upload or admin")
    if expires is not None and not datetime.timedelta(0) < expires <= MAX_EXPIRES:
        raise UserError(f"--expires must be between 1 second and {MAX_EXPIRES.days} days")
    secret = new_token_secret()
    prefix = public_prefix(secret)
    expiry = None if expires is None else models.utcnow() + expires
    project_names = _projects(projects)
    with write_transaction():
        user = get_user(user_name)
        token = models.Token.create(
            user=user,
            secret_sha256=token_digest(secret),
            prefix=prefix,
            description=" ".join(description.split()),
            permission=permission,
            expires=expiry,
        )
        for repo in _repositories(repositories):
            models.TokenRepository.create(token=token, repository=repo)
        for normalized in project_names:
            models.TokenProject.create(token=token, normalized=normalized)
        audit.record(actor, "token create", detail=f"{prefix} for {user_name} ({permission})")
    return NewToken(secret, prefix)


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    id: int
    prefix: str
    user: str
    permission: str
    repositories: list[str]
    projects: list[str]
    description: str
    expires: datetime.datetime | None
    last_used: datetime.datetime | None
    revoked: bool
    created: datetime.datetime

    @property
    def scope(self) -> str:
        parts = [f"repo:{name}" for name in self.repositories]
        parts += [f"project:{name}" for name in self.projects]
        return ",".join(parts) or "all"

    @property
    def state(self) -> str:
        if self.revoked:
            return "revoked"
        if self.expires is not None and self.expires <= models.utcnow():
            return "expired"
        return "active"


def list_tokens(user_name: str | None = None) -> list[TokenInfo]:
    query = models.Token.select(models.Token, models.User).join(models.User)
    if user_name is not None:
        get_user(user_name)
        query = query.where(models.User.name == user_name)
    tokens = list(query.order_by(models.Token.created, models.Token.id))
    ids = [token.id for token in tokens]
    repos: dict[int, list[str]] = {}
    scoped = (
        models.TokenRepository.select(models.TokenRepository.token, models.Repository.name)
        .join(models.Repository)
        .where(models.TokenRepository.token.in_(ids))
    )
    for token_id, name in rows(scoped.tuples()):
        repos.setdefault(int(token_id), []).append(str(name))
    projects: dict[int, list[str]] = {}
    named = models.TokenProject.select(models.TokenProject.token, models.TokenProject.normalized)
    for token_id, normalized in rows(named.where(models.TokenProject.token.in_(ids)).tuples()):
        projects.setdefault(int(token_id), []).append(str(normalized))
    return [
        TokenInfo(
            token.id,
            token.prefix,
            token.user.name,
            token.permission,
            sorted(repos.get(token.id, [])),
            sorted(projects.get(token.id, [])),
            token.description,
            token.expires,
            token.last_used,
            token.revoked,
            token.created,
        )
        for token in tokens
    ]


def find_token(handle: str) -> models.Token:
    """The one token `handle` names: its id, its public prefix, or the whole secret.

    A prefix shared by two tokens is refused rather than guessed.
    """
    handle = handle.strip()
    if handle.isdigit():
        matches = list(models.Token.select().where(models.Token.id == int(handle)))
    elif handle.startswith(TOKEN_PREFIX) and len(handle) > PUBLIC_PREFIX_LENGTH:
        matches = list(
            models.Token.select().where(models.Token.secret_sha256 == token_digest(handle))
        )
    elif handle.startswith(TOKEN_PREFIX) and len(handle) == PUBLIC_PREFIX_LENGTH:
        matches = list(models.Token.select().where(models.Token.prefix == handle))
    else:
        raise UserError(
            "Give the token's id or prefix as `minirepo token list` shows them, or the token"
        )
    if not matches:
        raise UserError(f"No token {handle[:PUBLIC_PREFIX_LENGTH]!r}")
    if len(matches) > 1:
        raise UserError(
            f"{len(matches)} tokens have the prefix {handle!r}: revoke by id (minirepo token list)"
        )
    return matches[0]


def revoke_token(handle: str, *, actor: str = "cli", owner: int | None = None) -> str:
    """Revoke the token `handle` names (see `find_token`); returns its prefix.

    `owner`: when set, only a token of that account may be revoked (the JSON API).
    """
    with write_transaction():
        token = find_token(handle)
        if owner is not None and token.user.id != owner:
            raise UserError(f"No token {handle[:PUBLIC_PREFIX_LENGTH]!r}")
        if token.revoked:
            raise UserError(f"Token {token.prefix} is already revoked")
        token.revoked = True
        token.save()
        models.bump_counter(models.AUTH_COUNTER)
        audit.record(actor, "token revoke", detail=token.prefix)
    models.forget_counters()
    return str(token.prefix)
