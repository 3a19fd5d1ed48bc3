"""Distribution files and their `.metadata`: immutable, conditional, ranged, streamed.

Files are requested with `Accept-Encoding: identity` and must keep their URL, size and
hash forever (uv.lock stores all three), so they are never compressed or rewritten.
"""

from __future__ import annotations

import datetime
import hashlib

from flask import Blueprint, Response, request
from werkzeug.wsgi import wrap_file

from minirepo import auth
from minirepo.permissions import Action, RepoInfo
from minirepo.views.common import index

bp = Blueprint("files", __name__)

IMMUTABLE = "max-age=31536000, immutable"


def _cache_control(repo: RepoInfo) -> str:
    return ("public, " if repo.is_public else "private, ") + IMMUTABLE


@bp.get("/files/<project>/<filename>", defaults={"repo": None})
@bp.get("/<repo>/files/<project>/<filename>")
def download(repo: str | None, project: str, filename: str) -> Response:
    info = index().repo(repo)
    auth.require(Action.READ, info, project)
    if filename.endswith(".metadata"):
        return _metadata(info, project, filename.removesuffix(".metadata"))
    handle, stored = index().open_file(info, project, filename)
    response = Response(
        wrap_file(request.environ, handle),
        mimetype="application/octet-stream",
        direct_passthrough=True,
    )
    response.content_length = stored.size
    response.set_etag(stored.sha256)
    response.last_modified = stored.upload_time.replace(tzinfo=datetime.timezone.utc)
    response.headers["Cache-Control"] = _cache_control(info)
    response.make_conditional(request, accept_ranges=True, complete_length=stored.size)
    return response


def _metadata(repo: RepoInfo, project: str, filename: str) -> Response:
    content = index().core_metadata(repo, project, filename)
    response = Response(content, content_type="text/plain; charset=utf-8")
    response.set_etag(hashlib.sha256(content).hexdigest())
    response.headers["Cache-Control"] = _cache_control(repo)
    response.make_conditional(request, accept_ranges=True, complete_length=len(content))
    return response
