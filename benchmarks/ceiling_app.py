"""The two ceilings PERFORMANCE.md's page targets are ratios to, run in the same benchmark.

    python -m benchmarks.ceiling_app --mode flask|wsgi --tree DIR --port N --threads T

Both load every `index.html` of the static PEP 503 tree (`servers.write_static_tree`) into
memory at start and answer `/simple/` and `/simple/<project>/` with those bytes, so they do
the least work a Python index on waitress can do per page: `flask` is the minimal Flask app,
`wsgi` a bare WSGI callable. `/files/<name>` streams through waitress's file wrapper, so the
download row has ceilings too.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import waitress

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
HTML = "text/html"
NOT_FOUND = b"Not Found\n"


def load_pages(tree: Path) -> dict[str, bytes]:
    """Every page of the tree keyed by its URL path: `/simple/` and `/simple/<project>/`."""
    return {
        f"/{path.parent.relative_to(tree).as_posix()}/": path.read_bytes()
        for path in (tree / "simple").glob("**/index.html")
    }


def list_files(tree: Path) -> dict[str, Path]:
    """The downloadable files by name: a lookup, so no request path ever reaches the disk."""
    return {path.name: path for path in (tree / "files").iterdir()}


def flask_app(pages: dict[str, bytes], files: dict[str, Path]) -> WsgiApp:
    from flask import Flask, Response, abort, send_file

    app = Flask(__name__)

    @app.get("/simple/")
    def root() -> Response:
        return Response(pages["/simple/"], content_type=HTML)

    @app.get("/simple/<project>/")
    def project(project: str) -> Response:
        page = pages.get(f"/simple/{project}/")
        if page is None:
            abort(404)
        return Response(page, content_type=HTML)

    @app.get("/files/<name>")
    def download(name: str) -> Response:
        if name not in files:
            abort(404)
        return send_file(files[name], mimetype="application/octet-stream")

    return app


def wsgi_app(pages: dict[str, bytes], files: dict[str, Path]) -> WsgiApp:
    answers = {
        path: ([("Content-Type", HTML), ("Content-Length", str(len(body)))], [body])
        for path, body in pages.items()
    }

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        get = environ["REQUEST_METHOD"] == "GET"
        path: str = environ.get("PATH_INFO", "")
        name = path.removeprefix("/files/")
        if get and path in answers:
            headers, body = answers[path]
            start_response("200 OK", headers)
            return body
        if get and name != path and name in files:
            size = files[name].stat().st_size
            start_response(
                "200 OK",
                [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
            )
            file_wrapper: Callable[..., Iterable[bytes]] = environ["wsgi.file_wrapper"]
            return file_wrapper(files[name].open("rb"))
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [NOT_FOUND]

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("flask", "wsgi"), required=True)
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    pages, files = load_pages(args.tree), list_files(args.tree)
    app = (flask_app if args.mode == "flask" else wsgi_app)(pages, files)
    # As in minirepo: one warning per queued request would measure logging, not serving.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=args.threads)


if __name__ == "__main__":
    main()
