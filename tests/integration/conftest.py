from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from selenium import webdriver

from tests.helpers.browser import chromium
from tests.helpers.serverproc import Server, client_env, running_server


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., AbstractContextManager[Server]]:
    """Start another server (own data folder) with settings given as environment values."""

    def start(**settings: str) -> AbstractContextManager[Server]:
        env = {f"MINIREPO_{key.upper()}": value for key, value in settings.items()}
        return running_server(tmp_path_factory.mktemp("server"), env)

    return start


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return client_env(tmp_path / "home")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with its own profile (tests/helpers/browser.py)."""
    with chromium(tmp_path / "profile") as driver:
        yield driver
