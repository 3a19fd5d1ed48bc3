"""A full disk while waitress spools a request body: a 507 instead of a dropped connection.

waitress writes every body over 512 KiB to a temp file before minirepo runs. When that
write fails (disk full, a file-size limit) waitress drops the connection and twine sees
only a reset. Its receivers are wrapped here so the failure becomes a plain
`507 Server storage is full` that every client prints. waitress has no hook for this,
so the wrapping replaces the two receiver classes its parser looks up by name.
"""

from __future__ import annotations

import logging
from typing import Any

from waitress import parser, receiver
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


def install() -> None:
    """Idempotent: wraps waitress's body receivers once per process."""
    if not getattr(parser, "_minirepo_guarded", False):
        parser.FixedStreamReceiver = _guarded(receiver.FixedStreamReceiver)
        parser.ChunkedReceiver = _guarded(receiver.ChunkedReceiver)
        parser._minirepo_guarded = True
