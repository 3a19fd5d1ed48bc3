"""PEP 740 attestations of an upload: checked with the stdlib, verified with Sigstore.

`twine upload --attestations` and `uv publish` send an `attestations` form field, a JSON
array of attestation objects. `check` runs on every upload that carries one, before its
file is published: it verifies no signature, only that each attestation is well formed
and speaks of this very file, so a stale attestation left in `dist/` is refused with a
reason instead of being served as the provenance of another file.

`verify` needs the optional `attestations` extra (pypi-attestations, which brings sigstore,
cryptography and pydantic: heavy, so imported on its first call, never by `import
minirepo`). It verifies the signature, the certificate chain and the transparency-log
inclusion proof offline, against the trust root that sigstore embeds: the server never
reaches the network for it. No publisher identity is pinned; the one the certificate
names is derived from its claims and returned, for `provenance` to serve.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import importlib.util
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from packaging.utils import parse_sdist_filename, parse_wheel_filename

from minirepo.errors import InvalidUpload

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from pypi_attestations import (
        Attestation,
        CircleCIPublisher,
        GitHubPublisher,
        GitLabPublisher,
        GooglePublisher,
    )

    PublisherModel = GitHubPublisher | GitLabPublisher | GooglePublisher | CircleCIPublisher

MAX_BYTES = 256 * 1024
MAX_COUNT = 8
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# The predicate types PyPI accepts (pypi-attestations' `AttestationType`).
PREDICATE_TYPES = frozenset(
    {"https://docs.pypi.org/attestations/publish/v1", "https://slsa.dev/provenance/v1"}
)
EXTRA = "minirepo-server[attestations]"

# Fulcio's certificate extensions (github.com/sigstore/fulcio, docs/oid-info.md), as the
# keys of pypi-attestations' `Attestation.certificate_claims`.
_ISSUER = "1.3.6.1.4.1.57264.1.8"
_BUILD_SIGNER_URI = "1.3.6.1.4.1.57264.1.9"
_SOURCE_REPOSITORY_URI = "1.3.6.1.4.1.57264.1.12"
_SOURCE_REPOSITORY_DIGEST = "1.3.6.1.4.1.57264.1.13"
_SOURCE_REPOSITORY_REF = "1.3.6.1.4.1.57264.1.14"
_BUILD_CONFIG_URI = "1.3.6.1.4.1.57264.1.18"
_GITHUB = "https://token.actions.githubusercontent.com"
_GITLAB = "https://gitlab.com"
_GOOGLE = "https://accounts.google.com"
_CIRCLECI = "https://oidc.circleci.com"
_CIRCLECI_SIGNER = re.compile(
    r"https://circleci\.com/api/v2/projects/([^/]+)/pipeline-definitions/([^/]+)"
)
# sigstore logs this at WARNING on every verification; offline is this module's choice.
_OFFLINE_NOTICE = "TUF repository is loaded in offline mode"
_TRUST_ROOT_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What `verify` found. `publisher` is a PEP 740 publisher object (`kind` and its
    fields) when the certificate names a Trusted Publisher kind that PyPI knows."""

    status: Literal["verified", "unverified"]
    reason: str
    publisher: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Bundle:
    """The attestations of one file that one publisher signed (as `check` returned them)."""

    publisher: Mapping[str, Any]
    attestations: Sequence[Mapping[str, Any]]


def check(raw: str | bytes, filename: str, sha256: str) -> list[dict[str, Any]]:
    """The `attestations` field of an upload of `filename` (hex `sha256`), each object
    reduced to PEP 740's fields, which is what to store and serve.

    Raises `InvalidUpload` ("Invalid attestation: ...") unless it is a JSON array of 1 to 8
    attestations, each an in-toto v1 statement about this file with a known predicate.
    """
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise _invalid(f"larger than {MAX_BYTES // 1024} KiB")
    try:
        items = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _invalid("not JSON") from exc
    if not isinstance(items, list):
        raise _invalid("expected a JSON array of attestation objects")
    if not 1 <= len(items) <= MAX_COUNT:
        raise _invalid(f"expected 1 to {MAX_COUNT} attestations")
    return [_checked(item, filename, sha256) for item in items]


def extra_available() -> bool:
    """Whether `verify` can verify (the `attestations` extra is installed), without
    importing it."""
    return importlib.util.find_spec("pypi_attestations") is not None


def verify(attestations: Sequence[Mapping[str, Any]], filename: str, sha256: str) -> Verdict:
    """Verify what `check` returned for `filename`, offline.

    Raises `InvalidUpload` ("Attestation verification failed: ...") when an attestation
    does not verify. "unverified" means it could not be checked here (the extra is
    missing, sigstore's trust root could not be loaded): the reason says which.
    """
    try:
        import pypi_attestations as pa
        from sigstore import errors as sigstore_errors
    except ImportError as exc:
        return Verdict("unverified", f"the {EXTRA} extra is not installed ({exc})")
    problem = _trust_root_problem()
    if problem:
        return Verdict("unverified", f"sigstore's trust root could not be loaded: {problem}")
    dist = pa.Distribution(name=filename, digest=sha256)
    publishers: list[dict[str, Any] | None] = []
    for item in attestations:
        attestation = _parsed(item)
        publisher = _publisher(attestation)
        try:
            attestation.verify(publisher or _AnyIdentity(), dist, offline=True)
        except pa.AttestationError as exc:
            raise _failed(str(exc).removeprefix("Verification failed: ")) from exc
        except (sigstore_errors.TUFError, sigstore_errors.MetadataError, OSError) as exc:
            return Verdict("unverified", f"sigstore's trust root could not be loaded: {exc}")
        except sigstore_errors.Error as exc:
            raise _failed(str(exc)) from exc
        publishers.append(publisher.model_dump(mode="json") if publisher else None)
    if any(publisher != publishers[0] for publisher in publishers):
        raise _failed("the attestations were signed by different publishers")
    return Verdict("verified", f"signed by {_described(publishers[0])}", publishers[0])


def provenance(bundles: Sequence[Bundle]) -> dict[str, Any]:
    """The PEP 740 provenance object of a file, as its `provenance` URL serves it."""
    return {
        "version": 1,
        "attestation_bundles": [
            {
                "publisher": dict(bundle.publisher),
                "attestations": [dict(attestation) for attestation in bundle.attestations],
            }
            for bundle in bundles
        ],
    }


def _invalid(detail: str) -> InvalidUpload:
    return InvalidUpload(f"Invalid attestation: {detail}")


def _failed(detail: str) -> InvalidUpload:
    """sigstore's reasons can quote whole hash lists: the start says what failed."""
    shown = detail if len(detail) <= 300 else detail[:297] + "..."
    return InvalidUpload(f"Attestation verification failed: {shown}")


def _checked(item: object, filename: str, sha256: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _invalid("each attestation must be a JSON object")
    version = item.get("version")
    if type(version) is not int or version != 1:
        raise _invalid("unsupported version (expected 1)")
    material = _object(item, "verification_material")
    envelope = _object(item, "envelope")
    certificate, _ = _base64(material, "certificate", "verification_material")
    entries = material.get("transparency_entries")
    if not (isinstance(entries, list) and entries and all(isinstance(e, dict) for e in entries)):
        raise _invalid("verification_material.transparency_entries must be a non-empty array")
    signature, _ = _base64(envelope, "signature", "envelope")
    statement, payload = _base64(envelope, "statement", "envelope")
    _check_statement(payload, filename, sha256)
    return {
        "version": 1,
        "verification_material": {"certificate": certificate, "transparency_entries": entries},
        "envelope": {"statement": statement, "signature": signature},
    }


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise _invalid(f"missing {key}")
    return value


def _base64(parent: dict[str, Any], key: str, where: str) -> tuple[str, bytes]:
    """The text and its bytes. Line breaks are allowed (pydantic before 2.10 wrote them)."""
    text = parent.get(key)
    if isinstance(text, str):
        try:
            return text, base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            pass
    raise _invalid(f"{where}.{key} is not base64")


def _check_statement(payload: bytes, filename: str, sha256: str) -> None:
    try:
        statement = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise _invalid("envelope.statement is not JSON") from exc
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise _invalid("envelope.statement is not an in-toto v1 statement")
    subjects = statement.get("subject")
    if not (isinstance(subjects, list) and len(subjects) == 1 and isinstance(subjects[0], dict)):
        raise _invalid("the statement must have exactly one subject")
    name = subjects[0].get("name")
    subject_key = _dist_key(name) if isinstance(name, str) else None
    if subject_key is None or subject_key != _dist_key(filename):
        raise _invalid(f"subject {_shown(name)} does not name the uploaded file {filename}")
    digest = subjects[0].get("digest")
    if not isinstance(digest, dict) or digest.get("sha256") != sha256:
        raise _invalid("subject sha256 does not match the uploaded file")
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or predicate_type not in PREDICATE_TYPES:
        raise _invalid(f"unknown predicateType {_shown(predicate_type)}")


def _dist_key(filename: str) -> tuple[Any, ...] | None:
    """What PyPI compares of two filenames (pypi-attestations' `_check_dist_filename`):
    packaging's parse, so a subject may name the file in normalized form and a wheel's
    compressed tag set in any order. None for a name that does not parse."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)
    except ValueError:
        return None
    return None


def _shown(value: object) -> str:
    """An uploader's value in a reason: quoted and short (it goes into a status line)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _trust_root_problem() -> str | None:
    """Why sigstore's trust root can't be loaded, or None. The first load copies the
    embedded root into the user's cache folder; the lock keeps two threads from copying
    it at once (one could read the other's half-written file)."""
    from sigstore import errors as sigstore_errors

    with _TRUST_ROOT_LOCK:
        try:
            _load_trust_root()
        except (sigstore_errors.Error, OSError, ValueError) as exc:
            return str(exc) or type(exc).__name__
    return None


@functools.cache
def _load_trust_root() -> None:
    """Once a process (a failure is not cached: the next upload tries again)."""
    from sigstore.verify import Verifier

    logging.getLogger("sigstore._internal.tuf").addFilter(_drop_offline_notice)
    Verifier.production(offline=True)


def _drop_offline_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_OFFLINE_NOTICE)


def _parsed(item: Mapping[str, Any]) -> Attestation:
    from pydantic import ValidationError
    from pypi_attestations import Attestation

    try:
        return Attestation.model_validate(item)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise _failed(f"malformed attestation ({problems})") from exc


class _AnyIdentity:
    """A sigstore verification policy that accepts any signer: pinning a publisher is the
    consumer's job (the identity is returned as the publisher). Unlike sigstore's
    `UnsafeNoOp` it does not log a warning on every call."""

    def verify(self, cert: Certificate) -> None:
        return None


def _publisher(attestation: Attestation) -> PublisherModel | None:
    """The Trusted Publisher the signing certificate names, built as pypi-attestations'
    publisher policies read it back; None for an issuer PyPI has no publisher kind for."""
    from pypi_attestations import CircleCIPublisher, GooglePublisher

    try:
        claims = attestation.certificate_claims
    except ValueError as exc:
        raise _failed("invalid X.509 certificate") from exc
    issuer = claims.get(_ISSUER)
    if issuer in (_GITHUB, _GITLAB):
        return _ci_publisher(claims, issuer)
    if issuer == _GOOGLE:
        email = _san_email(attestation)
        return GooglePublisher(email=email) if email else None
    if issuer == _CIRCLECI:
        signer = _CIRCLECI_SIGNER.fullmatch(claims.get(_BUILD_SIGNER_URI, ""))
        if not signer:
            return None
        return CircleCIPublisher(
            project_id=signer[1],
            pipeline_definition_id=signer[2],
            vcs_origin=claims.get(_SOURCE_REPOSITORY_URI),
            vcs_ref=claims.get(_SOURCE_REPOSITORY_REF),
        )
    return None


def _ci_publisher(
    claims: Mapping[str, str], issuer: str
) -> GitHubPublisher | GitLabPublisher | None:
    """GitHub's and GitLab's Build Config URI is `<repository URI><sep><workflow>@<ref or
    commit>`: the workflow is what remains once both ends are matched."""
    from pypi_attestations import GitHubPublisher, GitLabPublisher

    repository_uri = claims.get(_SOURCE_REPOSITORY_URI, "")
    host = "https://github.com/" if issuer == _GITHUB else "https://gitlab.com/"
    separator = "/.github/workflows/" if issuer == _GITHUB else "//"
    config = claims.get(_BUILD_CONFIG_URI, "")
    if not repository_uri.startswith(host) or not config.startswith(repository_uri + separator):
        return None
    repository = repository_uri.removeprefix(host)
    rest = config.removeprefix(repository_uri + separator)
    for suffix in (claims.get(_SOURCE_REPOSITORY_REF), claims.get(_SOURCE_REPOSITORY_DIGEST)):
        if suffix and rest.endswith("@" + suffix) and len(rest) > len(suffix) + 1:
            workflow = rest[: -len(suffix) - 1]
            if issuer == _GITHUB:
                return GitHubPublisher(repository=repository, workflow=workflow)
            return GitLabPublisher(repository=repository, workflow_filepath=workflow)
    return None


def _san_email(attestation: Attestation) -> str | None:
    from cryptography import x509

    der = attestation.verification_material.certificate
    try:
        names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (ValueError, x509.ExtensionNotFound):
        return None
    emails = names.value.get_values_for_type(x509.RFC822Name)
    return emails[0] if len(emails) == 1 else None


def _described(publisher: Mapping[str, Any] | None) -> str:
    """A publisher in words, for the verdict's reason."""
    if publisher is None:
        return "a Sigstore identity with no Trusted Publisher kind"
    kind = publisher["kind"]
    if kind == "GitHub":
        return f"GitHub {publisher['repository']} ({publisher['workflow']})"
    if kind == "GitLab":
        return f"GitLab {publisher['repository']} ({publisher['workflow_filepath']})"
    if kind == "Google":
        return f"Google {publisher['email']}"
    return f"CircleCI project {publisher['project_id']}"
