"""A fake upstream simple index, a fake forward proxy and a throwaway TLS CA, for the
proxy repository tests.

All of them are real servers on 127.0.0.1 (a free port each, threads), so the client under
test meets real sockets: refused connections, timeouts, bodies cut short or trickled, TLS
that fails to verify. Nothing in them waits without a bound: every handler socket has a
timeout, every sleep ends when the server is closed, every loop has a limit.
"""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import html
import ipaddress
import json
import logging
import selectors
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from packaging.utils import canonicalize_name

log = logging.getLogger(__name__)

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HANDLER_TIMEOUT = 10.0  # a silent client never holds a handler thread longer
PIPE_SECONDS = 30.0  # the longest a proxied connection lives
MAX_HEADER_LINES = 100
UPLOAD_TIME = "2024-01-02T03:04:05.000000Z"


@dataclasses.dataclass(frozen=True)
class _File:
    filename: str
    content: bytes
    listed_sha256: str  # what the page says (a wrong one when the test wants a liar)
    requires_python: str
    metadata: bytes | None
    yanked: str | None
    provenance: bytes | None = None  # PEP 740, served at `_provenance_url`


@dataclasses.dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    is_file: bool = False  # cut short as `cut_files_at` says


class FakeUpstream:
    """A PEP 503/691 index at `url` (…/simple/), files at `base`/files/<filename>.

    A file's PEP 740 provenance, when it has one, is at `base`/integrity/<filename>/provenance
    (a path of its own, as on PyPI, so a client must take the page's URL for it).

    Pages are JSON when the Accept header asks for it (unless `page_html_only`), else HTML,
    with a strong ETag per body (304 on a matching If-None-Match). Knobs, settable at any
    time: `down` (every request answers 503), `delay` (seconds before any answer),
    `trickle` (seconds between `chunk_size` chunks of a body, files and pages alike: the
    page deadline is tested with it), `cut_files_at` (close the
    connection after that many bytes of a file), `file_encoding` (a Content-Encoding
    header on files, the bytes unchanged), `gzip_pages`, `set_status`, `redirect`,
    `refuse_connections` / `restore`. `requests` records (method, path, headers with
    lowercase names) of every request.
    """

    def __init__(self, *, tls: TLSFiles | None = None) -> None:
        self.down = False
        self.delay = 0.0
        self.trickle = 0.0
        self.chunk_size = 65536
        self.cut_files_at: int | None = None
        self.file_encoding = ""
        self.page_html_only = False
        self.gzip_pages = False
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.port = 0
        self._tls = tls.server_context() if tls is not None else None
        self._names: dict[str, str] = {}
        self._projects: dict[str, list[_File]] = {}
        self._files: dict[str, _File] = {}
        self._statuses: dict[str, int] = {}
        self._redirects: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeUpstream:
        self._start(0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed.set()  # wakes every delayed or trickling answer
        self._stop()

    @property
    def base(self) -> str:
        assert self.port, "use FakeUpstream as a context manager"
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        return f"{self.base}simple/"

    def add_file(
        self,
        project: str,
        filename: str,
        content: bytes,
        *,
        requires_python: str = "",
        metadata: bytes | None = None,
        lie_sha256: bool = False,
        yanked: str | None = None,
        provenance: bytes | None = None,
    ) -> str:
        """List a file on the project's page (with its sha256, or a wrong one when
        `lie_sha256`); `yanked` is a reason ("" for none); `provenance` is served as
        the file's PEP 740 provenance, its URL on the page. Returns the file's URL."""
        digest = hashlib.sha256(content).hexdigest()
        if lie_sha256:
            digest = hashlib.sha256(b"not " + content).hexdigest()
        entry = _File(filename, content, digest, requires_python, metadata, yanked, provenance)
        normalized = canonicalize_name(project)
        with self._lock:
            self._names.setdefault(normalized, project)
            self._projects.setdefault(normalized, []).append(entry)
            self._files[filename] = entry
        return self._file_url(filename)

    def set_status(self, project: str, status: int) -> None:
        """Make the project's page answer `status` (404, 410, 500, 503...)."""
        with self._lock:
            self._statuses[canonicalize_name(project)] = status

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer requests for `path` with a redirect to `location` (as given: relative
        or absolute)."""
        with self._lock:
            self._redirects[path] = (status, location)

    def count(self, path_prefix: str) -> int:
        with self._lock:
            return sum(1 for _, path, _ in self.requests if path.startswith(path_prefix))

    def refuse_connections(self) -> None:
        """Stop listening and drop open connections: clients get 'connection refused'."""
        self._stop()

    def restore(self) -> None:
        """Listen again, on the same port."""
        self._start(self.port)

    # -- serving -------------------------------------------------------------------------

    def _start(self, port: int) -> None:
        server = _Server(port, self._answer_request, self._tls)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()
        self._thread.join(HANDLER_TIMEOUT)
        self._server = self._thread = None

    def _answer_request(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self.requests.append((handler.command, handler.path, headers))
        if self.delay:
            self._closed.wait(self.delay)
        answer = self._answer(urlsplit(handler.path).path, headers)
        self._send(handler, answer)

    def _answer(self, path: str, headers: dict[str, str]) -> _Answer:
        with self._lock:
            redirect = self._redirects.get(path)
        if self.down:
            return _Answer(503, {"Content-Type": "text/plain"}, b"down for the test")
        if redirect is not None:
            return _Answer(redirect[0], {"Location": redirect[1]}, b"moved")
        if path.startswith("/simple/"):
            return self._page(canonicalize_name(path.removeprefix("/simple/").strip("/")), headers)
        if path.startswith("/files/"):
            return self._file(unquote(path.removeprefix("/files/")))
        if path.startswith("/integrity/") and path.endswith("/provenance"):
            return self._provenance(unquote(path[len("/integrity/") : -len("/provenance")]))
        return _Answer(404, {"Content-Type": "text/plain"}, b"not found")

    def _page(self, normalized: str, headers: dict[str, str]) -> _Answer:
        with self._lock:
            status = self._statuses.get(normalized)
            files = list(self._projects.get(normalized, ()))
            name = self._names.get(normalized, normalized)
        if status is not None or not files:
            return _Answer(status or 404, {"Content-Type": "text/plain"}, b"no such page")
        wants_json = JSON_V1 in headers.get("accept", "") and not self.page_html_only
        if wants_json:
            body, content_type = self._json_page(name, files), JSON_V1
        else:
            body, content_type = self._html_page(name, files), "text/html; charset=utf-8"
        answer_headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
        if self.gzip_pages and "gzip" in headers.get("accept-encoding", ""):
            body = gzip.compress(body, mtime=0)
            answer_headers["Content-Encoding"] = "gzip"
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        answer_headers["ETag"] = etag
        if etag in (tag.strip() for tag in headers.get("if-none-match", "").split(",")):
            return _Answer(304, {"ETag": etag})
        return _Answer(200, answer_headers, body)

    def _file(self, name: str) -> _Answer:
        filename = name.removesuffix(".metadata")
        with self._lock:
            entry = self._files.get(filename)
        if name.endswith(".metadata"):
            body = entry.metadata if entry is not None else None
        else:
            body = entry.content if entry is not None else None
        if body is None:
            return _Answer(404, {"Content-Type": "text/plain"}, b"no such file")
        headers = {"Content-Type": "application/octet-stream"}
        if self.file_encoding:
            headers["Content-Encoding"] = self.file_encoding
        return _Answer(200, headers, body, is_file=True)

    def _provenance(self, filename: str) -> _Answer:
        with self._lock:
            entry = self._files.get(filename)
        if entry is None or entry.provenance is None:
            return _Answer(404, {"Content-Type": "text/plain"}, b"no provenance")
        return _Answer(200, {"Content-Type": "application/json"}, entry.provenance)

    def _send(self, handler: BaseHTTPRequestHandler, answer: _Answer) -> None:
        handler.send_response(answer.status)
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        if answer.status != 304:
            handler.send_header("Content-Length", str(len(answer.body)))
        if handler.headers.get("Connection", "").lower() == "close":
            handler.send_header("Connection", "close")
        handler.end_headers()
        body = answer.body
        if answer.is_file and self.cut_files_at is not None:
            body = body[: self.cut_files_at]
            handler.close_connection = True
        step = self.chunk_size
        for offset in range(0, len(body), step):
            if offset and self.trickle:
                self._closed.wait(self.trickle)
            handler.wfile.write(body[offset : offset + step])

    def _json_page(self, name: str, files: list[_File]) -> bytes:
        entries = []
        for entry in files:
            metadata: dict[str, str] | bool = False
            if entry.metadata is not None:
                metadata = {"sha256": hashlib.sha256(entry.metadata).hexdigest()}
            entries.append(
                {
                    "filename": entry.filename,
                    "url": self._file_url(entry.filename),
                    "hashes": {"sha256": entry.listed_sha256},
                    "requires-python": entry.requires_python or None,
                    "yanked": entry.yanked if entry.yanked else entry.yanked is not None,
                    "size": len(entry.content),
                    "upload-time": UPLOAD_TIME,
                    "core-metadata": metadata,
                    "dist-info-metadata": metadata,
                }
            )
            if entry.provenance is not None:
                entries[-1]["provenance"] = self._provenance_url(entry.filename)
        page = {"meta": {"api-version": "1.1"}, "name": name, "files": entries}
        return json.dumps(page).encode()

    def _html_page(self, name: str, files: list[_File]) -> bytes:
        lines = [
            "<!DOCTYPE html>",
            '<html><head><meta name="pypi:repository-version" content="1.1">',
            f"<title>Links for {html.escape(name)}</title></head>",
            f"<body><h1>Links for {html.escape(name)}</h1>",
        ]
        for entry in files:
            attributes = f' href="{self._file_url(entry.filename)}#sha256={entry.listed_sha256}"'
            if entry.requires_python:
                attributes += f' data-requires-python="{html.escape(entry.requires_python)}"'
            if entry.yanked is not None:
                attributes += f' data-yanked="{html.escape(entry.yanked)}"'
            if entry.metadata is not None:
                digest = hashlib.sha256(entry.metadata).hexdigest()
                attributes += f' data-core-metadata="sha256={digest}"'
                attributes += f' data-dist-info-metadata="sha256={digest}"'
            if entry.provenance is not None:
                attributes += f' data-provenance="{self._provenance_url(entry.filename)}"'
            lines.append(f"<a{attributes}>{html.escape(entry.filename)}</a><br />")
        lines.append("</body></html>")
        return "\n".join(lines).encode()

    def _file_url(self, filename: str) -> str:
        return f"{self.base}files/{filename}"

    def _provenance_url(self, filename: str) -> str:
        return f"{self.base}integrity/{filename}/provenance"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as PyPI: the client's pool is exercised
    timeout = HANDLER_TIMEOUT
    disable_nagle_algorithm = True  # else headers then body wait on the client's delayed ACK
    server: _Server

    def do_GET(self) -> None:
        self.server.answer(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a failing test shows the requests through `FakeUpstream.requests`."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        port: int,
        answer: Any,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.answer = answer
        self.tls = tls
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer's would look up the host's FQDN: a DNS query, slow in some sandboxes.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection = request
        try:
            if self.tls is not None:
                request.settimeout(HANDLER_TIMEOUT)
                connection = self.tls.wrap_socket(request, server_side=True)
            with self._lock:
                self._connections.add(connection)
            super().finish_request(connection, client_address)
        finally:
            with self._lock:
                self._connections.discard(connection)
            if connection is not request:
                connection.close()

    def drop_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                log.debug("a connection was already closed")

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-answer, or fail TLS, are what these tests are about.
        log.debug("fake server: a request ended in %r", sys.exc_info()[1])


# -- a forward proxy ---------------------------------------------------------------------


class FakeProxy:
    """An HTTP forward proxy at `url`: absolute-form requests are forwarded (origin-form,
    with Connection: close), CONNECT opens a tunnel. `requests` records (request line,
    headers with lowercase names) of each."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._server = _ProxyServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(HANDLER_TIMEOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, line: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((line, headers))

    def pipe(self, one: socket.socket, other: socket.socket) -> None:
        """Copy bytes both ways until either side closes (or the proxy does)."""
        deadline = time.monotonic() + PIPE_SECONDS
        with selectors.DefaultSelector() as selector:
            selector.register(one, selectors.EVENT_READ, other)
            selector.register(other, selectors.EVENT_READ, one)
            while time.monotonic() < deadline and not self._closed.is_set():
                for key, _ in selector.select(timeout=0.1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)


class _ProxyHandler(socketserver.StreamRequestHandler):
    timeout = HANDLER_TIMEOUT
    server: _ProxyServer

    def handle(self) -> None:
        line = self.rfile.readline(65536).decode("latin-1").strip()
        headers: list[tuple[str, str]] = []
        for _ in range(MAX_HEADER_LINES):
            raw = self.rfile.readline(65536).decode("latin-1").strip()
            if not raw:
                break
            name, _, value = raw.partition(":")
            headers.append((name.strip(), value.strip()))
        proxy = self.server.proxy
        proxy.record(line, {name.lower(): value for name, value in headers})
        method, target, _version = line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=HANDLER_TIMEOUT) as upstream:
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                proxy.pipe(self.connection, upstream)
            return
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        hop_by_hop = {"connection", "keep-alive", "proxy-authorization", "proxy-connection"}
        head = [f"{method} {path} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in headers if name.lower() not in hop_by_hop]
        head.append("Connection: close")
        address = (parts.hostname or "", parts.port or 80)
        with socket.create_connection(address, timeout=HANDLER_TIMEOUT) as upstream:
            upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            proxy.pipe(self.connection, upstream)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: FakeProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("fake proxy: a request ended in %r", sys.exc_info()[1])


# -- TLS -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    ca: Path  # the CA certificate: the client's ca_bundle
    chain: Path  # the server's certificate (for 127.0.0.1 and localhost), then the CA's
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.chain, self.key)
        return context


def make_tls(directory: Path) -> TLSFiles:
    """A CA and a server certificate it signed, valid for a day either side of now: a CA
    apart from the leaf, as strict verification (Python 3.13's default) wants."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minirepo test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        _certificate(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    leaf = (
        _certificate(leaf_name, ca_name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(directory / "ca.pem", directory / "chain.pem", directory / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: Any, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
