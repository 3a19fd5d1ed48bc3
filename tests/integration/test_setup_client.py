"""`minirepo setup-client` against a real server, then the real clients with no index or
upload flags at all: pip and uv install, twine and uv publish, from the files it wrote.

The clients run with `client_env(home)` minus its `PIP_CONFIG_FILE=/dev/null` and
`UV_NO_CONFIG=1`, which would hide those files. `PIP_CONFIG_FILE` is not pointed at the
written pip.conf either: pip then skips its user files altogether, so the test would no
longer show that pip finds the file where setup-client put it, and the machine's own files
(`/etc/pip.conf`, `/etc/xdg/pip/pip.conf`) would still be read: pip drops them only for
os.devnull. `XDG_CONFIG_DIRS` names an empty folder instead (no `/etc/xdg/pip/pip.conf`
with its constraints, no system uv.toml); `/etc/pip.conf` is read as on any user's machine,
and `pip config debug` shows that the user file was. The projects exist on this server
only, and it runs offline, so an install from anywhere else fails.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.helpers.clients import installed, run
from tests.helpers.distfactory import Dist, make_wheel
from tests.helpers.serverproc import Server, client_env, free_port, running_server

UV = find_uv_bin()
JSON_V1 = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A first start's server (main, pypi-proxy, the group all), offline: a name missing
    here is a 404, never a trip to PyPI."""
    with running_server(tmp_path_factory.mktemp("server"), serve_args=("--offline",)) as srv:
        yield srv


def user_env(home: Path) -> dict[str, str]:
    """A user's environment: their own HOME and XDG folders, the written files read. A
    client that ignored them would try PyPI: the proxy named here refuses at once, and
    only loopback goes direct."""
    env = client_env(home)
    del env["PIP_CONFIG_FILE"], env["UV_NO_CONFIG"]
    (home / "etc-xdg").mkdir()
    nowhere = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = nowhere
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["XDG_CONFIG_DIRS"] = str(home / "etc-xdg")
    return env


def setup_client(
    env: dict[str, str], *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "minirepo", "setup-client", *args]
    return subprocess.run(
        cmd + (["--token-stdin"] if token else []),
        # Not a ./minirepo.toml where the tests run: its default_repository would count.
        env={**env, "MINIREPO_CONFIG": os.devnull},
        input=f"{token}\n" if token else "",
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout


def filenames(server: Server, project: str, token: str) -> list[str]:
    auth = base64.b64encode(f"__token__:{token}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{server.url}/main/simple/{project}/",
        headers={"Accept": JSON_V1, "Authorization": f"Basic {auth}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return sorted(file["filename"] for file in json.load(response)["files"])


def test_the_written_files_drive_pip_uv_and_twine_without_flags(
    box: Server, tmp_path: Path
) -> None:
    token = box.create_token("admin")
    home = tmp_path / "home"
    env = user_env(home)
    work = tmp_path / "work"  # no pyproject.toml or uv.toml above it: only the user files
    work.mkdir()

    written = setup_client(env, box.url, token=token)
    ok(written)
    assert token not in written.stdout + written.stderr
    pip_conf = home / ".config" / "pip" / "pip.conf"
    host = box.url.removeprefix("http://")
    assert f"@{host}/all/simple/\n" in pip_conf.read_text()  # the group: it was asked

    dist = tmp_path / "dist"
    dist.mkdir()
    one = make_wheel(dist, Dist("minirepo-setup-demo", "1.0"))
    two = make_wheel(dist, Dist("minirepo-setup-demo", "2.0"))
    twine = [sys.executable, "-m", "twine", "upload", "-r", "minirepo", "--non-interactive"]
    ok(run([*twine, "--disable-progress-bar", str(one)], env, cwd=work))
    ok(run([UV, "publish", "--index", "minirepo", str(two)], env, cwd=work))
    assert filenames(box, "minirepo-setup-demo", token) == [one.name, two.name]

    debug = ok(run([sys.executable, "-m", "pip", "config", "debug"], env, cwd=work))
    assert f"{pip_conf}, exists: True\n    global.index-url: http://__token__:" in debug

    pip_target, uv_target = tmp_path / "pip-target", tmp_path / "uv-target"
    pip = [sys.executable, "-m", "pip", "install", "--target", str(pip_target)]
    ok(run([*pip, "minirepo-setup-demo==1.0"], env, cwd=work))
    assert "minirepo_setup_demo-1.0.dist-info" in installed(pip_target)
    uv = [UV, "pip", "install", "--python", sys.executable, "--target", str(uv_target)]
    ok(run([*uv, "minirepo-setup-demo"], env, cwd=work))
    assert "minirepo_setup_demo-2.0.dist-info" in installed(uv_target)


def test_without_the_group_main_is_chosen_and_a_revoked_token_is_refused(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    env = user_env(tmp_path / "home")
    folder = tmp_path_factory.mktemp("server")
    with running_server(folder, serve_args=("--no-upstream",)) as server:
        anonymous = ok(setup_client(env, server.url, "--print"))  # asked: 401
        assert f"index-url = {server.url}/main/simple/\n" in anonymous

        token = server.create_token("admin", "--permission", "read")
        with_token = ok(setup_client(env, server.url, "--print", token=token))  # asked: 404
        assert f"@{server.url.removeprefix('http://')}/main/simple/\n" in with_token
        assert token not in with_token

        server.cli("token", "revoke", token)
        refused = setup_client(env, server.url, token=token)
    assert refused.returncode == 1
    assert "refused the token (401" in refused.stderr
    assert not (tmp_path / "home" / ".pypirc").exists()
