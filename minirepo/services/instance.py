"""Values of the whole installation: the fingerprint of the secret that signs sessions.

Servers sharing one database (several boxes on PostgreSQL) must sign sessions with one
secret, or a login made through one box is refused by the next, and worse, a box with a
stale secret keeps accepting what the others no longer do. The first start stores an
HMAC of a fixed label under the secret (never the secret itself); every later start
compares its own.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from minirepo import models
from minirepo.db import Database
from minirepo.errors import UserError

log = logging.getLogger(__name__)

_LABEL = b"minirepo session secret fingerprint v1"


def fingerprint(secret: bytes) -> str:
    """Tells two secrets apart without revealing either (HMAC-SHA256 of a fixed label)."""
    return hmac.new(secret, _LABEL, hashlib.sha256).hexdigest()


def check_secret(database: Database, secret: bytes, *, shared: bool) -> None:
    """Store the secret's fingerprint at the first start; later, compare it.

    `shared`: the database is not the data folder's own SQLite file, so other servers
    may use it, and a different fingerprint means they sign with another secret: refused.
    On the folder's own file only this folder's server and CLI use it, so a different
    fingerprint means its `secret` file was replaced (a restore without it, a damaged one
    made anew): nobody else is out of step, so the new one is stored and start-up goes on
    (the sessions signed with the old one end, as they would anyway).
    """
    mine = fingerprint(secret)
    with database.activated(), database.write_transaction():
        models.Instance.insert(
            name=models.SECRET_FINGERPRINT, value=mine
        ).on_conflict_ignore().execute()
        stored = models.Instance.get(models.Instance.name == models.SECRET_FINGERPRINT).value
        if stored == mine:
            return
        if not shared:
            models.Instance.update(value=mine).where(
                models.Instance.name == models.SECRET_FINGERPRINT
            ).execute()
            log.warning(
                "the session secret differs from the last start's (a new secret file?): "
                "stored its fingerprint; sessions signed with the old one have ended"
            )
            return
    raise UserError(
        f"The database at {database.label} is used by servers that sign sessions with "
        "another secret: set the same secret_key (minirepo.toml or MINIREPO_SECRET_KEY) "
        "on every server that uses this database, then start again (to change the secret "
        "on purpose: minirepo.toml.example, secret_key)"
    )
