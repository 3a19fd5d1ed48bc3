"""A real browser, holding an account's Basic credentials, cannot be made to upload by a
page on another origin (cross-site request forgery, issue 14).

A browser that once answered the index's Basic prompt keeps sending those credentials
to it, and an HTML form may POST multipart to any origin: without a check the other page's
form publishes a wheel as the victim. Here real Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium) plays the victim against a real `minirepo serve`:
it logs in to the index the way a person does, then opens the other page and submits its
form. Loopback only; every wait is bounded by a timeout of seconds.

Outside CI the test is skipped when Chromium is not installed; with CI=true it fails then,
so CI can never pass it by skipping.
"""

from __future__ import annotations

import base64
import html
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers.browser import BROWSER_TIMEOUT as TIMEOUT
from tests.helpers.distfactory import Dist, make_wheel, post_upload, upload_form
from tests.helpers.serverproc import Server, running_server

USER, PASSWORD = "victim", "victim-password-1"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose index asks for credentials (so a browser visiting it is prompted),
    with an account that may upload to `main` by its default role."""
    with running_server(tmp_path_factory.mktemp("csrf"), {"MINIREPO_READ": "authenticated"}) as srv:
        srv.add_user(USER, PASSWORD)
        yield srv


class OtherSite:
    """Serves one page, from an origin other than the index's, until closed."""

    def __init__(self, host: str, page: str) -> None:
        body = page.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: pytest shows stderr of a failing test, and this adds nothing."""

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def forged_form(action: str, wheel: Path) -> str:
    """The page an attacker writes: the fields of the legacy upload API, and a file input
    that the victim (here, the test) fills with the wheel."""
    fields = {key: value for key, value in upload_form(wheel).items() if isinstance(value, str)}
    inputs = "\n".join(
        f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">'
        for key, value in fields.items()
    )
    return f"""<!doctype html>
<title>Nothing to see</title>
<form id="forged" method="post" enctype="multipart/form-data" action="{html.escape(action)}">
{inputs}
<input type="file" name="content" id="content">
</form>
"""


def statuses(driver: webdriver.Chrome, url: str, method: str) -> list[int]:
    """The status of each answer the browser received for `method` `url`, in order."""
    requested: set[str] = set()
    answers: list[int] = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            request = params["request"]
            if request["url"] == url and request["method"] == method:
                requested.add(params["requestId"])
        elif message["method"] == "Network.responseReceived" and params["requestId"] in requested:
            answers.append(int(params["response"]["status"]))
    return answers


def log_in(driver: webdriver.Chrome, server: Server) -> None:
    """Answer the index's Basic prompt once, as the victim did, and check that the browser
    now sends the credentials by itself."""
    host = server.url.removeprefix("http://")
    driver.get(f"http://{USER}:{PASSWORD}@{host}/simple/")
    driver.get_log("performance")  # only the visit below, without credentials, is checked
    driver.get(f"{server.url}/simple/")
    assert statuses(driver, f"{server.url}/simple/", "GET") == [200]


def stored(server: Server, wheel: Path) -> bool:
    """Whether a file named like `wheel` is in the data folder, under any blob key."""
    return any(path.name == wheel.name for path in (server.data / "files").rglob("*"))


@pytest.mark.parametrize(
    ("other_host", "project"),
    [
        # Another address: another site (Sec-Fetch-Site: cross-site).
        ("127.0.0.2", "csrf-cross-site"),
        # The same address on another port: the same site, another origin (same-site).
        ("127.0.0.1", "csrf-same-site"),
    ],
)
def test_form_on_another_origin_cannot_upload(
    private: Server, browser: webdriver.Chrome, tmp_path: Path, other_host: str, project: str
) -> None:
    wheel = make_wheel(tmp_path, Dist(project, "1.0"))
    log_in(browser, private)
    target = f"{private.url}/"
    site = OtherSite(other_host, forged_form(target, wheel))
    try:
        browser.get(site.url)
        browser.find_element(By.ID, "content").send_keys(str(wheel))
        browser.execute_script("document.getElementById('forged').submit()")
        WebDriverWait(browser, TIMEOUT).until(lambda driver: driver.current_url == target)
        WebDriverWait(browser, TIMEOUT).until(
            lambda driver: driver.find_element(By.TAG_NAME, "body").text
        )
        answered = statuses(browser, target, "POST")
        page = browser.find_element(By.TAG_NAME, "body").text
    finally:
        site.close()
    assert answered == [403], (answered, page)
    assert page.startswith(f"Cross-site request refused (Origin {site.url.rstrip('/')},")
    listing = requests.get(
        f"{private.url}/simple/{project}/", auth=(USER, PASSWORD), timeout=TIMEOUT
    )
    assert listing.status_code == 404
    assert not stored(private, wheel)


# Run in a page of the index: the same upload, as the index's own pages (the web UI) may.
FETCH_UPLOAD = """
const [url, fields, filename, encoded, done] = arguments;
const form = new FormData();
for (const [key, value] of Object.entries(fields)) form.append(key, value);
const bytes = Uint8Array.from(atob(encoded), (char) => char.charCodeAt(0));
form.append("content", new Blob([bytes]), filename);
fetch(url, {method: "POST", body: form}).then((r) => done(r.status), (e) => done(String(e)));
"""


def test_page_of_the_index_itself_may_upload(
    private: Server, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """The control: the same browser, credentials and upload, from the index's own origin
    (`Origin` the index's, `Sec-Fetch-Site: same-origin`), is accepted."""
    wheel = make_wheel(tmp_path, Dist("csrf-same-origin", "1.0"))
    log_in(browser, private)
    fields = {key: value for key, value in upload_form(wheel).items() if isinstance(value, str)}
    encoded = base64.b64encode(wheel.read_bytes()).decode()
    browser.set_script_timeout(TIMEOUT)
    status = browser.execute_async_script(
        FETCH_UPLOAD, f"{private.url}/", fields, wheel.name, encoded
    )
    assert status == 200
    assert stored(private, wheel)


# --- clients: no browser, so neither header ------------------------------------------------


def upload_with(server: Server, wheel: Path, headers: dict[str, str]) -> requests.Response:
    credentials = ("__token__", server.admin_token)
    return post_upload(f"{server.url}/", wheel, credentials, headers=headers, timeout=TIMEOUT)


@pytest.mark.parametrize(
    ("headers", "project"),
    [
        ({}, "raw-no-origin"),  # twine, uv, poetry, pdm, hatch, flit, curl
        ({"Origin": "{own}"}, "raw-own-origin"),
        ({"Origin": "{own}", "Sec-Fetch-Site": "same-origin"}, "raw-same-origin"),
    ],
)
def test_upload_without_a_foreign_origin_works(
    server: Server, tmp_path: Path, headers: dict[str, str], project: str
) -> None:
    wheel = make_wheel(tmp_path, Dist(project, "1.0"))
    sent = {name: value.format(own=server.url) for name, value in headers.items()}
    response = upload_with(server, wheel, sent)
    assert response.status_code == 200, response.reason
    assert stored(server, wheel)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "{own}", "Sec-Fetch-Site": "same-site"},
    ],
)
def test_upload_from_another_origin_is_refused_on_the_wire(
    server: Server, tmp_path: Path, headers: dict[str, str]
) -> None:
    wheel = make_wheel(tmp_path, Dist("raw-foreign", "1.0"))
    sent = {name: value.format(own=server.url) for name, value in headers.items()}
    response = upload_with(server, wheel, sent)
    assert response.status_code == 403
    assert response.reason.startswith("Cross-site request refused (")
    assert response.reason.endswith("use twine/uv or the minirepo web UI")
    assert response.text == response.reason + "\n"
    assert not stored(server, wheel)
