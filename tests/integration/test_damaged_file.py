"""A damaged wheel, for real (issue 16): `minirepo serve`, real pip, real twine.

pip picks one file per requirement and gives up on it after 5xx answers ("too many 500
error responses") even when the sdist would do. So a damaged file is withdrawn from the
pages: pip then builds the sdist, until the identical wheel is uploaded again.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from minirepo.storage import blob_key
from tests.helpers.clients import run, twine_upload
from tests.helpers.distfactory import Dist, make_wheel, sdist_members, write_tar_gz
from tests.helpers.serverproc import Server, running_server

FRAGILE = Dist("fragile-pkg", "1.0")


def pip_install(server: Server, env: dict[str, str], target: Path) -> tuple[bool, str]:
    """(installed, pip's output); the sdist builds with the flit_core beside pip."""
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--retries",
            "0",
            "--no-build-isolation",
            "--target",
            str(target),
            "--index-url",
            f"{server.url}/simple/",
            "--trusted-host",
            "127.0.0.1",
            "fragile-pkg",
        ],
        env,
    )
    return result.returncode == 0, result.stdout + result.stderr


def built_by(target: Path) -> str:
    """Who made the installed wheel: our own file ("distfactory"), or flit from the sdist."""
    text = (target / "fragile_pkg-1.0.dist-info" / "WHEEL").read_text()
    return next(line for line in text.splitlines() if line.startswith("Generator:"))


def buildable_sdist(folder: Path) -> Path:
    """distfactory's sdist, with the description flit_core insists on to build it."""
    members = sdist_members(FRAGILE)
    pyproject = "fragile_pkg-1.0/pyproject.toml"
    members[pyproject] = members[pyproject].replace(
        b'version = "1.0"\n', b'version = "1.0"\ndescription = "A test package"\n'
    )
    return write_tar_gz(folder / FRAGILE.sdist_name, members)


def upload_both(server: Server, folder: Path) -> tuple[Path, Path]:
    wheel, sdist = make_wheel(folder, FRAGILE), buildable_sdist(folder)
    for path in (wheel, sdist):
        assert server.upload(path).status_code == 200
    return wheel, sdist


def blob_path(data: Path, path: Path) -> Path:
    return data / "files" / blob_key(hashlib.sha256(path.read_bytes()).hexdigest(), path.name)


def flip(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


def test_the_server_withdraws_a_damaged_wheel_and_pip_builds_the_sdist(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with running_server(tmp_path / "srv", serve_args=("--no-upstream",)) as server:
        wheel, _ = upload_both(server, tmp_path)
        flip(blob_path(server.data, wheel))
        # the first install meets the damage: a 5xx, and the wheel leaves the pages
        installed, output = pip_install(server, env, tmp_path / "first")
        assert not installed
        assert "500" in output, output
        installed, output = pip_install(server, env, tmp_path / "second")
        assert installed, output
        assert built_by(tmp_path / "second").startswith("Generator: flit")
        assert "withdrew damaged file" in server.log_tail()


def test_fsck_withdraws_and_the_identical_upload_brings_the_wheel_back(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with running_server(tmp_path / "srv", serve_args=("--no-upstream",)) as server:
        wheel, _ = upload_both(server, tmp_path)
        installed, output = pip_install(server, env, tmp_path / "before")
        assert installed, output
        assert built_by(tmp_path / "before") == "Generator: distfactory"

        flip(blob_path(server.data, wheel))
        result = server.cli("fsck", check=False)
        assert result.returncode == 1
        assert "re-upload the identical file, or run minirepo fsck --repair-from" in result.stdout
        installed, output = pip_install(server, env, tmp_path / "withdrawn")
        assert installed, output
        assert built_by(tmp_path / "withdrawn").startswith("Generator: flit")

        result = twine_upload(server, env, [wheel], "__token__", server.admin_token)
        assert result.returncode == 0, result.stdout + result.stderr
        assert blob_path(server.data, wheel).read_bytes() == wheel.read_bytes()
        installed, output = pip_install(server, env, tmp_path / "repaired")
        assert installed, output
        assert built_by(tmp_path / "repaired") == "Generator: distfactory"
        assert server.cli("fsck").returncode == 0
