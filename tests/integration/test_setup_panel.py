"""The setup panel's pip line, with a token made from the panel, works with the real pip
against a real server (a private repository: the token is what lets pip in)."""

from __future__ import annotations

import html
import re
import shlex
import sys
from pathlib import Path

import requests

from tests.helpers.clients import installed, run
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import client_env, running_server
from tests.helpers.webui import csrf_of

BROWSER = {"Accept": "text/html"}
PIP_LINE = re.compile(r'<pre id="setup-pip-command"[^>]*>(.*?)</pre>', re.DOTALL)


def page_csrf(response: requests.Response) -> str:
    assert response.status_code == 200, response.status_code
    return csrf_of(response.text)


def test_the_pip_line_of_the_panel_installs(tmp_path: Path) -> None:
    settings = {"MINIREPO_READ": "authenticated"}
    with running_server(tmp_path / "server", settings, serve_args=("--no-upstream",)) as server:
        wheel = make_wheel(tmp_path, Dist("panel-pkg", "1.0"))
        assert server.upload(wheel).status_code == 200
        server.add_user("alice", "alice-password-1")
        browser = requests.Session()
        csrf = page_csrf(browser.get(f"{server.url}/-/login", headers=BROWSER, timeout=30))
        form = {"user": "alice", "password": "alice-password-1", "csrf_token": csrf}
        response = browser.post(f"{server.url}/-/login", data=form, timeout=30)
        assert response.status_code == 200  # followed to the home page
        csrf = page_csrf(browser.get(f"{server.url}/main/", headers=BROWSER, timeout=30))
        form = {"csrf_token": csrf, "permission": "read", "expires_days": "1"}
        response = browser.post(f"{server.url}/main/-/token", data=form, timeout=30)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        found = PIP_LINE.search(response.text)
        assert found is not None
        argv = shlex.split(html.unescape(found.group(1)))
        assert argv[:2] == ["pip", "install"]
        assert argv[-1] == "PACKAGE"
        assert "__token__:mr-" in argv[3]

        target = tmp_path / "target"
        cmd = [sys.executable, "-m", "pip", *argv[1:-1], "--no-cache-dir", "--target", str(target)]
        result = run([*cmd, "panel-pkg"], client_env(tmp_path / "home"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "panel_pkg" in installed(target)
