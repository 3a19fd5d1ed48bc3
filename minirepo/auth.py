"""`Authorization: Basic` → `Principal`, with the checks that keep it cheap and safe.

pip, uv and twine send credentials on every request, so a successful password check is
cached briefly (keyed by a MAC, never the password), tokens cost one indexed lookup,
an unknown user costs the same KDF run as a wrong password, and repeated failures get 429.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import hashlib
import logging
import threading
import time

import peewee
from flask import Flask, current_app, g, request
from werkzeug.security import check_password_hash, generate_password_hash

from minirepo import models
from minirepo.config import Settings
from minirepo.errors import Forbidden, TooManyRequests, Unauthorized
from minirepo.permissions import PERMISSIONS, Action, Principal, RepoInfo, may

log = logging.getLogger(__name__)

TOKEN_PREFIX = "mr-"  # noqa: S105 - a prefix, not a secret
TOKEN_USERNAME = "__token__"  # noqa: S105 - a user name
MAX_PASSWORD_LENGTH = 4096
MAX_USER_LENGTH = 200
KNOWN_HASH_METHODS = ("scrypt:", "pbkdf2:")
LAST_USED_INTERVAL = 60.0
# Bounds on the in-memory tables, so random user names or addresses cannot grow them.
MAX_LIMITER_KEYS = 10_000
MAX_CACHED_LOGINS = 10_000


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hash_password(password: str, method: str) -> str:
    return generate_password_hash(password, method=method)


def is_known_hash(stored: str) -> bool:
    return stored.startswith(KNOWN_HASH_METHODS)


def verify_password(stored: str, password: str) -> bool:
    """False, not a 500, for hashes werkzeug cannot read (imported or foreign ones)."""
    if not is_known_hash(stored):
        return False
    try:
        return check_password_hash(stored, password)
    except ValueError:
        return False


def parse_basic(header: str) -> tuple[str, str] | None:
    """(user, password) from a Basic header; None when it carries no credentials."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("Only HTTP Basic authentication is supported")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error, non-ASCII input
        raise Unauthorized("Malformed Authorization header") from exc
    user, sep, password = decoded.partition(":")
    password = password.strip("\r\n")
    if not sep or not password:
        return None
    return user, password


class FailureLimiter:
    """Counts failed logins per user and per address in a sliding window, in memory."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, *keys: str) -> None:
        keys = tuple(key for key in keys if key in self._failures)
        if not keys:
            return  # the common case, on every authenticated request: no lock needed
        now = time.monotonic()
        with self._lock:
            for key in keys:
                times = self._prune(key, now)
                if len(times) >= self.limit:
                    retry = max(1, int(times[0] + self.window - now) + 1)
                    raise TooManyRequests("Too many failed logins; try again later", retry)

    def record(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= MAX_LIMITER_KEYS:
                self._sweep(now)
            for key in keys:
                times = self._prune(key, now)
                times.append(now)
                if len(times) == self.limit:
                    log.warning("login locked out for %s after %d failures", key, self.limit)

    def _prune(self, key: str, now: float) -> collections.deque[float]:
        times = self._failures.setdefault(key, collections.deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def _sweep(self, now: float) -> None:
        """Forget keys whose failures all left the window; if still full, the oldest half."""
        for key in list(self._failures):
            if not self._prune(key, now):
                del self._failures[key]
        if len(self._failures) >= MAX_LIMITER_KEYS:
            by_age = sorted(self._failures, key=lambda key: self._failures[key][-1])
            for key in by_age[: len(by_age) // 2]:
                del self._failures[key]


@dataclasses.dataclass(frozen=True)
class _Proven:
    """What a check of one `Authorization` header proved, and until when it holds."""

    cache_expiry: float
    version: int
    token_expires: datetime.datetime | None
    login: str | None
    principal: Principal


class Authenticator:
    def __init__(self, settings: Settings, secret: bytes) -> None:
        self.settings = settings
        # Keyed BLAKE2b is a MAC at a third of HMAC-SHA256's cost, on every request.
        self._mac_key = hashlib.sha256(b"minirepo credentials cache\0" + secret).digest()
        self.limiter = FailureLimiter(settings.login_failure_limit, settings.login_failure_window)
        # MAC(user, password) -> (expiry, the password hash that matched).
        self._verified: dict[bytes, tuple[float, str]] = {}
        self._last_used: dict[int, float] = {}
        self._dummy: str | None = None
        self._principals: dict[bytes, _Proven] = {}
        self._stripes = [threading.Lock() for _ in range(64)]

    def _dummy_hash(self) -> str:
        """What an unknown user's password is checked against; made on first need, since
        one KDF run at start would cost more than the rest of the start-up together."""
        if self._dummy is None:
            self._dummy = hash_password("not a real password", self.settings.password_hash)
        return self._dummy

    def authenticate(self, header: str | None, remote_addr: str) -> Principal | None:
        """None for anonymous callers; raises Unauthorized for wrong credentials."""
        if not header:
            return None
        cached = self.cached(header, remote_addr)
        if cached is not None:
            return cached
        credentials = parse_basic(header)
        if credentials is None:
            return None
        user, password = credentials
        version = models.read_counter(models.AUTH_COUNTER)
        token_expires = None
        if password.startswith(TOKEN_PREFIX):
            principal, token_expires = self._check_token(user, password)
        else:
            principal = self._check_password(user, password, remote_addr)
        login = None if password.startswith(TOKEN_PREFIX) else user
        self._remember(header, _Proven(0.0, version, token_expires, login, principal))
        return principal

    def cached(self, header: str, remote_addr: str) -> Principal | None:
        """The principal these credentials proved recently, or None: never any slow work.

        A hit costs one tiny read of the `auth` counter, which every revocation, disable and
        password change bumps, so those count at once, in every process. A password login
        under lockout is refused even when cached (429).
        """
        entry = self._principals.get(self._mac(header))
        if entry is None or entry.cache_expiry <= time.monotonic():
            return None
        if entry.token_expires is not None and entry.token_expires <= models.utcnow():
            return None
        if entry.login is not None:
            self.limiter.check(f"user:{entry.login.lower()}", f"addr:{remote_addr}")
        if entry.version != models.read_counter(models.AUTH_COUNTER):
            return None
        return entry.principal

    def _mac(self, text: str) -> bytes:
        return hashlib.blake2b(
            text.encode("utf-8", "replace"), key=self._mac_key, digest_size=32
        ).digest()

    def _remember(self, header: str, proven: _Proven) -> None:
        if len(self._principals) >= MAX_CACHED_LOGINS:
            self._principals.clear()
        expiry = time.monotonic() + self.settings.auth_cache_seconds
        self._principals[self._mac(header)] = dataclasses.replace(proven, cache_expiry=expiry)

    def _check_token(self, user: str, secret: str) -> tuple[Principal, datetime.datetime | None]:
        token = (
            models.Token.select(models.Token, models.User)
            .join(models.User)
            .where(models.Token.secret_sha256 == token_digest(secret))
            .first()
        )
        now = models.utcnow()
        if (
            token is None
            or token.revoked
            or token.user.disabled
            or (token.expires is not None and token.expires <= now)
            or user not in (TOKEN_USERNAME, token.user.name)
        ):
            raise Unauthorized("Invalid or expired API token")
        self._touch(token.id)
        principal = Principal(
            user_id=token.user.id,
            name=token.user.name,
            is_admin=token.user.is_admin,
            permission=PERMISSIONS.get(token.permission, Action.READ),
            repositories=_split(token.repositories),
            projects=_split(token.projects),
            token_prefix=token.prefix,
        )
        return principal, token.expires

    def _touch(self, token_id: int) -> None:
        """Record `last_used` at most once a minute per token: no write per request."""
        now = time.monotonic()
        if now - self._last_used.get(token_id, -LAST_USED_INTERVAL) < LAST_USED_INTERVAL:
            return
        self._last_used[token_id] = now
        try:
            models.Token.update(last_used=models.utcnow()).where(
                models.Token.id == token_id
            ).execute()
        except peewee.OperationalError as exc:
            # Bookkeeping only: a busy database must not turn a good request into a 503.
            log.info("could not record last use of a token: %s", exc)

    def _check_password(self, user: str, password: str, remote_addr: str) -> Principal:
        """One KDF run per check whoever `user` is; the cache skips it, never the row.

        The account row is read on every request (one indexed lookup, like a token), so a
        disabled account, a new password or a lost admin right count at once, not after
        the cache expires.
        """
        keys = (f"user:{user.lower()}", f"addr:{remote_addr}")
        self.limiter.check(*keys)
        if len(password) > MAX_PASSWORD_LENGTH or len(user) > MAX_USER_LENGTH:
            self.limiter.record(*keys)
            raise Unauthorized("Invalid username or password")
        account = models.User.get_or_none(models.User.name == user)
        cache_key = self._mac(f"{user}\0{password}")
        # pip and uv open several connections at once with the same credentials: let one
        # of them run the KDF while the others wait for its cached result.
        with self._stripes[cache_key[0] % len(self._stripes)]:
            return self._verify_password(account, password, cache_key, keys)

    def _verify_password(
        self,
        account: models.User | None,
        password: str,
        cache_key: bytes,
        keys: tuple[str, str],
    ) -> Principal:
        cached = self._verified.get(cache_key)
        from_cache = (
            account is not None
            and cached is not None
            and cached[0] > time.monotonic()
            and cached[1] == account.password_hash
        )
        if from_cache:
            is_valid = True
        else:
            self._verified.pop(cache_key, None)
            stored = account.password_hash if account is not None else self._dummy_hash()
            # A hash werkzeug cannot read still costs a KDF run: no shortcut to probe for.
            known = is_known_hash(stored)
            is_valid = verify_password(stored if known else self._dummy_hash(), password) and known
        if account is None or not is_valid or account.disabled:
            self.limiter.record(*keys)
            raise Unauthorized("Invalid username or password")
        if not from_cache:
            if len(self._verified) >= MAX_CACHED_LOGINS:
                self._verified.clear()
            expiry = time.monotonic() + self.settings.auth_cache_seconds
            self._verified[cache_key] = (expiry, account.password_hash)
        return Principal(
            user_id=account.id,
            name=account.name,
            is_admin=account.is_admin,
            permission=Action.ADMIN if account.is_admin else Action.UPLOAD,
        )


def _split(text: str) -> frozenset[str]:
    return frozenset(item for item in text.split(",") if item)


def init_app(app: Flask, authenticator: Authenticator) -> None:
    app.extensions["minirepo.auth"] = authenticator


def current_principal() -> Principal | None:
    """The caller of this request, authenticated once and kept on `g`."""
    if "principal" not in g:
        authenticator: Authenticator = current_app.extensions["minirepo.auth"]
        g.principal = authenticator.authenticate(
            request.headers.get("Authorization"), request.remote_addr or ""
        )
    principal: Principal | None = g.principal
    return principal


def require(action: Action, repo: RepoInfo, project: str | None = None) -> Principal | None:
    """401 for anonymous callers (so pip and uv try keyring and netrc), 403 otherwise."""
    principal = current_principal()
    if may(principal, action, repo, project):
        return principal
    if principal is None:
        raise Unauthorized("Authentication required")
    raise Forbidden(f"User {principal.name!r} may not {action.name.lower()} in {repo.name!r}")
