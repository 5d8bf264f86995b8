"""Authorization delegated to the app: ask it, per request, whether a media path may be served.

``GATEWAY_AUTH_DELEGATE=/media-auth/`` sends an in-process sub-request to the wrapped
ASGI app (no network hop); ``https://app.internal/media-auth/`` sends the same check
over HTTP. The check is a GET carrying the original request's headers (Cookie,
Authorization) plus ``X-Media-Path`` (the relative path, percent-encoded UTF-8) and
``X-Original-URI``. The answer maps to (tests/README.md, item 19), failing closed:

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
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import quote

import anyio
import httpx
from starlette.types import ASGIApp, Message, Scope

from ..exceptions import (
    BadGateway,
    Forbidden,
    GatewayTimeout,
    NotFound,
    RequestError,
    ServiceUnavailable,
    Unauthorized,
)
from ..http import CONDITIONAL_HEADERS

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
}
# The headers the gateway itself tells the app, as they are compared: lower case, with
# "_" read as "-". WSGI servers and adapters (a2wsgi, Django's ASGI handler) map
# X-Media-Path, X_Media_Path and x-media-path to one HTTP_X_MEDIA_PATH, joining repeats
# with a comma, so a client's copy in any of these spellings would reach the app next
# to ours (tests/serving/test_delegate.py, tests/README.md's attacks). Never forwarded.
OWN_HEADERS = frozenset({b"x-media-path", b"x-original-uri"})
# Compared by their letters and digits alone: some stacks map every other character to
# "_" (PHP's variable names, nginx with ignore_invalid_headers off), so X.Media.Path
# may meet X-Media-Path there.
_NOT_ALNUM = re.compile(rb"[^a-z0-9]")
_OWN_LETTERS = frozenset(_NOT_ALNUM.sub(b"", name) for name in OWN_HEADERS)
# Bounds the decision cache in bytes. An entry is a 32-byte digest and a (deadline,
# status) pair in an OrderedDict, measured at under 300 bytes with tracemalloc
# (tests/serving/test_delegate.py), whatever the path, the query or the cookies.
CACHE_BYTES = 2 * 1024 * 1024
ENTRY_BYTES = 300
CACHE_ENTRIES = CACHE_BYTES // ENTRY_BYTES


class Delegate:
    """Ask the app whether a request may have a media path.

    :param target: a path on the wrapped app (``/media-auth/``) or an http(s) URL.
    :param app: the wrapped ASGI app, for in-process sub-requests.
    :param timeout: seconds the app has to answer; then 504.
    :param cache_ttl: at most this many seconds a decision is remembered per
        (credentials, path and query); 0 = never. Only answers the app marks
        ``Cache-Control: max-age=N`` are remembered (for ``min(N, cache_ttl)``), never
        ``no-store``, ``no-cache``, or one that varies by other headers, and never for
        an anonymous request.
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
        self._cache: OrderedDict[bytes, tuple[float, int]] = OrderedDict()
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    async def check(self, scope: Scope, relpath: str) -> None:
        """Return when the app allows ``relpath`` for this request; raise otherwise."""
        headers = [(k, v) for k, v in scope["headers"] if _forwarded(k)]
        original = scope.get("raw_path") or scope["path"].encode("utf-8")
        if scope.get("query_string"):
            original += b"?" + scope["query_string"]
        cache_key = self._cache_key(headers, original) if self.cache_ttl > 0 else None
        status = self._cached(cache_key)
        if status is None:
            headers += [
                (b"x-media-path", quote(relpath, safe="/").encode("ascii")),
                (b"x-original-uri", original),
            ]
            try:
                with anyio.fail_after(self.timeout):
                    if self.remote:
                        status, answer_headers = await self._ask_http(headers)
                    else:
                        status, answer_headers = await self._ask_app(scope, headers)
            except TimeoutError:
                raise GatewayTimeout("Authorization check timed out") from None
            except RequestError:
                raise
            except Exception:
                logger.exception("authorization check raised")
                raise BadGateway("Authorization check failed") from None
            if cache_key is not None and (200 <= status < 300 or status in (401, 403)):
                ttl = _cacheable_for(answer_headers, self.cache_ttl)
                if ttl > 0:
                    self._remember(cache_key, status, ttl)
        raise_for(status)

    async def _ask_app(
        self, scope: Scope, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
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
        answer_headers: list[tuple[bytes, bytes]] = []
        sent_request = False

        async def receive() -> Message:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError("unreachable")  # pragma: no cover

        async def send(message: Message) -> None:
            nonlocal status, answer_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                answer_headers = list(message.get("headers", ()))

        await self.app(sub_scope, receive, send)
        return status, answer_headers

    async def _ask_http(
        self, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
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
        return response.status_code, response.headers.raw

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients = {}

    def _cache_key(self, headers: list[tuple[bytes, bytes]], original: bytes) -> bytes | None:
        """What the decision is remembered by: the credentials and the whole target the
        app is shown (path and query: a share link's token is part of it). None for an
        anonymous request, whose answer may hang on anything else the app sees."""
        # A digest: the key stays 32 bytes for any cookie or path, and keeps secrets
        # out of memory dumps.
        digest = hashlib.sha256(original + b"\0")
        anonymous = True
        for name, value in headers:
            lowered = name.lower()
            if lowered in (b"cookie", b"authorization"):
                anonymous = False
                digest.update(lowered + b"\0" + value + b"\0")
        return None if anonymous else digest.digest()

    def _cached(self, key: bytes | None) -> int | None:
        if key is None:
            return None
        entry = self._cache.get(key)
        if entry is None or entry[0] < self.clock():
            return None
        return entry[1]

    def _remember(self, key: bytes, status: int, ttl: float) -> None:
        self._cache[key] = (self.clock() + ttl, status)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)


def _forwarded(name: bytes) -> bool:
    lowered = name.lower()
    return lowered not in _DROPPED and _NOT_ALNUM.sub(b"", lowered) not in _OWN_LETTERS


def _cacheable_for(headers: list[tuple[bytes, bytes]], ttl: int) -> float:
    """Seconds the app's answer may be remembered: only what the app marks so, with a
    ``max-age``, capped at ``ttl``. The key holds the target and the credentials
    only, so an answer that says it varies by anything else (an API key, a client
    certificate's header) is never remembered, nor one marked ``no-store`` or
    ``no-cache``, nor one without a ``max-age``: whether it depends on more than
    Cookie and Authorization cannot be told."""
    cache_control = _joined(headers, b"cache-control")
    vary = _joined(headers, b"vary").lower()
    if any(name.strip() not in ("", "cookie", "authorization") for name in vary.split(",")):
        return 0
    seconds: float = 0
    for directive in cache_control.lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return 0
        if name == "max-age":
            value = value.strip().strip('"')
            if not (value.isascii() and value.isdigit()):
                return 0  # an answer we cannot read is not remembered
            seconds = min(ttl, int(value))
    return seconds


def _joined(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    return b", ".join(v for k, v in headers if k.lower() == name).decode("latin-1")


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
