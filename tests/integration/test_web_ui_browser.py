"""The web UI end to end, in a real headless Chromium against a real `minirepo serve`
(issue 17): log in, create a token from the setup panel, install with the pip line copied
from the page, upload wheels through the form, find one by search, read its rendered
README, yank a version and see pip skip it; then the admin pages. Every page visited is
saved as a screenshot under the test's temp folder (`screenshots/`), and the folder is
printed so a person can look at them. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.helpers.browser import BROWSER_TIMEOUT
from tests.helpers.clients import installed, run
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import Server, client_env, running_server

USER, PASSWORD = "alice", "alice-password-1"
ADMIN, ADMIN_PASSWORD = "root", "root-password-1"
PROJECT = "web-ui-demo"
README = """# Web UI demo

A package published **through the browser**.

<script>document.title = "owned"</script>

| column | value |
|--------|-------|
| a      | 1     |
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path / "server", serve_args=("--no-upstream",)) as srv:
        srv.add_user(USER, PASSWORD)
        srv.add_user(ADMIN, ADMIN_PASSWORD, admin=True)
        yield srv


class Visit:
    """The browser on one server: opens pages, waits for them, keeps a screenshot of each."""

    def __init__(self, driver: webdriver.Chrome, server: Server, shots: Path) -> None:
        self.driver = driver
        self.server = server
        self.shots = shots
        self.taken: list[Path] = []
        shots.mkdir()

    def open(self, path: str) -> None:
        self.driver.get(self.server.url + path)

    def shot(self, name: str) -> None:
        self.driver.set_window_size(1280, max(900, self._height()))
        target = self.shots / f"{len(self.taken) + 1:02d}-{name}.png"
        assert self.driver.save_screenshot(str(target))
        self.taken.append(target)

    def _height(self) -> int:
        height = self.driver.execute_script("return document.body.scrollHeight")
        return min(int(height), 6000)

    def find(self, css: str) -> webdriver.remote.webelement.WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def submit(self, button_css: str) -> None:
        """Click a submit button and wait for the next page (the old one goes stale)."""
        old = self.find("html")
        self.find(button_css).click()
        WebDriverWait(self.driver, BROWSER_TIMEOUT).until(lambda _: _stale(old))

    def text(self) -> str:
        return str(self.find("body").text)


def _stale(element: webdriver.remote.webelement.WebElement) -> bool:
    try:
        element.tag_name  # noqa: B018 - touching it raises once the page is gone
    except Exception:  # selenium's StaleElementReferenceException
        return True
    return False


def pip_install(argv: list[str], target: Path, home: Path, spec: str) -> str:
    cmd = [sys.executable, "-m", "pip", *argv[1:-1], "--no-cache-dir", "--target", str(target)]
    result = run([*cmd, spec], client_env(home))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_person_uses_the_web_ui(
    server: Server, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    visit = Visit(browser, server, tmp_path / "screenshots")
    print(f"\nscreenshots: {visit.shots}")

    visit.open("/")
    visit.shot("home-anonymous")
    visit.driver.find_element(By.LINK_TEXT, "Log in").click()
    WebDriverWait(browser, BROWSER_TIMEOUT).until(lambda d: "/-/login" in d.current_url)
    visit.shot("login")
    visit.find("#user").send_keys(USER)
    visit.find("#password").send_keys(PASSWORD)
    visit.submit("form.stack button[type=submit]")
    assert USER in visit.find("header.top").text

    # A token from the setup panel, filled into the snippets once.
    visit.open("/main/")
    visit.find("#token-description").send_keys("browser test")
    Select(visit.find("#token-permission")).select_by_value("upload")
    visit.submit("#new-token-form + form button[type=submit]")
    token = visit.find("#new-token").text.strip()
    assert token.startswith("mr-")
    pip_line = visit.find("#setup-pip-command").text
    assert token in pip_line
    visit.shot("repository-with-new-token")

    # Two versions through the upload form; the README is Markdown with a script in it.
    for version in ("1.0", "2.0"):
        folder = tmp_path / f"dist-{version}"
        folder.mkdir()
        wheel = make_wheel(
            folder,
            Dist(PROJECT, version, description=README, description_content_type="text/markdown"),
        )
        visit.open("/main/")
        visit.find("#upload-content").send_keys(str(wheel))
        visit.submit("#upload-content ~ button[type=submit]")
        assert f"/main/project/{PROJECT}/" in browser.current_url
    visit.shot("project-after-upload")

    # The README rendered; its script is shown as text (markdown-it escapes raw HTML), never run.
    readme = visit.find(".readme")
    assert readme.find_element(By.TAG_NAME, "h1").text == "Web UI demo"
    assert readme.find_element(By.TAG_NAME, "strong").text == "through the browser"
    assert readme.find_elements(By.TAG_NAME, "table")
    assert "owned" not in browser.title
    assert not readme.find_elements(By.TAG_NAME, "script")

    # Found by search.
    visit.open("/")
    visit.find("#q").send_keys("demo")
    visit.submit("form.search button[type=submit]")
    visit.shot("search")
    browser.find_element(By.LINK_TEXT, PROJECT).click()
    WebDriverWait(browser, BROWSER_TIMEOUT).until(lambda d: f"/project/{PROJECT}/" in d.current_url)

    # The pip line from the page installs the newest version.
    argv = shlex.split(pip_line)
    assert argv[:2] == ["pip", "install"]
    pip_install(argv, tmp_path / "before", tmp_path / "home", PROJECT)
    assert "web_ui_demo-2.0.dist-info" in installed(tmp_path / "before")

    # Yank 2.0 through the page (a confirm step), then pip takes 1.0.
    visit.open(f"/main/project/{PROJECT}/2.0/")
    visit.submit("form[action$='/2.0/yank'] button[type=submit]")
    visit.shot("yank-confirm")
    visit.find("#reason").send_keys("broken build")
    visit.submit("form.stack button[type=submit]")
    assert "broken build" in visit.text()
    visit.shot("project-yanked")
    pip_install(argv, tmp_path / "after", tmp_path / "home", PROJECT)
    assert "web_ui_demo-1.0.dist-info" in installed(tmp_path / "after")

    visit.open("/-/tokens")
    assert "browser test" in visit.text()
    visit.shot("my-tokens")
    visit.open("/-/search?q=demo&format=json")
    assert PROJECT in visit.text()

    # An admin's pages, after logging out and in again.
    visit.open("/")
    visit.submit("form[action$='/-/logout'] button")
    visit.open("/-/login?next=/-/admin/")
    visit.find("#user").send_keys(ADMIN)
    visit.find("#password").send_keys(ADMIN_PASSWORD)
    visit.submit("form.stack button[type=submit]")
    assert browser.current_url.endswith("/-/admin/")
    for path, name in (
        ("/-/admin/", "admin"),
        ("/-/admin/users", "admin-users"),
        ("/-/admin/repos", "admin-repositories"),
        ("/-/admin/audit", "admin-audit"),
    ):
        visit.open(path)
        visit.shot(name)
    assert "yank" in visit.text()
    visit.open("/main/project/no-such-thing/")
    visit.shot("not-found")
    assert len(visit.taken) >= 12
