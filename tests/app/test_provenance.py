"""PEP 740 attestations through the upload API (issue 19, test 8), on SQLite and
PostgreSQL, with pypi-attestations' own signed fixtures (tests/fixtures/attestations/):
what is refused before anything is stored, what is kept, and the provenance served."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypi_attestations import Distribution, GitHubPublisher, Provenance

from minirepo import attestations, models
from minirepo.services import accounts
from tests.conftest import basic, snapshot
from tests.helpers.backends import BACKENDS, backend_settings, run_cli, served
from tests.helpers.distfactory import Dist, make_sdist, upload_form
from tests.helpers.serverproc import FAST_HASH

FIXTURES = Path(__file__).parent.parent / "fixtures" / "attestations"
SDIST = "pypi_attestations-0.0.19.tar.gz"
ROOT = basic("root", "root-password-1")
JSON_V1 = {"Accept": "application/vnd.pypi.simple.v1+json"}
FILE_URL = f"/main/files/pypi-attestations/{SDIST}"


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with served(backend_settings(request, tmp_path)) as flask_app:
        accounts.add_user("root", "root-password-1", method=FAST_HASH, admin=True)
        yield flask_app


def attestation(kind: str = "publish") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{SDIST}.{kind}.attestation").read_text())
    return loaded


def upload(
    client: FlaskClient, path: Path, attestations: object = None, **fields: Any
) -> tuple[int, str]:
    form = upload_form(path, **fields)
    if attestations is not None:
        form["attestations"] = (
            attestations if isinstance(attestations, str) else json.dumps(attestations)
        )
    answer = client.post("/main/", data=form, headers=ROOT, content_type="multipart/form-data")
    return answer.status_code, answer.status


def fixture_sdist(tmp_path: Path) -> Path:
    target = tmp_path / SDIST
    target.write_bytes((FIXTURES / SDIST).read_bytes())
    return target


def listed(client: FlaskClient) -> dict[str, Any]:
    page = client.get("/main/simple/pypi-attestations/", headers=JSON_V1)
    assert page.status_code == 200
    entry: dict[str, Any] = page.json["files"][0]  # type: ignore[index]
    return entry


def test_verified_attestations_give_a_provenance_that_verifies(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    status, reason = upload(client, fixture_sdist(tmp_path), [attestation(), attestation("slsa")])
    assert status == 200, reason
    entry = listed(client)
    assert entry["provenance"] == f"../../files/pypi-attestations/{SDIST}.provenance"
    html = client.get("/main/simple/pypi-attestations/").data.decode()
    assert f'data-provenance="../../files/pypi-attestations/{SDIST}.provenance"' in html
    answer = client.get(FILE_URL + ".provenance")
    assert answer.status_code == 200
    provenance = Provenance.model_validate_json(answer.data)
    publisher = GitHubPublisher(repository="trailofbits/pypi-attestations", workflow="release.yml")
    digest = models.File.get(models.File.filename == SDIST).sha256
    for bundle in provenance.attestation_bundles:
        for each in bundle.attestations:
            each.verify(publisher, Distribution(name=SDIST, digest=digest), offline=True)
    kept = models.FileProvenance.get()
    assert kept.status == "verified"
    assert "attestations=verified" in models.Event.get(models.Event.action == "upload").detail


def test_a_stale_attestation_is_refused_and_nothing_is_stored(app: Flask, tmp_path: Path) -> None:
    """Another file than the one the attestation names (a stale file in dist/)."""
    client = app.test_client()
    (tmp_path / "dist").mkdir()
    other = make_sdist(tmp_path / "dist", Dist("pypi-attestations", "0.0.19"))
    before = snapshot(app.extensions["minirepo"].settings)
    status, reason = upload(client, other, [attestation()])
    assert status == 400
    assert reason == "400 Invalid attestation: subject sha256 does not match the uploaded file"
    assert snapshot(app.extensions["minirepo"].settings) == before


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "Invalid attestation: not JSON"),
        ("[" + "{}," * 8 + "{}]", "Invalid attestation: expected 1 to 8 attestations"),
    ],
)
def test_a_field_that_is_no_attestation_is_refused(
    app: Flask, tmp_path: Path, raw: str, reason: str
) -> None:
    status, got = upload(app.test_client(), fixture_sdist(tmp_path), raw)
    assert (status, got) == (400, f"400 {reason}")
    assert models.File.select().count() == 0


def test_a_flipped_signature_bit_is_refused(app: Flask, tmp_path: Path) -> None:
    broken = attestation()
    signature = bytearray(base64.b64decode(broken["envelope"]["signature"]))
    signature[10] ^= 1
    broken["envelope"]["signature"] = base64.b64encode(bytes(signature)).decode()
    status, reason = upload(app.test_client(), fixture_sdist(tmp_path), [broken])
    assert (status, reason) == (400, "400 Attestation verification failed: DSSE: invalid signature")
    assert models.File.select().count() == 0


def test_store_keeps_them_unverified_and_serves_no_provenance(app: Flask, tmp_path: Path) -> None:
    """As `auto` does without the extra: kept after the stdlib checks, not served."""
    assert run_cli(app, "repo", "set", "main", "--attestations", "store").exit_code == 0
    client = app.test_client()
    status, reason = upload(client, fixture_sdist(tmp_path), [attestation()])
    assert status == 200, reason
    assert "provenance" not in listed(client)
    assert client.get(FILE_URL + ".provenance").status_code == 404
    assert models.FileProvenance.get().status == "unverified"
    # `attestations verify` checks them again (here the extra is installed): served now.
    assert run_cli(app, "repo", "set", "main", "--attestations", "verify").exit_code == 0
    result = run_cli(app, "attestations", "verify")
    assert "1 of 1 unverified file(s) verified now" in result.output
    assert client.get(FILE_URL + ".provenance").status_code == 200


def test_require_refuses_an_upload_without_a_verified_attestation(
    app: Flask, tmp_path: Path
) -> None:
    assert run_cli(app, "repo", "set", "main", "--attestations", "require").exit_code == 0
    status, reason = upload(app.test_client(), fixture_sdist(tmp_path))
    assert status == 400
    assert "requires a verified PEP 740 attestation" in reason
    assert upload(app.test_client(), fixture_sdist(tmp_path), [attestation()])[0] == 200


def test_off_drops_them(app: Flask, tmp_path: Path) -> None:
    assert run_cli(app, "repo", "set", "main", "--attestations", "off").exit_code == 0
    assert upload(app.test_client(), fixture_sdist(tmp_path), "not even json")[0] == 200
    assert models.FileProvenance.select().count() == 0


def test_a_gpg_signature_is_accepted_dropped_and_never_served(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    (tmp_path / "dist").mkdir()
    path = make_sdist(tmp_path / "dist", Dist("signed", "1.0"))
    signature = (io.BytesIO(b"-----BEGIN PGP SIGNATURE-----\n...\n"), path.name + ".asc")
    status, reason = upload(client, path, gpg_signature=signature)
    assert status == 200, reason
    assert client.get(f"/main/files/signed/{path.name}.asc").status_code == 404
    assert "gpg_signature=dropped" in models.Event.get(models.Event.action == "upload").detail
    (tmp_path / "big").mkdir()
    other = make_sdist(tmp_path / "big", Dist("signed", "1.1"))
    huge = (io.BytesIO(b"x" * (65 * 1024)), other.name + ".asc")
    assert upload(client, other, gpg_signature=huge)[0] == 400


def test_the_project_page_says_why_attestations_are_unverified(app: Flask, tmp_path: Path) -> None:
    assert run_cli(app, "repo", "set", "main", "--attestations", "store").exit_code == 0
    client = app.test_client()
    assert upload(client, fixture_sdist(tmp_path), [attestation()])[0] == 200
    page = client.get("/main/project/pypi-attestations/").data.decode()
    assert "attestations unverified: kept without verification" in page


def test_auto_without_the_extra_keeps_them_unverified(
    app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`auto` (the default) on a server without minirepo-server[attestations] is `store`:
    the stdlib checks still refuse a stale one; the fixture is kept `unverified`, and the
    pages carry no `provenance` key."""
    monkeypatch.setattr(attestations, "extra_available", lambda: False)
    client = app.test_client()
    (tmp_path / "dist").mkdir()
    other = make_sdist(tmp_path / "dist", Dist("pypi-attestations", "0.0.19"))
    assert upload(client, other, [attestation()])[0] == 400
    assert models.File.select().count() == 0
    assert upload(client, fixture_sdist(tmp_path), [attestation()])[0] == 200
    assert models.FileProvenance.get().status == "unverified"
    assert "provenance" not in listed(client)
