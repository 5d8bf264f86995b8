"""Django integration: gateway URLs for templates, storages and the delegate view.

Add ``"gateway.django"`` to ``INSTALLED_APPS`` for the ``{% load media_gateway %}`` tags
and a start-up check of the settings. Importing :mod:`gateway` never imports Django;
this package does.

Settings come from Django settings first, then from the environment and ``.env`` (as
:meth:`gateway.Settings.from_env` reads them): every ``GATEWAY_*`` and ``AWS_*``
setting, ``USE_S3``, ``MEDIA_URL`` and ``MEDIA_ROOT``. A setting that is ``None``
(``os.getenv`` of an unset variable) counts as absent. They are read once and read
again when Django's ``setting_changed`` fires, so ``override_settings`` works in tests.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from ..exceptions import ConfigError, RequestError
from ..paths import validate_relpath
from ..settings import Settings
from ..signing import URLSigner

__all__ = ["gateway_settings", "media_url"]

# Besides every GATEWAY_* and AWS_* setting. MEDIA_URL and MEDIA_ROOT default to "" in
# Django, which means "not configured" rather than "the empty path".
_NAMES = frozenset({"USE_S3", "MEDIA_URL", "MEDIA_ROOT"})
_PREFIXES = ("GATEWAY_", "AWS_")


def gateway_settings() -> Settings:
    """The gateway's :class:`~gateway.Settings` as this Django project configures them.

    Raises ``ImproperlyConfigured`` naming the first missing or invalid setting.
    """
    return _state()[0]


def media_url(
    name: str,
    *,
    download: bool = False,
    expires_in: int | None = None,
    content_type: str | None = None,
) -> str:
    """The gateway URL of the storage name ``name`` (``documents/a.pdf``).

    Under a public prefix: ``MEDIA_URL`` + the quoted name, the same URL for everyone.
    The gateway serves those without reading the query, so ``download`` and
    ``expires_in`` do not apply (use ``<a download>``). Otherwise a signed URL valid for
    ``expires_in`` seconds (default ``GATEWAY_URL_TTL``), an attachment when ``download``,
    served as ``content_type`` when given.
    No I/O: an HMAC and some string formatting. Raises ``ValueError`` for a name the
    gateway would never serve (``..`` segments, NUL, a trailing ``/``).
    """
    settings, signer = _state()
    if settings.is_public(name):
        try:
            relpath = validate_relpath(name)
        except RequestError:
            raise ValueError(f"not a valid media path: {name!r}") from None
        return settings.media_url + quote(relpath)
    return signer.sign_url(
        name, expires_in=expires_in, download=download, content_type=content_type
    )


@functools.cache
def _state() -> tuple[Settings, URLSigner]:
    overrides = _from_django()
    url = overrides.get("MEDIA_URL", "")
    if "://" in url or url.startswith("//"):
        raise ImproperlyConfigured(
            f"MEDIA_URL must be the path the gateway answers, like '/media/', not a URL"
            f" (got {url!r}). With media-gateway, pages link to the gateway, which checks"
            f" the signature and redirects to S3; set MEDIA_URL = '/media/' in both modes."
        )
    try:
        settings = Settings.from_env({**os.environ, **overrides})
    except ConfigError as exc:
        raise ImproperlyConfigured(
            f"media-gateway: {exc} (a Django setting or an environment variable)"
        ) from exc
    signer = URLSigner.from_settings(settings)
    return settings, signer


def _from_django() -> dict[str, str]:
    """The gateway's settings found in Django settings, as environment strings."""
    found: dict[str, str] = {}
    for name in dir(django_settings):
        if not _configures_gateway(name):
            continue
        # The value as set, not through LazySettings' MEDIA_URL property, which turns
        # Django's default "" (not configured) into the script prefix "/".
        value = getattr(django_settings._wrapped, name)
        if value is None or (value == "" and name in _NAMES):
            continue
        found[name] = _as_text(value)
    return found


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)  # GATEWAY_PUBLIC_PREFIXES, key rotation
    if isinstance(value, Mapping):
        return json.dumps(dict(value), default=str)  # AWS_S3_OBJECT_PARAMETERS
    return str(value)  # str, int, Path


def _configures_gateway(name: str) -> bool:
    return name.startswith(_PREFIXES) or name in _NAMES


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if _configures_gateway(setting):
        _state.cache_clear()


setting_changed.connect(_settings_changed, dispatch_uid="media-gateway-settings")
