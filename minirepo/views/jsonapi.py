"""PyPI's JSON API, `/pypi/<project>[/<version>]/json`, per repository under `/<repo>/`.

Read like the simple pages: the same repository lookup and read checks (401 to anonymous
callers, 404 to others), a group answering from the member that serves the name, and a
non-normalized name redirected to its normalized URL. Refusals are JSON, as PyPI's are.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from flask import Blueprint, Response, request

from minirepo import names
from minirepo.errors import MinirepoError, NotFound, redirect, to_response
from minirepo.services import pypi_json
from minirepo.views.common import index, readable_source, repository
from minirepo.views.webpage import base_url, root

bp = Blueprint("jsonapi", __name__)


@bp.errorhandler(MinirepoError)
def _refusal(exc: MinirepoError) -> Response:
    """The app's refusal (status line, headers) with PyPI's JSON body."""
    response = to_response(exc.status, exc.reason, exc.headers)
    message = "Not Found" if exc.status == 404 else exc.reason
    response.set_data(json.dumps({"message": message}) + "\n")
    response.mimetype = "application/json"
    return response


@bp.get("/pypi/<project>/json", defaults={"repo": None, "version": None})
@bp.get("/<repo>/pypi/<project>/json", defaults={"version": None})
@bp.get("/pypi/<project>/<version>/json", defaults={"repo": None})
@bp.get("/<repo>/pypi/<project>/<version>/json")
def project_json(repo: str | None, project: str, version: str | None) -> Response:
    info = repository(repo)
    normalized = names.normalized_project(project)
    if normalized is None:
        raise NotFound("Not found")
    source = readable_source(info, normalized)
    verdicts = index().verdicts.project(source.id, source.level, normalized)
    document = pypi_json.document(source, normalized, version, _links(info.name, repo), verdicts)
    if document is None:
        raise NotFound(f"No project named {normalized!r} in {info.name!r}")
    if normalized != project:
        up = "../../" if version is not None else "../"
        tail = f"{quote(version)}/json" if version is not None else "json"
        return redirect(f"{up}{normalized}/{tail}")
    response = Response(json.dumps(document), mimetype="application/json")
    response.headers["Cache-Control"] = "no-cache" + ("" if source.is_public else ", private")
    response.add_etag()
    response.make_conditional(request)
    return response


def _links(repo_name: str, in_url: str | None) -> pypi_json.Links:
    """Absolute URLs as this request reached the server (a path token's prefix kept):
    files under the URL's repository (a group serves its members' files), pages under
    the repository's own name."""
    site = base_url() + root()
    files = f"{site}/{in_url}/files" if in_url is not None else f"{site}/files"
    return pypi_json.Links(files=files, pages=f"{site}/{repo_name}/project")
