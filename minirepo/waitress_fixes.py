"""Every change minirepo makes to waitress 3.0's behaviour, and why waitress's own is not enough.

waitress is built for a trusted front (a reverse proxy) that buffers requests and reads
answers at any speed. minirepo faces the LAN itself, so the channel and the parser are
subclassed here, for each server `create_server` makes, and nowhere else:

- Full disk while spooling a body: waitress dropped the connection and twine saw only a
  reset. Its body receivers are wrapped so the failure becomes `507`. (The parser looks the
  receiver classes up by name, so those two names are replaced once per process.)
- `Expect: 100-continue` without a body: waitress answered `100 Continue` and then nothing
  until `channel_timeout` (`send_continue` marks a complete request incomplete again).
- Slowloris: waitress's only timeout is `channel_timeout` since the last byte, and a
  client sending one header line every few seconds never reaches it; 100 such sockets
  filled `connection_limit`. Here a request head must arrive within `header_timeout` of its
  first byte, one address may hold `max_idle_connections_per_address` connections that are
  idle or in their head (the oldest goes), and all addresses together `connection_limit //
  2` in their head. Busy connections are never capped (uv downloads 50 files at once).
- Slow readers: waitress never reaps a channel with requests pending, and between two
  pipelined requests a worker thread waits for the output to drain; eight sockets that
  never read held every worker. Here a channel whose output has not moved for
  `channel_timeout` is closed, pending requests or not, and the next pipelined request is
  not handed to a worker until the previous answer's output is below the 1 MiB watermark.
- Bodies nobody asked for: waitress receives a whole body before the app can refuse it, so
  anonymous POSTs filled `$TMPDIR`. A body over `preflight.SMALL_BODY` is judged from the
  head first (`minirepo.preflight`; credentials are checked in a helper thread while the
  channel stops reading). A refused request is answered at once, the rest of its body is
  read and thrown away (up to `max_upload_size` or `DRAIN_SECONDS`, so the client reads the
  answer rather than a reset) and the connection closes. Bodies let through reserve their
  size from `max_spool_bytes`; past it the answer is 503 with Retry-After. waitress's own
  413 for a too large Content-Length names the limit and its setting.
- Every answer waitress makes itself carries `X-Content-Type-Options: nosniff`.
- Stopping: waitress's `run()` drops every connection on SIGTERM; `minirepo.shutdown` runs
  the loop instead and lets the requests each channel says are in flight finish.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import waitress
from waitress import channel, parser, receiver, task
from waitress.proxy_headers import proxy_headers_middleware
from waitress.server import BaseWSGIServer
from waitress.utilities import Error, RequestEntityTooLarge

from minirepo import accesslog
from minirepo.config import Settings
from minirepo.errors import ALWAYS_HEADERS, MinirepoError, TooLarge, answer_body, one_line
from minirepo.preflight import SMALL_BODY, Preflight
from minirepo.units import format_size

log = logging.getLogger(__name__)

# How long the rest of a refused body is read and thrown away before the connection closes.
DRAIN_SECONDS = 10.0
# Output a worker may leave queued on a connection before it (or the next request) waits:
# waitress's default, 16 MiB, times eight slow readers is 128 MiB of RAM. A streamed body
# (a proxy's file while it is fetched) keeps what it queued in memory up to this, so six
# of them at 1 MiB grew the server by 12-14 MiB; at 256 KiB, by 6 (tests/integration/
# test_proxy_clients.py, twenty clients of one file).
OUTBUF_HIGH_WATERMARK = 256 * 1024
# How often waitress's loop wakes at the latest, and so how late a deadline may be noticed.
LOOP_SECONDS = 1
# Room for the multipart framing and the form fields around the largest allowed file.
BODY_SLACK = 8 * 1024**2
RENAMED_HEADERS = {"CONTENT_LENGTH": "CONTENT_LENGTH", "CONTENT_TYPE": "CONTENT_TYPE"}


class InsufficientStorage(Error):  # type: ignore[misc]
    code = 507
    reason = "Server storage is full; could not receive the upload"


class Refused(Error):  # type: ignore[misc]
    """A minirepo refusal answered by waitress itself: the same reason phrase and body the
    app would give (`minirepo.errors`), plus the refusal's headers."""

    def __init__(self, error: MinirepoError, path: str) -> None:
        super().__init__(error.reason)
        self.code = error.status
        self.reason = one_line(error.reason)
        self.headers = dict(error.headers)
        self.path = path

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        body, mimetype = answer_body(self.reason, self.path)
        kind = f"{mimetype}; charset=utf-8"
        return (
            f"{self.code} {self.reason}",
            [("Content-Type", kind), *self.headers.items()],
            (body.encode()),
        )


class SpoolFull(MinirepoError):
    status = 503
    headers = {"Retry-After": "10"}  # noqa: RUF012


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


class SpoolBudget:
    """The bytes of request bodies being received or handled at once, over all requests."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._lock = threading.Lock()

    def reserve(self, size: int) -> bool:
        with self._lock:
            if self.in_use + size > self.limit:
                return False
            self.in_use += size
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self.in_use -= size


@dataclasses.dataclass
class Guard:
    """What the channels of one server share: settings, the judge and its thread."""

    settings: Settings
    preflight: Preflight | None
    budget: SpoolBudget
    executor: concurrent.futures.ThreadPoolExecutor
    # waitress's trusted-proxy translation, applied to a head as it is to a request.
    translate: Callable[[dict[str, Any]], dict[str, Any]]


class GuardedParser(parser.HTTPRequestParser):  # type: ignore[misc]
    """Hands the head of a request with a body to its channel before the body is received."""

    reserved = 0  # bytes of the spool budget this request holds
    judged = False

    def __init__(self, adj: Any, owner: GuardedChannel | None = None) -> None:
        super().__init__(adj)
        self.channel = owner

    def received(self, data: bytes) -> int:
        in_head = not self.headers_finished
        consumed = int(super().received(data))
        owner = self.channel
        if owner is None or self.judged:
            return consumed
        if isinstance(self.error, RequestEntityTooLarge):
            self.judged = True
            owner.refuse(self, too_large(owner.guard.settings), len(data) - consumed)
            return len(data)
        if in_head and self.headers_finished and not self.completed:
            self.judged = True
            if owner.judge(self, len(data) - consumed):
                return len(data)
        return consumed

    @property
    def body_size(self) -> int | None:
        return None if self.chunked else int(self.content_length)

    def close(self) -> None:
        if self.channel is not None and self.reserved:
            self.channel.guard.budget.release(self.reserved)
            self.reserved = 0
        super().close()


def too_large(settings: Settings) -> MinirepoError:
    limit = format_size(settings.max_upload_size)
    return TooLarge(
        f"Upload too large: this server accepts files up to {limit} (setting max_upload_size)"
    )


class ErrorTask(task.ErrorTask):  # type: ignore[misc]
    def execute(self) -> None:
        self.response_headers.extend(ALWAYS_HEADERS)
        super().execute()
        # The app never sees this answer: its access-log line is written here.
        parsed = getattr(self.request, "command", None) is not None
        environ = self.channel.head_environ(self.request) if parsed else {}
        environ.setdefault("REMOTE_ADDR", self.channel.peer)
        seconds = time.time() - self.start_time
        accesslog.log_answer(environ, self.status, self.content_length, seconds)


class GuardedChannel(channel.HTTPChannel):  # type: ignore[misc]
    guard: Guard
    # waitress declares these as None at class level; here they hold a parser.
    request: Any
    parser_class: Any = GuardedParser
    error_task_class = ErrorTask

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        self.head_of: GuardedParser | None = None  # the request whose head is arriving
        self.head_started = 0.0
        self.judging: GuardedParser | None = None  # the request the helper thread judges
        self.verdict: tuple[GuardedParser, MinirepoError | None] | None = None
        self.drain_until: float | None = None
        self.drain_left = 0
        self.deferred = False
        self.in_write = False
        self.parser_class = lambda adj: GuardedParser(adj, self)
        super().__init__(server, sock, addr, adj, map)
        self._cap_waiting()

    @property
    def peer(self) -> str:
        return str(self.addr[0]) if isinstance(self.addr, tuple) else ""

    # --- the loop's questions, asked of every channel at least once a second

    def readable(self) -> bool:
        """Also where a verdict from the judging thread is applied: waitress's loop asks
        every channel this, on its own thread, each time round (so it must stay cheap)."""
        if self.verdict is not None:
            self._apply_verdict()
        if self._fileno is None or self.judging is not None:
            return False  # closed by the sweep during this pass of the loop; or judged
        if self.drain_until is not None:
            return not self.will_close
        return bool(super().readable())

    def writable(self) -> bool:
        if self._fileno is None:
            return False
        if self.drain_until is not None and not self.will_close:
            return bool(self.total_outbufs_len)
        return bool(super().writable())

    def handle_write(self) -> None:
        if self.drain_until is not None and not self.will_close:
            self._flush_exception(self._flush_some_if_lockable)  # the answer, while draining
        else:
            super().handle_write()
        if self.deferred:
            self._resume_deferred()

    def received(self, data: bytes) -> bool:
        if self.drain_until is not None:
            self.drain_left -= len(data)
            if self.drain_left <= 0:
                self._stop_draining()
            return True
        result = bool(super().received(data))
        request = self.request
        if request is None or request.headers_finished:
            self.head_of = None
        elif self.head_of is not request:
            self.head_of, self.head_started = request, time.monotonic()
        return result

    def enforce_deadlines(self, now: float) -> None:
        """Run by the server's sweep (`_sweep_deadlines`) once every `LOOP_SECONDS`."""
        settings = self.guard.settings
        if self.head_of is not None and now - self.head_started > settings.header_timeout:
            log.debug("closing %s: request head not complete in time", self.peer)
            self.will_close = True
        elif self.drain_until is not None and now > self.drain_until:
            self._stop_draining()
        elif self.total_outbufs_len and time.time() - self.last_activity > settings.channel_timeout:
            # A full send buffer never polls writable, so `will_close` would wait forever.
            log.info("closing %s: the client has not read its answer in time", self.peer)
            self.handle_close()

    # --- connections that are idle or in their head

    def waiting(self) -> bool:
        """Idle, or still sending a request head: what a slowloris client holds."""
        return (
            not self.requests
            and not self.total_outbufs_len
            and self.drain_until is None
            and self.judging is None
            and (self.request is None or not self.request.headers_finished)
        )

    def in_flight(self) -> int:
        """The requests a stopping server waits for (`minirepo.shutdown`): received and
        queued or being answered, plus one whose bytes have begun to arrive; an answer still
        being sent or a refused body being drained counts as one. 0: idle, closed at once."""
        count = len(self.requests) + (self.request is not None)
        if not count and (self.total_outbufs_len or self.drain_until is not None):
            return 1
        return count

    def _cap_waiting(self) -> None:
        """On accept: past a cap, close the oldest waiting connection, never the new one (a
        legitimate client is always served; an attacker only displaces its own)."""
        others = [
            ch
            for ch in list(self._map.values())
            if isinstance(ch, GuardedChannel) and ch is not self and not ch.will_close
        ]
        trusted = self.guard.settings.trusted_proxy
        if self.peer != trusted and trusted != "*":
            same = [ch for ch in others if ch.peer == self.peer and ch.waiting()]
            self._close_oldest(same, self.guard.settings.max_idle_connections_per_address - 1)
        in_head = [ch for ch in others if ch.head_of is not None and ch.waiting()]
        self._close_oldest(in_head, self.adj.connection_limit // 2)

    @staticmethod
    def _close_oldest(channels: list[GuardedChannel], keep: int) -> None:
        excess = len(channels) - max(keep, 0)
        for ch in sorted(channels, key=lambda ch: ch.last_activity)[: max(excess, 0)]:
            ch.will_close = True

    # --- judging a request from its head

    def judge(self, request: GuardedParser, extra: int) -> bool:
        """Called when a head with a body has arrived; True when it was refused at once."""
        size = request.body_size
        preflight = self.guard.preflight
        if preflight is None or (size is not None and size <= SMALL_BODY):
            return False
        environ = self.head_environ(request)
        refused = preflight.quick(environ)
        if refused is not None:
            self.refuse(request, refused, extra)
            return True
        self.judging = request
        future = self.guard.executor.submit(preflight.check, environ)
        future.add_done_callback(lambda done: self._verdict_ready(request, done))
        return False

    def head_environ(self, request: GuardedParser) -> dict[str, Any]:
        """The WSGI environ's head part, as waitress and its proxy translation make it."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.command.upper(),
            "PATH_INFO": "/" + request.path.lstrip("/"),
            "QUERY_STRING": request.query,
            "REMOTE_ADDR": self.peer,
            "SERVER_NAME": self.server.server_name,
            "SERVER_PORT": str(self.server.effective_port),
            "wsgi.url_scheme": request.url_scheme,
        }
        for key, value in request.headers.items():
            environ.setdefault(RENAMED_HEADERS.get(key, "HTTP_" + key), value)
        return self.guard.translate(environ)

    def _verdict_ready(
        self, request: GuardedParser, done: concurrent.futures.Future[MinirepoError | None]
    ) -> None:
        try:
            result = done.result()
        except Exception:  # the app would answer 500; let it
            log.exception("could not judge a request from its head")
            result = None
        self.verdict = (request, result)
        self.server.pull_trigger()

    def _apply_verdict(self) -> None:
        assert self.verdict is not None  # noqa: S101 - called only when set
        request, refused = self.verdict
        self.verdict = None
        self.judging = None
        if request is not self.request or not self.connected:
            return
        # A chunked body, or one past the limit by the form's framing, counts as the limit.
        limit = self.guard.settings.max_upload_size
        size = min(request.body_size or limit, limit)
        if refused is None and not self.guard.budget.reserve(size):
            refused = SpoolFull("Server busy receiving other uploads; retry shortly")
        if refused is None:
            request.reserved = size
            if request.expect_continue and not self.requests:
                self.send_continue()
            return
        with self.requests_lock:
            self.refuse(request, refused, request.body_bytes_received)
            self.requests.append(request)
            self.request = None
            if len(self.requests) == 1:
                self.server.add_task(self)

    def send_continue(self) -> None:
        """Never while the head is judged (sent when it is let through), and never a
        `100 Continue` a complete request would wait behind (found by fuzzing)."""
        if self.judging is not None:
            return
        was_complete = self.request.completed
        super().send_continue()
        self.request.completed = was_complete

    def refuse(self, request: GuardedParser, error: MinirepoError, received: int) -> None:
        """Answer `error` once waitress hands the request to a worker; meanwhile read the
        rest of the body (declared size less `received`) and throw it away."""
        request.error = Refused(error, request.path)
        request.completed = True
        request.expect_continue = False
        size = request.body_size
        left = (size if size is not None else self.guard.settings.max_upload_size) - received
        if left > 0:
            self.drain_left = min(left, self.guard.settings.max_upload_size)
            self.drain_until = time.monotonic() + DRAIN_SECONDS
        else:
            self.close_when_flushed = True

    def _stop_draining(self) -> None:
        self.drain_until = None
        self.drain_left = 0
        if not self.requests:  # else the answer's task closes the connection when done
            self.close_when_flushed = True

    # --- slow readers

    def write_soon(self, data: bytes) -> int:
        self.in_write = True
        try:
            return int(super().write_soon(data))
        finally:
            self.in_write = False

    def _flush_outbufs_below_high_watermark(self) -> None:
        """Waits for a slow reader only inside a response; between two pipelined requests
        `service()` defers the next one instead, so no worker waits on a client."""
        if self.in_write:
            super()._flush_outbufs_below_high_watermark()

    def service(self) -> None:
        if self.total_outbufs_len > self.adj.outbuf_high_watermark:  # rare: no lock before
            with self.outbuf_lock:
                if self.connected and self.total_outbufs_len > self.adj.outbuf_high_watermark:
                    self.deferred = True
                    self.server.pull_trigger()
                    return
        super().service()

    def _resume_deferred(self) -> None:
        with self.outbuf_lock:
            ready = not self.connected or self.total_outbufs_len <= self.adj.outbuf_high_watermark
            if ready:
                self.deferred = False
        if ready:
            self.server.add_task(self)

    def handle_close(self) -> None:
        request = self.request
        if request is not None:
            request.close()  # frees its spool file and its share of the budget
        super().handle_close()
        if self.deferred:
            self._resume_deferred()  # lets the task run once, to clean up the requests


def install() -> None:
    """Idempotent: the body receivers are looked up by name by waitress's parser."""
    if not getattr(parser, "_minirepo_guarded", False):
        parser.FixedStreamReceiver = _guarded(receiver.FixedStreamReceiver)
        parser.ChunkedReceiver = _guarded(receiver.ChunkedReceiver)
        parser._minirepo_guarded = True


def proxy_adjustments(settings: Settings) -> dict[str, Any]:
    """waitress's trusted-proxy adjustments: none unless a proxy is named (the
    X-Forwarded-* headers are then cleared, whoever sent them)."""
    if not settings.trusted_proxy:
        return {}
    return {
        "trusted_proxy": settings.trusted_proxy,
        "trusted_proxy_headers": set(settings.trusted_proxy_headers.lower().split()),
        "trusted_proxy_count": 1,
    }


def proxy_translation(settings: Settings) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """waitress's own trusted-proxy rules, for a head as for a request."""
    seen: dict[str, Any] = {}

    def capture(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen["environ"] = environ
        return []

    middleware = proxy_headers_middleware(
        capture, clear_untrusted=True, **proxy_adjustments(settings)
    )

    def translate(environ: dict[str, Any]) -> dict[str, Any]:
        seen.clear()
        middleware(environ, lambda *args: None)
        return dict(seen.get("environ", environ))

    return translate


def create_server(
    app: Any,
    settings: Settings,
    preflight: Preflight | None,
    budget: SpoolBudget,
    sockets: list[socket.socket] | None = None,
) -> Any:
    """waitress's server for `app`, with minirepo's channel on every socket it listens on.
    The app holds `budget`, so `/-/health` and `/-/metrics` see what is spooled.
    `sockets`: listening sockets bound already (a worker's, `minirepo.workers`), else it
    binds the settings' host and port."""
    install()
    socket_map: dict[int, Any] = {}
    where: dict[str, Any] = (
        {"sockets": sockets} if sockets else {"host": settings.host, "port": settings.port}
    )
    server = waitress.create_server(
        app,
        map=socket_map,
        **where,
        threads=settings.threads,
        connection_limit=settings.connection_limit,
        channel_timeout=settings.channel_timeout,
        cleanup_interval=LOOP_SECONDS,
        asyncore_loop_timeout=LOOP_SECONDS,
        # select() fails for every descriptor past 1023 (FD_SETSIZE): the server exited
        # with "filedescriptor out of range" under the issue-14 attack on older code.
        asyncore_use_poll=True,
        outbuf_high_watermark=OUTBUF_HIGH_WATERMARK,
        max_request_body_size=settings.max_upload_size + BODY_SLACK,
        clear_untrusted_proxy_headers=True,
        expose_tracebacks=False,
        ident="minirepo",
        **proxy_adjustments(settings),
    )
    guard = Guard(
        settings=settings,
        preflight=preflight,
        budget=budget,
        executor=concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="minirepo-judge"),
        translate=proxy_translation(settings),
    )
    channel_class = type("MinirepoChannel", (GuardedChannel,), {"guard": guard})
    for listener in list(socket_map.values()):
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = channel_class
            _sweep_deadlines(listener)
    return server


def _sweep_deadlines(listener: BaseWSGIServer) -> None:
    """waitress runs its server's `maintenance(now)` every `cleanup_interval` (closing idle
    channels); after it, this checks every channel's deadlines. Done here rather than in
    each channel's `readable()`, which the loop calls for every channel every time round."""
    closes_idle = listener.maintenance

    def maintenance(now: float) -> None:
        closes_idle(now)
        clock = time.monotonic()
        for open_channel in list(listener.active_channels.values()):
            if isinstance(open_channel, GuardedChannel):
                open_channel.enforce_deadlines(clock)

    listener.maintenance = maintenance
