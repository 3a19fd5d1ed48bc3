"""Advisories and block policies as the real clients meet them (issue 19, tests 4 and 7),
against a real `minirepo serve` on loopback, on both stacks.

`main` holds demo 1.0 and 1.1, a CRITICAL advisory affects demo <1.1 (fixed in 1.1) and
`main` blocks `critical`: pip and uv install 1.1 when unpinned and refuse `demo==1.0` with
the policy's reason in their output (both fail on the 403 for the PEP 658 `.metadata` before
they would warn about the yanked file). pip-audit, pointed at `/-/osv/v1/query`, reports the
advisory and its fix. The clients' proxies point at a tripwire: nothing may leave loopback.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from uv import find_uv_bin

from tests.helpers.clients import flat
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.osvdocs import record, write_folder
from tests.helpers.serverproc import Server

pytestmark = pytest.mark.stacks

PY = sys.executable
UV = find_uv_bin()
JSON_V1 = {"Accept": "application/vnd.pypi.simple.v1+json"}
CRITICAL = record("GHSA-crit-0000-0001", "demo", fixed="1.1", severity="CRITICAL")
REASON = "blocked by minirepo policy: GHSA-crit-0000-0001 (critical); fixed in 1.1"
TIMEOUT = 180


@dataclasses.dataclass
class Blocked:
    """The server once `main` blocks demo 1.0, and the page's ETag before and after the
    advisory import."""

    server: Server
    etag_before: str
    etag_after: str

    @property
    def index(self) -> str:
        return f"{self.server.url}/simple/"


def page(server: Server, **headers: str) -> requests.Response:
    return requests.get(f"{server.url}/simple/demo/", headers={**JSON_V1, **headers}, timeout=10)


@pytest.fixture(scope="module")
def blocked(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Blocked:
    folder = tmp_path_factory.mktemp("demo")
    for version in ("1.0", "1.1"):
        uploaded = server.upload(make_wheel(folder, Dist("demo", version)))
        assert uploaded.status_code == 200, uploaded.text
    before = page(server).headers["ETag"]
    server.cli("advisories", "update", "--from", str(write_folder(folder / "osv", [CRITICAL])))
    after = page(server).headers["ETag"]
    server.cli("repo", "set", "main", "--block", "critical")
    return Blocked(server, before, after)


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a client with nothing to read on stdin and a time limit."""
    return subprocess.run(cmd, env=env, input="", capture_output=True, text=True, timeout=TIMEOUT)


def install(
    client: str, index: str, target: Path, spec: str, env: dict[str, str]
) -> tuple[int, str]:
    """`pip install` or `uv pip install` into `target`: (exit code, stdout and stderr)."""
    if client == "pip":
        cmd = [PY, "-m", "pip", "install", "--no-cache-dir", "--target", str(target)]
    else:
        cmd = [UV, "pip", "install", "--target", str(target), "--python", PY]
    result = run([*cmd, "--index-url", index, spec], env)
    return result.returncode, result.stdout + result.stderr


def dist_infos(target: Path) -> set[str]:
    """What landed in `target` (uv leaves a `.lock` there too)."""
    return {path.name for path in target.glob("*.dist-info")}


def test_the_page_etag_changes_with_the_advisories(blocked: Blocked) -> None:
    """A client revalidating with the ETag it had before the import gets the new page."""
    assert blocked.etag_after != blocked.etag_before
    stale = page(blocked.server, **{"If-None-Match": blocked.etag_before})
    assert stale.status_code == 200
    assert stale.headers["ETag"] != blocked.etag_before
    yanked = {entry["filename"]: entry["yanked"] for entry in stale.json()["files"]}
    assert yanked == {"demo-1.0-py3-none-any.whl": REASON, "demo-1.1-py3-none-any.whl": False}
    fresh = page(blocked.server, **{"If-None-Match": stale.headers["ETag"]})
    assert fresh.status_code == 304


@pytest.mark.parametrize("client", ["pip", "uv"])
def test_unpinned_gets_the_fixed_version_and_the_blocked_pin_fails_with_the_reason(
    blocked: Blocked, loopback_env: dict[str, str], tmp_path: Path, client: str
) -> None:
    code, output = install(client, blocked.index, tmp_path / "latest", "demo", loopback_env)
    assert code == 0, output
    assert dist_infos(tmp_path / "latest") == {"demo-1.1.dist-info"}
    code, output = install(client, blocked.index, tmp_path / "pinned", "demo==1.0", loopback_env)
    assert code != 0, output
    # pip: "ERROR: 403 Client Error: <reason> for url: …/demo-1.0-py3-none-any.whl.metadata";
    # uv: "cause: HTTP status client error (403 <reason>) for url (….metadata)".
    assert REASON in flat(output), output
    assert "demo-1.0-py3-none-any.whl.metadata" in output
    assert dist_infos(tmp_path / "pinned") == set()


def test_pip_audit_reports_the_advisory_from_the_osv_query_api(
    blocked: Blocked, loopback_env: dict[str, str], tmp_path: Path
) -> None:
    """`--disable-pip --no-deps`: pip-audit reads the pins as they are (no resolver, no
    index) and asks only the OSV URL it is given."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("demo==1.0\nDemo==1.1\n")
    cmd = [PY, "-m", "pip_audit", "-s", "osv", "--osv-url"]
    cmd += [f"{blocked.server.url}/-/osv/v1/query", "-r", str(requirements)]
    cmd += ["--no-deps", "--disable-pip", "--progress-spinner", "off", "--format", "json"]
    result = run(cmd, loopback_env)
    assert result.returncode == 1, result.stdout + result.stderr  # 1: it found something
    report = json.loads(result.stdout)
    found = {
        (dep["name"], dep["version"]): [(v["id"], v["fix_versions"]) for v in dep["vulns"]]
        for dep in report["dependencies"]
    }
    assert found == {
        ("demo", "1.0"): [(CRITICAL["id"], ["1.1"])],
        ("demo", "1.1"): [],
    }
