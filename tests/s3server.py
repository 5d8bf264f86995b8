"""A real S3 server for tests: ``rclone serve s3`` over a temporary folder, or a SeaweedFS
cluster (``tests/seaweed.py``).

Loaded as a pytest plugin from ``tests/conftest.py``. ``s3_server`` is rclone, started once
per session on a free loopback port; a test marked :data:`on_every_s3` runs once against
each server in :data:`S3_KINDS` instead (RELIABILITY item 67), and reads ``s3_server.kind``
where the two differ. ``s3_bucket`` gives each test a fresh, empty bucket on its server.
``s3_tls_server`` and ``s3_tls_bucket`` do the same over https, with a certificate signed
by a private CA that the session generates (``trustme``): its PEM file is ``ca_file``,
trusted by nothing on the machine.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import pytest
import trustme
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.dev.embedded_s3 import serve_s3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

__all__ = [
    "S3_KINDS",
    "TLS_NAMES",
    "S3Server",
    "on_every_s3",
    "rclone_server",
    "s3_bucket",
    "s3_server",
    "s3_tls_bucket",
    "s3_tls_server",
]

# The names the TLS server's certificate is valid for. ``s3.test`` resolves nowhere
# (RFC 2606): only a proxy that maps it to loopback can reach it, so a client that
# connects directly fails instead of passing by the proxy unseen.
TLS_NAMES = ("127.0.0.1", "localhost", "s3.test")

#: The S3 implementations the suite runs, each a session fixture of its own.
S3_KINDS = {"rclone": "rclone_server", "seaweedfs": "seaweed_server"}

#: Runs a test once per server: ``test_x[rclone]`` and ``test_x[seaweedfs]``.
on_every_s3 = pytest.mark.parametrize("s3_server", list(S3_KINDS), indirect=True)


@dataclass(frozen=True)
class S3Server:
    """Where a running test S3 server answers, and the one key pair it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    #: The PEM file of the CA that signed the server's certificate (https servers).
    ca_file: str | None = None
    #: Which implementation answers (a key of :data:`S3_KINDS`), for where they differ.
    kind: str = "rclone"
    #: The server's processes, where the fixture knows them (SeaweedFS).
    pids: tuple[int, ...] = ()

    def client(self) -> S3Client:
        """A new boto3 S3 client for this server; the caller closes it."""
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            # boto3 >= 1.36 adds CRC checksums to every request by default, which
            # S3-compatible servers may reject; send and check them only where required.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return _session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=config,
            verify=self.ca_file,
        )

    def env(self, bucket: str) -> dict[str, str]:
        """The environment variables that point the gateway at ``bucket`` on this server."""
        return {
            "USE_S3": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_REGION_NAME": self.region,
            "AWS_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_LOCATION": "media",  # as .env.example sets it
        }


@functools.cache
def _session() -> boto3.session.Session:
    # Shared by all clients: each new session reads botocore's data files again (~0.15 s).
    # Not boto3's default session, which other code may configure.
    return boto3.session.Session()


@pytest.fixture(scope="session")
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """rclone, or the server :data:`on_every_s3` names; each starts once per session."""
    kind = getattr(request, "param", "rclone")
    server: S3Server = request.getfixturevalue(S3_KINDS[kind])
    return server


@pytest.fixture(scope="session")
def rclone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One ``rclone serve s3`` for the whole session, on 127.0.0.1, serving an empty folder."""
    base = tmp_path_factory.mktemp("s3")
    root = base / "data"
    root.mkdir()
    log_path = base / "rclone.log"
    access_key = "AKIA" + secrets.token_hex(8).upper()  # rclone refuses IDs under 3 chars
    secret_key = secrets.token_hex(20)
    with serve_s3(root, access_key=access_key, secret_key=secret_key, log_path=log_path) as url:
        yield S3Server(endpoint_url=url, access_key=access_key, secret_key=secret_key)


@pytest.fixture(scope="session")
def s3_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One ``rclone serve s3`` over https for the session; see :data:`TLS_NAMES`."""
    base = tmp_path_factory.mktemp("s3-tls")
    root = base / "data"
    root.mkdir()
    ca = trustme.CA()
    ca_file, cert_file, key_file = base / "ca.pem", base / "cert.pem", base / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert(*TLS_NAMES)
    leaf.private_key_pem.write_to_path(str(key_file))
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in leaf.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_file), append=True)
    access_key = "AKIA" + secrets.token_hex(8).upper()
    secret_key = secrets.token_hex(20)
    with serve_s3(
        root,
        access_key=access_key,
        secret_key=secret_key,
        log_path=base / "rclone.log",
        tls=(cert_file, key_file),
    ) as url:
        yield S3Server(
            endpoint_url=url, access_key=access_key, secret_key=secret_key, ca_file=str(ca_file)
        )


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A new, empty bucket on the session's server; emptied and deleted afterwards."""
    with _bucket(s3_server) as name:
        yield name


@pytest.fixture
def s3_tls_bucket(s3_tls_server: S3Server) -> Iterator[str]:
    """A new, empty bucket on the session's https server."""
    with _bucket(s3_tls_server) as name:
        yield name


@contextlib.contextmanager
def _bucket(server: S3Server) -> Iterator[str]:
    # Created through the S3 API: rclone caches directory listings, so a folder made on disk
    # may not show up as a bucket for minutes.
    name = f"test-{uuid.uuid4().hex[:16]}"
    with contextlib.closing(server.client()) as client:
        client.create_bucket(Bucket=name)
        try:
            yield name
        finally:
            _delete_bucket(client, name)


def _delete_bucket(client: S3Client, bucket: str) -> None:
    """Abort uploads, delete objects, then the bucket, ignoring errors: cleanup is best effort.

    rclone refuses to delete a bucket (BucketNotEmpty) holding an empty folder, which a failed
    PUT or an aborted multipart upload to a key with a ``/`` leaves behind.
    """
    # rclone answers NoSuchUpload when the bucket never had a multipart upload.
    with contextlib.suppress(BotoCoreError, ClientError):
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    with contextlib.suppress(BotoCoreError, ClientError):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"]} for item in page.get("Contents", [])
            ]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket)
