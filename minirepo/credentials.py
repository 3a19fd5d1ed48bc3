"""Credential primitives: token secrets and digests, password hashes, their limits.

Below both `auth` (which checks credentials) and `services.accounts` (which makes them),
so neither imports the other for them.
"""

from __future__ import annotations

import hashlib
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

TOKEN_PREFIX = "mr-"  # noqa: S105 - a prefix, not a secret
TOKEN_USERNAME = "__token__"  # noqa: S105 - a user name
# The public part `token list` shows: the prefix and 8 characters of the secret.
PUBLIC_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
MAX_PASSWORD_LENGTH = 4096
MIN_PASSWORD_LENGTH = 8
KNOWN_HASH_METHODS = ("scrypt:", "pbkdf2:")
# No KDF output looks like this, so no password matches it (and checking one still costs
# the dummy KDF run). The first admin starts so: a start-up pays no KDF run.
NO_PASSWORD = "!"  # noqa: S105 - a marker, not a password


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def public_prefix(secret: str) -> str:
    return secret[:PUBLIC_PREFIX_LENGTH]


def is_token(password: str) -> bool:
    return password.startswith(TOKEN_PREFIX)


def token_digest(secret: str) -> str:
    """Tokens are random, so one SHA-256 is enough: no KDF on every request."""
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
