"""Endpoints for operators and probes: `/-/health`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from minirepo import __version__, db

bp = Blueprint("ops", __name__)


@bp.get("/-/health")
def health() -> Response:
    """Healthy means the database answers, not only that the process is up."""
    db.current().ping()
    response = jsonify(status="ok", version=__version__)
    response.headers["Cache-Control"] = "no-store"
    return response
