"""media-gateway: serve a web app's private media from disk or S3 behind signed URLs."""

from __future__ import annotations

import functools
from collections.abc import Sequence
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
from .uploads import UploadedFile as UploadedFile

if TYPE_CHECKING:
    from .receipts import ReceiptChecker
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
    "UploadedFile",
    "__version__",
    "sign_upload",
    "sign_url",
    "verify_receipt",
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


def sign_upload(
    prefix: str,
    *,
    max_bytes: int,
    content_types: Sequence[str] = ("*/*",),
    expires_in: int = 600,
) -> str:
    """Return a ticket that lets a browser upload one file under ``prefix`` directly.

    The file goes to S3 (or to the gateway, in local mode) without passing through the
    app; the gateway's upload endpoint chooses its key under ``prefix``. ``max_bytes``
    caps its size, ``content_types`` lists the allowed types (``image/*`` patterns) and
    the ticket is valid for ``expires_in`` seconds. Signed with the gateway's keys, as
    links are. See the README's "Direct uploads".
    """
    return _default_receipts().signer.sign_ticket(
        prefix, max_bytes=max_bytes, content_types=content_types, expires_in=expires_in
    )


def verify_receipt(receipt: str, *, prefix: str | None = None) -> UploadedFile:
    """The file a direct upload's ``receipt`` names, checked to exist with its size.

    Raises :class:`BadSignature` for an altered or foreign receipt (or one for another
    ``prefix``, when given), :class:`SignatureExpired` for an old one, and
    :class:`NotFound` when the file is not in storage with the promised size.
    """
    return _default_receipts().verify(receipt, prefix=prefix)


@functools.cache
def _default_receipts() -> ReceiptChecker:
    from .receipts import ReceiptChecker

    return ReceiptChecker(Settings.from_env())


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
