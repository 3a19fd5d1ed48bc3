"""Endpoints for operators and probes: `/-/health`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from minirepo import __version__
from minirepo.db import database

bp = Blueprint("ops", __name__)


@bp.get("/-/health")
def health() -> Response:
    """Healthy means the database answers, not only that the process is up."""
    database.execute_sql("SELECT 1").fetchone()
    response = jsonify(status="ok", version=__version__)
    response.headers["Cache-Control"] = "no-store"
    return response
