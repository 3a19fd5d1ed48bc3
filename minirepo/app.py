"""`create_app(settings)`: one app per data folder, no module state, so tests build many."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import IO, Any, cast

import peewee
from flask import Flask, Request, Response, current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.formparser import FormDataParser
from werkzeug.routing import Rule

from minirepo import accesslog, auth, crosssite, errors, metrics, views
from minirepo.config import Settings
from minirepo.db import is_disk_full, is_locked
from minirepo.fastpath import FastPages, PathTokens, UiPages
from minirepo.forms import LimitedFormParser
from minirepo.preflight import Preflight
from minirepo.services.container import Services
from minirepo.services.datafolder import DataFolder, open_for_serving
from minirepo.services.downloads import DownloadCounter
from minirepo.services.fetches import Fetches
from minirepo.services.health import free_bytes
from minirepo.services.index import Index
from minirepo.services.proxies import Proxies
from minirepo.services.upload import SpoolFile, UploadService
from minirepo.uipages import RenderedPages
from minirepo.views import webpage
from minirepo.waitress_fixes import SpoolBudget

log = logging.getLogger(__name__)

# Form fields other than files (a README in `description`) are held in memory up to this.
MULTIPART_SLACK = 1024**2


class MinirepoRequest(Request):
    """Streams file parts straight into `<data>/tmp`, hashing them on the way, and parses
    forms within the upload API's limits (`minirepo.forms`)."""

    def make_form_data_parser(self) -> FormDataParser:
        services: Services = current_app.extensions["minirepo"]
        return LimitedFormParser(
            self._get_file_stream,
            fields_limit=services.settings.max_metadata_size,
            max_form_memory_size=self.max_form_memory_size,
            max_content_length=self.max_content_length,
            max_form_parts=self.max_form_parts,
            cls=self.parameter_storage_class,
        )

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        services: Services = current_app.extensions["minirepo"]
        spool = SpoolFile(services.folder.store, services.settings.max_upload_size)
        self.environ.setdefault("minirepo.spools", []).append(spool)
        return cast("IO[bytes]", spool)


def create_app(settings: Settings, folder: DataFolder | None = None) -> Flask:
    """The app for one data folder; without `folder` it is opened (and created) here."""
    folder = folder or open_for_serving(settings)
    app = Flask(__name__, static_folder=None)
    app.request_class = MinirepoRequest
    app.url_rule_class = LazyRule
    app.session_interface = SessionCookies()
    # Never redirect between the spellings of one endpoint: clients refuse redirected POSTs.
    app.url_map.redirect_defaults = False
    app.secret_key = folder.secret
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_size + MULTIPART_SLACK + settings.max_metadata_size,
        MAX_FORM_MEMORY_SIZE=settings.max_metadata_size,
        MAX_FORM_PARTS=1000,
        # The session of the web UI and the JSON API: never readable by scripts, not sent
        # with cross-site requests, only over HTTPS when the server is reached so.
        SESSION_COOKIE_NAME="minirepo_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
    )
    proxies = Proxies(settings, folder.store)
    index = Index(settings, folder.store, proxies)
    uploads = UploadService(folder.store, settings.max_metadata_size)
    authenticator = auth.Authenticator(settings, folder.secret)
    # The bytes of request bodies spooled at once; waitress's channels reserve from it.
    spool = SpoolBudget(settings.spool_limit)
    app.extensions["minirepo.spool"] = spool
    instruments = metrics.Metrics(lambda: free_bytes(settings.data), lambda: spool.in_use)
    app.extensions["minirepo"] = Services(
        settings=settings,
        folder=folder,
        index=index,
        uploads=uploads,
        proxies=proxies,
        fetches=Fetches(
            folder.database,
            folder.store,
            uploads,
            settings,
            after_publish=proxies.after_fetch,
            on_event=instruments.fetched,
        ),
        downloads=DownloadCounter(folder.database),
    )
    crosssite.init_app(app, settings.public_url)
    auth.init_app(app, authenticator)
    accesslog.init_app(app)
    metrics.init_app(app, instruments)
    errors.init_app(app)
    _init_busy_handler(app, instruments)
    app.teardown_request(_discard_spools)
    for blueprint in views.BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.extensions["minirepo.preflight"] = Preflight(
        app, authenticator, index, folder.database, settings.public_url
    )
    pages = FastPages(app.wsgi_app, index, authenticator)
    rendered = RenderedPages()
    app.extensions["minirepo.ui_pages"] = rendered
    downloads = app.extensions["minirepo"].downloads
    # A kept page changes with its repository, with each write of the download counts and
    # with the advisories (the findings a project page lists).
    verdicts = index.verdicts
    app.extensions["minirepo.ui_stamp"] = lambda generation: (
        generation,
        downloads.epoch,
        verdicts.counter(),
    )
    browsers = UiPages(
        pages,
        index,
        rendered,
        app.extensions["minirepo.ui_stamp"],
        webpage.PAGE_HEADERS + webpage.PAGE_CACHING,
        settings.public_url,
        app.config["SESSION_COOKIE_NAME"],
    )
    # The access log outside the path-token layer: it sees the URL as sent, and redacts it.
    observe = instruments.observe if settings.metrics != "off" else None
    logged = accesslog.AccessLog(PathTokens(browsers), observe)
    app.wsgi_app = folder.database.wsgi(logged)  # type: ignore[method-assign,assignment]
    return app


class LazyRule(Rule):
    """A URL rule whose URL builders are compiled on first use.

    werkzeug compiles two builder functions per rule when the rule is added (by `ast` and
    `compile()`, about half a millisecond each): 93 rules made that a tenth of a second of
    every start, for `url_for`, which only the static files of the web UI use. The
    matching regex is still compiled at once. werkzeug is pinned below 3.2 for this.
    """

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        name = "_build_unknown" if append_unknown else "_build"

        def build(rule: Rule, **values: Any) -> tuple[str, str]:
            real = Rule._compile_builder(rule, append_unknown).__get__(rule, None)
            setattr(rule, name, real)
            result: tuple[str, str] = real(**values)
            return result

        return build


class SessionCookies(SecureCookieSessionInterface):
    """The session cookie is `Secure` whenever the browser came over https: by
    `public_url`, or to a server that sees the https itself."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def _discard_spools(exc: BaseException | None) -> None:
    """Whatever happened, no temp file of this request outlives it."""
    for spool in request.environ.pop("minirepo.spools", []):
        spool.discard()


def _init_busy_handler(app: Flask, instruments: metrics.Metrics) -> None:
    @app.before_request
    def _note_start() -> None:
        g.started = time.monotonic()

    @app.errorhandler(peewee.OperationalError)
    def _operational(exc: peewee.OperationalError) -> Response:
        if is_locked(exc):
            # Waited about busy_timeout: real contention. Far less: SQLite gave up at once
            # (a stale read snapshot), which no timeout setting would cure.
            waited = time.monotonic() - g.get("started", time.monotonic())
            instruments.busy(waited)
            log.warning(
                "database busy after %.2f s (%s %s): answering 503",
                waited,
                request.method,
                request.path,
            )
            busy = errors.Busy("Server busy (database locked); retry shortly")
            return errors.to_response(busy.status, busy.reason, busy.headers)
        if is_disk_full(exc):
            log.error("database write failed: disk full or I/O error", exc_info=exc)
            return errors.to_response(507, "Server storage is full; could not record the change")
        log.error("database error", exc_info=exc)
        return errors.to_response(500, "Internal server error")
