"""What `minirepo serve` sets up around waitress before it serves."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from minirepo import server


class _Libc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return 1


def test_malloc_arenas_are_limited_as_malloc_arena_max_2(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _Libc()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    server.limit_malloc_arenas()
    assert libc.calls == [(-8, 2)]  # M_ARENA_MAX from glibc's malloc.h


@pytest.mark.parametrize("failure", [OSError("no libc"), AttributeError("mallopt")])
def test_a_libc_without_mallopt_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def refuse(name: Any) -> Any:
        raise failure

    monkeypatch.setattr(ctypes, "CDLL", refuse)
    server.limit_malloc_arenas()
