"""`may()`: every rule of who may do what, as a table, without a server."""

from __future__ import annotations

import pytest

from minirepo.permissions import PERMISSIONS, Action, Principal, RepoInfo, may

PUBLIC = RepoInfo(id=1, name="main", read="anonymous", generation=0)
PRIVATE = RepoInfo(id=2, name="team", read="authenticated", generation=0)

ANON = None
USER = Principal(user_id=1, name="alice", is_admin=False, permission=Action.UPLOAD)
ADMIN = Principal(user_id=2, name="root", is_admin=True, permission=Action.ADMIN)


def token(
    permission: str,
    *,
    admin: bool = False,
    repos: frozenset[str] = frozenset(),
    projects: frozenset[str] = frozenset(),
) -> Principal:
    return Principal(
        user_id=3,
        name="bob",
        is_admin=admin,
        permission=PERMISSIONS[permission],
        repositories=repos,
        projects=projects,
        token_prefix="mr-abcdefgh",
    )


R, U, A = Action.READ, Action.UPLOAD, Action.ADMIN


@pytest.mark.parametrize(
    ("principal", "repo", "expected"),
    [
        # (principal, repo, {action: allowed}) over a public and a private repository
        (ANON, PUBLIC, {R: True, U: False, A: False}),
        (ANON, PRIVATE, {R: False, U: False, A: False}),
        (USER, PUBLIC, {R: True, U: True, A: False}),
        (USER, PRIVATE, {R: True, U: True, A: False}),
        (ADMIN, PUBLIC, {R: True, U: True, A: True}),
        (ADMIN, PRIVATE, {R: True, U: True, A: True}),
        (token("read"), PUBLIC, {R: True, U: False, A: False}),
        (token("read"), PRIVATE, {R: True, U: False, A: False}),
        (token("upload"), PRIVATE, {R: True, U: True, A: False}),
        (token("admin", admin=True), PRIVATE, {R: True, U: True, A: True}),
        # an admin token of an account that is no longer admin grants no admin right
        (token("admin", admin=False), PRIVATE, {R: True, U: True, A: False}),
        # an upload token of an admin account is still only an upload token
        (token("upload", admin=True), PRIVATE, {R: True, U: True, A: False}),
        (token("read", admin=True), PRIVATE, {R: True, U: False, A: False}),
    ],
    ids=lambda value: getattr(value, "name", None) if isinstance(value, RepoInfo) else None,
)
@pytest.mark.parametrize("project", [None, "demo"])
def test_table(
    principal: Principal | None, repo: RepoInfo, expected: dict[Action, bool], project: str | None
) -> None:
    for action, allowed in expected.items():
        assert may(principal, action, repo, project) is allowed, (principal, action, repo)


def test_repository_scope() -> None:
    scoped = token("upload", repos=frozenset({"team"}))
    assert may(scoped, U, PRIVATE, "demo")
    assert may(scoped, R, PRIVATE, "demo")
    other = RepoInfo(id=3, name="other", read="authenticated", generation=0)
    assert not may(scoped, R, other, "demo")
    assert not may(scoped, U, other, "demo")
    # a public repository is readable by anyone, scoped or not
    assert may(scoped, R, PUBLIC, "demo")
    assert not may(scoped, U, PUBLIC, "demo")


def test_project_scope() -> None:
    scoped = token("upload", projects=frozenset({"demo", "demo-lib"}))
    assert may(scoped, U, PRIVATE, "demo")
    assert may(scoped, U, PRIVATE, "demo-lib")
    assert not may(scoped, U, PRIVATE, "other")
    assert may(scoped, R, PRIVATE, "demo")
    assert not may(scoped, R, PRIVATE, "other")
    # public reads ignore the scope
    assert may(scoped, R, PUBLIC, "other")


def test_project_scope_repository_wide_actions() -> None:
    """Listing and the pre-check of an upload pass; repository-wide admin does not."""
    scoped_admin = token("admin", admin=True, projects=frozenset({"demo"}))
    assert may(scoped_admin, R, PRIVATE, None)
    assert may(scoped_admin, U, PRIVATE, None)
    assert not may(scoped_admin, A, PRIVATE, None)
    assert may(scoped_admin, A, PRIVATE, "demo")
    assert not may(scoped_admin, A, PRIVATE, "other")


def test_repo_and_project_scope_together() -> None:
    scoped = token("upload", repos=frozenset({"team"}), projects=frozenset({"demo"}))
    other = RepoInfo(id=3, name="other", read="authenticated", generation=0)
    assert may(scoped, U, PRIVATE, "demo")
    assert not may(scoped, U, other, "demo")
    assert not may(scoped, U, PRIVATE, "other")


def test_actions_are_ordered() -> None:
    assert Action.READ < Action.UPLOAD < Action.ADMIN
    assert set(PERMISSIONS) == {"read", "upload", "admin"}


def test_is_public() -> None:
    assert PUBLIC.is_public
    assert not PRIVATE.is_public
