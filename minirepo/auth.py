"""`Authorization: Basic` → `Principal`, with the checks that keep it cheap and safe.

pip, uv and twine send credentials on every request, so a successful password check is
cached briefly (keyed by a MAC, never the password), tokens cost one indexed lookup,
an unknown user costs the same KDF run as a wrong password, and repeated failures get 429.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Mapping

import peewee
from flask import Flask, current_app, g, request, session

from minirepo import models
from minirepo.config import Settings
from minirepo.credentials import (
    MAX_PASSWORD_LENGTH,
    TOKEN_USERNAME,
    can_verify,
    hash_password,
    is_known_hash,
    is_token,
    needs_rehash,
    token_digest,
    verify_password,
)
from minirepo.crosssite import SAFE_METHODS
from minirepo.db import database, rows, write_transaction
from minirepo.errors import Forbidden, MinirepoError, RepositoryNotFound, Unauthorized
from minirepo.limiter import FailureLimiter
from minirepo.permissions import (
    PERMISSIONS,
    ROLES,
    Action,
    Principal,
    ProjectInfo,
    Repo,
    refusal,
    replace_refusal,
)

log = logging.getLogger(__name__)

MAX_USER_LENGTH = 200
LAST_USED_INTERVAL = 3600.0  # `last_used` is written at most once an hour per token
# A bound on the in-memory caches, so random credentials cannot grow them.
MAX_CACHED_LOGINS = 10_000
# A web or API session lasts this long after its login, whatever the browser keeps.
SESSION_MAX_AGE = 12 * 3600.0
# An address may fail this many times the per-account limit before it is locked as a
# whole: enough for a few colleagues' typos behind one address, not for a spray of users.
ADDRESS_LIMIT_FACTOR = 3


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


@dataclasses.dataclass(frozen=True)
class _Proven:
    """What a check of one `Authorization` header proved, and until when it holds."""

    cache_expiry: float
    version: int
    token_expires: datetime.datetime | None
    login: str | None  # the account name of a password login (lockout applies)
    unlocked_at: float
    principal: Principal


def _epoch(value: datetime.datetime | None) -> float:
    if value is None:
        return 0.0
    return value.replace(tzinfo=datetime.timezone.utc).timestamp()


class Authenticator:
    def __init__(self, settings: Settings, secret: bytes) -> None:
        self.settings = settings
        # Keyed BLAKE2b is a MAC at a third of HMAC-SHA256's cost, on every request.
        self._mac_key = hashlib.sha256(b"minirepo credentials cache\0" + secret).digest()
        self.limiter = FailureLimiter(
            settings.login_failure_limit, settings.login_failure_window, settings.workers
        )
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

    def authenticate(
        self, header: str | None, remote_addr: str, *, read_only: bool = False, fresh: bool = False
    ) -> Principal | None:
        """None for anonymous callers; raises Unauthorized for wrong credentials.

        `read_only`: the credentials came in the URL path, where only read tokens count.
        `fresh`: prove them again from the database, whatever this process remembers.
        """
        if not header:
            return None
        cached = None if fresh else self.cached(header, remote_addr, read_only=read_only)
        if cached is not None:
            return cached
        credentials = parse_basic(header)
        if credentials is None:
            return None
        user, password = credentials
        version = models.read_counter(models.AUTH_COUNTER)
        if is_token(password):
            principal, token_expires = self._check_token(user, password, read_only=read_only)
            proven = _Proven(0.0, version, token_expires, None, 0.0, principal)
        elif read_only:
            raise Unauthorized("Only read tokens are accepted in the URL path")
        else:
            principal, unlocked_at = self._check_password(user, password, remote_addr)
            proven = _Proven(0.0, version, None, user, unlocked_at, principal)
        self._remember(header, proven)
        return principal

    def cached(self, header: str, remote_addr: str, *, read_only: bool = False) -> Principal | None:
        """The principal these credentials proved recently, or None: never any slow work.

        A hit costs one tiny read of the `auth` counter (itself cached for a quarter of a
        second), which every revocation, grant, disable, unlock and password change bumps,
        so those count at once, in every process. A password login under lockout is
        refused even when cached (429).
        """
        entry = self._principals.get(self._mac(header))
        if entry is None or entry.cache_expiry <= time.monotonic():
            return None
        if entry.token_expires is not None and entry.token_expires <= models.utcnow():
            return None
        if read_only and entry.principal.token_permission is not Action.READ:
            return None  # the slow path refuses it with the reason
        if entry.version != models.read_counter(models.AUTH_COUNTER):
            return None  # an unlock, too, must be read again
        if entry.login is not None:
            self._check_lockout(entry.login, remote_addr, entry.unlocked_at)
        return entry.principal

    def login(self, user: str, password: str, remote_addr: str) -> dict[str, object]:
        """Check a password (with the lockout) and return the session to keep for it."""
        if is_token(password):
            raise Unauthorized("Log in with a password; tokens go in the Authorization header")
        principal, _ = self._check_password(user, password, remote_addr)
        account = models.User.get_by_id(principal.user_id)
        return {
            "uid": principal.user_id,
            "pw": self._session_mark(account),
            "csrf": secrets.token_urlsafe(24),
            "t": time.time(),
        }

    def session_principal(self, data: Mapping[str, object]) -> Principal | None:
        """The account a session cookie names, if it still may log in: one row read, so a
        new password, a disabled account or an expired session end it at once."""
        uid, issued = data.get("uid"), data.get("t")
        if not isinstance(uid, int) or not isinstance(issued, float):
            return None
        if not 0 <= time.time() - issued < SESSION_MAX_AGE:
            return None
        account = models.User.get_or_none(models.User.id == uid)
        if account is None or account.disabled:
            return None
        if not hmac.compare_digest(str(data.get("pw", "")), self._session_mark(account)):
            return None
        return self._principal(account)

    def _session_mark(self, account: models.User) -> str:
        """Binds a session to the password it was made with, without storing the hash."""
        return self._mac(f"session\0{account.id}\0{account.password_hash}").hex()[:32]

    def _mac(self, text: str) -> bytes:
        return hashlib.blake2b(
            text.encode("utf-8", "replace"), key=self._mac_key, digest_size=32
        ).digest()

    def _remember(self, header: str, proven: _Proven) -> None:
        if len(self._principals) >= MAX_CACHED_LOGINS:
            self._principals.clear()
        expiry = time.monotonic() + self.settings.auth_cache_seconds
        self._principals[self._mac(header)] = dataclasses.replace(proven, cache_expiry=expiry)

    def _check_token(
        self, user: str, secret: str, *, read_only: bool
    ) -> tuple[Principal, datetime.datetime | None]:
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
        permission = PERMISSIONS.get(token.permission, Action.READ)
        if read_only and permission is not Action.READ:
            raise Unauthorized(
                f"token {token.prefix} is not a read token: only read tokens work in the URL path"
            )
        self._touch(token.id)
        repositories = (
            models.TokenRepository.select(models.Repository.id, models.Repository.name)
            .join(models.Repository)
            .where(models.TokenRepository.token == token.id)
            .tuples()
        )
        projects = models.TokenProject.select(models.TokenProject.normalized).where(
            models.TokenProject.token == token.id
        )
        principal = self._principal(
            token.user,
            token_permission=permission,
            token_repositories={int(rid): str(name) for rid, name in rows(repositories)},
            token_projects=frozenset(row.normalized for row in projects),
            token_prefix=token.prefix,
        )
        return principal, token.expires

    def _principal(self, account: models.User, **token: object) -> Principal:
        """The account's rights now: its grants (one query), narrowed by its token."""
        query = (
            models.Grant.select(models.Grant.repository, models.Grant.role)
            .where(models.Grant.user == account.id)
            .tuples()
        )
        grants = {int(repo_id): ROLES[role] for repo_id, role in rows(query) if role in ROLES}
        return Principal(
            user_id=account.id,
            name=account.name,
            is_admin=account.is_admin,
            package_admin=account.is_admin and self.settings.admin_package_access,
            grants=grants,
            **token,  # type: ignore[arg-type]
        )

    def _touch(self, token_id: int) -> None:
        """Record `last_used` at most once an hour per token: no write per request."""
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

    def _check_lockout(self, user: str, remote_addr: str, unlocked_at: float) -> None:
        """Per (account, address) and per address, never per account alone: nobody can lock
        a colleague out from another machine. Tokens are never locked."""
        limit = self.settings.login_failure_limit
        self.limiter.check(f"addr:{remote_addr}", limit * ADDRESS_LIMIT_FACTOR)
        self.limiter.check(f"user:{user.lower()}\0{remote_addr}", limit, since=unlocked_at)

    def _record_failure(self, user: str, remote_addr: str) -> None:
        limit = self.settings.login_failure_limit
        address, account = f"addr:{remote_addr}", f"user:{user.lower()}\0{remote_addr}"
        if self.limiter.record(account):
            _audit_failed_login(user, remote_addr)
        self.limiter.record(address)
        if self.limiter.count(account) == self.limiter.share(limit):
            log.warning(
                "login of %r from %s locked out after %d failures", user, remote_addr, limit
            )
        if self.limiter.count(address) == self.limiter.share(limit * ADDRESS_LIMIT_FACTOR):
            log.warning(
                "logins from %s locked out after %d failures",
                remote_addr,
                limit * ADDRESS_LIMIT_FACTOR,
            )

    def _check_password(
        self, user: str, password: str, remote_addr: str
    ) -> tuple[Principal, float]:
        """One KDF run per check whoever `user` is; the cache skips it, never the row.

        The account row is read on every request (one indexed lookup, like a token), so a
        disabled account, a new password or a lost admin right count at once, not after
        the cache expires.
        """
        if len(password) > MAX_PASSWORD_LENGTH or len(user) > MAX_USER_LENGTH:
            self._check_lockout(user[:MAX_USER_LENGTH], remote_addr, 0.0)
            self._record_failure(user[:MAX_USER_LENGTH], remote_addr)
            raise Unauthorized("Invalid username or password")
        account = models.User.get_or_none(models.User.name == user)
        unlocked_at = _epoch(account.unlocked_at) if account is not None else 0.0
        self._check_lockout(user, remote_addr, unlocked_at)
        cache_key = self._mac(f"{user}\0{password}")
        # pip and uv open several connections at once with the same credentials: let one
        # of them run the KDF while the others wait for its cached result.
        with self._stripes[cache_key[0] % len(self._stripes)]:
            if not self._verify_password(account, password, cache_key):
                self._record_failure(user, remote_addr)
                raise Unauthorized("Invalid username or password")
        assert account is not None  # noqa: S101 - _verify_password is False without one
        return self._principal(account), unlocked_at

    def _verify_password(
        self, account: models.User | None, password: str, cache_key: bytes
    ) -> bool:
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
            # Every check costs a KDF run, whatever the hash: no shortcut to probe for. An
            # imported hash ({SHA} is fast) pads a failure with the dummy run; a success
            # pays for ours when it replaces the imported one.
            if is_known_hash(stored):
                is_valid = verify_password(stored, password)
            else:
                is_valid = can_verify(stored) and verify_password(stored, password)
                if not is_valid:
                    verify_password(self._dummy_hash(), password)
        if account is None or not is_valid or account.disabled:
            return False
        if from_cache:
            return True
        if needs_rehash(account.password_hash) and not self._rehash(account, password):
            return True  # not remembered: the next check tries to replace it again
        if len(self._verified) >= MAX_CACHED_LOGINS:
            self._verified.clear()
        expiry = time.monotonic() + self.settings.auth_cache_seconds
        self._verified[cache_key] = (expiry, account.password_hash)
        return True

    def _rehash(self, account: models.User, password: str) -> bool:
        """Replace an imported hash with ours once a login proves its password; True if
        done. The KDF runs before the write, which swaps the hash only if it is still the
        imported one (a `user passwd` meanwhile wins). Inside a transaction (an upload
        re-proving its caller) it waits for the next login."""
        if database.in_transaction():
            return False
        imported = account.password_hash
        ours = hash_password(password, self.settings.password_hash)
        try:
            with write_transaction():
                changed = (
                    models.User.update(password_hash=ours)
                    .where((models.User.id == account.id) & (models.User.password_hash == imported))
                    .execute()
                )
        except peewee.OperationalError as exc:
            # The login stands; the next one tries again.
            log.info("could not replace the imported password hash of %s: %s", account.name, exc)
            return False
        if not changed:
            return False
        account.password_hash = ours
        log.info("replaced the imported password hash of %s with our own", account.name)
        return True


def _audit_failed_login(user: str, remote_addr: str) -> None:
    """One audit line per account and address per window, not per attempt."""
    try:
        with write_transaction():
            models.Event.create(
                actor=user[:MAX_USER_LENGTH], action="login failed", remote_addr=remote_addr
            )
    except peewee.OperationalError as exc:
        log.info("could not record a failed login: %s", exc)


def init_app(app: Flask, authenticator: Authenticator) -> None:
    app.extensions["minirepo.auth"] = authenticator


def current_principal() -> Principal | None:
    """The caller of this request, authenticated once and kept on `g` with the `auth`
    counter as it was then (see `confirm_principal`)."""
    if "principal" not in g:
        g.principal_counter = models.read_counter(models.AUTH_COUNTER)
        g.principal = _prove_caller(fresh=False)
    principal: Principal | None = g.principal
    return principal


def confirm_principal() -> Principal | None:
    """The caller, proven again if any credential or right changed since this request
    proved it: called where an upload commits, since its body may have streamed for
    minutes after the check. Raises Unauthorized if the credentials no longer hold.

    The counter is read from the database, not through its cache (which may be a quarter
    of a second old), so inside a write transaction no change can slip in before the
    commit. The principal cache is bypassed too; a password check still reuses a recent
    KDF result, which holds only while the account's hash is the one it matched.
    """
    if "principal" not in g:
        return current_principal()
    counter = models.Counter.get_or_none(models.Counter.name == models.AUTH_COUNTER)
    now = int(counter.value) if counter is not None else 0
    if now != g.principal_counter:
        del g.principal  # if proving fails, nothing stale is left for a later caller
        g.principal_counter = now
        g.principal = _prove_caller(fresh=True)
    principal: Principal | None = g.principal
    return principal


def has_session_cookie() -> bool:
    return bool(request.cookies.get(current_app.config["SESSION_COOKIE_NAME"]))


def _prove_caller(*, fresh: bool) -> Principal | None:
    """The Authorization header (clients), else the session cookie (the web UI, with its
    CSRF token); a session is read from its account row every time anyway."""
    authenticator: Authenticator = current_app.extensions["minirepo.auth"]
    header = request.headers.get("Authorization")
    if header or not has_session_cookie():
        return authenticator.authenticate(
            header,
            request.remote_addr or "",
            read_only=bool(request.environ.get(PATH_TOKEN_KEY)),
            fresh=fresh,
        )
    principal = authenticator.session_principal(session)
    if principal is not None and request.method not in SAFE_METHODS:
        check_csrf()
    return principal


def check_csrf() -> None:
    """A change made with a session cookie must carry the session's CSRF token, which
    another site's page cannot read: in the X-CSRF-Token header or a csrf_token field."""
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    expected = session.get("csrf")
    # No session yet (a login form posted without loading it) has no token to match: an
    # empty one must never equal another empty one.
    if not isinstance(expected, str) or not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden("CSRF token missing or wrong: send the one /-/api/session gives")


def require(
    action: Action, repo: Repo, project: ProjectInfo | str | None = None
) -> Principal | None:
    """401 for anonymous callers (so pip and uv try keyring and netrc), 404 for a
    repository the caller may not know exists, 403 with the reason otherwise."""
    principal = current_principal()
    error = refusal_error(principal, action, repo, project)
    if error is not None:
        raise error
    return principal


def refusal_error(
    principal: Principal | None,
    action: Action,
    repo: Repo,
    project: ProjectInfo | str | None = None,
) -> MinirepoError | None:
    """The answer `require` gives, as a value: also what a request's head is refused with
    before its body is read (`minirepo.preflight`)."""
    refused = refusal(principal, action, repo, project)
    if refused is None:
        return None
    if principal is None:
        return Unauthorized("Authentication required")
    if refused.hidden:
        return RepositoryNotFound(repo.name)
    return Forbidden(refused.reason)


# Set on the WSGI environ by the path-token layer: the credentials came in the URL.
PATH_TOKEN_KEY = "minirepo.path_token"  # noqa: S105 - an environ key


def require_replace(repo: Repo, project: ProjectInfo) -> None:
    principal = current_principal()
    refused = replace_refusal(principal, repo, project) if principal is not None else None
    if refused is not None:
        raise Forbidden(refused.reason)
