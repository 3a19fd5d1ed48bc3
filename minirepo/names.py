"""The name rules: repositories, projects and users, and the words the URL map reserves.

One place for each rule, because a name accepted by one layer and refused by another is a
bug that shows up as a 404 nobody can explain (or a repository no URL reaches).
"""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name

# DESIGN.md's URL map: a repository's name is the first segment of its URLs.
REPO_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}\Z")
RESERVED_REPO_NAMES = frozenset(
    {"simple", "files", "pypi", "legacy", "project", "-", "favicon.ico", "robots.txt"}
)
# PEP 508 names, ASCII only: confusables and junk are refused.
PROJECT_NAME_RE = re.compile(
    r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII
)
MAX_PROJECT_NAME_LENGTH = 200
MAX_USER_NAME_LENGTH = 100
ROLES = ("none", "reader", "uploader", "owner")


def is_repository_name(name: str) -> bool:
    """Whether `name` could name a repository (used before any lookup: a name that fails
    this gets a plain 404, one that passes gets the same answer existing or not)."""
    return bool(REPO_NAME_RE.match(name)) and name not in RESERVED_REPO_NAMES


def repository_name_problem(name: str) -> str | None:
    """Why `name` can't name a repository, or None."""
    if not REPO_NAME_RE.match(name):
        return (
            f"Invalid repository name {name!r}: use 1-63 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    if name in RESERVED_REPO_NAMES:
        return f"Repository name {name!r} is reserved by the URL map"
    return None


def is_project_name(name: str) -> bool:
    return len(name) <= MAX_PROJECT_NAME_LENGTH and bool(PROJECT_NAME_RE.match(name))


def normalized_project(name: str) -> str | None:
    """The PEP 503 form of a valid project name, else None."""
    return canonicalize_name(name) if is_project_name(name) else None


def user_name_problem(name: str) -> str | None:
    """Why `name` can't name an account, or None (`__token__` and the like are taken)."""
    if not PROJECT_NAME_RE.match(name) or len(name) > MAX_USER_NAME_LENGTH or name.startswith("__"):
        return f"Invalid user name {name!r}: use letters, digits, '.', '_', '-'"
    return None
