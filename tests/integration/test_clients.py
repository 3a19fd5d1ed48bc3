"""Every real client against a real `minirepo serve` on loopback (issue "every real client").

Installers: pip (credentials in the URL, `~/.netrc`, keyring through both providers), uv
(keyring, `uv add`/`uv lock` with a named index), poetry and pdm, all on a repository with
`read = "authenticated"`. Publishers: twine, uv, poetry, pdm, hatch and flit; each publish is
checked on the JSON simple page (filename, sha256, size) and installed afterwards.

Isolation: each test gets its own HOME, XDG folders, tool config/cache/data folders and no
config file, and `HTTP(S)_PROXY`/`ALL_PROXY` point at a tripwire on loopback while
`NO_PROXY=127.0.0.1`: any request to another host (pypi.org as a default index, a build
backend, a version check) reaches the tripwire (tests/helpers/tripwire.py), fails at once and
fails the test.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uv import find_uv_bin

from tests.helpers.clients import flat, sha256
from tests.helpers.distfactory import Dist, make_sdist, make_wheel
from tests.helpers.serverproc import Server, client_env, running_server
from tests.helpers.stacks import Stack
from tests.helpers.tripwire import Tripwire

pytestmark = pytest.mark.stacks

UV = find_uv_bin()
PY = sys.executable
# pdm must not pick this venv's interpreter: it would install into the venv running the tests.
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable
JSON_V1 = "application/vnd.pypi.simple.v1+json"
TIMEOUT = 180


# --- isolation ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_escape(tripwire: Tripwire) -> Iterator[None]:
    """Fail the test if any client tried to reach a host other than 127.0.0.1."""
    with tripwire.untouched():
        yield


@pytest.fixture
def env(tmp_path: Path, tripwire: Tripwire) -> dict[str, str]:
    home = tmp_path / "home"
    return (
        client_env(home)
        | tripwire.proxies()
        | {
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_STATE_HOME": str(home / ".local/state"),
            "XDG_CONFIG_DIRS": str(home / "etc-xdg"),
            "POETRY_CONFIG_DIR": str(home / "poetry-config"),
            "POETRY_CACHE_DIR": str(home / "poetry-cache"),
            "POETRY_DATA_DIR": str(home / "poetry-data"),
            "POETRY_VIRTUALENVS_IN_PROJECT": "true",
            "POETRY_VIRTUALENVS_USE_POETRY_PYTHON": "true",
            "PDM_HOME": str(home / "pdm-home"),
            "PDM_CACHE_DIR": str(home / "pdm-cache"),
            "PDM_CONFIG_FILE": str(home / "pdm-config.toml"),
            "PDM_CHECK_UPDATE": "false",
            "PDM_NON_INTERACTIVE": "1",
            "PDM_PYTHON": BASE_PYTHON,
            "HATCH_DATA_DIR": str(home / "hatch-data"),
            "HATCH_CACHE_DIR": str(home / "hatch-cache"),
        }
    )


# --- helpers --------------------------------------------------------------------------------


def run(
    cmd: list[str], env: dict[str, str], cwd: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run a client with nothing to read on stdin (no prompt can wait) and a time limit."""
    return subprocess.run(
        cmd, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=TIMEOUT
    )


def ok(cmd: list[str], env: dict[str, str], cwd: Path | None = None, stdin: str = "") -> str:
    result = run(cmd, env, cwd, stdin)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{output}"
    return output


def json_page(server: Server, project: str) -> tuple[int, dict[str, Any]]:
    """(status, JSON simple page) of a project, read anonymously."""
    headers = {"Accept": JSON_V1}
    request = urllib.request.Request(f"{server.url}/simple/{project}/", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {}


def published(server: Server, project: str) -> dict[str, tuple[str, int]]:
    """{filename: (sha256, size)} as the JSON simple page lists them."""
    status, page = json_page(server, project)
    assert status == 200, (project, status)
    return {
        entry["filename"]: (entry["hashes"]["sha256"], entry["size"]) for entry in page["files"]
    }


def assert_published(server: Server, project: str, files: list[Path]) -> dict[str, tuple[str, int]]:
    expected = {path.name: (sha256(path), path.stat().st_size) for path in files}
    assert published(server, project) == expected
    return expected


def assert_installable(server: Server, env: dict[str, str], target: Path, spec: str) -> None:
    cmd = [UV, "pip", "install", "--no-deps", "--target", str(target), "--python", PY]
    ok([*cmd, "--index-url", f"{server.url}/simple/", spec], env)
    name, version = spec.split("==")
    assert (target / f"{name.replace('-', '_')}-{version}.dist-info").is_dir(), spec


def lock_hashes(text: str) -> dict[str, str]:
    """{filename: sha256} of every file a uv, poetry or pdm lock file names."""
    pattern = r'(?:file|url) = "(?:[^"]*/)?([^"/]+)", hash = "sha256:([0-9a-f]{64})"'
    return dict(re.findall(pattern, text))


def host(server: Server) -> str:
    return server.url.removeprefix("http://")


# --- a private repository holding a dependency chain ----------------------------------------

CHAIN = (
    Dist("cc_base", "1.0", requires_python=">=3.8"),
    Dist("cc_base", "2.0", requires_python=">=3.8"),
    Dist("cc-mid", "1.0", requires_python=">=3.8", requires_dist=("cc-base>=2",)),
    Dist("cc-top", "1.0", requires_python=">=3.8", requires_dist=("cc-mid",)),
)
CHAIN_INSTALLED = {"cc_base-2.0.dist-info", "cc_mid-1.0.dist-info", "cc_top-1.0.dist-info"}


@dataclasses.dataclass
class Private:
    """A `read = "authenticated"` server, a read-only token and the chain's sha256 by file."""

    server: Server
    token: str
    hashes: dict[str, str]

    @property
    def index(self) -> str:
        return f"{self.server.url}/simple/"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Private]:
    folder = tmp_path_factory.mktemp("private")
    env = {**stack.env(), "MINIREPO_READ": "authenticated"}
    with running_server(folder / "server", env) as server:
        files = [make_wheel(folder, dist) for dist in CHAIN]
        cmd = [PY, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]
        cmd += ["--repository-url", f"{server.url}/", "-u", "__token__", "-p", server.admin_token]
        ok(cmd + [str(path) for path in files], client_env(folder / "uploader"))
        server.add_user("reader", "reader-password-1")
        token = server.create_token("reader", "--permission", "read")
        yield Private(server, token, {path.name: sha256(path) for path in files})


def site_names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


# --- installers -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["url", "netrc"])
def test_pip_install_with_credentials(
    private: Private, env: dict[str, str], tmp_path: Path, where: str
) -> None:
    """pip sends credentials from the index URL or from `~/.netrc` (in the temp HOME)."""
    if where == "url":
        index = f"http://__token__:{private.token}@{host(private.server)}/simple/"
    else:
        netrc = Path(env["HOME"]) / ".netrc"
        netrc.write_text(f"machine 127.0.0.1\nlogin __token__\npassword {private.token}\n")
        netrc.chmod(0o600)
        index = private.index
    target = tmp_path / "target"
    cmd = [PY, "-m", "pip", "install", "--no-cache-dir", "--target", str(target)]
    ok([*cmd, "--index-url", index, "cc-top"], env)
    assert site_names(target) >= CHAIN_INSTALLED


UV_PROJECT = """\
[project]
name = "consumer"
version = "0.1.0"
requires-python = ">=3.8"
dependencies = []

[[tool.uv.index]]
name = "minirepo"
url = "{index}"
{mode} = true

[tool.uv.sources]
{package} = {{ index = "minirepo" }}
"""


@pytest.mark.parametrize(
    ("mode", "package", "expected"),
    [
        # uv applies `[tool.uv.sources]` to direct dependencies only: with `explicit = true`
        # a dependency of the pinned package would be looked up on the default index (PyPI),
        # so the explicit case adds the chain's leaf and the default case the whole chain.
        ("explicit", "cc-base", {"cc_base-2.0.dist-info"}),
        ("default", "cc-top", CHAIN_INSTALLED),
    ],
)
def test_uv_add_and_lock_with_named_index(
    private: Private,
    env: dict[str, str],
    tmp_path: Path,
    mode: str,
    package: str,
    expected: set[str],
) -> None:
    """`uv add` locks and syncs from `[[tool.uv.index]]`, credentials from UV_INDEX_<NAME>_*."""
    # UV_NO_CONFIG would also make uv ignore the `[tool.uv]` table of the project itself;
    # user config is isolated by XDG_CONFIG_HOME/XDG_CONFIG_DIRS instead.
    del env["UV_NO_CONFIG"]
    env |= {"UV_INDEX_MINIREPO_USERNAME": "__token__", "UV_INDEX_MINIREPO_PASSWORD": private.token}
    project = tmp_path / "consumer"
    project.mkdir()
    pyproject = project / "pyproject.toml"
    pyproject.write_text(UV_PROJECT.format(index=private.index, mode=mode, package=package))
    ok([UV, "add", "--python", PY, package], env, cwd=project)
    site = project / ".venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert site_names(site / "site-packages") >= expected
    lock = (project / "uv.lock").read_text()
    assert private.token not in lock
    assert f'source = {{ registry = "{private.index}" }}' in lock
    locked = lock_hashes(lock)
    assert {name.replace(".dist-info", "-py3-none-any.whl") for name in expected} <= set(locked)
    assert all(private.hashes[name] == digest for name, digest in locked.items())
    assert private.token not in pyproject.read_text()
    ok([UV, "lock", "--locked", "--python", PY], env, cwd=project)  # the lock is reproducible


POETRY_PROJECT = """\
[project]
name = "consumer"
version = "0.1.0"
requires-python = ">=3.8"
dependencies = []

[tool.poetry]
package-mode = false
"""


def test_poetry_source_add_then_add(private: Private, env: dict[str, str], tmp_path: Path) -> None:
    """A `primary` source replaces PyPI; credentials come from POETRY_HTTP_BASIC_MINIREPO_*."""
    env |= {
        "POETRY_HTTP_BASIC_MINIREPO_USERNAME": "__token__",
        "POETRY_HTTP_BASIC_MINIREPO_PASSWORD": private.token,
    }
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "pyproject.toml").write_text(POETRY_PROJECT)
    poetry = [PY, "-m", "poetry", "--no-interaction"]
    ok([*poetry, "source", "add", "--priority=primary", "minirepo", private.index], env, project)
    ok([*poetry, "add", "cc-top"], env, project)
    site = project / ".venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert site_names(site / "site-packages") >= CHAIN_INSTALLED
    lock = (project / "poetry.lock").read_text()
    assert private.token not in lock
    assert lock_hashes(lock) == {
        name: digest for name, digest in private.hashes.items() if not name.startswith("cc_base-1")
    }


@functools.cache
def pdm_broken() -> str:
    """Why pdm cannot run in this environment, or "" if it can."""
    result = subprocess.run(
        [PY, "-c", "import pdm.models.session"], capture_output=True, text=True, timeout=60
    )
    return result.stderr.strip().splitlines()[-1] if result.returncode else ""


@pytest.fixture
def pdm() -> list[str]:
    if reason := pdm_broken():
        # pdm 2.29.4 declares `hishel>=1.4.0` without an upper bound; hishel 2.0 removed
        # `hishel.SyncSqliteStorage`, so every pdm command that builds its HTTP session dies.
        pytest.skip(f"pdm cannot run here ({reason}); it needs hishel<2")
    return [PY, "-m", "pdm"]


PDM_PROJECT = """\
[project]
name = "consumer"
version = "0.1.0"
requires-python = ">=3.8"
dependencies = []

[tool.pdm]
distribution = false

# A source named "pypi" replaces PyPI. No `verify_ssl = false`: on 127.0.0.1 pdm uses a plain
# http source as it is (it skips one only on other hosts).
[[tool.pdm.source]]
name = "pypi"
url = "http://__token__:${{MINIREPO_TOKEN}}@{host}/simple/"
"""


def test_pdm_add_with_token_from_environment(
    private: Private, env: dict[str, str], tmp_path: Path, pdm: list[str]
) -> None:
    """pdm expands `${VAR}` in a source URL and sends the credentials pre-emptively."""
    env["MINIREPO_TOKEN"] = private.token
    project = tmp_path / "consumer"
    project.mkdir()
    pyproject = project / "pyproject.toml"
    pyproject.write_text(PDM_PROJECT.format(host=host(private.server)))
    ok([*pdm, "add", "cc-top"], env, project)
    installed = {path.name for path in project.rglob("*.dist-info")}
    assert installed >= CHAIN_INSTALLED
    lock = (project / "pdm.lock").read_text()
    assert private.token not in lock
    assert private.token not in pyproject.read_text()
    assert lock_hashes(lock) == {
        name: digest for name, digest in private.hashes.items() if not name.startswith("cc_base-1")
    }


# --- publishers -----------------------------------------------------------------------------


def dists(folder: Path, name: str, version: str = "1.0") -> list[Path]:
    """A wheel and an sdist of `name`, written to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = Dist(name, version, requires_python=">=3.8")
    return [make_wheel(folder, dist), make_sdist(folder, dist)]


def other_bytes(folder: Path, name: str, version: str = "1.0") -> Path:
    """A wheel named like an uploaded one, with other contents."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = Dist(name, version, requires_python=">=3.8", description="Other bytes, same name.")
    return make_wheel(folder, dist)


def twine(server: Server, *args: str) -> list[str]:
    cmd = [PY, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]
    return [*cmd, "--repository-url", f"{server.url}/", *args]


def test_twine_upload_and_identical_rerun(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    files = dists(tmp_path / "dist", "pub-twine")
    cmd = twine(server, "-u", "__token__", "-p", server.admin_token, *map(str, files))
    ok(cmd, env)
    assert_published(server, "pub-twine", files)
    ok(cmd, env)  # the same bytes again: 200, so a release can be re-run without flags
    assert_installable(server, env, tmp_path / "target", "pub-twine==1.0")


def test_twine_skip_existing_is_refused(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    """twine >= 6.1 allows --skip-existing only for PyPI and TestPyPI (CLIENTS.md §2.4).

    It stops with UnsupportedConfiguration before sending anything: the file never arrives.
    """
    files = dists(tmp_path / "dist", "pub-twine-skip")
    cmd = twine(server, "--skip-existing", "-u", "__token__", "-p", server.admin_token)
    result = run(cmd + [str(path) for path in files], env)
    assert result.returncode != 0
    assert "UnsupportedConfiguration" in result.stdout + result.stderr
    assert json_page(server, "pub-twine-skip")[0] == 404


def test_uv_publish_with_check_url(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    """`--check-url` makes a re-run skip what is there and catch other bytes before a POST."""
    files = dists(tmp_path / "dist", "pub-uv")
    cmd = [UV, "publish", "--publish-url", f"{server.url}/", "--token", server.admin_token]
    check = ["--check-url", f"{server.url}/simple/"]
    output = ok([*cmd, *check, *map(str, files)], env)
    assert output.count("Uploading ") == 2, output
    assert_published(server, "pub-uv", files)
    output = ok([*cmd, *check, *map(str, files)], env)
    assert output.count("already exists, skipping") == 2, output
    assert "Uploading " not in output

    changed = other_bytes(tmp_path / "other", "pub-uv")
    result = run([*cmd, *check, str(changed)], env)
    assert result.returncode != 0
    assert "Local file and index file do not match" in flat(result.stderr), result.stderr
    assert "Uploading " not in result.stderr
    result = run([*cmd, str(changed)], env)  # without --check-url: the server's 409 body
    assert result.returncode != 0
    assert "409 Conflict. Server says: File already exists" in flat(result.stderr), result.stderr
    assert_published(server, "pub-uv", files)  # still the first upload
    assert_installable(server, env, tmp_path / "target", "pub-uv==1.0")


def test_poetry_publish_prebuilt_dist(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    """`poetry publish` uploads dist/ files matching the project's name and version."""
    project = tmp_path / "pub-poetry"
    files = dists(project / "dist", "pub-poetry")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "pub-poetry"\nversion = "1.0"\nrequires-python = ">=3.8"\n'
    )
    env |= {
        "POETRY_REPOSITORIES_MINIREPO_URL": f"{server.url}/",
        "POETRY_HTTP_BASIC_MINIREPO_USERNAME": "__token__",
        "POETRY_HTTP_BASIC_MINIREPO_PASSWORD": server.admin_token,
    }
    publish = [PY, "-m", "poetry", "--no-interaction", "publish", "-r", "minirepo"]
    ok(publish, env, project)
    listed = assert_published(server, "pub-poetry", files)
    ok(publish, env, project)  # same bytes: 200

    other_bytes(project / "dist", "pub-poetry")  # replaces the wheel in dist/
    result = run(publish, env, project)
    assert result.returncode != 0
    assert "HTTP Error 409: File already exists" in result.stdout + result.stderr
    output = ok([*publish, "--skip-existing"], env, project)
    assert "File exists. Skipping" in output, output
    assert published(server, "pub-poetry") == listed  # the first upload stays
    assert_installable(server, env, tmp_path / "target", "pub-poetry==1.0")


def test_pdm_publish_no_build(
    server: Server, env: dict[str, str], tmp_path: Path, pdm: list[str]
) -> None:
    """`pdm publish --no-build` uploads dist/ as it is; `--skip-existing` skips on a 409."""
    project = tmp_path / "pub-pdm"
    files = dists(project / "dist", "pub-pdm")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "pub-pdm"\nversion = "1.0"\nrequires-python = ">=3.8"\n'
    )
    publish = [*pdm, "publish", "--no-build", "-r", f"{server.url}/"]
    publish += ["-u", "__token__", "-P", server.admin_token]
    ok(publish, env, project)
    listed = assert_published(server, "pub-pdm", files)

    other_bytes(project / "dist", "pub-pdm")  # replaces the wheel in dist/
    result = run(publish, env, project)
    assert result.returncode != 0
    assert "409 File already exists" in result.stdout + result.stderr
    output = ok([*publish, "--skip-existing"], env, project)
    assert "Skipping pub_pdm-1.0-py3-none-any.whl because it appears to already exist" in output
    assert published(server, "pub-pdm") == listed
    assert_installable(server, env, tmp_path / "target", "pub-pdm==1.0")


def test_hatch_publish_is_idempotent(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    """hatch reads `/+simple/<project>/` first and skips files listed there (CLIENTS.md §2.4)."""
    files = dists(tmp_path / "dist", "pub-hatch")
    env |= {
        "HATCH_INDEX_REPO": f"{server.url}/",
        "HATCH_INDEX_USER": "__token__",
        "HATCH_INDEX_AUTH": server.admin_token,
    }
    publish = [PY, "-m", "hatch", "publish", "--no-prompt", *map(str, files)]
    output = ok(publish, env, tmp_path)
    assert output.count("... success") == 2, output
    assert_published(server, "pub-hatch", files)
    output = ok(publish, env, tmp_path)
    assert output.count("... already exists") == 2, output
    assert_installable(server, env, tmp_path / "target", "pub-hatch==1.0")


FLIT_PROJECT = """\
[build-system]
requires = ["flit_core>=3.2,<5"]
build-backend = "flit_core.buildapi"

[project]
name = "pub-flit"
version = "1.0"
description = "A package built and published by flit"
license = "MIT"
requires-python = ">=3.8"
"""


def test_flit_publish_builds_and_uploads(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    """flit builds with the flit_core it ships with, then uploads (Metadata-Version 2.5)."""
    project = tmp_path / "pub-flit"
    (project / "pub_flit").mkdir(parents=True)
    (project / "pyproject.toml").write_text(FLIT_PROJECT)
    (project / "pub_flit" / "__init__.py").write_text(
        '"""A flit package."""\n\n__version__ = "1.0"\n'
    )
    env |= {
        "FLIT_INDEX_URL": f"{server.url}/",
        "FLIT_USERNAME": "__token__",
        "FLIT_PASSWORD": server.admin_token,
    }
    ok([PY, "-m", "flit", "publish"], env, project)
    files = sorted((project / "dist").iterdir())
    assert [path.name for path in files] == ["pub_flit-1.0-py3-none-any.whl", "pub_flit-1.0.tar.gz"]
    assert_published(server, "pub-flit", files)
    assert_installable(server, env, tmp_path / "target", "pub-flit==1.0")


# --- keyring --------------------------------------------------------------------------------

KEYRING_BACKEND = '''\
"""A keyring backend on the JSON file $TEST_KEYRING_FILE; it logs every lookup beside it."""

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.credentials import SimpleCredential

def _path():
    return Path(os.environ["TEST_KEYRING_FILE"])


def _load():
    return json.loads(_path().read_text()) if _path().exists() else {}


def _log(*call):
    with _path().with_suffix(".log").open("a") as log:
        log.write(json.dumps(call) + "\\n")


class FileKeyring(KeyringBackend):
    priority = 1

    def get_password(self, service, username):
        _log("get_password", service, username)
        return _load().get(service, {}).get(username)

    def get_credential(self, service, username):
        _log("get_credential", service, username)
        users = _load().get(service, {})
        if username is None and users:
            username = next(iter(users))
        if username in users:
            return SimpleCredential(username, users[username])
        return None

    def set_password(self, service, username, password):
        data = _load()
        data.setdefault(service, {})[username] = password
        _path().write_text(json.dumps(data))

    def delete_password(self, service, username):
        data = _load()
        data.get(service, {}).pop(username, None)
        _path().write_text(json.dumps(data))
'''


@dataclasses.dataclass
class Keyring:
    folder: Path
    env: dict[str, str]

    def set(self, service: str, user: str, password: str) -> None:
        """Store a password the way a user does: `keyring set SERVICE USER`, on stdin."""
        ok([PY, "-m", "keyring", "set", service, user], self.env, stdin=password + "\n")

    def lookups(self) -> list[tuple[str, str, str | None]]:
        log = self.folder / "keyring.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [tuple(json.loads(line)) for line in lines]

    def put_cli_on_path(self) -> None:
        """A `keyring` command outside the clients' own venv (pip's subprocess provider
        ignores the one beside its interpreter, CLIENTS.md §4), using the same backend."""
        bin_dir = self.folder / "bin"
        bin_dir.mkdir(exist_ok=True)
        cli = bin_dir / "keyring"
        cli.write_text(f'#!/bin/sh\nexec "{PY}" -m keyring "$@"\n')
        cli.chmod(0o755)
        self.env["PATH"] = os.pathsep.join([str(bin_dir), self.env.get("PATH", "")])


@pytest.fixture
def keyring(tmp_path: Path, env: dict[str, str]) -> Keyring:
    """Point every client of `env` at a file-backed keyring backend selected by name."""
    folder = tmp_path / "keyring"
    folder.mkdir()
    (folder / "filekeyring.py").write_text(KEYRING_BACKEND)
    paths = [str(folder), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHON_KEYRING_BACKEND"] = "filekeyring.FileKeyring"
    env["TEST_KEYRING_FILE"] = str(folder / "keyring.json")
    return Keyring(folder, env)


@pytest.mark.parametrize("provider", ["import", "subprocess"])
def test_pip_install_with_keyring(
    private: Private, env: dict[str, str], keyring: Keyring, tmp_path: Path, provider: str
) -> None:
    """pip asks keyring for (index URL without the user, user) after the first 401."""
    keyring.set(private.index, "__token__", private.token)
    if provider == "subprocess":
        keyring.put_cli_on_path()
    index = f"http://__token__@{host(private.server)}/simple/"
    target = tmp_path / "target"
    cmd = [PY, "-m", "pip", "install", "--no-cache-dir", "--target", str(target)]
    ok([*cmd, "--keyring-provider", provider, "--index-url", index, "cc-top"], env)
    assert site_names(target) >= CHAIN_INSTALLED
    # pip 26.3 asks `get_credential` through both providers; older pip (23.2, Python 3.11's)
    # runs `keyring get` as its subprocess provider, which asks `get_password`.
    asked = {(service, user) for _method, service, user in keyring.lookups()}
    assert (private.index, "__token__") in asked


@pytest.mark.parametrize("user_in_url", [True, False])
def test_uv_install_with_keyring_subprocess(
    private: Private, env: dict[str, str], keyring: Keyring, tmp_path: Path, user_in_url: bool
) -> None:
    """uv runs `keyring get <index URL> <user>`, and only when the index URL names a user."""
    keyring.set(private.index, "__token__", private.token)
    keyring.put_cli_on_path()
    index = f"http://__token__@{host(private.server)}/simple/" if user_in_url else private.index
    target = tmp_path / "target"
    cmd = [UV, "pip", "install", "--target", str(target), "--python", PY]
    result = run([*cmd, "--keyring-provider", "subprocess", "--index-url", index, "cc-top"], env)
    if user_in_url:
        assert result.returncode == 0, result.stdout + result.stderr
        assert site_names(target) >= CHAIN_INSTALLED
        assert ("get_password", private.index, "__token__") in keyring.lookups()
    else:
        assert result.returncode != 0
        assert "401 Unauthorized" in flat(result.stderr), result.stderr
        assert keyring.lookups() == []


@pytest.mark.parametrize("client", ["twine", "uv"])
def test_publish_with_password_from_keyring(
    server: Server, env: dict[str, str], keyring: Keyring, tmp_path: Path, client: str
) -> None:
    """twine and uv publish look up (upload URL exactly as typed, user) before the POST."""
    upload_url = f"{server.url}/"
    keyring.set(upload_url, "__token__", server.admin_token)
    files = dists(tmp_path / "dist", f"kr-{client}")
    if client == "twine":
        cmd = twine(server, "-u", "__token__")
    else:
        keyring.put_cli_on_path()
        cmd = [UV, "publish", "--keyring-provider", "subprocess", "--publish-url", upload_url]
        cmd += ["-u", "__token__"]
    ok(cmd + [str(path) for path in files], env)
    assert_published(server, f"kr-{client}", files)
    assert ("get_password", upload_url, "__token__") in keyring.lookups()
