"""Authorization delegated to the app: ask it, per request, whether a media path may be served.

``GATEWAY_AUTH_DELEGATE=/media-auth/`` sends an in-process sub-request to the wrapped
ASGI app (no network hop); ``https://app.internal/media-auth/`` sends the same check
over HTTP. The check is a GET carrying the original request's headers (Cookie,
Authorization) plus ``X-Media-Path`` (the relative path, percent-encoded UTF-8) and
``X-Original-URI``. The answer maps to (RELIABILITY item 19), failing closed:

==============  ==========================
app answers     client gets
==============  ==========================
2xx             the file
401, 403        401, 403
404             404
5xx             502
timeout         504
anything else   503
==============  ==========================
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import quote

import anyio
import httpx
from starlette.types import ASGIApp, Message, Scope

from .exceptions import (
    BadGateway,
    Forbidden,
    GatewayTimeout,
    NotFound,
    RequestError,
    ServiceUnavailable,
    Unauthorized,
)
from .http import CONDITIONAL_HEADERS

__all__ = ["Delegate", "raise_for"]

logger = logging.getLogger("gateway.delegate")

# Never forwarded: they would make the app answer 206/304/412 to a yes-or-no question,
# or describe a body the sub-request does not have.
_DROPPED = CONDITIONAL_HEADERS | {
    b"host",
    b"content-length",
    b"content-type",
    b"transfer-encoding",
    b"connection",
    b"x-media-path",
    b"x-original-uri",
}
# Bounds the decision cache; at ~200 bytes an entry, 10,000 entries stay under 2 MB.
CACHE_ENTRIES = 10_000


class Delegate:
    """Ask the app whether a request may have a media path.

    :param target: a path on the wrapped app (``/media-auth/``) or an http(s) URL.
    :param app: the wrapped ASGI app, for in-process sub-requests.
    :param timeout: seconds the app has to answer; then 504.
    :param cache_ttl: seconds to remember a decision per (credentials, path); 0 = never.
    """

    def __init__(
        self,
        target: str,
        *,
        app: ASGIApp | None,
        timeout: float,
        cache_ttl: int = 0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.remote = target.startswith(("http://", "https://"))
        if not self.remote and app is None:
            raise ValueError("an in-process delegate needs the wrapped app")
        self.target = target
        self.app = app
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.clock = clock
        self.transport = transport
        self._cache: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    async def check(self, scope: Scope, relpath: str) -> None:
        """Return when the app allows ``relpath`` for this request; raise otherwise."""
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _DROPPED]
        cache_key = self._cache_key(headers, relpath) if self.cache_ttl > 0 else None
        status = self._cached(cache_key)
        if status is None:
            original = scope.get("raw_path") or scope["path"].encode("utf-8")
            if scope.get("query_string"):
                original += b"?" + scope["query_string"]
            headers += [
                (b"x-media-path", quote(relpath, safe="/").encode("ascii")),
                (b"x-original-uri", original),
            ]
            try:
                with anyio.fail_after(self.timeout):
                    if self.remote:
                        status = await self._ask_http(headers)
                    else:
                        status = await self._ask_app(scope, headers)
            except TimeoutError:
                raise GatewayTimeout("Authorization check timed out") from None
            except RequestError:
                raise
            except Exception:
                logger.exception("authorization check raised")
                raise BadGateway("Authorization check failed") from None
            if cache_key is not None and (200 <= status < 300 or status in (401, 403)):
                self._remember(cache_key, status)
        raise_for(status)

    async def _ask_app(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> int:
        assert self.app is not None
        path = self.target.split("?", 1)[0]
        sub_scope = {
            **scope,
            "method": "GET",
            "path": path,
            "raw_path": path.encode("utf-8"),
            "query_string": self.target.partition("?")[2].encode("latin-1"),
            "headers": headers,
        }
        status = 0
        sent_request = False

        async def receive() -> Message:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError("unreachable")  # pragma: no cover

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(sub_scope, receive, send)
        return status

    async def _ask_http(self, headers: list[tuple[bytes, bytes]]) -> int:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(transport=self.transport, follow_redirects=False)
            self._clients = {loop: client}
        try:
            response = await client.get(self.target, headers=headers)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.TransportError:
            raise BadGateway("Authorization service unreachable") from None
        return response.status_code

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients = {}

    def _cache_key(self, headers: list[tuple[bytes, bytes]], relpath: str) -> tuple[str, str]:
        # Only the credentials decide; the digest keeps secrets out of memory dumps.
        digest = hashlib.sha256()
        for name, value in headers:
            if name.lower() in (b"cookie", b"authorization"):
                digest.update(name.lower() + b"\0" + value + b"\0")
        return digest.hexdigest(), relpath

    def _cached(self, key: tuple[str, str] | None) -> int | None:
        if key is None:
            return None
        entry = self._cache.get(key)
        if entry is None or entry[0] < self.clock():
            return None
        return entry[1]

    def _remember(self, key: tuple[str, str], status: int) -> None:
        self._cache[key] = (self.clock() + self.cache_ttl, status)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)


def raise_for(status: int) -> None:
    """Map the app's answer to ours, failing closed (see the module docstring)."""
    if 200 <= status < 300:
        return
    error: RequestError
    if status == 401:
        error = Unauthorized()
    elif status == 403:
        error = Forbidden()
    elif status == 404:
        error = NotFound()
    elif status >= 500:
        error = BadGateway("Authorization check failed")
    else:
        error = ServiceUnavailable("Authorization check gave no answer")
    raise error
