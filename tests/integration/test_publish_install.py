"""The thin path, for real: twine and uv publish, pip and uv install, through `minirepo serve`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.helpers.clients import build_chain, installed, run, twine_upload
from tests.helpers.distfactory import Dist, make_sdist, make_wheel
from tests.helpers.serverproc import Server

pytestmark = pytest.mark.stacks

UV = find_uv_bin()


def test_twine_upload_then_pip_and_uv_install(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    files, top = build_chain(tmp_path, "chain")
    result = twine_upload(server, env, files, "__token__", server.admin_token)
    assert result.returncode == 0, result.stdout + result.stderr

    pip_target = tmp_path / "pip-target"
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--target",
            str(pip_target),
            "--index-url",
            f"{server.url}/simple/",
            "--trusted-host",
            "127.0.0.1",
            top,
        ],
        env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"chain_app", "chain_lib"} <= installed(pip_target)
    assert "chain_lib-2.0.dist-info" in installed(pip_target)

    uv_target = tmp_path / "uv-target"
    result = run(
        [
            UV,
            "pip",
            "install",
            "--target",
            str(uv_target),
            "--python",
            sys.executable,
            "--index-url",
            f"{server.url}/simple/",
            top,
        ],
        env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"chain_app", "chain_lib"} <= installed(uv_target)


def test_uv_publish_with_token_and_rerun_is_harmless(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    files = [
        make_wheel(tmp_path, Dist("uv-published", "1.0")),
        make_sdist(tmp_path, Dist("uv-published", "1.0")),
    ]
    cmd = [UV, "publish", "--publish-url", f"{server.url}/", "--token", server.admin_token]
    for _ in range(2):
        result = run(cmd + [str(path) for path in files], env)
        assert result.returncode == 0, result.stdout + result.stderr
    result = run(
        [
            UV,
            "pip",
            "install",
            "--target",
            str(tmp_path / "t"),
            "--python",
            sys.executable,
            "--index-url",
            f"{server.url}/simple/",
            "uv-published==1.0",
        ],
        env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_twine_with_account_password_and_owner_named_token(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    server.add_user("carol", "carol-password-1")
    result = twine_upload(
        server, env, [make_wheel(tmp_path, Dist("carols-pkg", "1.0"))], "carol", "carol-password-1"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    token = server.create_token("carol", "--project", "carols-pkg")
    result = twine_upload(
        server, env, [make_wheel(tmp_path, Dist("carols-pkg", "1.1"))], "carol", token
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_uv_publish_with_username_and_password(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    server.add_user("dave", "dave-password-1")
    wheel = make_wheel(tmp_path, Dist("daves-pkg", "1.0"))
    result = run(
        [
            UV,
            "publish",
            "--publish-url",
            f"{server.url}/main/",
            "-u",
            "dave",
            "-p",
            "dave-password-1",
            str(wheel),
        ],
        env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_twine_reupload_same_bytes_ok_other_bytes_conflict(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, Dist("dup-pkg", "1.0"))
    for _ in range(2):
        result = twine_upload(server, env, [wheel], "__token__", server.admin_token)
        assert result.returncode == 0, result.stdout + result.stderr
    other = tmp_path / "other"
    other.mkdir()
    changed = make_wheel(other, Dist("dup-pkg", "1.0", description="changed"))
    result = twine_upload(server, env, [changed], "__token__", server.admin_token)
    assert result.returncode != 0
    assert "409" in result.stdout + result.stderr
    assert "File already exists" in result.stdout + result.stderr


@pytest.mark.parametrize("path", ["/", "/main", "/main/", "/main/legacy/", "/legacy/"])
def test_every_upload_url_spelling_works(
    server: Server, env: dict[str, str], tmp_path: Path, path: str
) -> None:
    name = "spelling-" + path.strip("/").replace("/", "-").replace("main", "m") or "root"
    wheel = make_wheel(tmp_path, Dist(name.rstrip("-") + "x", "1.0"))
    result = twine_upload(
        server, env, [wheel], "__token__", server.admin_token, url=server.url + path
    )
    assert result.returncode == 0, result.stdout + result.stderr
