"""`refusal()` / `may()`: every rule of who may do what, as a table, without a server.

One row per case: a caller, an action, a repository, a project (an existing one, a new
name, or None for a repository-wide action) and the exact answer: None (allowed) or the
`Refusal`, with its reason and whether it must look like a missing repository (`hidden`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from minirepo.permissions import (
    PERMISSIONS,
    ROLES,
    Action,
    Principal,
    ProjectInfo,
    Refusal,
    Role,
    is_public,
    listing_filter,
    may,
    refusal,
    replace_refusal,
)
from minirepo.services.repos import RepoInfo

# The default repository: public, and anyone signed in may create projects (`uploader`).
MAIN = RepoInfo(id=1, name="main", read="anonymous", generation=0, default_role="uploader")
# A new repository: private, and nobody has a role without a grant (`none`).
TEAM = RepoInfo(id=2, name="team", read="authenticated", generation=0, default_role="none")
# A private repository every account may read (`reader` by default).
DOCS = RepoInfo(id=3, name="docs", read="authenticated", generation=0, default_role="reader")

ALICE_ID, BOB_ID, CAROL_ID, ROOT_ID = 1, 2, 3, 4
PREFIX = "mr-abcdefgh"

# Projects that exist, owned by bob (id 2); carol (id 3) maintains `demo`.
DEMO_TEAM = ProjectInfo("demo", BOB_ID, "bob", frozenset({CAROL_ID}))
DEMO_MAIN = ProjectInfo("demo", BOB_ID, "bob", frozenset({CAROL_ID}))
ORPHAN = ProjectInfo("orphan", None, "")  # its owner's account is gone


def user(
    name: str = "alice",
    user_id: int = ALICE_ID,
    *,
    grants: Mapping[int, Role] | None = None,
    admin: bool = False,
    package_admin: bool = False,
) -> Principal:
    return Principal(
        user_id=user_id,
        name=name,
        is_admin=admin,
        package_admin=package_admin,
        grants=dict(grants or {}),
    )


def token(
    principal: Principal,
    permission: str,
    *,
    repos: Mapping[int, str] | None = None,
    projects: frozenset[str] = frozenset(),
) -> Principal:
    return dataclasses.replace(
        principal,
        token_permission=PERMISSIONS[permission],
        token_repositories=dict(repos or {}),
        token_projects=projects,
        token_prefix=PREFIX,
    )


ANON = None
ALICE = user()  # no grant anywhere: the default roles only
ALICE_READER = user(grants={TEAM.id: Role.READER})
ALICE_UPLOADER = user(grants={TEAM.id: Role.UPLOADER})
ALICE_OWNER = user(grants={TEAM.id: Role.OWNER})
ALICE_NONE_IN_DOCS = user(grants={DOCS.id: Role.NONE})  # a grant overrides the default
ALICE_READER_IN_MAIN = user(grants={MAIN.id: Role.READER})
BOB = user("bob", BOB_ID, grants={TEAM.id: Role.UPLOADER})  # owner of `demo`
CAROL = user("carol", CAROL_ID, grants={TEAM.id: Role.UPLOADER})  # maintainer of `demo`
ROOT = user("root", ROOT_ID, admin=True)  # admin, without admin_package_access
PACKAGE_ADMIN = user("root", ROOT_ID, admin=True, package_admin=True)

R, U, M, G, A = Action.READ, Action.UPLOAD, Action.MANAGE, Action.GRANT, Action.ADMIN


def refused(reason: str, *, hidden: bool = False) -> Refusal:
    return Refusal(reason, hidden)


DEMO_UPLOAD = token(ALICE_UPLOADER, "upload", projects=frozenset({"demo"}))
AUTH = refused("Authentication required")
AUTH_HIDDEN = refused("Authentication required", hidden=True)
NOT_ROOT_TEAM = refused("root may not read team", hidden=True)
NOT_ALICE_TEAM = refused("alice may not read team", hidden=True)
BELONGS_TO_BOB = refused("project demo in team belongs to bob: ask bob to add you as a maintainer")
MANAGE_RULE = "only its owner, an owner of team or an admin may do that"

Row = tuple[str, Principal | None, Action, RepoInfo, ProjectInfo | str | None, Refusal | None]

ROWS: list[Row] = [
    # --- anonymous callers: public reads only --------------------------------------------
    ("anon-read-public", ANON, R, MAIN, None, None),
    ("anon-read-public-project", ANON, R, MAIN, DEMO_MAIN, None),
    ("anon-read-private", ANON, R, TEAM, None, AUTH_HIDDEN),
    ("anon-read-private-readable", ANON, R, DOCS, "demo", AUTH_HIDDEN),
    ("anon-upload-public", ANON, U, MAIN, "demo", AUTH),
    ("anon-upload-private", ANON, U, TEAM, None, AUTH_HIDDEN),
    ("anon-manage-public", ANON, M, MAIN, DEMO_MAIN, AUTH),
    ("anon-admin", ANON, A, MAIN, None, AUTH),
    # --- default roles (no grant) --------------------------------------------------------
    ("default-uploader-read", ALICE, R, MAIN, None, None),
    ("default-uploader-new-project", ALICE, U, MAIN, "newproj", None),
    ("default-uploader-precheck", ALICE, U, MAIN, None, None),
    ("default-uploader-others-project", ALICE, U, MAIN, DEMO_MAIN, refused(
        "project demo in main belongs to bob: ask bob to add you as a maintainer"
    )),
    ("default-none-read", ALICE, R, TEAM, None, NOT_ALICE_TEAM),
    ("default-none-read-project", ALICE, R, TEAM, DEMO_TEAM, NOT_ALICE_TEAM),
    ("default-none-upload", ALICE, U, TEAM, "newproj", NOT_ALICE_TEAM),
    ("default-none-manage", ALICE, M, TEAM, DEMO_TEAM, NOT_ALICE_TEAM),
    ("default-none-grant", ALICE, G, TEAM, None, NOT_ALICE_TEAM),
    ("default-reader-read", ALICE, R, DOCS, "demo", None),
    ("default-reader-new-project", ALICE, U, DOCS, "newproj", refused(
        "alice may not create projects in docs: ask an owner of docs for the uploader role"
    )),
    # --- grants: reader < uploader < owner, and a grant overrides the default -------------
    ("grant-none-overrides-default", ALICE_NONE_IN_DOCS, R, DOCS, None, refused(
        "alice may not read docs", hidden=True
    )),
    ("grant-reader-overrides-default", ALICE_READER_IN_MAIN, U, MAIN, "newproj", refused(
        "alice may not create projects in main: ask an owner of main for the uploader role"
    )),
    # where anyone may read, everyone is at least a reader, whatever the grant says
    ("grant-none-in-public-still-reads", user(grants={MAIN.id: Role.NONE}), U, MAIN, "newproj",
     refused("alice may not create projects in main: "
             "ask an owner of main for the uploader role")),
    ("grant-reader-read", ALICE_READER, R, TEAM, DEMO_TEAM, None),
    ("grant-reader-new-project", ALICE_READER, U, TEAM, "newproj", refused(
        "alice may not create projects in team: ask an owner of team for the uploader role"
    )),
    ("grant-reader-precheck", ALICE_READER, U, TEAM, None, None),
    ("grant-reader-others-project", ALICE_READER, U, TEAM, DEMO_TEAM, BELONGS_TO_BOB),
    ("grant-uploader-new-project", ALICE_UPLOADER, U, TEAM, "newproj", None),
    ("grant-uploader-others-project", ALICE_UPLOADER, U, TEAM, DEMO_TEAM, BELONGS_TO_BOB),
    ("grant-uploader-manage-others", ALICE_UPLOADER, M, TEAM, DEMO_TEAM, refused(
        f"project demo in team belongs to bob: {MANAGE_RULE}"
    )),
    ("grant-uploader-manage-repo", ALICE_UPLOADER, M, TEAM, None, refused(
        f"alice is not an owner of team: {MANAGE_RULE}"
    )),
    ("grant-uploader-grant", ALICE_UPLOADER, G, TEAM, None, refused(
        "alice is not an owner of team: ask an admin"
    )),
    ("grant-uploader-admin", ALICE_UPLOADER, A, TEAM, None, refused("alice is not an admin")),
    ("grant-owner-upload-others", ALICE_OWNER, U, TEAM, DEMO_TEAM, None),
    ("grant-owner-manage-others", ALICE_OWNER, M, TEAM, DEMO_TEAM, None),
    ("grant-owner-manage-repo", ALICE_OWNER, M, TEAM, None, None),
    ("grant-owner-grant", ALICE_OWNER, G, TEAM, None, None),
    ("grant-owner-admin", ALICE_OWNER, A, TEAM, None, refused("alice is not an admin")),
    ("grant-in-one-repo-only", ALICE_OWNER, R, RepoInfo(5, "other", "authenticated", 0), None,
     refused("alice may not read other", hidden=True)),
    # --- project owner and maintainers ----------------------------------------------------
    ("project-owner-upload", BOB, U, TEAM, DEMO_TEAM, None),
    ("project-owner-manage", BOB, M, TEAM, DEMO_TEAM, None),
    ("project-owner-manage-repo", BOB, M, TEAM, None, refused(
        f"bob is not an owner of team: {MANAGE_RULE}"
    )),
    ("project-maintainer-upload", CAROL, U, TEAM, DEMO_TEAM, None),
    ("project-maintainer-manage", CAROL, M, TEAM, DEMO_TEAM, refused(
        f"project demo in team belongs to bob: {MANAGE_RULE}"
    )),
    ("project-without-owner-upload", ALICE_UPLOADER, U, TEAM, ORPHAN, refused(
        "project orphan in team belongs to nobody: ask nobody to add you as a maintainer"
    )),
    # --- admins: every admin action, but package access only with admin_package_access ----
    ("admin-admin", ROOT, A, TEAM, None, None),
    ("admin-grant", ROOT, G, TEAM, None, None),
    ("admin-manage-project", ROOT, M, TEAM, DEMO_TEAM, None),
    ("admin-manage-repo", ROOT, M, TEAM, None, None),
    ("admin-read-private", ROOT, R, TEAM, DEMO_TEAM, NOT_ROOT_TEAM),
    ("admin-upload-private", ROOT, U, TEAM, "newproj", NOT_ROOT_TEAM),
    ("admin-read-public", ROOT, R, MAIN, None, None),
    ("admin-upload-others-public", ROOT, U, MAIN, DEMO_MAIN, refused(
        "project demo in main belongs to bob: ask bob to add you as a maintainer"
    )),
    ("package-admin-read-private", PACKAGE_ADMIN, R, TEAM, DEMO_TEAM, None),
    ("package-admin-upload-new", PACKAGE_ADMIN, U, TEAM, "newproj", None),
    ("package-admin-upload-others", PACKAGE_ADMIN, U, TEAM, DEMO_TEAM, None),
    ("package-admin-manage", PACKAGE_ADMIN, M, TEAM, DEMO_TEAM, None),
    # --- token permission caps the action; the user's rights still apply ------------------
    ("read-token-read", token(ALICE_OWNER, "read"), R, TEAM, DEMO_TEAM, None),
    ("read-token-upload", token(ALICE_OWNER, "read"), U, TEAM, "newproj", refused(
        f"token {PREFIX} is read-only"
    )),
    ("read-token-upload-public", token(ALICE, "read"), U, MAIN, "newproj", refused(
        f"token {PREFIX} is read-only"
    )),
    ("read-token-of-admin-admin", token(ROOT, "read"), A, TEAM, None, refused(
        f"token {PREFIX} is read-only"
    )),
    ("upload-token-upload", token(ALICE_UPLOADER, "upload"), U, TEAM, "newproj", None),
    ("upload-token-manage", token(ALICE_OWNER, "upload"), M, TEAM, DEMO_TEAM, refused(
        f"token {PREFIX} may only upload: use an admin token or a password for this"
    )),
    ("upload-token-of-admin-admin", token(ROOT, "upload"), A, TEAM, None, refused(
        f"token {PREFIX} may only upload: use an admin token or a password for this"
    )),
    ("upload-token-without-role", token(ALICE, "upload"), U, TEAM, "newproj", NOT_ALICE_TEAM),
    ("admin-token-of-admin-admin", token(ROOT, "admin"), A, TEAM, None, None),
    ("admin-token-of-admin-grant", token(ROOT, "admin"), G, TEAM, None, None),
    # an admin token of a non-admin carries that user's rights, no more
    ("admin-token-of-user-manage", token(ALICE_OWNER, "admin"), M, TEAM, DEMO_TEAM, None),
    ("admin-token-of-user-upload", token(ALICE_UPLOADER, "admin"), U, TEAM, "newproj", None),
    ("admin-token-of-user-admin", token(ALICE_OWNER, "admin"), A, TEAM, None, refused(
        "alice is not an admin"
    )),
    ("admin-token-of-user-no-role", token(ALICE, "admin"), R, TEAM, None, NOT_ALICE_TEAM),
    # --- token repository scope -----------------------------------------------------------
    ("repo-scope-inside", token(ALICE_UPLOADER, "upload", repos={TEAM.id: "team"}), U, TEAM,
     "newproj", None),
    # a private repository outside the scope answers like a missing one: nothing named
    ("repo-scope-read-other-private", token(ALICE, "upload", repos={TEAM.id: "team"}), R, DOCS,
     None, refused("alice may not read docs", hidden=True)),
    ("repo-scope-admin-token-other-private", token(ROOT, "admin", repos={TEAM.id: "team"}), M,
     DOCS, None, refused("root may not read docs", hidden=True)),
    ("repo-scope-read-other-public", token(ALICE, "upload", repos={TEAM.id: "team"}), R, MAIN,
     "demo", None),
    ("repo-scope-upload-other-public", token(ALICE, "upload", repos={TEAM.id: "team"}), U, MAIN,
     "newproj", refused(f"token {PREFIX} is scoped to repository team")),
    ("repo-scope-names-sorted", token(ALICE, "upload", repos={TEAM.id: "team", DOCS.id: "docs"}),
     U, MAIN, "newproj", refused(f"token {PREFIX} is scoped to repository docs, team")),
    # --- token project scope --------------------------------------------------------------
    ("project-scope-upload-inside", token(BOB, "upload", projects=frozenset({"demo"})), U, TEAM,
     DEMO_TEAM, None),
    ("project-scope-upload-new-inside", DEMO_UPLOAD,
     U, TEAM, "demo", None),
    ("project-scope-upload-outside", DEMO_UPLOAD,
     U, TEAM, "other", refused(f"token {PREFIX} is scoped to project demo")),
    ("project-scope-read-outside", token(ALICE_UPLOADER, "read", projects=frozenset({"demo"})),
     R, TEAM, "other", refused(f"token {PREFIX} is scoped to project demo")),
    ("project-scope-read-public-outside", token(ALICE, "read", projects=frozenset({"demo"})),
     R, MAIN, "other", None),
    ("project-scope-listing", token(ALICE_UPLOADER, "read", projects=frozenset({"demo"})), R,
     TEAM, None, None),
    ("project-scope-upload-precheck", DEMO_UPLOAD,
     U, TEAM, None, None),
    ("project-scope-manage-repo", token(ALICE_OWNER, "admin", projects=frozenset({"demo"})), M,
     TEAM, None, refused(f"token {PREFIX} is scoped to project demo")),
    ("project-scope-grant", token(ALICE_OWNER, "admin", projects=frozenset({"demo"})), G, TEAM,
     None, refused(f"token {PREFIX} is scoped to project demo")),
    # a project-scoped token passes repository-wide READ and UPLOAD only, never ADMIN
    ("project-scope-admin", token(ROOT, "admin", projects=frozenset({"demo"})), A, TEAM, None,
     refused(f"token {PREFIX} is scoped to project demo")),
    ("project-scope-manage-inside", token(ALICE_OWNER, "admin", projects=frozenset({"demo"})), M,
     TEAM, DEMO_TEAM, None),
    ("project-scope-names-sorted", token(ALICE_UPLOADER, "upload",
                                         projects=frozenset({"zeta", "demo"})),
     U, TEAM, "other", refused(f"token {PREFIX} is scoped to project demo, zeta")),
    ("repo-and-project-scope-inside", token(ALICE_UPLOADER, "upload", repos={TEAM.id: "team"},
                                            projects=frozenset({"demo"})),
     U, TEAM, "demo", None),
    ("repo-and-project-scope-other-repo", token(ALICE, "upload", repos={TEAM.id: "team"},
                                                projects=frozenset({"demo"})),
     U, DOCS, "demo", refused("alice may not read docs", hidden=True)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("principal", "action", "repo", "project", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
def test_table(
    principal: Principal | None,
    action: Action,
    repo: RepoInfo,
    project: ProjectInfo | str | None,
    expected: Refusal | None,
) -> None:
    assert refusal(principal, action, repo, project) == expected
    assert may(principal, action, repo, project) is (expected is None)


SCOPE_WIDE = (
    "project-scope-listing",
    "project-scope-upload-precheck",
    "project-scope-manage-repo",
    "project-scope-grant",
    "project-scope-admin",
)


@pytest.mark.parametrize(
    ("principal", "action", "repo", "project", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS if row[0] in SCOPE_WIDE],
)
def test_project_scope_repository_wide_actions(
    principal: Principal | None,
    action: Action,
    repo: RepoInfo,
    project: ProjectInfo | str | None,
    expected: Refusal | None,
) -> None:
    """A project-scoped token: listing and the pre-check of an upload pass; every other
    repository-wide action (manage, grant, admin) is refused (docs/security-cases.md)."""
    assert refusal(principal, action, repo, project) == expected


@pytest.mark.parametrize(
    ("principal", "project", "expected"),
    [
        pytest.param(ANON, None, frozenset(), id="anonymous"),
        pytest.param(ALICE, None, frozenset(), id="password"),
        pytest.param(token(ALICE, "read"), None, frozenset(), id="unscoped-token"),
        pytest.param(
            token(ALICE, "read", projects=frozenset({"demo", "lib"})),
            None,
            frozenset({"demo", "lib"}),
            id="project-scoped-token",
        ),
        pytest.param(
            token(ALICE, "read", projects=frozenset({"demo"})),
            "demo",
            frozenset(),
            id="project-page-not-filtered",
        ),
        pytest.param(
            token(ALICE, "read", repos={TEAM.id: "team"}), None, frozenset(), id="repo-scoped"
        ),
    ],
)
def test_listing_filter(
    principal: Principal | None, project: str | None, expected: frozenset[str]
) -> None:
    assert listing_filter(principal, project) == expected


ONLY_OWNER = refused("project demo in team belongs to bob: only its owner may replace a file")


@pytest.mark.parametrize(
    ("principal", "repo", "project", "expected"),
    [
        pytest.param(BOB, TEAM, DEMO_TEAM, None, id="project-owner"),
        pytest.param(token(BOB, "upload"), TEAM, DEMO_TEAM, None, id="project-owner-token"),
        pytest.param(ALICE_OWNER, TEAM, DEMO_TEAM, None, id="repository-owner"),
        pytest.param(ROOT, TEAM, DEMO_TEAM, None, id="admin"),
        pytest.param(PACKAGE_ADMIN, TEAM, DEMO_TEAM, None, id="package-admin"),
        pytest.param(CAROL, TEAM, DEMO_TEAM, ONLY_OWNER, id="maintainer"),
        pytest.param(ALICE_UPLOADER, TEAM, DEMO_TEAM, ONLY_OWNER, id="uploader"),
        pytest.param(
            ALICE,
            MAIN,
            DEMO_MAIN,
            refused("project demo in main belongs to bob: only its owner may replace a file"),
            id="default-uploader",
        ),
        pytest.param(
            ALICE_UPLOADER,
            TEAM,
            ORPHAN,
            refused("project orphan in team belongs to nobody: only its owner may replace a file"),
            id="no-owner",
        ),
    ],
)
def test_replace_refusal(
    principal: Principal, repo: RepoInfo, project: ProjectInfo, expected: Refusal | None
) -> None:
    assert replace_refusal(principal, repo, project) == expected


def test_actions_and_roles_are_ordered() -> None:
    assert Action.READ < Action.UPLOAD < Action.MANAGE < Action.GRANT < Action.ADMIN
    assert Role.NONE < Role.READER < Role.UPLOADER < Role.OWNER
    assert set(ROLES) == {"none", "reader", "uploader", "owner"}
    assert PERMISSIONS == {"read": Action.READ, "upload": Action.UPLOAD, "admin": Action.ADMIN}


def test_is_public() -> None:
    assert is_public(MAIN)
    assert MAIN.is_public
    assert not is_public(TEAM)
    assert not TEAM.is_public
