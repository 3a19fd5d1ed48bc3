"""The viewer's own API tokens (`/-/tokens`): list, create with a scope and an expiry, revoke.

Tokens are made by the same `accounts.create_token` as the CLI and the JSON API, so the
same rules hold and the same audit line is written. The secret is shown once, in the
answer to the form post itself (`no-store`): never in a redirect or a flash message,
which would keep it in the session cookie.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from flask import Response, flash, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from minirepo.errors import MinirepoError, NotFound, Unauthorized, one_line
from minirepo.permissions import PERMISSIONS, Action, Principal, may
from minirepo.services import accounts, repos
from minirepo.services.accounts import MAX_EXPIRES
from minirepo.views.webpage import form_caller, render, root, ui_blueprint, viewer

bp = ui_blueprint("tokens", __name__, url_prefix="/-/tokens")

# Tokens are for machines that outlive a login, but not forever unless asked.
DEFAULT_DAYS = "90"


def _reader() -> Principal:
    """Anyone logged in may see their tokens (a token or a Basic password too: reading)."""
    principal = viewer()
    if principal is None:
        raise Unauthorized("Log in to manage your tokens")
    return principal


def _usable_repositories(principal: Principal) -> list[str]:
    """The repositories a token of this account could do anything in."""
    return [item.info.name for item in repos.summaries() if may(principal, Action.READ, item.info)]


def _page(
    principal: Principal,
    *,
    status: int = 200,
    error: str = "",
    form: Mapping[str, str] | None = None,
    chosen: tuple[str, ...] = (),
) -> Response:
    tokens = sorted(accounts.list_tokens(principal.name), key=lambda t: t.created, reverse=True)
    return render(
        "tokens.html",
        status=status,
        tokens=tokens,
        repositories=_usable_repositories(principal),
        permissions=list(PERMISSIONS),
        max_days=MAX_EXPIRES.days,
        error=error,
        form=form or {"days": DEFAULT_DAYS, "permission": "upload"},
        chosen=chosen,
    )


@bp.get("")
def token_list() -> Response:
    return _page(_reader())


@bp.post("")
def token_create() -> Response:
    principal = form_caller()
    chosen = tuple(request.form.getlist("repositories"))
    try:
        new = _create(principal, chosen)
    except MinirepoError as exc:
        return _page(
            principal,
            status=exc.status,
            error=one_line(exc.reason),
            form=request.form,
            chosen=chosen,
        )
    response = render("token_new.html", secret=new.secret, prefix=new.prefix)
    response.headers["Cache-Control"] = "no-store"
    return response


def _create(principal: Principal, chosen: tuple[str, ...]) -> accounts.NewToken:
    usable = _usable_repositories(principal)
    for name in chosen:
        if name not in usable:
            raise NotFound(f"No repository named {name!r}")
    return accounts.create_token(
        principal.name,
        permission=request.form.get("permission", "upload"),
        repositories=chosen,
        projects=_names(request.form.get("projects", "")),
        expires=accounts.token_lifetime(request.form.get("days", "").strip()),
        description=request.form.get("description", ""),
        actor=principal.name,
    )


def _names(text: str) -> tuple[str, ...]:
    """Project names as typed: separated by commas or spaces."""
    return tuple(name for name in re.split(r"[\s,]+", text) if name)


def _own_token(principal: Principal, token_id: int) -> accounts.TokenInfo:
    for item in accounts.list_tokens(principal.name):
        if item.id == token_id:
            return item
    raise NotFound(f"You have no token #{token_id}")


@bp.get("/<int:token_id>/revoke")
def revoke_form(token_id: int) -> Response:
    """The confirm step as a page of its own, so it works without JavaScript."""
    principal = _reader()
    return render("token_revoke.html", token=_own_token(principal, token_id))


@bp.post("/<int:token_id>/revoke")
def revoke(token_id: int) -> BaseResponse:
    principal = form_caller()
    token = _own_token(principal, token_id)
    prefix = accounts.revoke_token(str(token.id), actor=principal.name, owner=principal.user_id)
    flash(f"Token {prefix} revoked: clients using it are refused from now on.", "info")
    return redirect(f"{root()}/-/tokens", code=303)
