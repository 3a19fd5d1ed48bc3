"""Distribution files and their `.metadata`: immutable, conditional, ranged, streamed.

Files are requested with `Accept-Encoding: identity` and must keep their URL, size and
hash forever (uv.lock stores all three), so they are never compressed or rewritten.

Range requests: one satisfiable byte range gives a 206; one unsatisfiable range gives a
416 with `Content-Range: bytes */<size>`. A Range header we do not serve (several ranges,
another unit, bad syntax) is ignored and the whole file is sent with a 200, which RFC 9110
(14.2) allows; werkzeug alone would answer those with a 416.

With an S3 store the bytes stream from the bucket (a Range becomes a ranged GET); with
`s3_redirect` a GET of a hosted file is answered with a 307 to a presigned URL instead.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
from typing import Any, BinaryIO

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import parse_range_header
from werkzeug.wsgi import wrap_file

from minirepo import errors, names
from minirepo.errors import NotFound
from minirepo.services import provenance
from minirepo.services.index import StoredFile
from minirepo.services.repos import RepoInfo
from minirepo.views.common import (
    fetches,
    index,
    proxies,
    readable_source,
    repository,
    services,
    settings,
)

bp = Blueprint("files", __name__)

IMMUTABLE = "max-age=31536000, immutable"


def _cache_control(repo: RepoInfo) -> str:
    """Immutable, unless the repository lets owners replace a file under its name: then
    the URL stays and the bytes change, so caches must revalidate (by ETag)."""
    scope = "public, " if repo.is_public else "private, "
    return scope + ("no-cache" if repo.allows_overwrite else IMMUTABLE)


def _canonical_project_or_404(project: str) -> str:
    """File URLs carry the normalized name; any other spelling is not a file URL."""
    if names.normalized_project(project) != project:
        raise NotFound("Not found")
    return project


@bp.get("/files/<project>/<filename>", defaults={"repo": None})
@bp.get("/<repo>/files/<project>/<filename>")
def download(repo: str | None, project: str, filename: str) -> Response:
    project = _canonical_project_or_404(project)
    distribution = filename.removesuffix(".metadata").removesuffix(".provenance")
    info = readable_source(repository(repo), project, distribution)
    counted = distribution == filename and request.method == "GET"
    _refuse_blocked(info, project, distribution, counted)
    if filename.endswith(".metadata"):
        return _metadata(info, project, distribution)
    if filename.endswith(".provenance"):
        return _provenance(info, project, distribution)
    if request.method == "GET" and (direct := index().direct_url(info, project, filename)):
        return _redirect(*direct)
    if info.is_proxy:
        opened = _proxied(info, project, filename)
        if isinstance(opened, Response):
            return opened
        handle, stored = opened
    else:
        handle, stored = index().open_file(info, project, filename)
    try:
        # A file on disk goes to waitress's file wrapper (large blocks; Range by seeking);
        # any other handle (an S3 object) iterates in its own large blocks, and a Range
        # seeks it with a ranged GET, never by reading the bytes before it.
        body = (
            wrap_file(request.environ, handle) if isinstance(handle, io.BufferedReader) else handle
        )
        response = Response(body, mimetype="application/octet-stream", direct_passthrough=True)
    except BaseException:
        handle.close()
        raise
    try:
        response.content_length = stored.size
        response.set_etag(stored.sha256)
        response.last_modified = stored.upload_time.replace(tzinfo=datetime.timezone.utc)
        response.headers["Cache-Control"] = _cache_control(info)
        response = _conditional(response, stored.size)
    except BaseException:
        response.close()
        raise
    if _sends_the_file(response):
        services().downloads.count(stored.id)
    return response


def _refuse_blocked(repo: RepoInfo, project: str, filename: str, counted: bool) -> None:
    """403 for a file the repository's policy blocks, before anything is read or fetched
    (a proxy never fetches it); the reason is the line its page lists it as yanked with.
    `counted`: a download of the file itself, which the metrics count when an advisory
    names it (what `warn` is for)."""
    verdict = index().verdicts.of_file(repo.id, repo.level, project, filename)
    if not verdict.decisions:
        return
    if counted:
        worst = verdict.decisions[0]
        current_app.extensions["minirepo.metrics"].advised(
            "blocked" if verdict.reason else worst.action, worst.finding.severity
        )
    if verdict.reason:
        raise errors.Forbidden(verdict.reason)


def _redirect(url: str, stored: StoredFile) -> Response:
    """`s3_redirect`: a 307 to a presigned URL (valid minutes, `minirepo.s3store`), so the
    bytes come from the store or the CDN in front of it. 307, not 302: the client repeats
    the same GET (with its Range) there. Never cached: the URL expires. The download is
    counted here, as `_sends_the_file` would (the store tells us nothing)."""
    response = Response(status=307)
    response.headers["Location"] = url
    response.headers["Cache-Control"] = "no-store"
    if str(request.headers.get("Range", "bytes=0-")).startswith("bytes=0-"):
        services().downloads.count(stored.id)
    return response


def _sends_the_file(response: Response) -> bool:
    """A download to count: a GET answered with the whole file, or with a range from its
    first byte (a resumed download's later ranges, HEAD and 304 are not new downloads)."""
    if request.method != "GET":
        return False
    if response.status_code == 206:
        return str(response.headers.get("Content-Range", "")).startswith("bytes 0-")
    return response.status_code == 200


def _proxied(repo: RepoInfo, project: str, filename: str) -> tuple[BinaryIO, StoredFile] | Response:
    """A proxy's file: opened when it holds it (its use noted for the LRU order), else
    streamed while it is fetched; opened after all when it was kept meanwhile."""
    try:
        opened = index().open_file(repo, project, filename)
    except NotFound:
        fetched = _fetched(repo, project, filename)
        if fetched is not None:
            return fetched
        opened = index().open_file(repo, project, filename)
    proxies().note_use(repo, filename)
    return opened


def _fetched(repo: RepoInfo, project: str, filename: str) -> Response | None:
    """A file the proxy does not hold, streamed while it is fetched (`fetches`); None
    when another request kept it meanwhile."""
    entry = proxies().file_entry(repo, project, filename)
    if proxies().is_offline(repo):
        raise NotFound(f"offline: {filename} is not cached in {repo.name}")
    keep = bool(entry.sha256) and proxies().keeps_files(repo, settings().data)
    download = fetches().download(repo, proxies().client(repo), entry, keep=keep)
    if download is None:
        return None
    response = Response(download, mimetype="application/octet-stream", direct_passthrough=True)
    if download.size is not None:
        response.content_length = download.size
    if entry.sha256:
        response.set_etag(entry.sha256)
    response.headers["Cache-Control"] = _cache_control(repo)
    return response


def _metadata(repo: RepoInfo, project: str, filename: str) -> Response:
    try:
        content = index().core_metadata(repo, project, filename)
    except NotFound:
        if not repo.is_proxy:
            raise
        content = proxies().core_metadata(repo, project, filename)
    response = Response(content, content_type="text/plain; charset=utf-8")
    response.set_etag(hashlib.sha256(content).hexdigest())
    response.headers["Cache-Control"] = _cache_control(repo)
    return _conditional(response, len(content))


def _provenance(repo: RepoInfo, project: str, filename: str) -> Response:
    """PEP 740: a hosted file's verified attestations with their publisher; a proxy's as
    its upstream serves them (fetched once, kept verbatim)."""
    if repo.is_proxy:
        content = proxies().provenance(repo, project, filename)
    else:
        found = provenance.provenance_of(index().stored_file(repo, project, filename).id)
        if found is None:
            raise NotFound(f"No verified provenance for {filename!r}")
        content = json.dumps(found).encode()
    response = Response(content, content_type="application/json")
    response.set_etag(hashlib.sha256(content).hexdigest())
    response.headers["Cache-Control"] = _cache_control(repo)
    return _conditional(response, len(content))


def _conditional(response: Response, size: int) -> Response:
    """304, 206 or 416 as the request's conditions and Range say; closes on a 416."""
    response.accept_ranges = "bytes"
    try:
        response.make_conditional(_range_environ(size), accept_ranges="bytes", complete_length=size)
    except RequestedRangeNotSatisfiable:
        response.close()
        refusal = errors.to_response(416, "Requested range not satisfiable")
        refusal.headers["Content-Range"] = f"bytes */{size}"
        refusal.headers["Accept-Ranges"] = "bytes"
        return refusal
    return response


def _range_environ(size: int) -> dict[str, Any]:
    """The request's environ, with a Range header werkzeug would mishandle fixed or dropped.

    Dropped: several ranges, a unit other than bytes, bad syntax (werkzeug: 416; RFC 9110:
    ignore it). Fixed: a suffix longer than the file means the whole file (RFC 9110
    14.1.3; werkzeug: 416).
    """
    environ: dict[str, Any] = request.environ
    header = environ.get("HTTP_RANGE")
    if header is None:
        return environ
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return {key: value for key, value in environ.items() if key != "HTTP_RANGE"}
    start, _stop = parsed.ranges[0]
    if start < 0 and -start >= size:
        return {**environ, "HTTP_RANGE": "bytes=0-"}
    return environ
