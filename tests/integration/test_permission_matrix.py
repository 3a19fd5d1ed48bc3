"""Who may do what, against a real server: role by credential by repository `read` by action.

The expected answers come from `expected()` below, written from the issue's rules and not
from `minirepo.permissions`, so the two are checked against each other. Each test item is one
(role, credential, repository) row and checks every action in it; a refused upload, yank or
delete must leave nothing changed. On both stacks (SQLite + files, PostgreSQL + S3).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from minirepo import models
from minirepo.services import accounts, datafolder, projects, repos
from tests.helpers.distfactory import Dist, make_wheel, post_upload
from tests.helpers.serverproc import FAST_HASH, Server, running_server
from tests.helpers.stacks import Stack, settings_of

pytestmark = pytest.mark.stacks

PASSWORD = "matrix-password-1"
ROLES = ("anonymous", "none", "reader", "uploader", "owner", "maintainer", "admin", "admin-nopkg")
CREDENTIALS = ("password", "read", "upload", "admin", "project", "repo", "revoked", "expired")
ACTIONS = ("list", "read", "download", "upload_new", "upload_other", "yank", "delete", "grant")
READS = ("list", "read", "download")
REPOS = {"pub": True, "priv": False}  # name -> anyone may read
GRANTS = {"reader": "reader", "uploader": "uploader", "owner": "owner", "maintainer": "reader"}
TOKEN_PERMISSIONS = {"password": 3, "read": 1, "upload": 2, "admin": 3, "project": 2, "repo": 2}
NEEDS = {"upload_new": 2, "upload_other": 2, "yank": 3, "delete": 3, "grant": 3} | dict.fromkeys(
    READS, 1
)


def expected(role: str, credential: str, public: bool, action: str) -> int:
    """The issue's rules, stated directly."""
    if role == "anonymous":
        return 200 if public and action in READS else 401
    if credential in ("revoked", "expired"):
        return 401  # wrong credentials, wherever they are sent
    admin = role.startswith("admin")
    rank = {"none": 0, "reader": 1, "uploader": 2, "owner": 3, "maintainer": 1, "admin": 3}
    repo_role = rank.get(role, 0)
    if public:
        repo_role = max(repo_role, 1)  # anyone may read it, so any account is a reader
        if action in READS:
            return 200
    out_of_scope = credential == "repo"  # scoped to another repository
    manages = admin and action in ("yank", "delete", "grant")
    if not public and (out_of_scope or (repo_role < 1 and not manages)):
        return 404  # as if the repository did not exist
    if out_of_scope or NEEDS[action] > TOKEN_PERMISSIONS[credential]:
        return 403
    if credential == "project" and action == "upload_new":
        return 403  # scoped to the project `target`
    if action in READS:
        return 200
    allowed = {
        "upload_new": repo_role >= 2,
        "upload_other": repo_role >= 3 or role == "maintainer",
        "yank": admin or repo_role >= 3,
        "delete": admin or repo_role >= 3,
        "grant": admin or repo_role >= 3,
    }
    return 200 if allowed[action] else 403


def account(role: str) -> str:
    """The account that plays `role` (the first start already made `admin`)."""
    return "u" + role.replace("-", "")


@dataclasses.dataclass
class World:
    server: Server
    secrets: dict[tuple[str, str], tuple[str, str] | None]  # (role, credential) -> auth
    dists: Path
    checker: tuple[str, str]


def _populate(server: Server, dists: Path, rows: list[tuple[str, str]]) -> World:
    session = requests.Session()
    folder = datafolder.open_data(settings_of(server))
    secrets: dict[tuple[str, str], tuple[str, str] | None] = {("anonymous", "password"): None}
    with folder.database.activated():
        repos.create("pub")
        repos.create("priv", read="authenticated")
        repos.create("other")
        accounts.add_user("alice", PASSWORD, method=FAST_HASH)
        accounts.add_user("checker", PASSWORD, method=FAST_HASH)
        accounts.add_user("dummy", None, method=FAST_HASH)
        for repo in REPOS:
            repos.grant("alice", repo, "uploader")
            repos.grant("checker", repo, "owner")
        for role in ROLES[1:]:
            user = account(role)
            accounts.add_user(user, PASSWORD, method=FAST_HASH, admin=role.startswith("admin"))
            for repo in REPOS:
                if role in GRANTS:
                    repos.grant(user, repo, GRANTS[role])
            secrets[(role, "password")] = (user, PASSWORD)
            for credential in ("read", "upload", "admin"):
                token = accounts.create_token(user, permission=credential).secret
                secrets[(role, credential)] = ("__token__", token)
            scoped = {"project": {"projects": ("target",)}, "repo": {"repositories": ("other",)}}
            for credential, scope in scoped.items():
                token = accounts.create_token(user, permission="upload", **scope).secret
                secrets[(role, credential)] = ("__token__", token)
            revoked = accounts.create_token(user)
            accounts.revoke_token(revoked.prefix)
            secrets[(role, "revoked")] = ("__token__", revoked.secret)
            expired = accounts.create_token(user)
            models.Token.update(expires=models.utcnow() - datetime.timedelta(seconds=1)).where(
                models.Token.prefix == expired.prefix
            ).execute()
            secrets[(role, "expired")] = ("__token__", expired.secret)
    folder.database.close()
    alice = ("alice", PASSWORD)
    for repo in REPOS:
        versions = ["1.0"] + [f"{kind}.{i}" for i in range(len(rows)) for kind in (3, 4)]
        for version in versions:
            _post(session, server, repo, dists, Dist("target", version), alice, 200)
    folder = datafolder.open_data(settings_of(server))
    with folder.database.activated():
        for repo in REPOS:
            projects.add_maintainer(repo, "target", account("maintainer"))
    folder.database.close()
    return World(server, secrets, dists, ("checker", PASSWORD))


def _post(
    session: requests.Session,
    server: Server,
    repo: str,
    dists: Path,
    dist: Dist,
    auth: tuple[str, str] | None,
    must: int | None = None,
) -> int:
    path = dists / dist.wheel_name
    if not path.exists():
        make_wheel(dists, dist)
    response = post_upload(f"{server.url}/{repo}/", path, auth, session=session, timeout=30)
    assert must is None or response.status_code == must, response.text
    return response.status_code


ROWS = [
    (role, credential)
    for role, credential in itertools.product(ROLES, CREDENTIALS)
    if role != "anonymous" or credential == "password"
]


def _server_for(role: str) -> str:
    return "nopkg" if role == "admin-nopkg" else "default"


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[dict[str, World]]:
    """Two servers (admins with and without package access) on one stack."""
    base = tmp_path_factory.mktemp("matrix")
    dists = base / "dists"
    dists.mkdir()
    with contextlib.ExitStack() as held:
        settings: dict[str, dict[str, str]] = {
            "default": stack.env(),
            "nopkg": {**stack.env(), "MINIREPO_ADMIN_PACKAGE_ACCESS": "false"},
        }
        servers = {
            name: held.enter_context(running_server(base / name, env))
            for name, env in settings.items()
        }
        yield {name: _populate(srv, dists, ROWS) for name, srv in servers.items()}


def _page(world: World, repo: str, project: str) -> str:
    response = requests.get(
        f"{world.server.url}/{repo}/simple/{project}/", auth=world.checker, timeout=30
    )
    return response.text if response.status_code == 200 else ""


def _act(world: World, row: int, role: str, credential: str, repo: str, action: str) -> int:
    """Do `action`; return its status, after checking a refusal changed nothing."""
    auth = world.secrets[(role, credential)]
    url = world.server.url
    session = requests.Session()
    api = f"{url}/-/api/repos/{repo}/projects/target/versions"
    tag = f"{row}-{role}-{credential}".replace("-", "x")
    if action in READS:
        path = {
            "list": f"{repo}/simple/",
            "read": f"{repo}/simple/target/",
            "download": f"{repo}/files/target/target-1.0-py3-none-any.whl",
        }[action]
        return session.get(f"{url}/{path}", auth=auth, timeout=30).status_code
    if action == "upload_new":
        status = _post(session, world.server, repo, world.dists, Dist(f"new{tag}", "1.0"), auth)
        stored = _page(world, repo, f"new{tag}") != ""
    elif action == "upload_other":
        version = f"2.{row}"
        status = _post(session, world.server, repo, world.dists, Dist("target", version), auth)
        stored = f"target-{version}-py3" in _page(world, repo, "target")
    elif action == "yank":
        response = session.post(f"{api}/3.{row}/yank", json={"reason": "m"}, auth=auth, timeout=30)
        status = response.status_code
        stored = f'data-yanked="m">target-3.{row}-py3' in _page(world, repo, "target")
    elif action == "delete":
        status = session.delete(f"{api}/4.{row}", auth=auth, timeout=30).status_code
        stored = f"target-4.{row}-py3" not in _page(world, repo, "target")
    else:
        grant = f"{url}/-/api/repos/{repo}/grants/dummy"
        return session.put(grant, json={"role": "reader"}, auth=auth, timeout=30).status_code
    assert stored == (status == 200), f"{action}: status {status} but changed={stored}"
    return status


@pytest.mark.parametrize("repo", sorted(REPOS))
@pytest.mark.parametrize(("role", "credential"), ROWS)
def test_permission_row(worlds: dict[str, World], role: str, credential: str, repo: str) -> None:
    world = worlds[_server_for(role)]
    row = ROWS.index((role, credential))
    wrong = []
    for action in ACTIONS:
        want = expected(role, credential, REPOS[repo], action)
        got = _act(world, row, role, credential, repo, action)
        if got != want:
            wrong.append(f"{action}: expected {want}, got {got}")
    assert not wrong, wrong
