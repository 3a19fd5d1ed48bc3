"""A graceful stop: on SIGTERM (`systemctl stop`) or SIGINT (Ctrl-C) the uploads in flight
finish, and then `serve` exits 0.

waitress's own `run()` ends its loop when SystemExit or KeyboardInterrupt reaches it, and
every connection goes with it: an upload whose body was still arriving was cut off, and
twine saw a reset instead of the 200 it would have had a moment later. So here the loop is
run pass by pass, and a stop signal only records itself and wakes the loop through
waitress's trigger pipe. Between two passes the stop then:

1. closes the listening sockets, so new connections are refused (those waiting in the
   kernel's backlog are reset rather than left hanging);
2. closes the idle connections (keep-alive between two requests) at once, and every other
   one as soon as it is idle; the answers still to come say `Connection: close`;
3. keeps the loop running, deadlines included (`waitress_fixes`), until no request is in
   flight (`GuardedChannel.in_flight`), `stop_timeout` has passed, or a second signal came;
   what is left then is cut;
4. lets the worker threads end the tasks they are in (an upload's publish) within what is
   left of the grace, or `THREAD_EXIT_SECONDS` past it, and closes the rest.

The systemd unit's `TimeoutStopSec` must leave room for all of it (systemd/minirepo.service).
A worker of `serve --workers N` stops the same way on the signal its parent forwards
(`minirepo.workers`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from types import FrameType
from typing import Any

from waitress import task, wasyncore
from waitress.server import BaseWSGIServer, MultiSocketServer

from minirepo.waitress_fixes import GuardedChannel

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long the worker threads may still take past the grace to leave the task they are in
# (an idle one leaves at once): long enough for a commit, short enough to count as "at once".
THREAD_EXIT_SECONDS = 1.0


class ClosingTask(task.WSGITask):  # type: ignore[misc]
    """An answer given while the server stops: it says `Connection: close`, so the client
    does not send its next request on a connection about to be closed."""

    def build_response_header(self) -> bytes:
        self.request.headers["CONNECTION"] = "close"  # as if the client had asked
        return bytes(super().build_response_header())


class GracefulServer:
    """Runs a server made by `waitress_fixes.create_server` until a stop signal, then stops
    it as the module says."""

    def __init__(
        self, server: Any, grace: float, signals: tuple[signal.Signals, ...] = STOP_SIGNALS
    ) -> None:
        """`signals`: those that stop it (a second one cuts what is left)."""
        self.server = server
        self.grace = grace
        self.stop_signals = signals
        self.map: dict[int, Any] = (
            server.map if isinstance(server, MultiSocketServer) else server._map
        )
        self.listeners = [obj for obj in self.map.values() if isinstance(obj, BaseWSGIServer)]
        self.signals: list[int] = []
        self.closed = False

    def serve(self) -> None:
        for signum in self.stop_signals:
            signal.signal(signum, self._on_signal)
        while not self.signals:
            self._one_pass(self.server.adj.asyncore_loop_timeout)
        self._stop(signal.Signals(self.signals[0]).name)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Runs in the main thread between two bytecodes, maybe inside the loop: it only
        records the signal and wakes the loop's poll()."""
        self.signals.append(signum)
        if not self.closed:  # a closed trigger's descriptor may belong to another file now
            with contextlib.suppress(OSError):
                self.listeners[0].pull_trigger()

    def _one_pass(self, timeout: float) -> None:
        adj = self.server.adj
        wasyncore.loop(timeout=timeout, map=self.map, use_poll=adj.asyncore_use_poll, count=1)

    def _channels(self) -> list[GuardedChannel]:
        return [obj for obj in list(self.map.values()) if isinstance(obj, GuardedChannel)]

    def _sweep(self) -> int:
        """Close the idle connections; the others close after their answers. Returns the
        requests in flight."""
        in_flight = 0
        for channel in self._channels():
            count = channel.in_flight()
            if count:
                channel.task_class = ClosingTask
                in_flight += count
            else:
                channel.will_close = True  # the next pass closes it
        return in_flight

    def _stop(self, name: str) -> None:
        started = time.monotonic()
        deadline = started + self.grace
        for listener in self.listeners:
            # Not listener.close(): its trigger must still wake the loop for the workers.
            wasyncore.dispatcher.close(listener)
        in_flight = self._sweep()
        log.info(
            "stopping on %s: refusing new connections; %d request(s) in flight, given up to "
            "%d s to finish (a second signal cuts them)",
            name,
            in_flight,
            self.grace,
        )
        interval = self.server.adj.cleanup_interval
        next_maintenance = started + interval
        while in_flight and len(self.signals) < 2 and (now := time.monotonic()) < deadline:
            self._one_pass(min(self.server.adj.asyncore_loop_timeout, deadline - now))
            if now >= next_maintenance:  # what a listener's readable() did while it listened
                next_maintenance = now + interval
                for listener in self.listeners:
                    listener.maintenance(time.time())
            in_flight = self._sweep()
        seconds = time.monotonic() - started
        if in_flight:
            log.warning(
                "stopped after %.1f s: cut %d request(s) still in flight", seconds, in_flight
            )
        else:
            log.info("stopped: every request finished (%.1f s)", seconds)
        self._close(deadline if len(self.signals) < 2 else started)

    def _close(self, deadline: float) -> None:
        for channel in self._channels():
            channel.handle_close()
        dispatcher = self.server.task_dispatcher
        left = max(deadline - time.monotonic(), 0) + THREAD_EXIT_SECONDS
        dispatcher.shutdown(cancel_pending=True, timeout=left)
        if not dispatcher.threads:  # else a worker may still pull a trigger
            self.closed = True
            wasyncore.close_all(self.map)
