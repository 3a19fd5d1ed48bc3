"""The operator's first minutes: `minirepo serve` on an empty folder, and the lines it prints."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from minirepo.config import Settings
from minirepo.server import first_start_banner
from tests.helpers.clients import installed, run
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import TOKEN_RE, client_env, running_server


def printed_command(log: str, program: str) -> list[str]:
    """The banner line that starts with `program`, split as a shell would."""
    lines = [line.strip() for line in log.splitlines() if line.strip().startswith(program + " ")]
    assert len(lines) == 1, log
    return shlex.split(lines[0])


def test_first_start_prints_url_token_and_working_client_lines(tmp_path: Path) -> None:
    data = tmp_path / "server"
    env = client_env(tmp_path / "home")
    with running_server(data) as server:
        log = server.log.read_text()
        base = server.url + "/"
        assert f"minirepo is serving {base}" in log
        tokens = set(TOKEN_RE.findall(log))
        assert len(tokens) == 1, log
        token = tokens.pop()
        assert "the proxy 'pypi-proxy' of https://pypi.org/simple/ and the group 'all'" in log
        index = f"{base}all/simple/"
        assert f"pip install --index-url {index} --trusted-host 127.0.0.1 PACKAGE" in log
        assert f"uv pip install --index-url {index} PACKAGE" in log
        uploads = f"{base}main/"
        assert f"twine upload --repository-url {uploads} -u __token__ -p {token} dist/*" in log
        assert f"uv publish --publish-url {uploads} --token {token} dist/*" in log
        assert f"poetry config http-basic.minirepo __token__ {token}" in log

        with urllib.request.urlopen(f"{server.url}/-/health", timeout=10) as response:  # noqa: S310
            assert response.status == 200
            assert json.load(response)["status"] == "ok"

        # the printed token is the admin's
        listing = server.cli("token", "list").stdout
        assert token[:11] in listing
        assert "\tadmin\tadmin\t" in listing

        # the printed twine and pip lines work as printed (PACKAGE and dist/* filled in)
        wheel = make_wheel(tmp_path, Dist("first-start-pkg", "1.0"))
        twine = printed_command(log, "twine")
        cmd = [sys.executable, "-m", "twine", *twine[1:-1], "--non-interactive", str(wheel)]
        result = run(cmd, env)
        assert result.returncode == 0, result.stdout + result.stderr
        pip = printed_command(log, "pip")
        target = tmp_path / "target"
        cmd = [sys.executable, "-m", "pip", *pip[1:-1], "--no-cache-dir", "--target", str(target)]
        result = run([*cmd, "first-start-pkg"], env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "first_start_pkg" in installed(target)
    assert server.proc.returncode == 0  # SIGTERM is a clean stop
    first_log_size = len(server.log.read_bytes())

    with running_server(data) as again:
        later = again.log.read_bytes()[first_log_size:].decode()
        assert "minirepo is serving" in later
        assert "First start" not in later
        assert TOKEN_RE.search(later) is None
        with urllib.request.urlopen(f"{again.url}/-/health", timeout=10) as response:  # noqa: S310
            assert response.status == 200
        # what was uploaded before the restart is still there
        page = f"{again.url}/simple/first-start-pkg/"
        with urllib.request.urlopen(page, timeout=10) as response:  # noqa: S310
            assert wheel.name in response.read().decode()


def test_no_upstream_makes_no_proxy_and_no_group(tmp_path: Path) -> None:
    with running_server(tmp_path / "server", serve_args=("--no-upstream",)) as server:
        log = server.log.read_text()
        base = server.url + "/"
        assert f"pip install --index-url {base}simple/ --trusted-host 127.0.0.1 PACKAGE" in log
        assert "pypi-proxy" not in log
        listing = server.cli("repo", "list").stdout.splitlines()
        assert [line.split("\t")[0] for line in listing[1:]] == ["main"]


def test_start_with_bad_settings_is_one_line(tmp_path: Path) -> None:
    env = client_env(tmp_path / "home")
    env.update(MINIREPO_DATA=str(tmp_path / "d"), MINIREPO_READ="everyone")
    result = subprocess.run(
        [sys.executable, "-m", "minirepo", "serve", "--host", "127.0.0.1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "minirepo: Setting 'read' must be one of anonymous, authenticated"
    ]
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])  # noqa: S104
def test_banner_of_a_wildcard_bind_names_this_machine(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """With no address found on the interfaces (test_service_start.py: with some)."""
    monkeypatch.setattr("minirepo.netaddrs.interface_addresses", lambda family: [])
    monkeypatch.setattr("socket.gethostname", lambda: "labbox")
    banner = first_start_banner(Settings(host=host, port=8080), "mr-" + "t" * 43)
    assert "0.0.0.0" not in banner  # noqa: S104
    assert "[::]" not in banner
    assert "--index-url http://labbox:8080/simple/ --trusted-host labbox PACKAGE" in banner
    assert "--repository-url http://labbox:8080/ " in banner


def test_banner_with_public_url() -> None:
    banner = first_start_banner(Settings(public_url="https://pypi.lab.example"), "mr-x")
    assert "pip install --index-url https://pypi.lab.example/simple/ PACKAGE" in banner
    assert "--trusted-host" not in banner  # https needs no exception
    ipv6 = first_start_banner(Settings(host="::1", port=9000), "mr-x")
    assert "--index-url http://[::1]:9000/simple/ --trusted-host ::1 PACKAGE" in ipv6
    assert "(the web UI at https://pypi.lab.example/ logs in with it)" in banner


def test_banner_when_reading_needs_credentials() -> None:
    token = "mr-" + "t" * 43
    # Whether the default repository is public is read from the database by `serve`.
    banner = first_start_banner(Settings(port=9000), token, is_public=False)
    url = f"http://__token__:{token}@127.0.0.1:9000/simple/"
    assert f"pip install --index-url {url} --trusted-host 127.0.0.1 PACKAGE" in banner
    assert f"uv pip install --index-url {url} PACKAGE" in banner
    assert "--repository-url http://127.0.0.1:9000/ -u __token__" in banner
