"""Who may have a media path, and on what terms: public prefix, signature or delegate.

The decision is an :class:`Access`; the signed options it carries (download, content
type) and its caching become response headers here, once, for every delivery.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple

from starlette.types import Scope

from ..exceptions import Forbidden, MethodNotAllowed
from ..http import (
    CONDITIONAL_HEADERS,
    SANDBOX_HEADER,
    content_disposition,
    is_active,
    validator_headers,
)
from ..paths import decoded_relative_path, relative_path
from ..settings import Settings
from ..signing import URLSigner
from .delegate import Delegate
from .responses import NOSNIFF

__all__ = ["Access", "Authorizer", "attachment", "disposition", "request_headers"]

ALLOWED_METHODS = ("GET", "HEAD")
_TYPE_HEADERS = frozenset({b"content-type", b"content-security-policy"})


class Access(NamedTuple):
    """An authorised media request: which file, and on what terms."""

    relpath: str
    public: bool
    expires: int = 0
    download: bool = False
    #: Allowed by the app's delegate rather than by a signature.
    delegated: bool = False
    #: A signed Content-Type override.
    content_type: str | None = None


class Authorizer:
    """Decide media requests: deny by default.

    :param delegate: asked when there is no valid signature; None refuses instead.
    """

    def __init__(
        self,
        settings: Settings,
        signer: URLSigner,
        *,
        delegate: Delegate | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.prefix = settings.media_url
        self.signer = signer
        self.delegate = delegate
        self.clock = clock

    def relpath(self, scope: Scope) -> str:
        """The method and the path, checked first: 405, 400, 404 or 414 before
        anything touches the disk or S3."""
        if scope["method"] not in ALLOWED_METHODS:
            raise MethodNotAllowed(headers={"allow": ", ".join(ALLOWED_METHODS)})
        raw_path = scope.get("raw_path")
        if raw_path:
            return relative_path(raw_path.split(b"?", 1)[0], self.prefix)
        return decoded_relative_path(scope["path"], self.prefix)

    def check(self, scope: Scope, relpath: str) -> Access:
        """A public prefix or a valid signature; else :class:`Forbidden`, which
        :meth:`ask_delegate` may still overrule. No coroutine: the common case."""
        if self.settings.is_public(relpath):
            return Access(relpath, public=True)
        query = scope.get("query_string", b"").decode("latin-1")
        grant = self.signer.verify(relpath, query)
        return Access(
            relpath,
            public=False,
            expires=grant.expires,
            download=grant.download,
            content_type=grant.content_type,
        )

    async def ask_delegate(self, scope: Scope, relpath: str, refused: Forbidden) -> Access:
        """No valid signature (an expired link, say): the app decides per request."""
        if self.delegate is None:
            raise refused
        await self.delegate.check(scope, relpath)
        return Access(relpath, public=False, delegated=True)

    def cache_headers(
        self, access: Access, *, max_age: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        """Cache-Control for what ``access`` allows, and nosniff."""
        if access.public:
            age = self.settings.public_max_age if max_age is None else max_age
            cache_control = b"public, max-age=%d" % age
        elif access.delegated:
            # The app decided for this request only: browsers revalidate every time.
            cache_control = b"private, no-cache"
        else:
            age = max(0, access.expires - int(self.clock())) if max_age is None else max_age
            cache_control = b"private, max-age=%d" % age
        return [(b"cache-control", cache_control), NOSNIFF]

    def local_headers(self, access: Access, st: os.stat_result) -> list[tuple[bytes, bytes]]:
        validators = validator_headers(access.relpath, st)
        if access.content_type is not None:
            # A signed override replaces the guess, and the sandbox follows the type
            # sent, not the name: a .txt signed as text/html is sandboxed, an .html
            # signed as text/plain needs none.
            validators = tuple(h for h in validators if h[0] not in _TYPE_HEADERS)
        return [*validators, *self.cache_headers(access), *option_headers(access)]

    def proxy_headers(self, access: Access) -> list[tuple[bytes, bytes]]:
        # The options are set here rather than through response-content-*, which some
        # S3-compatible servers ignore; the proxy adds the sandbox for the type S3
        # sends when no override is signed.
        return [*self.cache_headers(access), *option_headers(access)]


def disposition(access: Access) -> str | None:
    return attachment(access) if access.download else None


def attachment(access: Access) -> str:
    return content_disposition(access.relpath.rsplit("/", 1)[-1], attachment=True)


def option_headers(access: Access) -> list[tuple[bytes, bytes]]:
    """The signed response options as headers, the same for local and proxy delivery
    (redirects carry them as response-content-* parameters instead)."""
    headers = []
    value = disposition(access)
    if value is not None:
        headers.append((b"content-disposition", value.encode("latin-1")))
    if access.content_type is not None:
        headers.append((b"content-type", access.content_type.encode("ascii")))
        if is_active(access.content_type):
            headers.append(SANDBOX_HEADER)
    return headers


def request_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Range and the preconditions, the only headers that change a GET's answer. Most
    requests carry none, and then nothing is decoded. Repeated fields (two
    If-None-Match lines) combine as one list (RFC 9110 5.3)."""
    headers: dict[str, str] = {}
    for key, value in raw:
        if key in CONDITIONAL_HEADERS:  # ASGI header names are lower-case
            name, text = key.decode("latin-1").lower(), value.decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers
