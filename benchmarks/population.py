"""Fill a minirepo data folder with accounts, repositories, grants and tokens.

    python benchmarks/population.py --data DIR --user bench --projects a,b,c

The corpus only makes projects; the permission check is only measured honestly when the
server also holds what a real index does: 50 repositories, 500 users, 2 000 grants and
5 000 tokens, some scoped to repositories and some to projects (the issue's sizes). It runs
beside the running server, in a process of its own, on whichever minirepo comes first on
`sys.path` (set PYTHONPATH to measure an older checkout): run as a script, not with `-m`,
so the current directory's minirepo does not win. With the schema before repositories,
roles and grants (0.1.x), it adds what that schema allows: the repositories' rows, the
users and the tokens (their scopes are text columns there), and no grants.

Everything is written through the services, inside one write transaction (one commit,
a few seconds). The measured account `--user` (added by the benchmark with a password)
gets a grant in a fifth of the repositories, and three read tokens of its own: unscoped,
scoped to the default repository, and scoped to the first three `--projects`; their
`Authorization` headers are printed as JSON on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

REPOSITORIES = 50  # with the default one
USERS = 500
GRANTS_PER_USER = 4  # 2 000 grants
TOKENS_PER_USER = 10  # 5 000 tokens
ROLES = ("reader", "uploader", "owner")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def populate(data: Path, user: str, projects: list[str]) -> dict[str, object]:
    os.environ["MINIREPO_DATA"] = str(data)
    from minirepo import config

    settings = config.from_environment()
    try:
        from minirepo.services import datafolder
    except ImportError:
        return _populate_old(settings, user, projects)
    from minirepo.db import write_transaction
    from minirepo.services import accounts, repos

    folder = datafolder.open_data(settings)
    default = settings.default_repository
    names = [f"team-{i:02d}" for i in range(1, REPOSITORIES)]
    start = time.perf_counter()
    with folder.database.activated(), write_transaction():
        for i, name in enumerate(names):
            repos.create(name, read="anonymous" if i % 2 else "authenticated")
        every = [default, *names]
        users = [f"user-{i:03d}" for i in range(USERS)]
        grants = 0
        for i, account in enumerate(users):
            accounts.add_user(account, None, method=settings.password_hash)
            for k in range(GRANTS_PER_USER):
                repo = every[(i * 7 + k * 13) % len(every)]
                repos.grant(account, repo, ROLES[(i + k) % len(ROLES)])
                grants += 1
        for i in range(0, len(every), 5):
            repos.grant(user, every[i], ("uploader", "reader")[i % 2])  # uploader in main
        tokens = _make_tokens(accounts, users, every, projects)
        mine = _own_tokens(accounts, user, default, projects, new=True)
    folder.database.close()
    return {
        "schema": "new",
        "repositories": len(every),
        "users": len(users),
        "grants": grants,
        "tokens": tokens,
        "seconds": round(time.perf_counter() - start, 2),
        **mine,
    }


def _own_tokens(
    accounts: object, user: str, default: str, projects: list[str], *, new: bool
) -> dict[str, str]:
    create = accounts.create_token  # type: ignore[attr-defined]
    plain = create(user, permission="read")
    scoped = create(user, permission="read", repositories=(default,))
    narrow = create(user, permission="read", projects=tuple(projects[:3]))
    return {
        "token_header": _basic("__token__", plain.secret),
        "repo_token_header": _basic("__token__", scoped.secret),
        "project_token_header": _basic("__token__", narrow.secret),
        "token_projects": ",".join(projects[:3]),
    }


def _populate_old(settings: object, user: str, projects: list[str]) -> dict[str, object]:
    """0.1.x: repositories are rows only, tokens carry their scope as text, no grants."""
    from minirepo import db, models
    from minirepo.services import accounts, maintenance

    maintenance.open_data(settings)
    default = settings.default_repository  # type: ignore[attr-defined]
    names = [f"team-{i:02d}" for i in range(1, REPOSITORIES)]
    start = time.perf_counter()
    with db.write_transaction():
        for i, name in enumerate(names):
            models.Repository.create(name=name, read="anonymous" if i % 2 else "authenticated")
        every = [default, *names]
        users = [f"user-{i:03d}" for i in range(USERS)]
        for account in users:
            accounts.add_user(account, None, method=settings.password_hash)  # type: ignore[attr-defined]
        tokens = _make_tokens(accounts, users, every, projects)
        mine = _own_tokens(accounts, user, default, projects, new=False)
    db.database.close()
    return {
        "schema": "old",
        "repositories": len(every),
        "users": len(users),
        "grants": 0,
        "tokens": tokens,
        "seconds": round(time.perf_counter() - start, 2),
        **mine,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--user", required=True, help="the measured account (already added)")
    parser.add_argument("--projects", required=True, help="comma-separated corpus projects")
    args = parser.parse_args()
    projects = [p for p in args.projects.split(",") if p]
    print(json.dumps(populate(args.data, args.user, projects)))


def _make_tokens(accounts: Any, users: list[str], every: list[str], projects: list[str]) -> int:
    """TOKENS_PER_USER each, read and upload; a third unscoped, a third scoped to a
    repository, a third to a project (the same call on the old and the new code)."""
    tokens = 0
    for i, account in enumerate(users):
        for k in range(TOKENS_PER_USER):
            scope = (i + k) % 3
            accounts.create_token(
                account,
                permission=("read", "upload")[k % 2],
                repositories=(every[(i * 7) % len(every)],) if scope == 1 else (),
                projects=(projects[(i + k) % len(projects)],) if scope == 2 else (),
            )
            tokens += 1
    return tokens


if __name__ == "__main__":
    main()
