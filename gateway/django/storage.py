"""Django storages whose ``url()`` is a gateway URL, computed without any S3 call.

Saving, opening and deleting go through Django's ``FileSystemStorage`` or
django-storages' ``S3Storage`` unchanged; only ``url()`` differs, so existing
``{{ doc.file.url }}`` templates link to the gateway and stop paying a boto3 presign
(about 0.3 ms) per link. This module needs django-storages.

How a storage name maps to a file, an S3 key and a URL (``AWS_LOCATION=media``,
``MEDIA_URL=/media/``, ``GATEWAY_PUBLIC_PREFIXES=public``)::

    MediaStorage               documents/a.pdf -> key media/documents/a.pdf
                                                  URL /media/documents/a.pdf?exp=..&sig=..
    PublicMediaStorage         logo.png        -> key media/public/logo.png
                                                  URL /media/public/logo.png
    GatewayFileSystemStorage   documents/a.pdf -> file MEDIA_ROOT/documents/a.pdf
                                                  URL /media/documents/a.pdf?exp=..&sig=..

The rule: the gateway's relative path is ``media_prefix + name``; the file lies at
``MEDIA_ROOT/relpath`` (disk) or ``AWS_LOCATION/relpath`` (S3), and the URL is
``MEDIA_URL + relpath``, signed unless the path lies under a public prefix. So the
same database rows work before, during and after a migration to S3.
"""

from __future__ import annotations

import functools
import posixpath
from typing import Any

from botocore.config import Config
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage

from ..exceptions import RequestError
from ..http import content_type
from ..paths import validate_relpath
from . import gateway_settings, media_url

try:
    from storages.backends.s3 import S3Storage
except ImportError as exc:  # pragma: no cover - django-storages is a dev dependency
    raise ImportError(
        "gateway.django.storage needs django-storages: pip install django-storages"
    ) from exc

__all__ = [
    "PUBLIC_PREFIX",
    "GatewayFileSystemStorage",
    "GatewayS3Storage",
    "GatewayStorage",
    "GatewayURLs",
    "MediaStorage",
    "PublicGatewayStorage",
    "PublicMediaStorage",
    "media_storage",
    "public_media_storage",
]

#: Where public media lives under MEDIA_ROOT / AWS_LOCATION. List it in
#: GATEWAY_PUBLIC_PREFIXES; if it is missing, its URLs are signed (failing closed).
PUBLIC_PREFIX = "public/"

# boto3 >= 1.36 sends CRC32 checksums and aws-chunked bodies by default, which MinIO
# releases and other S3-compatible servers reject or store verbatim (tests/README.md,
# item 42). Applied under the project's own AWS_S3_CLIENT_CONFIG, whose options win.
_CLIENT_DEFAULTS = Config(
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)


class GatewayURLs:
    """What the gateway storages share: a ``media_prefix`` and URLs through the gateway."""

    #: A directory under MEDIA_ROOT (disk) or AWS_LOCATION (S3) holding this storage's
    #: names; part of every URL. "" for the top (``MediaStorage``).
    media_prefix: str = ""

    def gateway_url(
        self, name: str, *, download: bool = False, expires_in: int | None = None
    ) -> str:
        """The gateway URL of ``name``: plain under a public prefix, signed otherwise."""
        return media_url(self.media_prefix + name, download=download, expires_in=expires_in)


class GatewayFileSystemStorage(GatewayURLs, FileSystemStorage):
    """Local mode: files under ``MEDIA_ROOT/media_prefix``, URLs through the gateway.

    The location follows the gateway's ``MEDIA_ROOT`` (Django's, when set), so the
    gateway finds each file where Django saved it; ``location`` and ``base_url`` are
    therefore not accepted. Other ``FileSystemStorage`` options pass through.
    """

    def __init__(self, *, media_prefix: str | None = None, **options: Any) -> None:
        for fixed in ("location", "base_url"):
            if fixed in options:
                raise ImproperlyConfigured(
                    f"GatewayFileSystemStorage takes no {fixed}: files live under MEDIA_ROOT"
                    f" and are served at MEDIA_URL; use media_prefix for a sub-directory"
                )
        if media_prefix is not None:
            self.media_prefix = _directory(media_prefix)
        super().__init__(**options)

    # Dropped by Django when MEDIA_ROOT changes (override_settings), like the parent's.
    @functools.cached_property
    def base_location(self) -> str:
        return str(gateway_settings().media_root / self.media_prefix)

    def url(self, name: str, *, download: bool = False, expire: int | None = None) -> str:
        """The gateway URL of ``name``; ``expire`` seconds as in django-storages."""
        return self.gateway_url(name, download=download, expires_in=expire)


class GatewayS3Storage(GatewayURLs, S3Storage):
    """S3 mode: objects at ``AWS_LOCATION/media_prefix/name``, URLs through the gateway.

    ``location`` is derived (the gateway reads ``AWS_LOCATION/relpath``); a different
    one, passed or set on a subclass, is refused at construction. The bucket, endpoint,
    region and addressing style default to the gateway's settings when Django has no
    ``AWS_*`` setting for them. Credentials follow django-storages (settings, then the
    environment and boto3's chain).

    ``url(name, expire=..)`` never calls boto3. Only S3 can honour ``parameters``
    (``ResponseContentType`` and the like) or another ``http_method`` (a PUT for a
    browser upload), so those calls return django-storages' presigned S3 URL.
    """

    client_config: Config  # set by S3Storage.__init__

    def __init__(self, *, media_prefix: str | None = None, **options: Any) -> None:
        if media_prefix is not None:
            self.media_prefix = _directory(media_prefix)
        gateway = gateway_settings()
        location = posixpath.join(gateway.aws_location, self.media_prefix).strip("/")
        given = options.get("location", getattr(type(self), "location", location))
        if str(given).strip("/") != location:
            raise ImproperlyConfigured(
                f"{type(self).__name__}.location must be {location!r} (AWS_LOCATION plus"
                f" media_prefix), where the gateway looks for the files; got {given!r}."
                f" Set media_prefix, or AWS_LOCATION for every storage and the gateway."
            )
        options["location"] = location
        # Where Django has no AWS_* setting, the gateway's: a project configured through
        # the gateway's environment alone can upload.
        style = gateway.aws_s3_addressing_style
        fallbacks = {
            "bucket_name": gateway.aws_storage_bucket_name,
            "endpoint_url": gateway.aws_s3_endpoint_url,
            "region_name": gateway.aws_s3_region_name,
            # "auto" is botocore's own default: path style for a custom endpoint.
            "addressing_style": None if style == "auto" else style,
        }
        defaults = self.get_default_settings()
        for attribute, value in fallbacks.items():
            unset = defaults[attribute] is None and not hasattr(type(self), attribute)
            if unset and attribute not in options and value is not None:
                options[attribute] = value
        # One set of object parameters for what the app writes and what `upload` copies:
        # the gateway's AWS_S3_OBJECT_PARAMETERS (Django's, else the environment's).
        unset = not defaults["object_parameters"] and not hasattr(type(self), "object_parameters")
        if unset and "object_parameters" not in options:
            options["object_parameters"] = dict(gateway.aws_s3_object_parameters)
        super().__init__(**options)
        self.client_config = _CLIENT_DEFAULTS.merge(self.client_config)

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        """The object parameters, with the Content-Type ``upload`` gives the same name
        (:func:`gateway.http.content_type`) unless they set one: django-storages' own
        guess differs (``.tar.gz`` as ``application/x-tar`` plus ``gzip`` encoding, text
        without a charset, the browser's claim for an upload)."""
        parameters: dict[str, Any] = super().get_object_parameters(name)
        parameters.setdefault("ContentType", content_type(name))
        return parameters

    def url(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        expire: int | None = None,
        http_method: str | None = None,
        *,
        download: bool = False,
    ) -> str:
        """The gateway URL of ``name``, signed for ``expire`` seconds unless public."""
        if parameters or http_method not in (None, "GET"):
            return str(super().url(name, parameters, expire, http_method))
        return self.gateway_url(name, download=download, expires_in=expire)


class MediaStorage(GatewayS3Storage):
    """The seed guide's private storage, served through the gateway.

    ``documents/a.pdf`` is stored at key ``media/documents/a.pdf`` (the seed's
    ``location = 'media'`` is the gateway's default ``AWS_LOCATION``) and linked as
    ``/media/documents/a.pdf?exp=..&sig=..``.
    """

    file_overwrite = False
    default_acl = "private"


class PublicMediaStorage(GatewayS3Storage):
    """The seed guide's public storage, moved under the gateway's public prefix.

    The seed stored public files at ``public/...``, beside ``media/``, where the
    gateway never looks. Here ``logo.png`` is stored at ``media/public/logo.png`` and
    linked as ``/media/public/logo.png``, unsigned when ``public`` is listed in
    ``GATEWAY_PUBLIC_PREFIXES``. Objects stay ``public-read`` as in the seed; the
    gateway itself needs that only with ``AWS_S3_CUSTOM_DOMAIN`` (otherwise it
    redirects to a presigned URL). For a bucket with ACLs disabled, the AWS default
    since 2023, subclass with ``default_acl = None``.
    """

    media_prefix = PUBLIC_PREFIX
    file_overwrite = False
    default_acl = "public-read"


def media_storage() -> GatewayStorage:
    """For ``FileField(storage=media_storage)``: a :class:`GatewayStorage`, which follows
    the migration's phase. Migrations record the function, not the instance."""
    return GatewayStorage()


def public_media_storage() -> PublicGatewayStorage:
    """Like :func:`media_storage`, for files under :data:`PUBLIC_PREFIX`."""
    return PublicGatewayStorage()


def _directory(prefix: str) -> str:
    cleaned = prefix.strip("/")
    if not cleaned:
        return ""
    try:
        return validate_relpath(cleaned) + "/"
    except RequestError:
        raise ImproperlyConfigured(
            f"media_prefix must be a relative directory like 'public/' (got {prefix!r})"
        ) from None


# Last: phases builds on the classes above. Re-exported so that settings name one module.
from .phases import GatewayStorage, PublicGatewayStorage  # noqa: E402
