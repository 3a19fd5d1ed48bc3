"""The JSON API under `/-/api/`: one blueprint, its routes in a module per subject."""

from minirepo.views.api import accounts, repos
from minirepo.views.api.common import bp

__all__ = ["accounts", "bp", "repos"]
