"""The `minirepo` command: each group lives in its own module and registers on `main`."""

from minirepo.cli import (
    advisories,
    attestations,
    backup,
    cache,
    config_cmd,
    groups,
    imports,
    maintenance,
    ops,
    packages,
    repos,
    setup_client,
    users,
)
from minirepo.cli.base import main

__all__ = [
    "advisories",
    "attestations",
    "backup",
    "cache",
    "config_cmd",
    "groups",
    "imports",
    "main",
    "maintenance",
    "ops",
    "packages",
    "repos",
    "setup_client",
    "users",
]
