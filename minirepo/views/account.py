"""Logging in and out of the web UI, and the visitor's own API tokens (`/-/tokens`)."""

from __future__ import annotations

from flask import current_app, redirect, request, session
from werkzeug.wrappers import Response as BaseResponse

from minirepo import auth
from minirepo.errors import MinirepoError, one_line
from minirepo.views.webpage import render, root, safe_next, ui_blueprint, viewer

bp = ui_blueprint("account", __name__, url_prefix="/-")


@bp.get("/login")
def login_form() -> BaseResponse:
    target = safe_next(request.args.get("next"))
    if viewer() is not None:
        return redirect(target, code=303)
    return render("login.html", next=target, user="", error="")


@bp.post("/login")
def login() -> BaseResponse:
    """A password login with issue 9's lockout; the session is bound to the password, so
    a password change or a disabled account ends it. The login form itself carries a CSRF
    token too, so another site cannot log a browser into an account of theirs."""
    target = safe_next(request.form.get("next"))
    user = request.form.get("user", "")
    authenticator: auth.Authenticator = current_app.extensions["minirepo.auth"]
    try:
        auth.check_csrf()
        data = authenticator.login(
            user, request.form.get("password", ""), request.remote_addr or ""
        )
    except MinirepoError as exc:
        status = exc.status if exc.status != 401 else 200
        response = render(
            "login.html", status=status, next=target, user=user, error=one_line(exc.reason)
        )
        if "Retry-After" in exc.headers:
            response.headers["Retry-After"] = exc.headers["Retry-After"]
        return response
    session.clear()
    session.update(data)
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> BaseResponse:
    if session.get("uid") is not None:
        auth.check_csrf()
    session.clear()
    return redirect(f"{root()}/", code=303)
