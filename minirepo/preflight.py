"""Deciding on a request with a large body from its head, before the body is received.

waitress receives a whole body (spooling it to disk past 512 KiB) before the app runs, so
an anonymous client could make the server write gigabytes only to be told 401 at the end.
`minirepo.waitress_fixes` asks this module about every request whose body is larger than
`SMALL_BODY`: `quick()` runs in waitress's I/O thread and may only look at the head;
`check()` runs in a helper thread and may read the database and run the password KDF.

Both apply the rules the app itself applies (`auth.refusal_error`, the cross-site rule),
never stricter ones, so a request let through here is still judged by the view, and a
request refused here would have been refused after its body too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import peewee
from flask import Flask
from itsdangerous import BadSignature
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_cookie
from werkzeug.routing import MapAdapter

from minirepo import crosssite
from minirepo.auth import Authenticator, parse_basic, refusal_error
from minirepo.db import Database
from minirepo.errors import Forbidden, MinirepoError, Unauthorized
from minirepo.permissions import Action, Principal, upload_anywhere_refusal
from minirepo.services import projects
from minirepo.services.index import Index

log = logging.getLogger(__name__)

# Bodies up to this size are taken in memory and judged by the app as before; larger ones
# are judged first. No client's upload form is this small, and a refused request costs
# the server at most this much.
SMALL_BODY = 64 * 1024
UPLOAD_ENDPOINT = "upload.upload"

Environ = Mapping[str, Any]


class Preflight:
    def __init__(
        self,
        app: Flask,
        authenticator: Authenticator,
        index: Index,
        database: Database,
        public_url: str,
    ) -> None:
        self.authenticator = authenticator
        self.index = index
        self.database = database
        self.public_url = public_url
        self._cookie_name = str(app.config["SESSION_COOKIE_NAME"])
        self._sessions = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        self._routes: MapAdapter = app.url_map.bind("localhost")

    def quick(self, environ: Environ) -> MinirepoError | None:
        """A refusal decided from the head alone, or None: then `check()` must decide."""
        reason = crosssite.environ_refusal(environ, self.public_url)
        if reason is not None:
            return Forbidden(reason)
        header = environ.get("HTTP_AUTHORIZATION")
        if header:
            try:
                if parse_basic(header) is None:
                    return Unauthorized("Authentication required")
            except MinirepoError as exc:
                return exc
        elif self._session(environ) is None:
            return Unauthorized("Authentication required")
        return None

    def check(self, environ: Environ) -> MinirepoError | None:
        """The refusal the app would give once the body is in, or None to receive it.

        A database error lets the request through: the app then answers it as it answers
        any request while the database is busy, within the spool bound.
        """
        try:
            with self.database.activated():
                principal = self._principal(environ)
                if principal is None:
                    return Unauthorized("Authentication required")
                return self._upload_refusal(environ, principal)
        except MinirepoError as exc:
            return exc
        except peewee.PeeweeException as exc:
            log.info("could not judge a request before its body: %s", exc)
            return None

    def _session(self, environ: Environ) -> dict[str, Any] | None:
        value = parse_cookie(environ.get("HTTP_COOKIE", "")).get(self._cookie_name)
        if not value or self._sessions is None:
            return None
        try:
            data = self._sessions.loads(value)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None

    def _principal(self, environ: Environ) -> Principal | None:
        header = environ.get("HTTP_AUTHORIZATION")
        if header:
            return self.authenticator.authenticate(header, environ.get("REMOTE_ADDR", ""))
        data = self._session(environ)
        return self.authenticator.session_principal(data) if data is not None else None

    def _upload_refusal(self, environ: Environ, principal: Principal) -> MinirepoError | None:
        """For the upload API, the repository-wide check its view makes before the form."""
        try:
            endpoint, args = self._routes.match(
                environ.get("PATH_INFO", "/"), method=environ.get("REQUEST_METHOD", "POST")
            )
        except HTTPException:
            return None  # no such route: the app gives its own answer
        if endpoint != UPLOAD_ENDPOINT:
            return None
        repo = self.index.upload_target(self.index.repo(args.get("repo")))
        refused = refusal_error(principal, Action.UPLOAD, repo)
        if refused is not None:
            return refused
        maintains = projects.maintains_any(principal.user_id, repo.id)
        anywhere = upload_anywhere_refusal(principal, repo, maintains)
        return Forbidden(anywhere.reason) if anywhere is not None else None
