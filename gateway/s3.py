"""S3 plumbing: boto3 session, client and credentials, and the presigner built on them.

Everything here is built from :class:`Settings` once, at start-up. Requests never call
boto3: presigning is done by :mod:`gateway.sigv4`, proxying by httpx, and the migration
tools' requests by :mod:`gateway.migrate.wire`; boto3's chain only supplies their
credentials (:func:`credentials_provider`). The client is for ``check``, readiness and
the demo.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.httpsession import URLLib3Session

from .exceptions import ConfigError
from .network import proxy_for, tls_context
from .settings import Settings
from .sigv4 import Credentials, Presigner

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
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
    """A boto3 S3 client for the configured endpoint (check, readiness, the demo), with
    the CAs and proxy of :mod:`gateway.network`."""
    options = client_config(settings, **config)
    tls = tls_context(settings)  # before the client: a bad bundle must not leak one
    client: S3Client = _session(settings).client(
        "s3", endpoint_url=settings.aws_s3_endpoint_url, config=options
    )
    proxy = proxy_for(settings.s3_endpoint_url)
    scheme = settings.s3_endpoint_url.partition(":")[0]
    # botocore takes a CA bundle only as a path, which it then trusts *instead of* the
    # system store and loads again for every connection; it has no public hook for an
    # SSL context, so the endpoint's HTTP session is swapped for one that uses ours.
    endpoint = cast(Any, client)._endpoint
    merged = cast(Any, client.meta.config)  # ours over botocore's defaults
    previous = endpoint.http_session
    endpoint.http_session = _TLSSession(
        tls,
        timeout=(merged.connect_timeout, merged.read_timeout),
        proxies={scheme: proxy} if proxy else {},
        max_pool_connections=merged.max_pool_connections,
        socket_options=previous._socket_options,
    )
    previous.close()
    return client


class _TLSSession(URLLib3Session):
    """botocore's HTTP session verifying with one given SSL context."""

    def __init__(self, tls: ssl.SSLContext, **kwargs: Any) -> None:
        self._tls = tls
        super().__init__(**kwargs)

    def _get_ssl_context(self) -> ssl.SSLContext:
        return self._tls

    def _setup_ssl_cert(self, conn: Any, url: str, verify: Any) -> None:
        # The context holds the CAs already: no bundle for urllib3 to load again.
        conn.cert_reqs = "CERT_REQUIRED" if url.lower().startswith("https") else "CERT_NONE"
        conn.ca_certs = None


def credentials_provider(settings: Settings) -> Callable[[], Credentials]:
    """Return a function giving the current credentials from boto3's chain.

    Refreshable credentials (roles, SSO, ``credential_process``, pod identity) are
    refreshed by botocore when they near expiry (15 minutes before, 10 at the latest),
    and carry their expiry so that nothing signed with them outlives them (two locks and
    a clock read per call); static ones are read once.
    """
    found = _session(settings).get_credentials()
    if found is None:
        raise ConfigError(
            "AWS_ACCESS_KEY_ID",
            "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            " (or use a role or profile that boto3 can find)",
        )
    chain = found
    if not isinstance(chain, RefreshableCredentials):
        # Keys that never change (settings, environment, a shared file): read once, so
        # a presign costs no lock here.
        frozen = chain.get_frozen_credentials()
        fixed = Credentials(str(frozen.access_key), str(frozen.secret_key), frozen.token)
        return lambda: fixed
    # botocore publishes a refresh's keys and its expiry one after the other, under a
    # lock of its own that get_frozen_credentials() takes and releases. This chain
    # belongs to a session made here, so every reader goes through current(): its lock
    # makes the keys and their expiry one pair, never the keys of one refresh with the
    # expiry of the next (the migration tools sign from several threads).
    lock = threading.Lock()
    last: list[tuple[Any, Any, Credentials]] = []

    def current() -> Credentials:
        with lock:
            frozen = chain.get_frozen_credentials()
            # A tz-aware datetime, with no public name (nor a stub). None only for
            # deferred credentials never fetched, which get_frozen_credentials() just did.
            expiry = getattr(chain, "_expiry_time", None)
        # The same Credentials object while botocore's values stay the same: callers
        # compare it per request, which an identical object answers at once.
        if last and last[0][0] == frozen and last[0][1] == expiry:
            return last[0][2]
        credentials = Credentials(
            str(frozen.access_key),
            str(frozen.secret_key),
            frozen.token,
            # Rounded down: a URL must stop at or before the credentials' last second.
            None if expiry is None else math.floor(expiry.timestamp()),
        )
        last[:] = [(frozen, expiry, credentials)]
        return credentials

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
