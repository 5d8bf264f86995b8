"""The checks of :meth:`Settings.__post_init__ <gateway.settings.Settings>`, by area.

Each takes the settings being built, may normalise a value in place (the dataclass is
frozen, hence ``object.__setattr__``) and raises :class:`ConfigError` naming the
variable. Kept apart from the field declarations so that both stay short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exceptions import ConfigError
from .sigv4 import MAX_EXPIRES as MAX_PRESIGN_TTL

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["DEFAULT_WINDOW", "check_settings", "public_prefix"]

# Five minutes of byte-identical URLs lets a browser reuse what it cached for a page
# rendered again soon after; a longer window would stretch URL lifetimes further.
DEFAULT_WINDOW = 300


def check_settings(self: Settings) -> None:
    """Every check but the keys, MEDIA_URL and the bucket, which ``__post_init__`` makes."""
    _check_urls(self)
    _check_s3(self)
    _check_delegate(self)
    _check_operations(self)
    _check_uploads(self)


def _check_urls(self: Settings) -> None:
    for name, minimum in (
        ("url_ttl", 1),
        ("url_window", 0),
        ("public_max_age", 0),
        ("file_cache_mb", 0),
    ):
        value = getattr(self, name)
        if not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"GATEWAY_{name.upper()}", f"expected an integer >= {minimum} (got {value!r})"
            )
    if self.url_window == 0:
        object.__setattr__(self, "url_window", min(DEFAULT_WINDOW, self.url_ttl))
    if self.url_window > self.url_ttl:
        raise ConfigError(
            "GATEWAY_URL_WINDOW", f"must not exceed GATEWAY_URL_TTL ({self.url_ttl} seconds)"
        )


def _check_s3(self: Settings) -> None:
    for variable, url in (
        ("AWS_S3_ENDPOINT_URL", self.aws_s3_endpoint_url),
        ("GATEWAY_S3_PUBLIC_ENDPOINT_URL", self.s3_public_endpoint_url),
    ):
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(variable, f"expected an http:// or https:// URL (got {url!r})")
    if self.aws_s3_addressing_style not in ("auto", "path", "virtual"):
        raise ConfigError(
            "AWS_S3_ADDRESSING_STYLE",
            f"expected auto, path or virtual (got {self.aws_s3_addressing_style!r})",
        )
    if self.s3_delivery not in ("redirect", "proxy"):
        raise ConfigError(
            "GATEWAY_S3_DELIVERY", f"expected redirect or proxy (got {self.s3_delivery!r})"
        )
    if not 60 <= self.presign_ttl <= MAX_PRESIGN_TTL:
        raise ConfigError(
            "GATEWAY_PRESIGN_TTL",
            f"expected 60 to {MAX_PRESIGN_TTL} seconds: SigV4 presigned URLs live at most"
            f" 7 days (got {self.presign_ttl})",
        )
    if self.presign_window == 0:
        window = min(DEFAULT_WINDOW, self.presign_ttl // 2)
        object.__setattr__(self, "presign_window", window)
    if not 0 < self.presign_window < self.presign_ttl:
        raise ConfigError(
            "GATEWAY_PRESIGN_WINDOW",
            f"expected 1 to {self.presign_ttl - 1} seconds, less than GATEWAY_PRESIGN_TTL"
            f" (got {self.presign_window})",
        )
    if not 0 < self.s3_timeout <= 300:
        raise ConfigError(
            "GATEWAY_S3_TIMEOUT", f"expected 0 < seconds <= 300 (got {self.s3_timeout})"
        )
    domain = self.aws_s3_custom_domain
    if domain is not None:
        # django-storages takes a bare domain and prepends https://; a full URL works too.
        base = domain if domain.startswith(("http://", "https://")) else f"https://{domain}"
        if any(c in base for c in " ?#"):
            raise ConfigError(
                "AWS_S3_CUSTOM_DOMAIN",
                f"expected a domain like cdn.example.com (got {domain!r})",
            )
        object.__setattr__(self, "aws_s3_custom_domain", base.rstrip("/"))


def _check_delegate(self: Settings) -> None:
    target = self.auth_delegate
    if target is not None:
        if not target.startswith(("/", "http://", "https://")):
            raise ConfigError(
                "GATEWAY_AUTH_DELEGATE",
                f"expected a path like /media-auth/ or an http(s) URL (got {target!r})",
            )
        if target.startswith(self.media_url):
            raise ConfigError(
                "GATEWAY_AUTH_DELEGATE", f"must not lie under MEDIA_URL {self.media_url}"
            )
    if not 0 < self.send_timeout <= 3600:
        raise ConfigError(
            "GATEWAY_SEND_TIMEOUT", f"expected 0 < seconds <= 3600 (got {self.send_timeout})"
        )
    if not 0 < self.auth_timeout <= 300:
        raise ConfigError(
            "GATEWAY_AUTH_TIMEOUT", f"expected 0 < seconds <= 300 (got {self.auth_timeout})"
        )
    if self.auth_cache_ttl < 0:
        raise ConfigError(
            "GATEWAY_AUTH_CACHE_TTL", f"expected seconds >= 0 (got {self.auth_cache_ttl})"
        )


def _check_operations(self: Settings) -> None:
    for variable, path in (
        ("GATEWAY_METRICS_PATH", self.metrics_path),
        ("GATEWAY_READY_PATH", self.ready_path),
        ("GATEWAY_LIVE_PATH", self.live_path),
    ):
        if path is None:
            continue
        if not path.startswith("/"):
            raise ConfigError(variable, f"expected a path like /metrics (got {path!r})")
        if path.startswith(self.media_url):
            # Media paths are answered as media; an operations path there would
            # be unreachable, or worse, shadow a file.
            raise ConfigError(variable, f"must not lie under MEDIA_URL {self.media_url}")
    if self.metrics_port is not None and not 0 < self.metrics_port < 65536:
        raise ConfigError("GATEWAY_METRICS_PORT", f"expected a port (got {self.metrics_port})")


def public_prefix(prefix: str) -> str:
    # A prefix names a directory: "avatars" must not make "avatars-private/" public.
    cleaned = prefix.strip().strip("/")
    parts = cleaned.split("/")
    if not cleaned or any(p in ("", ".", "..") for p in parts) or "\\" in cleaned:
        raise ConfigError(
            "GATEWAY_PUBLIC_PREFIXES",
            f"expected relative directory names like avatars/ (got {prefix!r})",
        )
    return cleaned + "/"


def _check_uploads(self: Settings) -> None:
    path = self.upload_path
    if not (path.startswith("/") and path.endswith("/")) or "//" in path or len(path) < 2:
        raise ConfigError(
            "GATEWAY_UPLOAD_PATH",
            f"expected a path that starts and ends with '/', like /media-uploads/ (got {path!r})",
        )
    if path.startswith(self.media_url) or self.media_url.startswith(path):
        # An upload path under MEDIA_URL would shadow files (or be shadowed by them).
        raise ConfigError("GATEWAY_UPLOAD_PATH", f"must not overlap MEDIA_URL {self.media_url}")
    if not 5 <= self.upload_multipart_mb <= MAX_PART_MB:
        # S3 refuses parts under 5 MiB (but the last) and over 5 GiB.
        raise ConfigError(
            "GATEWAY_UPLOAD_MULTIPART_MB",
            f"expected 5 to {MAX_PART_MB} mebibytes (got {self.upload_multipart_mb})",
        )


# S3's largest part and largest single PUT: 5 GiB.
MAX_PART_MB = 5 * 1024
