"""The servers the integration tests start, on the stacks a test asks for.

A test (or a module, `pytestmark = pytest.mark.stacks`) marked `stacks` runs twice: on the
embedded default (SQLite and the data folder's files) and on PostgreSQL with an S3 bucket
(SeaweedFS), the same test code against both (tests/helpers/stacks.py). Others run on the
default only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from selenium import webdriver

from tests.helpers.browser import chromium
from tests.helpers.serverproc import Server, client_env, running_server
from tests.helpers.stacks import DEFAULT_STACK, STACKS, Stack
from tests.helpers.tripwire import Tripwire


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stacks: run the module on SQLite + local files and on PostgreSQL + S3"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "stack" in metafunc.fixturenames and metafunc.definition.get_closest_marker("stacks"):
        metafunc.parametrize("stack", STACKS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with contextlib.ExitStack() as held:
        yield Stack(getattr(request, "param", DEFAULT_STACK), request, held)


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory, stack: Stack
) -> Callable[..., AbstractContextManager[Server]]:
    """Start another server (own data folder, database and bucket prefix) with settings
    given as environment values."""

    def start(**settings: str) -> AbstractContextManager[Server]:
        env = {f"MINIREPO_{key.upper()}": value for key, value in settings.items()}
        return running_server(tmp_path_factory.mktemp("server"), {**stack.env(), **env})

    return start


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server"), stack.env()) as srv:
        yield srv


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return client_env(tmp_path / "home")


@pytest.fixture(scope="module")
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    yield wire
    wire.close()


@pytest.fixture
def loopback_env(tmp_path: Path, tripwire: Tripwire) -> Iterator[dict[str, str]]:
    """A clean client environment whose every request off loopback hits the tripwire; the
    test fails if one did."""
    with tripwire.untouched():
        yield client_env(tmp_path / "home") | tripwire.proxies()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with its own profile (tests/helpers/browser.py)."""
    with chromium(tmp_path / "profile") as driver:
        yield driver
