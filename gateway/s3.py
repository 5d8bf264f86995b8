"""S3 plumbing: boto3 session, client and credentials, and the presigner built on them.

Everything here is built from :class:`Settings` once, at start-up. Requests never call
boto3: presigning is done by :mod:`gateway.presign`, and proxying by httpx.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from .exceptions import ConfigError
from .presign import Credentials, Presigner
from .settings import Settings

# S3 refuses SigV4 requests more than 15 minutes off its clock.
MAX_CLOCK_SKEW = 15 * 60

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "check_bucket",
    "client_config",
    "credentials_provider",
    "make_presigner",
    "make_s3_client",
]


def _session(settings: Settings) -> boto3.Session:
    # Explicit keys when configured, otherwise boto3's chain: environment, shared
    # files, container and instance roles, SSO.
    return boto3.Session(
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        aws_session_token=settings.aws_session_token,
        region_name=settings.aws_s3_region_name,
    )


def client_config(settings: Settings, **overrides: Any) -> Config:
    """botocore options shared by every client we make."""
    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "s3": {"addressing_style": settings.addressing_style},
        "connect_timeout": settings.s3_timeout,
        "read_timeout": settings.s3_timeout,
        "retries": {"mode": "standard", "max_attempts": 3},
        # boto3 >= 1.36 adds CRC32 checksums and aws-chunked bodies by default, which
        # MinIO releases and other S3-compatible servers reject or store verbatim.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    options.update(overrides)
    return Config(**options)


def make_s3_client(settings: Settings, **config: Any) -> S3Client:
    """A boto3 S3 client for the configured endpoint (check, upload, verify, pull)."""
    client: S3Client = _session(settings).client(
        "s3",
        endpoint_url=settings.aws_s3_endpoint_url,
        config=client_config(settings, **config),
    )
    return client


def credentials_provider(settings: Settings) -> Callable[[], Credentials]:
    """Return a function giving the current credentials from boto3's chain.

    Refreshable credentials (roles, SSO) are refreshed by botocore when they near
    expiry; static ones cost a lock and an attribute read.
    """
    found = _session(settings).get_credentials()
    if found is None:
        raise ConfigError(
            "AWS_ACCESS_KEY_ID",
            "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            " (or use a role or profile that boto3 can find)",
        )
    chain = found

    def current() -> Credentials:
        frozen = chain.get_frozen_credentials()
        return Credentials(str(frozen.access_key), str(frozen.secret_key), frozen.token)

    return current


def make_presigner(
    settings: Settings, *, public: bool = True, clock: Callable[[], float] = time.time
) -> Presigner:
    """A presigner for the bucket, for the public endpoint (redirects) or the internal one
    (proxy mode, where the gateway itself fetches the URL)."""
    assert settings.aws_storage_bucket_name is not None  # checked by Settings
    return Presigner(
        bucket=settings.aws_storage_bucket_name,
        region=settings.aws_s3_region_name,
        endpoint_url=settings.public_endpoint_url if public else settings.s3_endpoint_url,
        addressing_style=settings.addressing_style,
        credentials=credentials_provider(settings),
        ttl=settings.presign_ttl,
        window=settings.presign_window,
        clock=clock,
    )


def check_bucket(settings: Settings) -> tuple[dict[str, Any], list[str]]:
    """HeadBucket with the configured credentials, and the clock skew against S3."""
    from email.utils import parsedate_to_datetime

    from botocore.exceptions import BotoCoreError, ClientError

    bucket = settings.aws_storage_bucket_name
    try:
        credentials_provider(settings)
    except ConfigError as exc:
        return {"bucket_reachable": False}, [str(exc)]
    client = make_s3_client(settings, retries={"max_attempts": 1, "mode": "standard"})
    try:
        response = client.head_bucket(Bucket=str(bucket))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or code in ("404", "NoSuchBucket"):
            problem = f"AWS_STORAGE_BUCKET_NAME: bucket {bucket!r} does not exist"
        elif status in (401, 403) or code in ("403", "AccessDenied", "SignatureDoesNotMatch"):
            problem = (
                f"AWS_ACCESS_KEY_ID: S3 refused the credentials for bucket {bucket!r}"
                f" ({code or status}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        else:
            problem = f"AWS_S3_ENDPOINT_URL: S3 answered {code or status} for bucket {bucket!r}"
        return {"bucket_reachable": False}, [problem]
    except BotoCoreError as exc:
        return {"bucket_reachable": False}, [
            f"AWS_S3_ENDPOINT_URL: cannot reach {settings.s3_endpoint_url}: {exc}"
        ]
    finally:
        client.close()
    report: dict[str, Any] = {"bucket_reachable": True}
    problems = []
    date = response["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
    if date:
        skew = round(time.time() - parsedate_to_datetime(date).timestamp())
        report["clock_skew_seconds"] = skew
        if abs(skew) > MAX_CLOCK_SKEW:
            problems.append(
                f"clock: this machine is {skew} s off the S3 server's clock; S3 refuses"
                " signatures beyond 15 minutes, so presigned URLs will fail: sync with NTP"
            )
    return report, problems
