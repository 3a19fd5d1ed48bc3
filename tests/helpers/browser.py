"""Debian's Chromium under selenium, for the tests that need a real browser."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

BROWSER_TIMEOUT = 20  # seconds, for a page load or a wait


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) from Debian's packages, or None when either is missing."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with its own profile; the driver path is given, so selenium's
    driver manager never tries to download one. Outside CI the test is skipped when
    Chromium is missing; with CI=true it fails then, so CI can never pass it by skipping."""
    paths = chromium_paths()
    if paths is None:
        missing = "chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI must run the browser test: install {missing}")
        pytest.skip(f"needs {missing}")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # The performance log carries the DevTools network events: the status of each answer.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    try:
        driver.set_page_load_timeout(BROWSER_TIMEOUT)
        yield driver
    finally:
        driver.quit()
