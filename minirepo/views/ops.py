"""Endpoints for operators and probes: `/-/health`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from minirepo import __version__, db, models
from minirepo.db import rows
from minirepo.views.common import proxies

bp = Blueprint("ops", __name__)


@bp.get("/-/health")
def health() -> Response:
    """Healthy means the database answers, not only that the process is up. A failing
    upstream leaves it healthy (local packages still install): each proxy's upstream is
    reported beside, `degraded` with its last error."""
    db.current().ping()
    query = models.Repository.select(models.Repository.id, models.Repository.name).where(
        models.Repository.kind == "proxy"
    )
    names = {int(i): str(name) for i, name in rows(query.tuples())}
    upstreams = proxies().upstreams.reports(names)
    response = jsonify(status="ok", version=__version__, upstreams=upstreams)
    response.headers["Cache-Control"] = "no-store"
    return response
