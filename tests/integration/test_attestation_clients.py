"""PEP 740 attestations as twine and uv upload them (issue 19), against a real `minirepo
serve` on loopback, on both stacks, with pypi-attestations' signed sdist and its publish
attestation (tests/fixtures/attestations/) in a project's dist folder.

What the clients send, as seen on the wire (twine 7.0.0, uv 0.13.9): the form field
`attestations`, a JSON array of the attestation files' objects as written. Neither looks
beside a file for them: each groups the paths it is given, `<dist filename>.<kind>.attestation`
with its dist. So `twine upload --attestations dist/*` and a bare `uv publish` (whose
default is `dist/*`) send them. twine sends none without `--attestations` and refuses that
flag when no attestation is listed; uv sends them unasked (`--no-attestations` opts out)
and, given the dist's path alone, sends none without a word: a repository in `require`
mode is what tells its user.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from pypi_attestations import Distribution, GitHubPublisher, Provenance
from uv import find_uv_bin

from tests.helpers.clients import flat, sha256
from tests.helpers.distfactory import Dist, make_sdist
from tests.helpers.serverproc import Server

pytestmark = pytest.mark.stacks

UV = find_uv_bin()
FIXTURES = Path(__file__).parent.parent / "fixtures" / "attestations"
SDIST = "pypi_attestations-0.0.19.tar.gz"
ATTESTATION = f"{SDIST}.publish.attestation"
PUBLISHER = GitHubPublisher(repository="trailofbits/pypi-attestations", workflow="release.yml")
JSON_V1 = {"Accept": "application/vnd.pypi.simple.v1+json"}
STALE = "Invalid attestation: subject sha256 does not match the uploaded file"
TIMEOUT = 180


@pytest.fixture(scope="module")
def repositories(server: Server) -> Server:
    """`twine` and `uv`, one for each client's publish; `required` refuses a file without a
    verified attestation; `stale` takes the uploads that must fail (a filename is taken once
    per repository, so each publish that succeeds has its own)."""
    for name in ("twine", "uv", "required", "stale"):
        server.cli("repo", "create", name)
    server.cli("repo", "set", "required", "--attestations", "require")
    return server


def project(folder: Path, *, stale: bool = False) -> Path:
    """A project folder whose dist/ holds the sdist (the signed one, or another file under
    its name when `stale`) and the publish attestation of the signed one."""
    dist = folder / "dist"
    dist.mkdir(parents=True)
    if stale:
        make_sdist(dist, Dist("pypi-attestations", "0.0.19"))
    else:
        shutil.copyfile(FIXTURES / SDIST, dist / SDIST)
    shutil.copyfile(FIXTURES / ATTESTATION, dist / ATTESTATION)
    return folder


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a client with nothing to read on stdin and a time limit."""
    return subprocess.run(
        cmd, env=env, cwd=cwd, input="", capture_output=True, text=True, timeout=TIMEOUT
    )


def twine_upload(
    server: Server, repo: str, folder: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`twine upload --attestations dist/*`, the glob expanded as a shell would."""
    cmd = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]
    cmd += ["--attestations", "--repository-url", f"{server.url}/{repo}/"]
    cmd += ["-u", "__token__", "-p", server.admin_token]
    files = sorted(str(path.relative_to(folder)) for path in (folder / "dist").iterdir())
    return run(cmd + files, env, folder)


def uv_publish(
    server: Server, repo: str, folder: Path, env: dict[str, str], *files: str
) -> subprocess.CompletedProcess[str]:
    """`uv publish [FILES]` in the project folder (no files: its default, `dist/*`)."""
    cmd = [UV, "publish", "--publish-url", f"{server.url}/{repo}/", "--token", server.admin_token]
    return run([*cmd, *files], env, folder)


# The publish of `dist/*` by each client, by the client's name.
PUBLISH: dict[str, Callable[[Server, str, Path, dict[str, str]], subprocess.CompletedProcess[str]]]
PUBLISH = {"twine": twine_upload, "uv": uv_publish}


def project_page(server: Server, repo: str) -> requests.Response:
    """The project's JSON simple page in `repo`, read anonymously."""
    url = f"{server.url}/{repo}/simple/pypi-attestations/"
    return requests.get(url, headers=JSON_V1, timeout=10)


def listed(server: Server, repo: str) -> tuple[str, dict[str, object]]:
    """The JSON simple page's URL and its one entry."""
    page = project_page(server, repo)
    assert page.status_code == 200, page.text
    (entry,) = page.json()["files"]
    assert entry["filename"] == SDIST
    return page.url, entry


def assert_verified_provenance(server: Server, repo: str) -> None:
    """The page links a provenance object that verifies, as a consumer checks it: the
    publisher it names, against the sha256 the page lists."""
    page_url, entry = listed(server, repo)
    digest = sha256(FIXTURES / SDIST)
    assert entry["hashes"] == {"sha256": digest}
    assert isinstance(entry["provenance"], str), entry
    answer = requests.get(urljoin(page_url, entry["provenance"]), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    provenance = Provenance.model_validate_json(answer.content)
    (bundle,) = provenance.attestation_bundles
    assert bundle.publisher == PUBLISHER
    (attestation,) = bundle.attestations  # the publish one, the only one in dist/
    attestation.verify(PUBLISHER, Distribution(name=SDIST, digest=digest), offline=True)


@pytest.mark.parametrize("client", ["twine", "uv"])
def test_the_attestations_in_dist_give_a_verified_provenance(
    repositories: Server, loopback_env: dict[str, str], tmp_path: Path, client: str
) -> None:
    """`twine upload --attestations dist/*` warns "Only PyPI and TestPyPI support
    attestations" and sends them all the same; a bare `uv publish` sends them unasked."""
    folder = project(tmp_path / "project")
    result = PUBLISH[client](repositories, client, folder, loopback_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified_provenance(repositories, client)


def test_uv_publish_of_the_dist_path_alone_sends_no_attestation(
    repositories: Server, loopback_env: dict[str, str], tmp_path: Path
) -> None:
    """The attestation lies beside the file but is not among uv's inputs: uv sends none,
    and says nothing; `require` refuses the upload with the reason."""
    folder = project(tmp_path / "project")
    result = uv_publish(repositories, "required", folder, loopback_env, f"dist/{SDIST}")
    output = flat(result.stdout + result.stderr)
    assert result.returncode != 0, output
    assert "requires a verified PEP 740 attestation" in output
    assert "none was sent" in output
    result = uv_publish(repositories, "required", folder, loopback_env)  # dist/*: sent, so accepted
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified_provenance(repositories, "required")


@pytest.mark.parametrize("client", ["twine", "uv"])
def test_a_stale_attestation_fails_the_upload_with_the_reason(
    repositories: Server, loopback_env: dict[str, str], tmp_path: Path, client: str
) -> None:
    """dist/ holds another file under the attested filename (rebuilt since it was signed)."""
    folder = project(tmp_path / "project", stale=True)
    result = PUBLISH[client](repositories, "stale", folder, loopback_env)
    output = flat(result.stdout + result.stderr)
    assert result.returncode != 0, output
    assert STALE in output
    assert project_page(repositories, "stale").status_code == 404  # nothing was published
