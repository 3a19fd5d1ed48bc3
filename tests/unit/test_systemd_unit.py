"""systemd/minirepo.service is a unit systemd accepts, keeps the promises its README and
the issue make (its own user, settings in one file, hardening, TMPDIR off tmpfs), and the
install documents name what CI installs.

`systemd-analyze verify` needs systemd's tools, not a running systemd. Outside CI the test
is skipped when they are missing; with CI=true it fails then, so CI cannot pass it by
skipping (.ci/run installs the `systemd` package when `systemd-analyze` is missing).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minirepo.config import Settings

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "systemd" / "minirepo.service"
EXEC_START = "/opt/minirepo/bin/minirepo serve --config /etc/minirepo/minirepo.toml"
DATA = "/var/lib/minirepo"


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values in order (a unit may repeat a key, as SystemCallFilter=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return directives(UNIT.read_text())["Service"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("CI must verify the unit: install systemd (apt-get install -y systemd)")
        pytest.skip("needs systemd-analyze (apt-get install -y systemd)")
    # verify checks that ExecStart's program exists: this machine has no /opt/minirepo.
    text = UNIT.read_text().replace("/opt/minirepo/bin/minirepo", sys.executable)
    copy = tmp_path / "minirepo.service"
    copy.write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    # Only what concerns this unit: a developer's machine may have complaints of its own.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "minirepo" in line]
    assert result.returncode == 0, result.stdout + result.stderr
    assert ours == [], "\n".join(ours)


def test_runs_as_its_own_user_from_the_venv_with_one_settings_file(
    service: dict[str, list[str]],
) -> None:
    assert service["ExecStart"] == [EXEC_START]
    assert service["User"] == ["minirepo"]
    assert service["Group"] == ["minirepo"]
    # The data folder is named in the TOML only: the CLI run by an admin reads the same.
    environment = [shlex.split(value) for value in service["Environment"]]
    names = [item.split("=")[0] for items in environment for item in items]
    assert not [name for name in names if name.startswith("MINIREPO_")]
    tmpdir = f"TMPDIR={DATA}/tmp"  # noqa: S108 - the data folder's own tmp/, not /tmp
    assert tmpdir in [item for items in environment for item in items]


def test_hardening(service: dict[str, list[str]]) -> None:
    expected = {
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
        "ReadWritePaths": DATA,
        "PrivateTmp": "true",
        "ProtectHome": "true",
        "PrivateDevices": "true",
        "ProtectKernelTunables": "true",
        "ProtectKernelModules": "true",
        "ProtectControlGroups": "true",
        "RestrictSUIDSGID": "true",
        "LockPersonality": "true",
        "RestrictRealtime": "true",
        "RestrictNamespaces": "true",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "MemoryMax": "512M",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "UMask": "0077",
    }
    assert {key: service.get(key, ["<missing>"])[-1] for key in expected} == expected
    # Past the grace a stop gives the requests in flight (minirepo.shutdown), with room for
    # the publishes and the database to close: else systemd kills an upload's commit.
    assert int(service["TimeoutStopSec"][-1].removesuffix("s")) >= Settings().stop_timeout + 20


def test_install_documents_match_the_unit() -> None:
    guide = (ROOT / "systemd" / "README.md").read_text()
    assert "python3 -m venv /opt/minirepo" in guide
    assert "/opt/minirepo/bin/pip install minirepo-server" in guide
    assert f'data = "{DATA}"' in guide
    assert "sudo -u minirepo /opt/minirepo/bin/minirepo" in guide
    assert "--config /etc/minirepo/minirepo.toml" in guide
    readme = (ROOT / "README.md").read_text()
    assert (
        "python3 -m venv /opt/minirepo && /opt/minirepo/bin/pip install minirepo-server" in readme
    )
    assert "docs/tls.md" in readme


def test_readme_apt_line_names_what_ci_installs() -> None:
    """The README's first test set-up command installs every package .ci/run may install."""
    ci = (ROOT / ".ci" / "run").read_text()
    ci_packages = set(re.findall(r"packages\+=\(([\w.-]+)\)", ci))
    readme = (ROOT / "README.md").read_text()
    line = next(
        line for line in readme.splitlines() if line.startswith("sudo apt-get update && sudo")
    )
    readme_packages = set(line.split("install -y", 1)[1].split())
    assert "systemd" in ci_packages
    assert ci_packages == readme_packages


def test_distribution_name() -> None:
    """Installed as `minirepo-server` (PyPI's `minirepo` is another project)."""
    assert importlib.metadata.version("minirepo-server")
    requires = importlib.metadata.requires("minirepo-server") or []
    assert not [req for req in requires if req.startswith("minirepo[")]
