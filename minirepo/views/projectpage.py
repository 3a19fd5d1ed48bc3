"""A project's page: versions, files, install line, README, downloads; yank and delete.

`/<repo>/project/<name>/` (and `/project/<name>/` for the default repository: `project`
is a reserved repository name) shows the newest release not yanked;
`/<repo>/project/<name>/<version>/` shows that one. A project the viewer may not read
answers like a missing one, and the 404 page suggests only names the viewer may read.

Yank, unyank and delete are forms with a confirm step that needs no JavaScript: the
first post answers a confirmation page, the second (with `confirm=yes`) acts.
"""

from __future__ import annotations

from flask import flash, redirect, request
from markupsafe import Markup
from werkzeug.wrappers import Response as BaseResponse

from minirepo import auth, names, svgchart
from minirepo.errors import NotFound
from minirepo.permissions import Action, may
from minirepo.services import policy, projects, projectview, readme
from minirepo.services.projectview import Part
from minirepo.services.repos import RepoInfo
from minirepo.services.setup_snippets import Setup
from minirepo.units import format_size
from minirepo.views.api.common import changed, require
from minirepo.views.common import (
    index,
    proxies,
    readable_members,
    readable_source,
    repository,
    services,
)
from minirepo.views.webpage import (
    form_caller,
    page_stamp,
    refusal_page,
    render,
    render_cached,
    root,
    ui_blueprint,
    viewer,
)

bp = ui_blueprint("projectpage", __name__)
bp.add_app_template_filter(format_size, "filesize")

CHART_DAYS = 30


@bp.app_template_global()
def install_line(base_url: str, repository: RepoInfo, requirement: str) -> str:
    """The setup panel's pip line (trusted host on plain http, the token's place for a
    private repository) for one requirement: one place builds it for every page."""
    setup = Setup(repository.name, None, private=not repository.is_public)
    return setup.install_commands(base_url)[0].text.removesuffix("PACKAGE") + requirement


ACTIONS = ("yank", "unyank", "delete")


@bp.get("/project/<name>/", defaults={"repo": None, "version": None})
@bp.get("/project/<name>/<version>/", defaults={"repo": None})
@bp.get("/<repo>/project/<name>/", defaults={"version": None})
@bp.get("/<repo>/project/<name>/<version>/")
def project_page(repo: str | None, name: str, version: str | None) -> BaseResponse:
    normalized = names.normalized_project(name)
    try:
        info = repository(repo)
        stamp = page_stamp(info)
        if normalized is None:
            raise NotFound(f"No project named {name!r}")
        if normalized != name:
            return redirect(_page_url(info, normalized, version), code=301)
        view = projectview.assemble(normalized, _parts(info, normalized), version)
    except NotFound as exc:
        refused: BaseResponse = refusal_page(exc, _suggestions(normalized or name.lower()))
        return refused
    downloads = services().downloads
    counts = downloads.totals(view.file_ids)
    chart = svgchart.bar_chart(
        downloads.daily(view.file_ids, days=CHART_DAYS),
        label=f"Downloads of {view.name} per day, last {CHART_DAYS} days",
    )
    readme_html = readme.rendered(view.release, index().store) if view.release is not None else ""
    findings: tuple[policy.Decision, ...] = ()
    if view.shown is not None and not info.is_group:
        verdicts = index().verdicts.project(info.id, info.level, normalized)
        findings = verdicts.of(view.shown.version).decisions
    return render_cached(
        "project.html",
        info,
        stamp,
        repository=info,
        project=view,
        page_url=_page_url(info, normalized),
        counts=counts,
        total=sum(counts.values()),
        chart=Markup(chart),  # noqa: S704 - svgchart escapes every text it writes
        readme=Markup(readme_html),  # noqa: S704 - services.readme sanitises it (nh3)
        manages=_manages(info, normalized),
        upstream=projectview.upstream_host(info) if info.is_proxy else "",
        findings=findings,
    )


def _parts(info: RepoInfo, normalized: str) -> list[Part]:
    """The sources of the page the viewer may read, after the same checks as the simple
    page of `info` (a group: the member that answers, or every member of a tracked name)."""
    if info.is_group and index().is_tracked(info, normalized):
        auth.require(Action.READ, info, normalized)
        members = readable_members(info, normalized)
    else:
        members = [readable_source(info, normalized)]
    found = []
    for member in members:
        try:
            found.append(_part(member, normalized, _origin(info, member)))
        except NotFound:
            continue
    return found


def _part(repo: RepoInfo, normalized: str, origin: str) -> Part:
    if repo.is_proxy:
        listing = proxies().listed(repo, normalized)
        return projectview.proxy_part(repo, normalized, listing, origin)
    part = projectview.local_part(repo, normalized, origin)
    if part is None:
        raise NotFound(f"No project named {normalized!r} in {repo.name!r}")
    return part


def _origin(info: RepoInfo, member: RepoInfo) -> str:
    """The member a group's file comes from ("" outside a group: a proxy page names its
    upstream once, at the top)."""
    if not info.is_group:
        return ""
    if member.is_proxy:
        return f"{member.name} ({projectview.upstream_host(member)})"
    return member.name


def _manages(info: RepoInfo, normalized: str) -> bool:
    """Whether the viewer sees the yank and delete buttons: the rule `require` applies."""
    principal = viewer()
    if principal is None or info.is_group or info.is_proxy:
        return False
    people = projects.info(info.id, normalized)
    return may(principal, Action.MANAGE, info, people or normalized)


def _suggestions(normalized: str) -> list[tuple[str, str]]:
    principal = viewer()
    found = projectview.suggestions(
        normalized, lambda repo, name: may(principal, Action.READ, repo, name)
    )
    return [(f"{name} ({repo})", _page_url_of(repo, name)) for repo, name in found]


def _page_url(info: RepoInfo, normalized: str, version: str | None = None) -> str:
    url = _page_url_of(info.name, normalized)
    return f"{url}{version}/" if version else url


def _page_url_of(repo: str, normalized: str) -> str:
    return f"{root()}/{repo}/project/{normalized}/"


@bp.post("/<repo>/project/<name>/<version>/<action>")
def act(repo: str, name: str, version: str, action: str) -> BaseResponse:
    """Yank, unyank or delete a release: a confirmation page first, then the change."""
    if action not in ACTIONS:
        raise NotFound("Not found")
    form_caller()  # a login session with its CSRF token, never an API token
    info = repository(repo)
    normalized = names.normalized_project(name) or name
    principal = require(Action.MANAGE, info, normalized)
    if request.form.get("confirm") != "yes":
        return render(
            "project_confirm.html",
            repository=info,
            name=normalized,
            version=version,
            action=action,
            page_url=_page_url(info, normalized, version),
        )
    remote = request.remote_addr or ""
    if action == "delete":
        deleted = projects.delete(
            info.name, normalized, version, actor=principal.name, remote_addr=remote
        )
        changed(info)
        flash(f"Deleted {normalized} {version}: {len(deleted)} file(s).", "warning")
        return redirect(_page_url(info, normalized), code=303)
    reason = request.form.get("reason", "") if action == "yank" else ""
    generation = projects.set_yanked(
        info.name,
        normalized,
        version,
        yanked=action == "yank",
        reason=reason,
        actor=principal.name,
        remote_addr=remote,
    )
    index().note_generation(info, generation)
    flash(f"{action.capitalize()}ed {normalized} {version}.", "info")
    return redirect(_page_url(info, normalized, version), code=303)
