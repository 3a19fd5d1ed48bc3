"""Driving the real clients in tests: run one, publish with twine, a dependency chain, read
what they print and check what they publish."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from tests.helpers.distfactory import Dist, make_sdist, make_wheel
from tests.helpers.serverproc import Server


def run(
    cmd: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def twine_upload(
    server: Server,
    env: dict[str, str],
    files: list[Path],
    user: str,
    password: str,
    url: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return twine_upload_to(url or f"{server.url}/", env, files, user, password)


def twine_upload_to(
    url: str, env: dict[str, str], files: list[Path], user: str, password: str
) -> subprocess.CompletedProcess[str]:
    """`twine upload` to any index's upload URL (minirepo's, or pypiserver's or devpi's)."""
    cmd = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]
    cmd += ["--repository-url", url, "-u", user, "-p", password]
    return run(cmd + [str(path) for path in files], env)


def pip_install_into(
    target: Path, index_url: str, requirement: str, env: dict[str, str]
) -> set[str]:
    """`pip install --target` from one index; what landed there (fails with pip's output)."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target)]
    result = run([*cmd, "--index-url", index_url, requirement], env)
    assert result.returncode == 0, result.stdout + result.stderr
    return installed(target)


def build_chain(folder: Path, prefix: str) -> tuple[list[Path], str]:
    """Two projects, the first depending on the second; returns files and the top's name."""
    top, dep = f"{prefix}-app", f"{prefix}_lib"
    files = [
        make_wheel(folder, Dist(dep, "1.0")),
        make_wheel(folder, Dist(dep, "2.0", requires_python=">=3.8")),
        make_sdist(folder, Dist(dep, "2.0", requires_python=">=3.8")),
        make_wheel(folder, Dist(top, "0.1", requires_dist=(f"{dep}>=2",))),
    ]
    return files, top


def installed(target: Path) -> set[str]:
    return {path.name for path in target.iterdir()}


def flat(text: str) -> str:
    """`text` with every run of whitespace made one space: uv wraps its messages."""
    return " ".join(text.split())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
