"""The `minirepo` command: each group lives in its own module and registers on `main`."""

from minirepo.cli import cache, groups, ops, packages, repos, users
from minirepo.cli.base import main

__all__ = ["cache", "groups", "main", "ops", "packages", "repos", "users"]
