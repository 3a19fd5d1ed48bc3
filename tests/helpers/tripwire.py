"""A tripwire for the real clients: proof that a test's clients never left loopback.

A client's environment points `HTTP(S)_PROXY`/`ALL_PROXY` at the tripwire and exempts only
loopback (`NO_PROXY`), so any request to another host (pypi.org as a default index, a build
backend, a version check) reaches the tripwire, fails at once and is noted; the test then
fails on `untouched()`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

LOOPBACK = "127.0.0.1,localhost"


class Tripwire:
    """A "proxy" on loopback that forwards nothing: it notes each request line and hangs up."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(1024)
                except OSError:
                    data = b""
            self.requests.append(data.split(b"\r\n", 1)[0].decode("latin-1") or "<no request>")

    def proxies(self) -> dict[str, str]:
        """The proxy variables, in both cases (clients read one or the other), that send
        every request off loopback here."""
        names = {name: self.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
        names["NO_PROXY"] = LOOPBACK
        return names | {name.lower(): value for name, value in names.items()}

    @contextlib.contextmanager
    def untouched(self) -> Iterator[None]:
        """Fail if a request reached the tripwire while the block ran."""
        seen = len(self.requests)
        yield
        assert self.requests[seen:] == [], "a client tried to leave loopback"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
