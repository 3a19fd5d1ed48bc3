"""`/-/search?q=`: projects by name, summary and keywords, as a page or as JSON.

Only the repositories the viewer may read are searched (the same `may` the pages use),
and a token scoped to projects finds only those; a group is never searched itself, its
members are. JSON is asked with `Accept: application/json` or `format=json`.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from minirepo.permissions import Action, Principal, may
from minirepo.services import search as search_service
from minirepo.views.webpage import render, root, ui_blueprint, viewer

bp = ui_blueprint("search", __name__)

PER_PAGE = 20
MAX_PAGE = 500  # past it, a page is a scraper's, not a person's


@bp.get("/-/search")
def search() -> Response:
    query = request.args.get("q", "")
    page = _page_number(request.args.get("page", "1"))
    principal = viewer()
    result = search_service.search(
        query,
        _readable(principal),
        limit=PER_PAGE,
        offset=(page - 1) * PER_PAGE,
        projects=principal.token_projects if principal and principal.token_projects else None,
    )
    if _wants_json():
        return _json(query, result)
    pages = max(1, -(-result.total // PER_PAGE))
    return render(
        "search.html",
        query=query,
        words=search_service.words(query),
        result=result,
        page=page,
        pages=pages,
    )


def _readable(principal: Principal | None) -> list[int]:
    return [info.id for info in search_service.searchable() if may(principal, Action.READ, info)]


def _page_number(raw: str) -> int:
    return int(raw) if raw.isdigit() and 0 < int(raw) <= MAX_PAGE else 1


def _wants_json() -> bool:
    if request.args.get("format") == "json":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _json(query: str, result: search_service.SearchResult) -> Response:
    prefix = root()
    results: list[dict[str, Any]] = [
        {
            "repository": hit.repository,
            "name": hit.name,
            "version": hit.version,
            "summary": hit.summary,
            "url": f"{prefix}/{hit.repository}/project/{hit.normalized}/",
        }
        for hit in result.hits
    ]
    response = jsonify({"query": query, "total": result.total, "results": results})
    response.headers["Cache-Control"] = "no-store"
    return response
