"""Running the app on waitress, and what the operator sees at start."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click
import waitress

from minirepo.app import create_app
from minirepo.config import Settings
from minirepo.services.maintenance import ADMIN_NAME, open_data

log = logging.getLogger(__name__)

# Room for the multipart framing and the form fields around the largest allowed file.
BODY_SLACK = 8 * 1024**2


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One warning per queued request would make a busy index spend its time logging.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def first_start_banner(settings: Settings, token: str) -> str:
    """The copy-paste lines printed once, with the real URL and the admin's token."""
    base = settings.base_url
    host = base.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return "\n".join(
        [
            f"First start: created the repository {settings.default_repository!r} "
            f"and the account {ADMIN_NAME!r}.",
            "The admin's API token (shown only now; keep it safe):",
            "",
            f"    {token}",
            "",
            "Install from it:",
            f"    pip install --index-url {base}simple/ --trusted-host {host} PACKAGE",
            f"    uv pip install --index-url {base}simple/ PACKAGE",
            "Publish to it:",
            f"    twine upload --repository-url {base} -u __token__ -p {token} dist/*",
            f"    uv publish --publish-url {base} --token {token} dist/*",
            f"Set a password for {ADMIN_NAME!r}:  minirepo user passwd {ADMIN_NAME}",
            "",
        ]
    )


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(settings: Settings) -> None:
    configure_logging(settings.log_level)
    folder = open_data(settings, first_start=True)
    app = create_app(settings, folder)
    server = waitress.create_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=settings.threads,
        connection_limit=settings.connection_limit,
        channel_timeout=settings.channel_timeout,
        max_request_body_size=settings.max_upload_size + BODY_SLACK,
        clear_untrusted_proxy_headers=True,
        expose_tracebacks=False,
        ident="minirepo",
    )
    if folder.admin_token:
        click.echo(first_start_banner(settings, folder.admin_token))
    click.echo(f"minirepo is serving {settings.base_url} (data in {settings.data})")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    finally:
        server.close()
