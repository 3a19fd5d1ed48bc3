"""PEP 503 / 691 pages: negotiated by `Accept`, cached bytes, strong `ETag`, 304s."""

from __future__ import annotations

import dataclasses

from flask import Blueprint, Response, request
from werkzeug.http import parse_accept_header, parse_etags

from minirepo import auth, names
from minirepo.errors import NotFound, one_line, redirect
from minirepo.permissions import Action, listing_filter, may
from minirepo.services.index import HTML, HTML_V1, JSON_V1, Page
from minirepo.services.proxies import Stale
from minirepo.services.repos import RepoInfo
from minirepo.views.common import (
    group_members,
    index,
    proxies,
    readable_members,
    readable_source,
    repository,
)

bp = Blueprint("simple", __name__)

_MEDIA = {
    JSON_V1: JSON_V1,
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    HTML_V1: HTML_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
    "text/html": HTML,
    "text/*": HTML,
    "*/*": HTML,
}
_CONTENT_TYPES = {JSON_V1: JSON_V1, HTML_V1: HTML_V1, HTML: "text/html; charset=utf-8"}
# One strong ETag per representation: text/html and v1+html share bytes, not a type.
_ETAG_SUFFIXES = {JSON_V1: "json", HTML_V1: "v1html", HTML: "html"}


@bp.after_request
def _vary_on_accept(response: Response) -> Response:
    """Every answer here may depend on `Accept` (errors and redirects too): say so."""
    response.vary.add("Accept")
    return response


def negotiate(header: str | None) -> str:
    """The best of our three types by q-value; HTML on a tie and for anything unreadable."""
    best, best_q = HTML, 0.0
    for item in (header or "").split(","):
        media, *params = item.split(";")
        kind = _MEDIA.get(media.strip().lower())
        if kind is None:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = -1.0
        if not 0.0 < quality <= 1.0:
            continue
        if quality > best_q or (quality == best_q and kind != JSON_V1):
            best, best_q = kind, quality
    return best


def accepts_gzip(header: str | None) -> bool:
    """pip and uv send `gzip, deflate[, zstd]`: answer that without a full parse."""
    if not header:
        return False
    if "q=" not in header:
        return "gzip" in (item.strip().lower() for item in header.split(","))
    return parse_accept_header(header)["gzip"] > 0


def page_answer(
    page: Page,
    kind: str,
    repo: RepoInfo,
    accept_encoding: str | None,
    if_none_match: str | None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body for a cached page; shared by this view and the fast path."""
    wants_gzip = accepts_gzip(accept_encoding)
    tag = f"{page.etag}-{_ETAG_SUFFIXES[kind]}" + ("-gz" if wants_gzip else "")
    headers = [
        ("ETag", f'"{tag}"'),
        ("Vary", "Accept, Accept-Encoding"),
        ("Cache-Control", "max-age=0, must-revalidate" + ("" if repo.is_public else ", private")),
    ]
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2), and `*` matches any tag.
    if if_none_match and parse_etags(if_none_match).contains_weak(tag):
        return 304, headers, b""
    body = page.gzipped if wants_gzip else page.body
    headers.append(("Content-Type", _CONTENT_TYPES[kind]))
    if wants_gzip:
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(len(body))))
    return 200, headers, body


def _page_response(page: Page, kind: str, repo: RepoInfo, stale: Stale | None = None) -> Response:
    status, headers, body = page_answer(
        page,
        kind,
        repo,
        request.headers.get("Accept-Encoding"),
        request.headers.get("If-None-Match"),
    )
    response = Response(body or None, status=status, headers=headers)
    if stale is not None:
        # A stale proxy page: nobody may keep it, and the reason goes along.
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Minirepo-Upstream"] = one_line(stale.header())
    return response


def normalize_or_404(project: str) -> str:
    normalized = names.normalized_project(project)
    if normalized is None:
        raise NotFound("Not found")
    return normalized


def existing_project(
    repo: RepoInfo, project: str, kind: str
) -> tuple[str, Page, RepoInfo, Stale | None]:
    """(normalized name, its page, the repository that answers for it: `readable_source`,
    why a proxy's page is stale) after the read checks; 404 for names not in `repo`.

    Every redirect to a project page goes through here, so none is sent for a name that
    does not exist and none is built from anything but the canonical name.
    """
    normalized = normalize_or_404(project)
    if repo.is_group and index().is_tracked(repo, normalized):
        auth.require(Action.READ, repo, normalized)
        members = readable_members(repo, normalized)
        page, contributed = index().tracked_page(repo, members, normalized, kind)
        # As private as the most private member it lists.
        private = next((member for member in contributed if not member.is_public), None)
        source = repo if private is None else dataclasses.replace(repo, read=private.read)
        return normalized, page, source, None
    source = readable_source(repo, normalized)
    if source.is_proxy:
        page, stale = proxies().rendered_page(source, normalized, kind)
        return normalized, page, source, stale
    found = index().project_page(source, normalized, kind)
    if found is None:
        raise NotFound(f"No project named {normalized!r} in {repo.name!r}")
    return normalized, found, source, None


@bp.get("/simple/", defaults={"repo": None})
@bp.get("/<repo>/simple/")
def root(repo: str | None) -> Response:
    info = repository(repo)
    principal = auth.require(Action.READ, info)
    kind = negotiate(request.headers.get("Accept"))
    only = listing_filter(principal, None)
    if info.is_group:
        readable = frozenset(
            member.id for member in group_members(info) if may(principal, Action.READ, member)
        )
        page = index().group_root_page(info, kind, readable, only)
    else:
        page = index().root_page(info, kind, only)
    return _page_response(page, kind, info)


@bp.get("/simple/<project>/", defaults={"repo": None})
@bp.get("/<repo>/simple/<project>/")
@bp.get("/+simple/<project>/", defaults={"repo": None})
@bp.get("/<repo>/+simple/<project>/")
def project_page(repo: str | None, project: str) -> Response:
    info = repository(repo)
    kind = negotiate(request.headers.get("Accept"))
    normalized, page, source, stale = existing_project(info, project, kind)
    if normalized != project:
        return redirect(f"../{normalized}/")
    return _page_response(page, kind, source, stale)


@bp.get("/simple/<project>", defaults={"repo": None})
@bp.get("/<repo>/simple/<project>")
def project_without_slash(repo: str | None, project: str) -> Response:
    info = repository(repo)
    normalized, *_ = existing_project(info, project, negotiate(request.headers.get("Accept")))
    return redirect(f"{normalized}/")
