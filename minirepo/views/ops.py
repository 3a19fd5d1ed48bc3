"""Endpoints for operators and probes: `/-/health` and `/-/metrics`."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from minirepo import __version__
from minirepo.errors import NotFound
from minirepo.metrics import Metrics
from minirepo.services import health as checks
from minirepo.views.api.common import require_admin
from minirepo.views.common import index, proxies, services, settings

bp = Blueprint("ops", __name__)


@bp.get("/-/health")
def health() -> Response:
    """200 while the server works (the database answers, the data folder and the blob
    store take files), with `degraded` in the body when an upstream fails or the disk runs
    low; 503 when it does not work: a load balancer then takes the server out only when it
    cannot serve."""
    spool: checks.Spool = current_app.extensions["minirepo.spool"]
    advisories = index().verdicts.lookup.status()
    found = checks.check(
        settings().data,
        proxies().upstreams,
        spool,
        services().folder.store,
        (advisories.checked if advisories else None, settings().advisories_max_age),
    )
    response = jsonify(version=__version__, **found.report())
    response.status_code = 200 if found.works else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/-/metrics")
def metrics() -> Response:
    """Prometheus's scrape. `metrics = "admin"` (the default) asks for an admin's
    credentials: how the index is used and what fails is not every reader's business;
    "open" is for a scraper on a trusted network, "off" hides the endpoint."""
    mode = settings().metrics
    if mode == "off":
        raise NotFound("Metrics are off on this server (setting metrics)")
    if mode == "admin":
        require_admin()
    found: Metrics = current_app.extensions["minirepo.metrics"]
    body, content_type = found.exposition(request.headers.get("Accept"))
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
