"""The `minirepo` command: each group lives in its own module and registers on `main`."""

from minirepo.cli import groups, ops, packages, repos, users
from minirepo.cli.base import main

__all__ = ["groups", "main", "ops", "packages", "repos", "users"]
