"""The legacy upload API (`:action=file_upload`), on every URL spelling clients use.

A POST is never redirected: twine, poetry, pdm and hatch refuse redirects and flit turns
them into a GET that "succeeds" with nothing uploaded.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from werkzeug.exceptions import ClientDisconnected

from minirepo import auth
from minirepo.errors import Forbidden, InvalidUpload, MethodNotAllowed, Unauthorized
from minirepo.permissions import Action, Principal, ProjectInfo
from minirepo.services import groups
from minirepo.services.repos import RepoInfo
from minirepo.services.upload import (
    DIGEST_FIELDS,
    Checked,
    SpoolFile,
    Uploader,
    UploadForm,
    check_form,
)
from minirepo.views.common import index, repository, settings, uploads

bp = Blueprint("upload", __name__)


def read_form() -> UploadForm:
    """Parse the multipart body; file parts were streamed to spool files as they came."""
    try:
        form = request.form
        part = request.files.get("content")
        signature = request.files.get("gpg_signature")
    except ClientDisconnected as exc:
        raise InvalidUpload("The request body is shorter than its Content-Length") from exc
    content = part.stream if part is not None else None
    return UploadForm(
        action=form.get(":action", ""),
        protocol_version=form.get("protocol_version", ""),
        name=form.get("name", ""),
        version=form.get("version", ""),
        filetype=form.get("filetype", ""),
        digests={field: form.get(field, "") for field in DIGEST_FIELDS},
        filename=(part.filename or "") if part is not None else "",
        content=content if isinstance(content, SpoolFile) else None,
        attestations=form.get("attestations", ""),
        gpg_signature=_size(signature.stream) if signature is not None else None,
    )


def _size(stream: object) -> int:
    """A spooled part's size (werkzeug streamed it to a spool file or memory)."""
    seek = getattr(stream, "seek", None)
    return int(seek(0, 2)) if seek is not None else 0


@bp.post("/", defaults={"repo": None})
@bp.post("/legacy", defaults={"repo": None})
@bp.post("/legacy/", defaults={"repo": None})
@bp.post("/<repo>")
@bp.post("/<repo>/")
@bp.post("/<repo>/legacy")
@bp.post("/<repo>/legacy/")
def upload(repo: str | None) -> Response:
    if not request.headers.get("Authorization") and auth.has_session_cookie():
        # A web session never publishes through the API: a page of this site that a
        # script got into could otherwise upload as the browser's user.
        raise Unauthorized(
            "The upload API takes credentials in the Authorization header (twine, uv "
            "publish); in a browser use the upload form on the repository page"
        )
    info = index().upload_target(repository(repo))
    principal = auth.require(Action.UPLOAD, info)  # before the body is read
    assert principal is not None  # noqa: S101 - uploads are never anonymous (refusal())
    publish(info, principal, check_form(read_form(), settings()))
    return Response("OK\n", mimetype="text/plain")


def publish(info: RepoInfo, principal: Principal, checked: Checked) -> None:
    """Store a checked file for `principal` in `info` (an upload target), with the checks
    made again inside the write transaction; shared with the web UI's upload form."""

    def authorize(project: ProjectInfo | None, replacing: bool) -> None:
        auth.confirm_principal()  # a token revoked while the body streamed stores nothing
        auth.require(Action.UPLOAD, info, project or checked.dist.normalized)
        locked = groups.origin_lock(info.id, info.name, checked.dist.normalized)
        if locked is not None:
            raise Forbidden(locked)
        if replacing and project is not None:
            auth.require_replace(info, project)

    uploader = Uploader(principal.user_id, principal.name)
    generation = uploads().publish(info, checked, uploader, request.remote_addr or "", authorize)
    if generation is not None:
        index().note_generation(info, generation)


@bp.post("/simple", defaults={"repo": None})
@bp.post("/simple/", defaults={"repo": None})
@bp.post("/simple/<path:rest>", defaults={"repo": None})
@bp.post("/<repo>/simple")
@bp.post("/<repo>/simple/")
@bp.post("/<repo>/simple/<path:rest>")
def upload_to_index_url(repo: str | None, rest: str = "") -> Response:
    """twine and uv post to whatever URL they are given, and the index URL is the one
    people have at hand: the refusal names the URL that takes the upload (built from the
    request, so it is the address this client reaches the server by)."""
    target = f"{request.url_root}{repo}/" if repo else request.url_root
    raise MethodNotAllowed(f"Uploads go to {target}, not the /simple/ index URL")
