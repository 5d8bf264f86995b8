"""media-gateway: serve a web app's private media from disk or S3 behind signed URLs."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from .exceptions import (
    BadSignature as BadSignature,
    ConfigError as ConfigError,
    MediaGatewayError as MediaGatewayError,
    NotFound as NotFound,
    RequestError as RequestError,
    SignatureExpired as SignatureExpired,
)
from .settings import Settings as Settings
from .signing import URLSigner as URLSigner

if TYPE_CHECKING:
    from .serving.middleware import MediaGateway as MediaGateway

__version__ = "0.1.0"

__all__ = [
    "BadSignature",
    "ConfigError",
    "MediaGateway",
    "MediaGatewayError",
    "NotFound",
    "RequestError",
    "Settings",
    "SignatureExpired",
    "URLSigner",
    "__version__",
    "sign_url",
]


def sign_url(
    path: str,
    *,
    expires_in: int | None = None,
    download: bool = False,
    content_type: str | None = None,
) -> str:
    """Return a signed relative URL (``/media/docs/a.pdf?exp=...&sig=...``) for ``path``.

    ``download`` asks browsers to save the file; ``content_type`` overrides the type
    guessed from the name. Both are covered by the signature. Uses the settings from
    the environment and ``.env``, read once. Build a
    :class:`URLSigner` yourself to sign with explicit settings.
    """
    return _default_signer().sign_url(
        path, expires_in=expires_in, download=download, content_type=content_type
    )


@functools.cache
def _default_signer() -> URLSigner:
    settings = Settings.from_env()
    return URLSigner.from_settings(settings)


def __getattr__(name: str) -> Any:
    # MediaGateway pulls in httpx, boto3 and starlette (0.3 s); the CLI's migration
    # commands and sign_url need none of them, so it is imported on first use.
    if name == "MediaGateway":
        from .serving.middleware import MediaGateway

        return MediaGateway
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
