"""Two gaps in waitress 3.0's request handling, closed where it has no hook for them.

- A full disk while waitress spools a body (it writes every body over 512 KiB to a temp
  file before minirepo runs) dropped the connection, so twine saw only a reset. Its body
  receivers are wrapped so the failure becomes `507 Server storage is full`, which every
  client prints. The parser looks the receiver classes up by name, so they are replaced.
- `Expect: 100-continue` on a request without a body made waitress answer `100 Continue`
  and then nothing until `channel_timeout`, holding the connection (found by fuzzing;
  `send_continue` marks the already complete request incomplete again).
"""

from __future__ import annotations

import logging
from typing import Any

from waitress import channel, parser, receiver, server
from waitress.utilities import Error

log = logging.getLogger(__name__)


class InsufficientStorage(Error):  # type: ignore[misc]
    code = 507
    reason = "Server storage is full; could not receive the upload"


def _guarded(base: type[Any]) -> type[Any]:
    class Guarded(base):  # type: ignore[misc]
        def received(self, data: bytes) -> int:
            try:
                return int(super().received(data))
            except OSError as exc:
                log.error("could not spool a request body: %s", exc)
                self.error = InsufficientStorage(str(exc.strerror or exc))
                self.completed = True
                return len(data)

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


class ContinueChannel(channel.HTTPChannel):  # type: ignore[misc]
    def send_continue(self) -> None:
        was_complete = self.request.completed
        super().send_continue()
        self.request.completed = was_complete


def install() -> None:
    """Idempotent: applies both fixes once per process, before the server is made."""
    if not getattr(parser, "_minirepo_guarded", False):
        parser.FixedStreamReceiver = _guarded(receiver.FixedStreamReceiver)
        parser.ChunkedReceiver = _guarded(receiver.ChunkedReceiver)
        server.BaseWSGIServer.channel_class = ContinueChannel
        parser._minirepo_guarded = True
