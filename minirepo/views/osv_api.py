"""OSV's query API over the advisories in force, so `pip-audit -s osv --osv-url
http://box:8080/-/osv/v1/query` audits a lab's machines without the internet.

The shapes are OSV's (https://google.github.io/osv.dev/post-v1-query/): `query` answers
full records, `querybatch` their ids and `modified` only. Only the PyPI ecosystem is held;
any other answers no vulnerabilities. Reading needs the default repository's read right.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from minirepo import auth, names, osv
from minirepo.errors import BadRequest, TooLarge
from minirepo.permissions import Action
from minirepo.views.common import index

bp = Blueprint("osv_api", __name__)

MAX_BODY = 1024 * 1024
MAX_QUERIES = 1000  # OSV's own limit per batch


@bp.post("/-/osv/v1/query")
def query() -> Response:
    _require_read()
    return _json({"vulns": [osv.to_osv(record) for record in _matches(_body())]})


@bp.post("/-/osv/v1/querybatch")
def querybatch() -> Response:
    _require_read()
    queries = _body().get("queries")
    if not isinstance(queries, list) or len(queries) > MAX_QUERIES:
        raise BadRequest(f"'queries' must be a list of at most {MAX_QUERIES} queries")
    results = [
        {
            "vulns": [
                {"id": record.id, "modified": osv.to_osv(record)["modified"]}
                for record in _matches(_as_object(each))
            ]
        }
        for each in queries
    ]
    return _json({"results": results})


def _require_read() -> None:
    auth.require(Action.READ, index().repo(None))


def _body() -> dict[str, Any]:
    length = request.content_length
    if length is None or length > MAX_BODY:
        raise TooLarge("An OSV query body is at most 1 MiB, with a Content-Length")
    try:
        document = json.loads(request.get_data(cache=False))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("The body is not JSON") from exc
    return _as_object(document)


def _as_object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("A query is a JSON object: {package: {name, ecosystem}, version}")
    return value


def _matches(query: dict[str, Any]) -> list[osv.Record]:
    """The records in force that affect the query's package at its version (every one
    for the package when no version is given)."""
    if "commit" in query:
        raise BadRequest("Commit queries are not supported here: give package and version")
    package = query.get("package")
    if not isinstance(package, dict) or not isinstance(package.get("name"), str):
        raise BadRequest("A query names a package: {package: {name, ecosystem}}")
    ecosystem = package.get("ecosystem", "PyPI")
    version = query.get("version")
    if version is not None and not isinstance(version, str):
        raise BadRequest("'version' is a string")
    normalized = names.normalized_project(package["name"])
    if ecosystem != "PyPI" or normalized is None:
        return []
    found = []
    for record in index().verdicts.lookup.records(normalized):
        entries = [entry for entry in record.affected if entry.name == normalized]
        if version is None or any(osv.affects(entry, version) for entry in entries):
            found.append(record)
    return found


def _json(document: dict[str, Any]) -> Response:
    response = Response(json.dumps(document), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
