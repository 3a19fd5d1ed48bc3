"""Credential primitives: token secrets and digests, password hashes, their limits.

Below both `auth` (which checks credentials) and `services.accounts` (which makes them),
so neither imports the other for them.

Besides our own KDF hashes, the hashes an import brings from an htpasswd file are read:
`{SHA}` (one SHA-1, natively) and bcrypt (with the optional `bcrypt` package). They are
replaced by ours at the first login that proves them (`auth`), since `{SHA}` is fast to
attack and bcrypt cuts a password at 72 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

TOKEN_PREFIX = "mr-"  # noqa: S105 - a prefix, not a secret
TOKEN_USERNAME = "__token__"  # noqa: S105 - a user name
# The public part `token list` shows: the prefix and 8 characters of the secret.
PUBLIC_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
MAX_PASSWORD_LENGTH = 4096
MIN_PASSWORD_LENGTH = 8
KNOWN_HASH_METHODS = ("scrypt:", "pbkdf2:")
SHA_PREFIX = "{SHA}"
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")  # Apache writes $2y$, passlib $2b$
BCRYPT_MAX_BYTES = 72  # what bcrypt reads of a password; htpasswd cuts there too
BCRYPT_EXTRA = "minirepo-server[bcrypt]"
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
    """Our own KDF's hash: the one every password ends up with."""
    return stored.startswith(KNOWN_HASH_METHODS)


def is_importable_hash(stored: str) -> bool:
    """A hash from another index that is kept as it is: ours, `{SHA}` or bcrypt (even
    without the bcrypt package, which may be installed later)."""
    return is_known_hash(stored) or stored.startswith((SHA_PREFIX, *BCRYPT_PREFIXES))


def has_bcrypt() -> bool:
    return importlib.util.find_spec("bcrypt") is not None


def can_verify(stored: str) -> bool:
    """Whether `verify_password` can prove a password against `stored` here."""
    if stored.startswith(BCRYPT_PREFIXES):
        return has_bcrypt()
    return is_known_hash(stored) or stored.startswith(SHA_PREFIX)


def needs_rehash(stored: str) -> bool:
    """An imported hash, to replace with ours once a login proves its password."""
    return not is_known_hash(stored)


def unverifiable_note(stored: str) -> str:
    """What an operator does about a kept hash this installation cannot check."""
    if stored.startswith(BCRYPT_PREFIXES):
        return f"a bcrypt hash, kept: it works once {BCRYPT_EXTRA} is installed"
    return "its password hash cannot be read"


def verify_password(stored: str, password: str) -> bool:
    """False, not a 500, for hashes nobody here can read (see `can_verify`)."""
    if stored.startswith(SHA_PREFIX):
        return _verify_sha(stored, password)
    if stored.startswith(BCRYPT_PREFIXES):
        return _verify_bcrypt(stored, password)
    if not is_known_hash(stored):
        return False
    try:
        return check_password_hash(stored, password)
    except ValueError:
        return False


def _verify_sha(stored: str, password: str) -> bool:
    """htpasswd's `{SHA}`: base64 of the password's SHA-1, unsalted."""
    sha1 = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).digest()
    expected = SHA_PREFIX + base64.b64encode(sha1).decode("ascii")
    return hmac.compare_digest(stored.encode("utf-8"), expected.encode("ascii"))


def _verify_bcrypt(stored: str, password: str) -> bool:
    if not has_bcrypt():
        return False
    import bcrypt  # an optional extra, imported on first need

    try:
        return bcrypt.checkpw(
            password.encode("utf-8")[:BCRYPT_MAX_BYTES], stored.encode("ascii", "replace")
        )
    except ValueError:  # a damaged hash (bad salt, wrong length)
        return False
