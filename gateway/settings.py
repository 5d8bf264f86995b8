"""Settings: one frozen object, read from the environment at the edge.

Everything else in the package takes a :class:`Settings` (or plain keyword arguments).
The names follow django-storages (``AWS_*``, ``MEDIA_*``) so that a project's existing
``.env`` already configures most of the gateway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checks import check_settings, public_prefix
from .environ import PARSERS, forwarded_hosts, read_environ
from .exceptions import ConfigError
from .sigv4 import virtual_hostable

__all__ = ["Settings", "forwarded_hosts"]

# Shorter keys are guessable offline from one signed URL; 16 characters of
# ``secrets.token_urlsafe`` carry 96 bits.
MIN_SECRET_KEY_LENGTH = 16
KEY_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _env(variable: str, kind: str = "text", unit: str = "") -> dict[str, tuple[str, str, str]]:
    """A field's variable, declared once: its name, how it is parsed (environ.PARSERS,
    or "raw"), and the unit an error message names."""
    return {"env": (variable, kind, unit)}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The gateway's configuration. Build it with :meth:`from_env` or with keywords."""

    #: Signing keys. The last one signs; every one verifies (key rotation).
    secret_keys: tuple[str, ...] = dataclasses.field(
        default=(), repr=False, metadata=_env("GATEWAY_SECRET_KEY", "list")
    )
    #: Serve from S3 (true) or from ``media_root`` (false).
    use_s3: bool = dataclasses.field(default=False, metadata=_env("USE_S3", "bool"))
    media_root: Path = dataclasses.field(default=Path("media"), metadata=_env("MEDIA_ROOT", "path"))
    #: URL path prefix the gateway answers; everything else goes to the app.
    media_url: str = dataclasses.field(default="/media/", metadata=_env("MEDIA_URL"))
    #: Mebibytes of small files each worker keeps in memory, each checked against a
    #: stat of its path on every request; 0: none.
    file_cache_mb: int = dataclasses.field(
        default=8, metadata=_env("GATEWAY_FILE_CACHE_MB", "int", "number of mebibytes")
    )
    #: Relative directory prefixes served without a signature (``avatars/``).
    public_prefixes: tuple[str, ...] = dataclasses.field(
        default=(), metadata=_env("GATEWAY_PUBLIC_PREFIXES", "list")
    )
    #: Default lifetime of a signed URL, in seconds.
    url_ttl: int = dataclasses.field(
        default=3600, metadata=_env("GATEWAY_URL_TTL", "int", "number of seconds")
    )
    #: Expiries are rounded up to a multiple of this, so the same page rendered twice
    #: within the window carries byte-identical URLs and browsers keep their cache.
    #: 0 means min(300, url_ttl): five minutes of identical URLs, never more than a TTL.
    #: A link of a shorter lifetime rounds to a tenth of it (signing.rounding_window).
    url_window: int = dataclasses.field(
        default=0, metadata=_env("GATEWAY_URL_WINDOW", "int", "number of seconds")
    )
    #: ``Cache-Control: public, max-age`` for public prefixes.
    public_max_age: int = dataclasses.field(
        default=86400, metadata=_env("GATEWAY_PUBLIC_MAX_AGE", "int", "number of seconds")
    )
    aws_access_key_id: str | None = dataclasses.field(
        default=None, metadata=_env("AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: str | None = dataclasses.field(
        default=None, repr=False, metadata=_env("AWS_SECRET_ACCESS_KEY")
    )
    aws_storage_bucket_name: str | None = dataclasses.field(
        default=None, metadata=_env("AWS_STORAGE_BUCKET_NAME")
    )
    aws_s3_region_name: str = dataclasses.field(
        default="us-east-1", metadata=_env("AWS_S3_REGION_NAME")
    )
    aws_s3_endpoint_url: str | None = dataclasses.field(
        default=None, metadata=_env("AWS_S3_ENDPOINT_URL")
    )
    #: Key prefix in the bucket (``media``: ``/media/a.jpg`` is ``media/a.jpg``). Unset, the
    #: root, as in django-storages: a project switching its storage class keeps its keys.
    aws_location: str = dataclasses.field(default="", metadata=_env("AWS_LOCATION", "raw"))
    aws_session_token: str | None = dataclasses.field(
        default=None, repr=False, metadata=_env("AWS_SESSION_TOKEN")
    )
    #: A PEM file of extra CAs that every S3 client trusts besides the system store
    #: (boto3's ``AWS_CA_BUNDLE``): for endpoints signed by a private CA.
    aws_ca_bundle: str | None = dataclasses.field(default=None, metadata=_env("AWS_CA_BUNDLE"))
    #: ``path`` (host/bucket/key) or ``virtual`` (bucket.host/key); ``auto`` picks path
    #: for a custom endpoint (MinIO and most S3-compatible servers) and virtual for AWS.
    aws_s3_addressing_style: str = dataclasses.field(
        default="auto", metadata=_env("AWS_S3_ADDRESSING_STYLE", "lower")
    )
    #: Public prefixes redirect here, unsigned (a CDN or public bucket domain).
    aws_s3_custom_domain: str | None = dataclasses.field(
        default=None, metadata=_env("AWS_S3_CUSTOM_DOMAIN")
    )
    #: ``redirect`` to a presigned URL, or ``proxy`` the bytes for unreachable buckets.
    s3_delivery: str = dataclasses.field(
        default="redirect", metadata=_env("GATEWAY_S3_DELIVERY", "lower")
    )
    #: The storage address clients use, when it differs from the gateway's own
    #: (``http://minio:9000`` inside compose, ``https://media.example.com`` outside).
    s3_public_endpoint_url: str | None = dataclasses.field(
        default=None, metadata=_env("GATEWAY_S3_PUBLIC_ENDPOINT_URL")
    )
    #: Lifetime of a presigned URL counted from its window start; SigV4 caps it at 7 days.
    presign_ttl: int = dataclasses.field(
        default=3600, metadata=_env("GATEWAY_PRESIGN_TTL", "int", "number of seconds")
    )
    #: Presigned URLs are byte-identical within this window. 0 means min(300, ttl / 2).
    presign_window: int = dataclasses.field(
        default=0, metadata=_env("GATEWAY_PRESIGN_WINDOW", "int", "number of seconds")
    )
    #: During a migration: serve what is still on disk, the rest from S3.
    local_fallback: bool = dataclasses.field(
        default=False, metadata=_env("GATEWAY_LOCAL_FALLBACK", "bool")
    )
    #: Seconds before an S3 call (proxy, check) gives up with 504.
    s3_timeout: float = dataclasses.field(default=5.0, metadata=_env("GATEWAY_S3_TIMEOUT", "float"))
    #: Seconds a client may accept no bytes of a streamed body (or send none of an
    #: upload's) before it is dropped: slow peers cannot hold descriptors forever.
    send_timeout: float = dataclasses.field(
        default=60.0, metadata=_env("GATEWAY_SEND_TIMEOUT", "float")
    )
    #: Ask the app whether an unsigned request may have a file: a path on the wrapped
    #: app (``/media-auth/``, in-process) or an http(s) URL. Unset: signatures only.
    auth_delegate: str | None = dataclasses.field(
        default=None, metadata=_env("GATEWAY_AUTH_DELEGATE")
    )
    #: Seconds the delegate has to answer before the client gets 504.
    auth_timeout: float = dataclasses.field(
        default=5.0, metadata=_env("GATEWAY_AUTH_TIMEOUT", "float")
    )
    #: Seconds a delegate decision is remembered per (Cookie/Authorization, path); 0 = never.
    auth_cache_ttl: int = dataclasses.field(
        default=0, metadata=_env("GATEWAY_AUTH_CACHE_TTL", "int", "number of seconds")
    )
    #: Prometheus metrics at this path of the gateway (never under MEDIA_URL); unset: off.
    metrics_path: str | None = dataclasses.field(
        default=None, metadata=_env("GATEWAY_METRICS_PATH")
    )
    #: Prometheus metrics on a port of their own (127.0.0.1 unless GATEWAY_METRICS_ADDR).
    metrics_port: int | None = dataclasses.field(
        default=None, metadata=_env("GATEWAY_METRICS_PORT", "int", "port number")
    )
    metrics_addr: str = dataclasses.field(
        default="127.0.0.1", metadata=_env("GATEWAY_METRICS_ADDR")
    )
    #: One access line per request through the ``gateway.access`` logger (signatures
    #: redacted); on by default, as uvicorn's access log is.
    access_log: bool = dataclasses.field(default=True, metadata=_env("GATEWAY_ACCESS_LOG", "bool"))
    #: Readiness (settings valid, bucket reachable) and liveness paths; unset: off.
    ready_path: str | None = dataclasses.field(default=None, metadata=_env("GATEWAY_READY_PATH"))
    live_path: str | None = dataclasses.field(default=None, metadata=_env("GATEWAY_LIVE_PATH"))
    #: Addresses (or networks, or ``*``) whose X-Forwarded-For and X-Forwarded-Proto
    #: ``media-gateway serve`` believes: the TLS proxy in front. Anyone else could claim
    #: any address and https. uvicorn's own default, loopback only.
    forwarded_allow_ips: tuple[str, ...] = dataclasses.field(
        default=("127.0.0.1",), metadata=_env("GATEWAY_FORWARDED_ALLOW_IPS", "hosts")
    )
    #: Extra PutObject parameters for uploads, as django-storages'
    #: ``AWS_S3_OBJECT_PARAMETERS`` (JSON): ``{"CacheControl": "max-age=86400"}``.
    aws_s3_object_parameters: Mapping[str, Any] = dataclasses.field(
        default_factory=dict, metadata=_env("AWS_S3_OBJECT_PARAMETERS", "json")
    )

    #: Where browsers ask for direct upload URLs (README "Direct uploads").
    upload_path: str = dataclasses.field(
        default="/media-uploads/", metadata=_env("GATEWAY_UPLOAD_PATH")
    )
    #: Direct uploads to S3 larger than this go in parts of this size.
    upload_multipart_mb: int = dataclasses.field(
        default=100, metadata=_env("GATEWAY_UPLOAD_MULTIPART_MB", "int", "number of mebibytes")
    )

    def __post_init__(self) -> None:
        keys = self.secret_keys
        if isinstance(keys, str):
            keys = (keys,)
        keys = tuple(k.strip() for k in keys if k.strip())
        if not keys:
            raise ConfigError("GATEWAY_SECRET_KEY", f"is required; {KEY_HINT}")
        for key in keys:
            if len(key) < MIN_SECRET_KEY_LENGTH:
                raise ConfigError(
                    "GATEWAY_SECRET_KEY",
                    f"each key needs at least {MIN_SECRET_KEY_LENGTH} characters; {KEY_HINT}",
                )
        object.__setattr__(self, "secret_keys", keys)
        object.__setattr__(self, "media_root", Path(self.media_root))

        url = self.media_url
        if not (url.startswith("/") and url.endswith("/")) or "//" in url or len(url) < 2:
            raise ConfigError(
                "MEDIA_URL",
                f"expected a path that starts and ends with '/', like /media/ (got {url!r})",
            )
        object.__setattr__(
            self, "public_prefixes", tuple(public_prefix(p) for p in self.public_prefixes)
        )
        check_settings(self)
        object.__setattr__(self, "aws_location", self.aws_location.strip("/"))
        if self.use_s3 and not self.aws_storage_bucket_name:
            raise ConfigError("AWS_STORAGE_BUCKET_NAME", "is required when USE_S3 is true")

    @property
    def addressing_style(self) -> str:
        """The resolved addressing style: ``path`` or ``virtual``.

        ``auto`` is path for a custom endpoint, virtual for AWS. Virtual-hosted only for
        a bucket that can be a host name under the endpoint's, as botocore decides: a
        bucket with dots (``media.example.com``) over HTTPS would be
        ``media.example.com.s3.<region>.amazonaws.com``, which no certificate for
        ``*.s3.<region>.amazonaws.com`` matches (a wildcard covers one label), so it is
        path-style there; over plain HTTP, where no certificate is checked, dots are
        fine. Both endpoints count: the client's (boto3, proxy mode) and the one
        presigned URLs are made for.
        """
        style = self.aws_s3_addressing_style
        if style == "auto":
            style = "path" if self.aws_s3_endpoint_url else "virtual"
        if style == "virtual" and self.aws_storage_bucket_name is not None:
            plain_http = all(
                url.startswith("http://")
                for url in (self.s3_endpoint_url, self.public_endpoint_url)
            )
            if not virtual_hostable(self.aws_storage_bucket_name, dots=plain_http):
                return "path"
        return style

    @property
    def s3_endpoint_url(self) -> str:
        """The endpoint the gateway talks to."""
        return self.aws_s3_endpoint_url or f"https://s3.{self.aws_s3_region_name}.amazonaws.com"

    @property
    def public_endpoint_url(self) -> str:
        """The endpoint presigned URLs are made for: the one clients can reach."""
        return self.s3_public_endpoint_url or self.s3_endpoint_url

    def key_for(self, relpath: str) -> str:
        """The S3 key of a relative media path."""
        return f"{self.aws_location}/{relpath}" if self.aws_location else relpath

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read the settings from ``environ`` (default ``os.environ``) and ``env_file``.

        Variables in ``environ`` win over the file; an unset or empty variable keeps its
        default (but ``AWS_LOCATION``, where empty means the bucket's root). Raises
        :class:`ConfigError` naming the first missing or invalid variable.
        """
        env = read_environ(environ, env_file)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            variable, kind, unit = field.metadata["env"]
            if kind == "raw":  # taken as it is, empty included
                if variable in env:
                    values[field.name] = env[variable].strip()
                continue
            raw = env.get(variable, "").strip()
            if raw:
                values[field.name] = PARSERS[kind](variable, raw, unit)
        return cls(**values)

    def is_public(self, relpath: str) -> bool:
        """True when ``relpath`` lies under one of the public prefixes."""
        return relpath.startswith(self.public_prefixes)
