"""What the services name of the upstream client without loading it: its settings and
its one error.

`minirepo.upstream` needs urllib3, which costs every start about 40 ms of CPU and 1.2 MiB
(docs/benchmarks.md, session 6) though only a proxy repository's first fetch uses it; the
services import it when they build a client (`services.proxies`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class UpstreamConfig:
    """How to reach one upstream; the password is the value, resolved by the caller."""

    url: str  # the simple index, ending in "/"
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    user: str = ""
    password: str = ""
    proxy: str = ""  # "": the environment's (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)
    ca_bundle: str = ""  # a PEM file; "": the system's trust store
    page_max_bytes: int = 32 * 1024 * 1024
    page_deadline: float = 60.0  # a whole page, so a trickling upstream can't hold a thread


class UpstreamError(Exception):
    """The upstream failed; `str()` is one line a client can print.

    kind: 'connect' (refused, DNS, TLS, proxy), 'timeout', 'status' (an unexpected HTTP
    status, in `status`), 'invalid' (too big, not decodable, a bad redirect or URL),
    'truncated' (the body ended early).
    """

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
