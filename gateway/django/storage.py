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
    GatewayS3Storage(location="media/avatars")
                               u1.jpg          -> key media/avatars/u1.jpg
                                                  URL /media/avatars/u1.jpg?exp=..&sig=..
    GatewayFileSystemStorage   documents/a.pdf -> file MEDIA_ROOT/documents/a.pdf
                                                  URL /media/documents/a.pdf?exp=..&sig=..

The rule: the gateway serves ``MEDIA_URL + relpath`` from ``MEDIA_ROOT/relpath`` (disk)
or the key ``AWS_LOCATION/relpath`` (S3), and a storage's ``media_prefix`` is where its
names start within that tree: ``relpath = media_prefix + name``. For an S3 storage,
``media_prefix`` and django-storages' ``location`` are one setting seen from two sides:
``location = AWS_LOCATION/media_prefix``. Give either (``location`` as in
django-storages, the full key prefix; ``media_prefix`` relative to ``AWS_LOCATION``) and
the other follows; a ``location`` outside ``AWS_LOCATION`` is refused, since the gateway
could never serve it. So one gateway serves every storage, and the same database rows
work before, during and after a migration to S3.

``url()`` gives a gateway URL exactly where django-storages would give a presigned S3
URL for reading (``querystring_auth`` on, no ``custom_domain``, GET or HEAD); everywhere
else it gives django-storages' own URL (see :class:`GatewayS3Storage`).
"""

from __future__ import annotations

import functools
import posixpath
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote

from botocore.config import Config
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage

from ..exceptions import RequestError
from ..http import content_type
from ..paths import validate_relpath
from ..signing import signable_content_type
from . import gateway_settings, media_url

try:
    from storages.backends.s3 import S3Storage
    from storages.utils import clean_name
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


#: How many taken names Django may try for one upload when ``file_overwrite`` is off. Its
#: alternatives carry 7 random characters (3.5e12 of them): 32 taken in a row means that
#: ``exists()`` answers yes to everything, never a full bucket. Each try is a HEAD.
MAX_NAME_PROBES = 32

# The count of exists() calls of the free-name search running in this thread or task.
_probes: ContextVar[list[int] | None] = ContextVar("media_gateway_name_probes", default=None)


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
    """S3 mode: django-storages' ``S3Storage``, linked through the gateway.

    Objects lie at ``location/name`` as in django-storages. ``location`` defaults to
    ``AWS_LOCATION`` plus ``media_prefix`` (read by the gateway too, so both agree); any
    location under ``AWS_LOCATION`` is accepted, and its URLs carry the path below
    ``AWS_LOCATION``. The bucket, endpoint, region and addressing style default to the
    gateway's settings when Django has no ``AWS_*`` setting for them. Credentials follow
    django-storages (settings, then the environment and boto3's chain).

    ``url()`` is a gateway URL, made without boto3, wherever django-storages would
    presign a GET or HEAD: ``querystring_auth`` on (the default) and no ``custom_domain``.
    ``parameters`` the gateway carries become its own options (``ResponseContentType``,
    and ``ResponseContentDisposition`` of ``attachment`` or ``inline``). Everywhere else
    the URL is django-storages' own, unchanged: a custom domain's (CDN) URL, CloudFront-
    signed when a CloudFront key is set; the bucket's unsigned URL with
    ``querystring_auth`` off; and S3's presigned URL for what only S3 can do (a PUT for a
    browser upload, another parameter such as ``VersionId``).
    """

    client_config: Config  # set by S3Storage.__init__

    #: Whether an object's Content-Type comes from its name as ``upload`` gives it (the
    #: gateway's storages), or from django-storages' guess (this class, the drop-in:
    #: switching to it from S3Storage changes the URLs and nothing else).
    typed_by_name: bool = False
    location: str  # set by S3Storage.__init__
    custom_domain: str | None
    querystring_auth: bool
    querystring_expire: int
    file_overwrite: bool

    def __init__(self, *, media_prefix: str | None = None, **options: Any) -> None:
        gateway = gateway_settings()
        prefix = self.media_prefix if media_prefix is None else _directory(media_prefix)
        if "location" not in options and getattr(type(self), "location", None) is None:
            options["location"] = posixpath.join(gateway.aws_location, prefix).rstrip("/")
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
        # A lifetime the project chose for its links (AWS_QUERYSTRING_EXPIRE, the option or
        # a subclass's) applies to gateway links too; otherwise GATEWAY_URL_TTL does.
        self._chosen_expire = (
            "querystring_expire" in options
            or hasattr(type(self), "querystring_expire")
            or hasattr(django_settings, "AWS_QUERYSTRING_EXPIRE")
        )
        super().__init__(**options)  # refuses a leading slash, as django-storages does
        self.client_config = _CLIENT_DEFAULTS.merge(self.client_config)
        under = _below(gateway.aws_location, self.location, type(self).__name__)
        if prefix and prefix != under:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: location {self.location!r} and media_prefix"
                f" {prefix!r} disagree; with AWS_LOCATION {gateway.aws_location!r} give"
                f" one of them (location = AWS_LOCATION/media_prefix)"
            )
        self.media_prefix = under

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        """The object parameters; with :attr:`typed_by_name`, plus the Content-Type
        ``upload`` gives the same name (:func:`gateway.http.content_type`) unless they set
        one. django-storages' own guess differs (``.tar.gz`` as ``application/x-tar`` plus
        ``gzip`` encoding, text without a charset, the browser's claim for an upload)."""
        parameters: dict[str, Any] = super().get_object_parameters(name)
        if self.typed_by_name:
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
        """The gateway URL of ``name`` where django-storages would presign a GET;
        django-storages' own URL elsewhere (see the class)."""
        presigns_a_read = (
            self.querystring_auth
            and not self.custom_domain
            and http_method in (None, "GET", "HEAD")
        )
        options = _gateway_options(parameters, download) if presigns_a_read else None
        if options is None:
            return str(super().url(name, parameters, expire, http_method))
        # The key as django-storages writes it (clean_name, safe_join), so the URL names
        # exactly the object that save() created.
        relpath = self._relpath(self._normalize_name(clean_name(name)))
        if relpath == "" or relpath.endswith("/"):
            # A directory, as url("") or url("avatars/"): a base to append names to, as
            # django-storages gives. The gateway never serves a directory, so no
            # signature would open anything: the plain path.
            return gateway_settings().media_url + quote(relpath)
        download, content_type = options
        if expire is None and self._chosen_expire:
            expire = int(self.querystring_expire)
        return media_url(relpath, download=download, expires_in=expire, content_type=content_type)

    def _relpath(self, key: str) -> str:
        """The gateway's path of a key under ``location``: ``media_prefix`` + the rest."""
        location = self.location.rstrip("/")
        return self.media_prefix + (key[len(location) + 1 :] if location else key)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        """Django's free-name search (``file_overwrite = False``), bounded: it asks
        ``exists()`` until a name is free, and an endpoint that answers every HEAD with
        200 (a web server or CDN in its place) would keep it asking forever."""
        if self.file_overwrite:
            return str(super().get_available_name(name, max_length))
        token = _probes.set([0])
        try:
            return str(super().get_available_name(name, max_length))
        finally:
            _probes.reset(token)

    def exists(self, name: str) -> bool:
        probes = _probes.get()
        if probes is not None:
            probes[0] += 1
            if probes[0] > MAX_NAME_PROBES:
                raise FileExistsError(
                    f"{type(self).__name__}: {MAX_NAME_PROBES} names in a row like {name!r}"
                    f" exist in bucket {self.bucket_name!r}; Django would ask forever. Does"
                    f" AWS_S3_ENDPOINT_URL answer every HEAD with 200?"
                )
        return bool(super().exists(name))


class MediaStorage(GatewayS3Storage):
    """The seed guide's private storage, served through the gateway.

    With ``AWS_LOCATION=media`` (the seed's ``location = 'media'``, as .env.example sets
    it), ``documents/a.pdf`` is stored at key ``media/documents/a.pdf`` and linked as
    ``/media/documents/a.pdf?exp=..&sig=..``. Its links always go through the gateway.
    """

    typed_by_name = True  # as `upload` types the files it copies
    file_overwrite = False
    default_acl = "private"
    # Always through the gateway, whatever AWS_QUERYSTRING_AUTH or AWS_S3_CUSTOM_DOMAIN
    # say for other storages (the gateway reads the custom domain for public prefixes).
    querystring_auth = True
    custom_domain = None


class PublicMediaStorage(GatewayS3Storage):
    """The seed guide's public storage, moved under the gateway's public prefix.

    The seed stored public files at ``public/...``, beside ``media/``, where a gateway
    with ``AWS_LOCATION=media`` never looks. Here ``logo.png`` is stored at
    ``AWS_LOCATION/public/logo.png`` (``media/public/logo.png``) and
    linked as ``/media/public/logo.png``, unsigned when ``public`` is listed in
    ``GATEWAY_PUBLIC_PREFIXES``. Objects stay ``public-read`` as in the seed; the
    gateway itself needs that only with ``AWS_S3_CUSTOM_DOMAIN`` (otherwise it
    redirects to a presigned URL). For a bucket with ACLs disabled, the AWS default
    since 2023, subclass with ``default_acl = None``.
    """

    media_prefix = PUBLIC_PREFIX
    typed_by_name = True  # as `upload` types the files it copies
    file_overwrite = False
    default_acl = "public-read"
    querystring_auth = True  # through the gateway, as MediaStorage
    custom_domain = None


def media_storage() -> GatewayStorage:
    """For ``FileField(storage=media_storage)``: a :class:`GatewayStorage`, which follows
    the migration's phase. Migrations record the function, not the instance."""
    return GatewayStorage()


def public_media_storage() -> PublicGatewayStorage:
    """Like :func:`media_storage`, for files under :data:`PUBLIC_PREFIX`."""
    return PublicGatewayStorage()


def _below(base: str, location: str, owner: str) -> str:
    """The ``media_prefix`` of ``location``: its path under ``AWS_LOCATION`` ``base``."""
    cleaned = location.rstrip("/")
    if not base:
        rest = cleaned
    elif cleaned == base:
        rest = ""
    elif cleaned.startswith(base + "/"):
        rest = cleaned[len(base) + 1 :]
    else:
        raise ImproperlyConfigured(
            f"{owner}.location {location!r} lies outside AWS_LOCATION {base!r}: the gateway"
            f" serves MEDIA_URL/<path> from the key AWS_LOCATION/<path> only, so it could"
            f" never serve these files. Use a location under {base!r} (or media_prefix), or"
            f" set AWS_LOCATION to a prefix all storages share ('' for the bucket root),"
            f" the same for Django and the gateway"
        )
    if not rest:
        return ""
    try:
        return validate_relpath(rest) + "/"
    except RequestError:
        raise ImproperlyConfigured(
            f"{owner}.location {location!r}: the gateway cannot serve a path with empty,"
            f" '.' or '..' segments or a NUL; use a plain directory like 'media/avatars'"
        ) from None


def _gateway_options(
    parameters: dict[str, Any] | None, download: bool
) -> tuple[bool, str | None] | None:
    """``(download, content_type)`` for ``parameters`` the gateway carries, else None."""
    content_type = None
    for name, value in (parameters or {}).items():
        if name == "ResponseContentType" and signable_content_type(str(value)):
            content_type = str(value)
        elif name == "ResponseContentDisposition" and value in ("attachment", "inline"):
            download = value == "attachment"
        else:
            # A filename of the caller's, VersionId, SSE-C, a type with other parameters
            # (`name="x.bin"`, once a ValueError where django-storages gives a URL): S3's.
            return None
    return download, content_type


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
