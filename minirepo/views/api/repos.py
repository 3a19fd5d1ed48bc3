"""The JSON API's repositories, grants and projects: yank, delete, maintainers, owner."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from minirepo.permissions import Action, refusal
from minirepo.services import projects, repos
from minirepo.services.repos import RepoInfo
from minirepo.views.api.common import (
    bp,
    caller,
    changed,
    json_body,
    require,
    require_admin,
    text,
)
from minirepo.views.common import index, repository, settings


@bp.get("/repos")
def repo_list() -> Response:
    principal = caller()
    visible = []
    for item in repos.summaries():
        if refusal(principal, Action.READ, item.info) is None:
            visible.append(_repo_json(item.info, item))
    return jsonify(repositories=visible)


def _repo_json(info: RepoInfo, summary: repos.RepoSummary | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": info.name,
        "kind": info.kind,
        "read": info.read,
        "overwrite": info.overwrite,
        "default_role": info.default_role,
    }
    if summary is not None:
        data.update(
            description=summary.description,
            projects=summary.projects,
            files=summary.files,
            bytes=summary.bytes,
        )
    return data


@bp.post("/repos")
def repo_create() -> tuple[Response, int]:
    principal = require_admin()
    body = json_body()
    name = text(body, "name") or ""
    row = repos.create(
        name,
        read=text(body, "read", "anonymous") or "anonymous",
        overwrite=text(body, "overwrite", "never") or "never",
        default_role=text(body, "default_role", "none") or "none",
        description=text(body, "description", "") or "",
        actor=principal.name,
    )
    return jsonify(_repo_json(repos.info_of(row))), 201


@bp.patch("/repos/<repo>")
def repo_set(repo: str) -> Response:
    principal = require_admin()
    body = json_body()
    row = repos.update(
        repository(repo).name,
        read=text(body, "read"),
        overwrite=text(body, "overwrite"),
        default_role=text(body, "default_role"),
        description=text(body, "description"),
        actor=principal.name,
    )
    index().forget_repo(row.name)
    return jsonify(_repo_json(repos.info_of(row)))


@bp.delete("/repos/<repo>")
def repo_delete(repo: str) -> Response:
    principal = require_admin()
    info = repository(repo)
    repos.check_deletable(info.name, settings().default_repository)
    force = request.args.get("force", "").lower() in ("1", "true", "yes")
    count = repos.delete(info.name, force=force, actor=principal.name)
    changed(info)
    return jsonify(deleted=info.name, files=count)


@bp.get("/repos/<repo>/grants")
def grant_list(repo: str) -> Response:
    info = repository(repo)
    require(Action.GRANT, info)
    rows = repos.grants(info.name)
    return jsonify(grants=[{"user": user, "role": role} for _, user, role in rows])


@bp.put("/repos/<repo>/grants/<user>")
def grant_put(repo: str, user: str) -> Response:
    info = repository(repo)
    principal = require(Action.GRANT, info)
    role = text(json_body(), "role") or ""
    repos.grant(user, info.name, role, actor=principal.name)
    return jsonify(user=user, repository=info.name, role=role)


@bp.delete("/repos/<repo>/grants/<user>")
def grant_delete(repo: str, user: str) -> Response:
    info = repository(repo)
    principal = require(Action.GRANT, info)
    repos.revoke(user, info.name, actor=principal.name)
    return jsonify(user=user, repository=info.name, role=None)


@bp.get("/repos/<repo>/projects/<project>")
def project_show(repo: str, project: str) -> Response:
    info = repository(repo)
    require(Action.READ, info, project)
    details = projects.show(info.name, project)
    return jsonify(
        repository=details.repository,
        name=details.name,
        normalized=details.normalized,
        owner=details.owner or None,
        maintainers=details.maintainers,
        versions=[
            {"version": version, "files": files, "yanked": yanked}
            for version, files, yanked in details.versions
        ],
    )


@bp.put("/repos/<repo>/projects/<project>/maintainers/<user>")
def maintainer_put(repo: str, project: str, user: str) -> Response:
    info = repository(repo)
    principal = require(Action.MANAGE, info, project)
    projects.add_maintainer(info.name, project, user, actor=principal.name)
    return jsonify(project=project, maintainer=user)


@bp.delete("/repos/<repo>/projects/<project>/maintainers/<user>")
def maintainer_delete(repo: str, project: str, user: str) -> Response:
    info = repository(repo)
    principal = require(Action.MANAGE, info, project)
    projects.remove_maintainer(info.name, project, user, actor=principal.name)
    return jsonify(project=project, maintainer=None)


@bp.put("/repos/<repo>/projects/<project>/owner")
def owner_put(repo: str, project: str) -> Response:
    info = repository(repo)
    principal = require(Action.MANAGE, info, project)
    user = text(json_body(), "user") or ""
    projects.set_owner(info.name, project, user, actor=principal.name)
    return jsonify(project=project, owner=user)


@bp.post("/repos/<repo>/projects/<project>/versions/<version>/yank")
@bp.post("/repos/<repo>/projects/<project>/versions/<version>/unyank")
def yank(repo: str, project: str, version: str) -> Response:
    info = repository(repo)
    principal = require(Action.MANAGE, info, project)
    yanked = request.path.endswith("/yank")
    reason = (text(json_body(), "reason", "") or "") if yanked else ""
    generation = projects.set_yanked(
        info.name,
        project,
        version,
        yanked=yanked,
        reason=reason,
        actor=principal.name,
        remote_addr=request.remote_addr or "",
    )
    index().note_generation(info, generation)
    return jsonify(project=project, version=version, yanked=yanked, reason=reason)


@bp.delete("/repos/<repo>/projects/<project>", defaults={"version": None, "filename": None})
@bp.delete("/repos/<repo>/projects/<project>/versions/<version>", defaults={"filename": None})
@bp.delete("/repos/<repo>/projects/<project>/versions/<version>/files/<filename>")
def delete(repo: str, project: str, version: str | None, filename: str | None) -> Response:
    info = repository(repo)
    principal = require(Action.MANAGE, info, project)
    deleted = projects.delete(
        info.name,
        project,
        version,
        filename,
        actor=principal.name,
        remote_addr=request.remote_addr or "",
    )
    changed(info)
    return jsonify(deleted=deleted)
