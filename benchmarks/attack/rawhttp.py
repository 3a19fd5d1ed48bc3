"""Hand-written HTTP on sockets the attack owns: a source address of its choosing, a body
sent piece by piece that stops when an answer comes early, and every socket cut at once
when the attack ends. No HTTP library would do any of these."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import re
import select
import socket
import threading
import time

from benchmarks.attack.target import SERVER

SEND_CHUNK = 256 * 1024
CONNECT_TIMEOUT = 2.0
SOCKET_WAIT = 0.5  # each blocking call, so a loop sees the end of the attack quickly
SEND_STALL = 30.0  # a server that takes no byte for this long: give up the request
ANSWER_TIMEOUT = 60.0  # a bomb takes seconds to read
HEAD_LIMIT = 64 * 1024


def why(exc: BaseException) -> str:
    """A socket error in a word (its errno's name): tallies count alike errors as one."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    code = getattr(exc, "errno", None)
    return errno.errorcode.get(code, type(exc).__name__) if code else type(exc).__name__


class Sockets:
    """Every open attack socket, so that the attack's end cuts them all at once (shutdown
    wakes a thread blocked in send or recv; close would not)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False

    def connect(self, source: str, rcvbuf: int = 0) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf:  # before connect, or the window is already advertised
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(CONNECT_TIMEOUT)
            sock.bind((source, 0))
            sock.connect((SERVER, self.port))
            sock.settimeout(SOCKET_WAIT)
            with self._lock:
                if self._cut:
                    raise ConnectionAbortedError(errno.ECONNABORTED, "the attack is over")
                self._open.add(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        sock.close()

    def cut_all(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@dataclasses.dataclass
class Attack:
    """What every attack thread shares: where to aim, when to stop, the sockets to cut."""

    sockets: Sockets
    deadline: float
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def over(self) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.deadline


class Tally:
    """One attack's attempts and what each got: a status, "reset", "held to the end"..."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.answers: collections.Counter[str] = collections.Counter()

    def note(self, answer: str) -> None:
        with self._lock:
            self.answers[answer] += 1

    @property
    def attempts(self) -> int:
        with self._lock:
            return sum(self.answers.values())


@dataclasses.dataclass(frozen=True)
class Request:
    head: bytes
    body: tuple[bytes, ...] = ()


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    location: str | None
    early: bool  # came before the whole body was sent


def status_of(head: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(match.group(1)) if match else None


def location_of(head: bytes) -> str | None:
    match = re.search(rb"\r\nLocation:[ \t]*([^\r\n]*)", head, re.IGNORECASE)
    return match.group(1).decode("latin-1").strip() if match else None


def readable(sock: socket.socket) -> bool:
    """Whether an answer (or the end) waits; poll, as select() fails on fds above 1023."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def send(attack: Attack, sock: socket.socket, request: Request) -> bool:
    """Sends the request; True when an answer came before the body's end (sending stops)."""
    sock.sendall(request.head)
    for piece in request.body:
        view = memoryview(piece)
        stalled = 0.0
        while view:
            if attack.stop.is_set():
                raise ConnectionAbortedError(errno.ECONNABORTED, "the attack is over")
            if readable(sock):
                return True
            try:
                view = view[sock.send(view[:SEND_CHUNK]) :]
                stalled = 0.0
            except TimeoutError:
                stalled += SOCKET_WAIT
                if stalled >= SEND_STALL:
                    raise
    return False


def read_head(attack: Attack, sock: socket.socket) -> bytes:
    """The answer's status line and headers, or b"" if the server closed without one."""
    head = b""
    waited = 0.0
    while b"\r\n\r\n" not in head and len(head) < HEAD_LIMIT:
        if attack.stop.is_set():
            raise ConnectionAbortedError(errno.ECONNABORTED, "the attack is over")
        try:
            chunk = sock.recv(HEAD_LIMIT)
        except TimeoutError:
            waited += SOCKET_WAIT
            if waited >= ANSWER_TIMEOUT:
                raise
            continue
        if not chunk:
            break
        head += chunk
    return head


def exchange(attack: Attack, source: str, request: Request) -> Answer | str:
    """One request on a new connection: its answer, or what went wrong in a few words."""
    try:
        sock = attack.sockets.connect(source)
    except OSError as exc:
        return "cut at the end" if attack.stop.is_set() else f"connect failed ({why(exc)})"
    stage = "sending"
    try:
        early = send(attack, sock, request)
        stage = "waiting"
        head = read_head(attack, sock)
    except OSError as exc:
        if attack.stop.is_set():
            return "cut at the end"
        return f"{why(exc)} while {stage}"
    finally:
        attack.sockets.close(sock)
    status = status_of(head)
    if status is None:
        return "closed, no answer" if not head else "not HTTP"
    return Answer(status, location_of(head), early)
