"""Placeholder while issue 17 is built: the helper that owns this module replaces it."""

from minirepo.views.webpage import ui_blueprint

bp = ui_blueprint("search", __name__)
