"""PEP 740 attestations (minirepo/attestations.py): the stdlib check every upload gets, the
offline Sigstore verification of the `attestations` extra, and the provenance object.

The fixtures are real attestations (tests/fixtures/attestations/README.md): they verify
offline, against the trust root sigstore embeds.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from minirepo import attestations
from minirepo.attestations import Bundle, Verdict
from minirepo.errors import InvalidUpload

FIXTURES = Path(__file__).parent.parent / "fixtures" / "attestations"
SDIST = "pypi_attestations-0.0.19.tar.gz"
SDIST_SHA256 = "9bb1add04b1b4e182be6b0b80931593f7a291eb49d69b4fd728a5d4cbcdc4bd3"
GITHUB = {
    "kind": "GitHub",
    "repository": "trailofbits/pypi-attestations",
    "workflow": "release.yml",
    "environment": None,
}
FIXTURE_SHA256 = {
    SDIST: SDIST_SHA256,
    f"{SDIST}.publish.attestation": (
        "844a2b5de95ba18ef284bdc5434fad63b8274e4d81e5831978d68002428110b7"
    ),
    f"{SDIST}.slsa.attestation": "70258bb8e63a1f81cc5e5e58ddc3f26f5c314634c0a3c760c16d8872dc36f538",
    f"{SDIST}.provenance": "2cfa62b3d64e20d0ea4921a19f4d658d80bda0ee1eb040dd97d82711ea69dde4",
    "gitlab_oidc_project-0.0.3.tar.gz.publish.attestation": (
        "b790801779c2654a7138e0212b701582ade5785bc8299bbb29d2580e4586ffd2"
    ),
    "gcb_attestation_test-0.0.0.tar.gz.provenance": (
        "3f32689422c2aa9f3b36b4159cfd1e7fe868d24b97eed5266eff7e278bc9951f"
    ),
    "circleci_sign_publish_example-0.0.1.dev137-py3-none-any.whl.provenance": (
        "50605e24166a2c503a09846f42793f56d51d89afc166252d6f4295a4164c04e0"
    ),
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def publish() -> dict[str, Any]:
    attestation: dict[str, Any] = fixture(f"{SDIST}.publish.attestation")
    return attestation


def slsa() -> dict[str, Any]:
    attestation: dict[str, Any] = fixture(f"{SDIST}.slsa.attestation")
    return attestation


def statement_of(attestation: dict[str, Any]) -> dict[str, Any]:
    statement: dict[str, Any] = json.loads(base64.b64decode(attestation["envelope"]["statement"]))
    return statement


def with_statement(**changes: Any) -> dict[str, Any]:
    """The publish attestation with its statement changed (its signature no longer fits,
    which `check` does not look at)."""
    attestation = publish()
    statement = statement_of(attestation) | changes
    attestation["envelope"]["statement"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return attestation


def with_subject(name: str = SDIST, sha256: str = SDIST_SHA256) -> dict[str, Any]:
    return with_statement(subject=[{"name": name, "digest": {"sha256": sha256}}])


def check(items: Any, filename: str = SDIST, sha256: str = SDIST_SHA256) -> list[dict[str, Any]]:
    return attestations.check(json.dumps(items), filename, sha256)


def refused(items: Any, filename: str = SDIST, sha256: str = SDIST_SHA256) -> str:
    with pytest.raises(InvalidUpload) as caught:
        attestations.check(
            items if isinstance(items, (str, bytes)) else json.dumps(items), filename, sha256
        )
    assert caught.value.status == 400
    return caught.value.reason


def signed_subject(attestation: dict[str, Any]) -> tuple[str, str]:
    """The filename and sha256 an attestation was signed for."""
    subject = statement_of(attestation)["subject"][0]
    return subject["name"], subject["digest"]["sha256"]


# --- the fixtures ---------------------------------------------------------------------


def test_fixtures_are_the_files_the_readme_names() -> None:
    found = {path.name for path in FIXTURES.iterdir()} - {"README.md"}
    assert found == set(FIXTURE_SHA256)
    readme = (FIXTURES / "README.md").read_text()
    for name, sha256 in FIXTURE_SHA256.items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == sha256, name
        assert f"`{name}`" in readme
        assert sha256 in readme


# --- check: the stdlib, on every upload -------------------------------------------------


def test_check_accepts_both_attestations_of_the_fixture_sdist() -> None:
    assert check([publish(), slsa()]) == [publish(), slsa()]


def test_check_keeps_only_the_pep_740_fields() -> None:
    attestation = publish()
    attestation["junk"] = "x" * 1000
    attestation["envelope"]["extra"] = 1
    assert check([attestation]) == [publish()]


def test_check_compares_filenames_as_pypi_does() -> None:
    """The subject may spell the name unnormalized, and a wheel's tags in any order."""
    assert check([publish()], filename="PyPI.Attestations-0.0.19.tar.gz")
    wheel = "demo-1.0-py2.py3-none-any.whl"
    assert check([with_subject("demo-1.0-py3.py2-none-any.whl")], filename=wheel)


def test_wrong_subject_digest_is_refused_with_the_stale_dist_message() -> None:
    reason = refused([publish()], sha256="0" * 64)
    assert reason == "Invalid attestation: subject sha256 does not match the uploaded file"


@pytest.mark.parametrize(
    ("subject", "filename"),
    [
        (SDIST, "pypi_attestations-0.0.20.tar.gz"),
        (SDIST, "other-0.0.19.tar.gz"),
        (SDIST, "pypi_attestations-0.0.19-py3-none-any.whl"),
        ("demo-1.0-py3-none-any.whl", "demo-1.0-cp311-none-any.whl"),
        ("not a filename", SDIST),
    ],
)
def test_a_subject_naming_another_file_is_refused(subject: str, filename: str) -> None:
    reason = refused([with_subject(subject)], filename=filename)
    assert reason == (
        f"Invalid attestation: subject {subject!r} does not name the uploaded file {filename}"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "Invalid attestation: not JSON"),
        ("[" * 100_000, "Invalid attestation: not JSON"),
        ('{"version": 1}', "Invalid attestation: expected a JSON array of attestation objects"),
        ("[]", "Invalid attestation: expected 1 to 8 attestations"),
        ("[1]", "Invalid attestation: each attestation must be a JSON object"),
    ],
)
def test_a_field_that_is_no_array_of_objects_is_refused(raw: str, reason: str) -> None:
    assert refused(raw) == reason


def test_nine_attestations_are_refused() -> None:
    assert refused([publish()] * 9) == "Invalid attestation: expected 1 to 8 attestations"
    assert len(check([publish()] * 8)) == 8


def test_a_field_over_256_kib_is_refused() -> None:
    padded = publish()
    padded["padding"] = "x" * (256 * 1024)
    assert refused([padded]) == "Invalid attestation: larger than 256 KiB"
    assert refused(json.dumps([padded]).encode()) == "Invalid attestation: larger than 256 KiB"


def test_an_unknown_predicate_type_is_refused() -> None:
    reason = refused([with_statement(predicateType="https://example.com/mine/v1")])
    assert reason == "Invalid attestation: unknown predicateType 'https://example.com/mine/v1'"


def broken(path: str, value: Any) -> dict[str, Any]:
    attestation = publish()
    *parents, key = path.split(".")
    target = attestation
    for parent in parents:
        target = target[parent]
    if value is None:
        del target[key]
    else:
        target[key] = value
    return attestation


@pytest.mark.parametrize(
    ("attestation", "reason"),
    [
        (broken("version", 2), "unsupported version (expected 1)"),
        (broken("version", True), "unsupported version (expected 1)"),
        (broken("envelope", None), "missing envelope"),
        (broken("verification_material", []), "missing verification_material"),
        (broken("envelope.statement", "not base64!"), "envelope.statement is not base64"),
        (broken("envelope.signature", 12), "envelope.signature is not base64"),
        (
            broken("verification_material.certificate", None),
            "verification_material.certificate is not base64",
        ),
        (
            broken("verification_material.transparency_entries", []),
            "verification_material.transparency_entries must be a non-empty array",
        ),
        (
            broken("envelope.statement", base64.b64encode(b"{nope").decode()),
            "envelope.statement is not JSON",
        ),
        (
            with_statement(_type="https://in-toto.io/Statement/v0.1"),
            "envelope.statement is not an in-toto v1 statement",
        ),
        (with_statement(subject=[]), "the statement must have exactly one subject"),
        (
            with_statement(subject=statement_of(publish())["subject"] * 2),
            "the statement must have exactly one subject",
        ),
        (
            with_statement(subject=[{"name": SDIST}]),
            "subject sha256 does not match the uploaded file",
        ),
        (with_statement(predicateType=["list"]), "unknown predicateType ['list']"),
    ],
)
def test_a_malformed_attestation_is_refused_with_its_fault(
    attestation: dict[str, Any], reason: str
) -> None:
    assert refused([publish(), attestation]) == f"Invalid attestation: {reason}"


def test_base64_may_be_wrapped_over_lines() -> None:
    """pydantic before 2.10 wrote base64 with a line break every 76 characters."""
    attestation = publish()
    text = attestation["envelope"]["statement"]
    attestation["envelope"]["statement"] = "\n".join(
        text[i : i + 76] for i in range(0, len(text), 76)
    )
    assert check([attestation]) == [attestation]


def test_check_never_imports_sigstore() -> None:
    """The extra is heavy: a server without it, or one that never verifies, must not
    pay for it (nor fail on it) when an upload carries attestations."""
    script = (
        "import json, sys\n"
        "from minirepo import attestations\n"
        f"raw = open({str(FIXTURES / (SDIST + '.publish.attestation'))!r}).read()\n"
        f"attestations.check('[' + raw + ']', {SDIST!r}, {SDIST_SHA256!r})\n"
        "assert attestations.extra_available()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sigstore', 'pypi_attestations', 'pydantic', 'cryptography')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# --- verify: the attestations extra, offline ----------------------------------------------


def test_the_extra_is_available_here() -> None:
    assert attestations.extra_available()


def test_verify_accepts_the_fixture_attestations_and_names_their_github_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        verdict = attestations.verify(check([publish(), slsa()]), SDIST, SDIST_SHA256)
    assert verdict == Verdict(
        "verified", "signed by GitHub trailofbits/pypi-attestations (release.yml)", GITHUB
    )
    assert caplog.records == []  # sigstore's "loaded in offline mode" warning is dropped


def test_a_flipped_signature_bit_fails_verification() -> None:
    attestation = publish()
    signature = bytearray(base64.b64decode(attestation["envelope"]["signature"]))
    signature[10] ^= 1
    attestation["envelope"]["signature"] = base64.b64encode(bytes(signature)).decode()
    with pytest.raises(InvalidUpload) as caught:
        attestations.verify(check([slsa(), attestation]), SDIST, SDIST_SHA256)
    assert caught.value.reason == "Attestation verification failed: DSSE: invalid signature"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda a: a["verification_material"].update(certificate="aGVsbG8="),
            "Attestation verification failed: invalid X.509 certificate",
        ),
        (
            lambda a: a["verification_material"].update(transparency_entries=[{}]),
            "Attestation verification failed: invalid transparency log entry",
        ),
        (
            lambda a: a["verification_material"]["transparency_entries"][0].pop("inclusionPromise"),
            "Attestation verification failed: bundle must contain an inclusion promise or "
            "signed timestamp(s)",
        ),
    ],
)
def test_damaged_verification_material_fails_verification(change: Any, reason: str) -> None:
    attestation = publish()
    change(attestation)
    with pytest.raises(InvalidUpload) as caught:
        attestations.verify(check([attestation]), SDIST, SDIST_SHA256)
    assert caught.value.reason == reason


def test_a_transparency_log_entry_that_does_not_hash_to_the_log_fails() -> None:
    attestation = publish()
    entry = attestation["verification_material"]["transparency_entries"][0]
    entry["inclusionProof"]["hashes"][0] = base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(InvalidUpload) as caught:
        attestations.verify(check([attestation]), SDIST, SDIST_SHA256)
    reason = caught.value.reason
    assert reason.startswith(
        "Attestation verification failed: invalid log entry: inclusion proof contains "
        "invalid root hash"
    )
    assert len(reason) <= len("Attestation verification failed: ") + 300


def test_attestations_of_different_publishers_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """One upload, one publisher: PEP 740's provenance has one bundle per publisher."""
    real = attestations._publisher
    calls: list[object] = []

    def first_only(attestation: Any) -> Any:
        calls.append(attestation)
        return real(attestation) if len(calls) == 1 else None

    monkeypatch.setattr(attestations, "_publisher", first_only)
    with pytest.raises(InvalidUpload) as caught:
        attestations.verify(check([publish(), slsa()]), SDIST, SDIST_SHA256)
    assert caught.value.reason == (
        "Attestation verification failed: the attestations were signed by different publishers"
    )


@pytest.mark.parametrize(
    "name",
    [
        "gcb_attestation_test-0.0.0.tar.gz.provenance",
        "circleci_sign_publish_example-0.0.1.dev137-py3-none-any.whl.provenance",
    ],
)
def test_the_publisher_is_the_one_pypi_named(name: str) -> None:
    """Google's and CircleCI's publishers, derived from the certificate, equal PyPI's."""
    bundle = fixture(name)["attestation_bundles"][0]
    filename, sha256 = signed_subject(bundle["attestations"][0])
    verdict = attestations.verify(check(bundle["attestations"], filename, sha256), filename, sha256)
    assert verdict.status == "verified"
    assert verdict.publisher == bundle["publisher"]


def test_a_gitlab_publisher_names_its_project_and_ci_file() -> None:
    attestation = fixture("gitlab_oidc_project-0.0.3.tar.gz.publish.attestation")
    filename, sha256 = signed_subject(attestation)
    verdict = attestations.verify(check([attestation], filename, sha256), filename, sha256)
    assert verdict.publisher == {
        "kind": "GitLab",
        "repository": "facutuesca/gitlab-oidc-project",
        "workflow_filepath": ".gitlab-ci.yml",
        "environment": None,
    }


def test_without_the_extra_attestations_are_unverified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pypi_attestations", None)
    assert not attestations.extra_available()
    verdict = attestations.verify(check([publish()]), SDIST, SDIST_SHA256)
    assert verdict.status == "unverified"
    assert verdict.publisher is None
    assert verdict.reason.startswith(
        "the minirepo-server[attestations] extra is not installed (import of pypi_attestations"
    )


def test_without_a_trust_root_attestations_are_unverified(tmp_path: Path) -> None:
    """sigstore copies its embedded trust root into the user's cache folder first: where
    that can't be written, nothing can be checked, and the verdict says why."""
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("")
    script = (
        "import json\n"
        "from minirepo import attestations\n"
        f"raw = open({str(FIXTURES / (SDIST + '.publish.attestation'))!r}).read()\n"
        f"items = attestations.check('[' + raw + ']', {SDIST!r}, {SDIST_SHA256!r})\n"
        f"verdict = attestations.verify(items, {SDIST!r}, {SDIST_SHA256!r})\n"
        "print(json.dumps([verdict.status, verdict.reason]))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(not_a_folder)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    status, reason = json.loads(done.stdout)
    assert status == "unverified"
    assert reason.startswith(
        "sigstore's trust root could not be loaded: [Errno 20] Not a directory"
    )


# --- provenance ---------------------------------------------------------------------------


def test_provenance_is_what_pypi_serves_for_the_same_upload() -> None:
    items = check([publish()])
    verdict = attestations.verify(items, SDIST, SDIST_SHA256)
    assert verdict.publisher is not None
    made = attestations.provenance([Bundle(verdict.publisher, items)])
    assert made == fixture(f"{SDIST}.provenance")


def test_provenance_verifies_with_pypi_attestations_against_its_github_publisher() -> None:
    """Issue test 8: a consumer pinning the publisher verifies what we serve, offline."""
    from pypi_attestations import Distribution, GitHubPublisher, Provenance

    items = check([publish(), slsa()])
    verdict = attestations.verify(items, SDIST, SDIST_SHA256)
    assert verdict.publisher is not None
    served = json.dumps(attestations.provenance([Bundle(verdict.publisher, items)]))
    parsed = Provenance.model_validate_json(served)
    [bundle] = parsed.attestation_bundles
    expected = GitHubPublisher(repository="trailofbits/pypi-attestations", workflow="release.yml")
    assert bundle.publisher == expected
    dist = Distribution(name=SDIST, digest=SDIST_SHA256)
    predicates = [a.verify(expected, dist, offline=True)[0] for a in bundle.attestations]
    assert predicates == sorted(attestations.PREDICATE_TYPES)


def test_provenance_copies_what_it_is_given() -> None:
    publisher = dict(GITHUB)
    items = [publish()]
    made = attestations.provenance([Bundle(publisher, items)])
    snapshot = copy.deepcopy(made)
    publisher["kind"] = "changed"
    items.clear()
    assert made == snapshot
