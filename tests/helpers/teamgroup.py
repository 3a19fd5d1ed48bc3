"""The accounts and repositories the group tests and the JSON API tests both stand on, set
up in one place so that what "team" and "all" mean cannot drift apart between them."""

from __future__ import annotations

from minirepo.services import accounts, repos
from tests.helpers.serverproc import FAST_HASH

PASSWORD = "a-password-1"


def add_team_and_group() -> None:
    """alice and bob (both with `PASSWORD`); `team` (private: alice uploads); the group
    `all` = main, team with uploads to main. `main` is the first start's (public, anyone
    signed in uploads). Needs an app whose database is active (`backends.served`)."""
    for name in ("alice", "bob"):
        accounts.add_user(name, PASSWORD, method=FAST_HASH)
    repos.create("team", read="authenticated")
    repos.grant("alice", "team", "uploader")
    repos.create("all", kind="group", members=["main", "team"], upload_to="main")
