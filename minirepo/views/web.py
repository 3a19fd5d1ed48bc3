"""Pages for people: a repository's landing page with copy-paste client lines.

Also turns an index URL set to the repository URL by mistake into a working install:
pip and uv then ask for `/<repo>/<project>/` with the simple `Accept`.
"""

from __future__ import annotations

import contextlib
import html
import urllib.parse

from flask import Blueprint, Response, request

from minirepo import auth
from minirepo.errors import NotFound, redirect
from minirepo.permissions import Action
from minirepo.services import repos
from minirepo.services.index import HTML
from minirepo.views.common import index, repository, settings
from minirepo.views.simple import existing_project, negotiate

bp = Blueprint("web", __name__)


@bp.after_request
def _vary_on_accept(response: Response) -> Response:
    """A simple `Accept` turns some of these 404s into redirects: caches must know."""
    response.vary.add("Accept")
    return response


def _html(body: str) -> Response:
    response = Response(body, mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/", defaults={"repo": None})
@bp.get("/<repo>/")
def repository_page(repo: str | None) -> Response:
    try:
        info = index().repo(repo)
    except NotFound:
        kind = negotiate(request.headers.get("Accept"))
        if repo is not None and kind != HTML:
            # `/<name>/` with no such repository: a project of the default one, if it exists.
            with contextlib.suppress(NotFound):
                normalized, *_ = existing_project(index().repo(None), repo, kind)
                return redirect(f"../simple/{normalized}/")
        info = repository(repo)  # the answer for a missing repository: 401 or 404
    auth.require(Action.READ, info)
    base = _base_url()
    prefix = "" if repo is None else f"/{info.name}"
    install, upload = prefix, prefix
    group = repos.first_start_group() if repo is None else None
    if group is not None:
        # The home page leads with the group: internal packages and PyPI's from one URL,
        # uploads to the default repository.
        install, upload = f"/{group}", f"/{info.name}"
    index_url = html.escape(f"{base}{install}/simple/")
    upload_url = html.escape(f"{base}{upload}/")
    trusted = html.escape(_trusted_host(base))
    body = (
        '<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8">'
        f"<title>minirepo: {html.escape(info.name)}</title></head>\n<body>\n"
        f"<h1>minirepo: {html.escape(info.name)}</h1>\n"
        '<p><a href="simple/">Browse the simple index</a></p>\n'
        "<h2>Install</h2>\n"
        f"<pre>pip install --index-url {index_url}{trusted} PACKAGE\n"
        f"uv pip install --index-url {index_url} PACKAGE</pre>\n"
        "<h2>Publish</h2>\n"
        f"<pre>twine upload --repository-url {upload_url} -u __token__ -p mr-... dist/*\n"
        f"uv publish --publish-url {upload_url} --token mr-... dist/*</pre>\n"
        "</body>\n</html>\n"
    )
    return _html(body)


def _base_url() -> str:
    """`public_url` when set (behind a proxy it may carry a path); else the address this
    browser reached us at, which works from where it is even when the server listens on
    every interface (and then has no one address to print). werkzeug empties a `Host:`
    no browser sends; the bind address stands in then."""
    configured = settings().public_url
    reached = request.host_url if request.host else ""
    return (configured or reached or settings().base_url).rstrip("/")


def _trusted_host(base: str) -> str:
    """pip ignores a plain-http index unless told to trust its host."""
    try:
        parts = urllib.parse.urlsplit(base)
    except ValueError:  # a `public_url` like "http://[x": no flag is better than a 500
        return ""
    return f" --trusted-host {parts.hostname}" if parts.scheme == "http" and parts.hostname else ""


@bp.get("/<repo>/<project>/")
def misplaced_index(repo: str, project: str) -> Response:
    """`/<repo>/<project>/` asked for as a simple page: send the client to the real one."""
    kind = negotiate(request.headers.get("Accept"))
    if kind == HTML:
        raise NotFound("Not found")
    normalized, *_ = existing_project(repository(repo), project, kind)
    return redirect(f"../simple/{normalized}/")


@bp.get("/<repo>/<name>")
def two_segments_without_slash(repo: str, name: str) -> Response:
    """`/<a>/<b>` is never a page: 404 at once, not werkzeug's trailing-slash redirect.

    Without this rule `/files/<anything>` or `/main/<anything>` would get a 308 built
    from the raw path; clients always ask for the trailing-slash form.
    """
    raise NotFound("Not found")
