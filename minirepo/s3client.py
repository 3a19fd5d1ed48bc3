"""The S3 client and what its answers mean: `storage`'s URL, the boto3 client made for
it, and a store's refusals turned into errors that name the setting to fix.

boto3 is imported here, inside the functions, and only when `storage` names a bucket; a
one-box install without the `s3` extra never needs it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from minirepo.errors import Busy, MinirepoError, StorageError, UserError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'minirepo-server[s3]'"
# What a store answers when it has no such bucket, refuses the credentials, or is busy.
MISSING_BUCKET = ("NoSuchBucket",)
REFUSED = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403", "Forbidden")
THROTTLED = ("SlowDown", "ServiceUnavailable", "Throttling", "RequestTimeout", "503")
ALREADY_THERE = ("PreconditionFailed", "ConditionalRequestConflict", "412")
NOT_FOUND = ("NoSuchKey", "404", "NotFound")
CREDENTIALS_HINT = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"


@dataclasses.dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "some/prefix/", ending in a slash

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """`s3://bucket/prefix` (the prefix optional); a UserError naming the setting otherwise."""
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not url.startswith("s3://") or not bucket or "//" in prefix:
            raise UserError(
                "Setting 'storage' must be empty (the data folder's files/) or "
                f"s3://BUCKET/PREFIX, not {url!r}"
            )
        prefix = prefix.strip("/")
        return cls(bucket, f"{prefix}/" if prefix else "")


def make_client(endpoint_url: str, region: str, *, quick: bool = False) -> Any:
    """A boto3 S3 client; `quick`: short timeouts and no retry (the health probe)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise UserError(
            f"storage is an S3 bucket, but boto3 is not installed: {INSTALL_HINT}"
        ) from exc
    config = Config(
        signature_version="s3v4",
        connect_timeout=1 if quick else 5,
        read_timeout=2 if quick else 60,
        retries={"mode": "standard", "max_attempts": 1 if quick else 3},
        max_pool_connections=32,  # waitress threads and proxy fetches share it
        s3={"addressing_style": "path"} if endpoint_url else {},
        # The sha256 is sent with every put (below) and checked by the store: no CRC on top.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config
    )


def error_code(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return str(response.get("Error", {}).get("Code", "")), status


def failure(exc: Exception, what: str, location: S3Location, endpoint: str) -> MinirepoError:
    """The store's refusal as a MinirepoError whose reason says what to fix; the details
    (never a credential: botocore's messages hold none) go to the log."""
    from botocore.exceptions import (
        ConnectionError as ConnectError,
    )
    from botocore.exceptions import (
        NoCredentialsError,
        PartialCredentialsError,
    )

    code, status = error_code(exc)
    where = f"s3://{location.bucket}/{location.prefix}"
    log.error("S3 store %s (%s) failed %s: %s", where, endpoint or "AWS", what, exc)
    if code in THROTTLED or status == 503:
        return Busy("The object store is busy; retry shortly")
    if code in REFUSED or status == 403:
        return StorageError(
            f"The object store refused the server's credentials ({CREDENTIALS_HINT})"
        )
    if code in MISSING_BUCKET:
        return StorageError(f"The bucket {location.bucket} does not exist (setting 'storage')")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(
            f"The server has no credentials for the object store ({CREDENTIALS_HINT})"
        )
    if isinstance(exc, ConnectError):
        return StorageError("The object store does not answer (setting 's3_endpoint_url')")
    return StorageError(f"The object store failed {what}: {code or type(exc).__name__}")
