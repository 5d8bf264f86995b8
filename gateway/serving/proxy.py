"""Proxy mode: stream an S3 object through the gateway, for buckets clients cannot reach.

The gateway fetches a presigned URL with httpx and copies the body chunk by chunk, so
memory stays constant for any object size. Range and conditional headers go to S3,
which answers 200, 206, 304, 412 or 416 itself; its validators come back unchanged.
Where S3 ignored a precondition and sent the object anyway, the gateway judges it on
S3's own ETag and Last-Modified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime

import anyio
import httpx
from starlette.types import Receive, Send

from ..exceptions import BadGateway, GatewayTimeout, NotFound, RequestError, ServiceUnavailable
from ..http import SANDBOX_HEADER, is_active, precondition_status
from ..sigv4 import Presigner
from .local import relay

__all__ = ["S3Proxy"]

logger = logging.getLogger("gateway.proxy")

FORWARDED_REQUEST_HEADERS = (
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
)
# S3's response headers that reach the client, as httpx's raw (byte) names, lower-cased.
FORWARDED_RESPONSE_HEADERS = frozenset(
    {
        b"content-type",
        # A stored "attachment" stays one (django-storages users set it per object).
        b"content-disposition",
        b"content-length",
        b"content-range",
        b"content-encoding",
        b"etag",
        b"last-modified",
        b"accept-ranges",
    }
)
PASSED_STATUSES = frozenset({200, 206, 304, 412, 416})
# What a 304 made by the gateway keeps of S3's headers: the validators (RFC 9110 15.4.5).
NOT_MODIFIED_HEADERS = frozenset({b"etag", b"last-modified"})
# One retry for a refused connection or a 500/503: enough to ride out one dropped
# connection or a SlowDown without holding the client for long.
ATTEMPTS = 2
RETRY_DELAY = 0.2
# Idle clients (each one kept-alive connection to S3) a worker keeps for reuse. More
# clients serve bursts, then close; 32 kept measured at 1,343 proxied 4 KiB requests
# in 15 s of the soak with RSS back to its level after warm-up (bench/soak.py).
IDLE_CLIENTS = 32


class S3Proxy:
    """Stream objects from S3 through the gateway.

    :param presigner: signs URLs for the endpoint the gateway itself reaches.
    :param timeout: seconds for connecting and for each read; beyond it, 504.
    :param idle_timeout: seconds a client may take no bytes before it is dropped.
    :param transport: an httpx transport; injected for tests.
    :param tls: the TLS context of every client (:func:`gateway.network.tls_context`).
    :param proxy: the proxy URL for S3 (:func:`gateway.network.proxy_for`), or None.
    """

    def __init__(
        self,
        presigner: Presigner,
        *,
        timeout: float,
        idle_timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        tls: ssl.SSLContext | None = None,
        proxy: str | None = None,
    ) -> None:
        self.presigner = presigner
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.transport = transport
        # One TLS context for every client: building one costs milliseconds.
        self._tls = tls or ssl.create_default_context()
        self._proxy = proxy
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[httpx.AsyncClient] = []

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            transport=self.transport,
            verify=self._tls,
            # The proxy and CAs of gateway.network, as for every other S3 client: not
            # httpx's own reading of the environment (its NO_PROXY rules differ).
            proxy=self._proxy,
            trust_env=False,
        )

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        # One client per request in flight, each with one kept-alive connection, rather
        # than one shared pool: httpcore 1.0's pool hands one idle connection to several
        # waiting requests, which then fail and retry (encode/httpcore#822, #1110).
        # Measured in bench/soak.py at 50 concurrent proxied requests: 6,494 connection
        # attempts for 967 fetches, seconds per request. Clients belong to one event
        # loop; a server has one per worker.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._idle = loop, []
        idle = self._idle
        client = idle.pop() if idle else self._new_client()
        try:
            yield client
        finally:
            if len(idle) < IDLE_CLIENTS and not client.is_closed:
                idle.append(client)
            else:
                await client.aclose()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            await client.aclose()

    async def send(
        self,
        send: Send,
        receive: Receive,
        *,
        key: str,
        request_headers: dict[str, str],
        head: bool,
        extra_headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Fetch ``key`` and stream it to the client. Raises :class:`RequestError`
        before the response starts; afterwards a failure aborts the connection."""
        method = "HEAD" if head else "GET"
        url = self.presigner.presign(key, method=method).url
        forwarded = {k: v for k, v in request_headers.items() if k in FORWARDED_REQUEST_HEADERS}
        async with self._client() as client:
            response = await self._fetch(client, method, url, forwarded)
            await self._relay(send, receive, response, head, extra_headers, forwarded)

    async def _relay(
        self,
        send: Send,
        receive: Receive,
        response: httpx.Response,
        head: bool,
        extra_headers: list[tuple[bytes, bytes]],
        forwarded: dict[str, str],
    ) -> None:
        try:
            status = response.status_code
            # Some S3-compatible servers (rclone's, measured) ignore If-Modified-Since,
            # If-Match and If-Unmodified-Since: a 304 is made here, a 412 raised.
            if status in (200, 206) and _ignored_precondition(forwarded, response) == 304:
                status, head = 304, True
            # Our own headers (a signed content-type override) win over S3's.
            ours = {name for name, _ in extra_headers}
            # S3's bytes as they came: a stored UTF-8 filename is no latin-1 text.
            headers = [
                (name, value)
                for name, value in ((n.lower(), v) for n, v in response.headers.raw)
                if name in FORWARDED_RESPONSE_HEADERS
                and name not in ours
                and (status != 304 or name in NOT_MODIFIED_HEADERS)
            ]
            if b"content-type" not in ours and status != 304:
                # Repeated fields are one list to a browser: judged together.
                types = [v.decode("latin-1") for n, v in headers if n == b"content-type"]
                headers += _content_policy(", ".join(types) if types else None)
            if status == 200 and "content-range" in response.headers:
                # Some S3-compatible servers (rclone's, measured) send a partial body
                # with 200; the Content-Range says what it is, so call it a 206.
                status = 206
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": headers + extra_headers,
                }
            )
            if head or status == 304:
                await send({"type": "http.response.body", "body": b""})
                return
            await relay(send, receive, response.aiter_raw(), self.idle_timeout)
        finally:
            await response.aclose()

    async def _fetch(
        self, client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]
    ) -> httpx.Response:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = await client.send(
                    client.build_request(method, url, headers=headers), stream=True
                )
            except httpx.TimeoutException:
                raise GatewayTimeout() from None
            # A connection reset while it opens can also surface as an AttributeError
            # from anyio's socket stream (getpeername on a socket already gone; seen in
            # tests/serving/test_faults.py under load): the same fault, not a server error.
            except (httpx.TransportError, AttributeError) as exc:
                if attempt < ATTEMPTS:
                    await anyio.sleep(RETRY_DELAY)
                    continue
                logger.error("S3 unreachable: %s", exc)
                raise BadGateway("Storage unreachable") from None
            if response.status_code in PASSED_STATUSES:
                return response
            await response.aread()
            await response.aclose()
            if response.status_code in (500, 503) and attempt < ATTEMPTS:
                await anyio.sleep(RETRY_DELAY)
                continue
            raise _error_for(response)
        raise AssertionError("unreachable")  # pragma: no cover


def _ignored_precondition(forwarded: dict[str, str], response: httpx.Response) -> int | None:
    """The status the request's preconditions call for, judged on S3's validators: 304,
    None to send what S3 sent, or :class:`PreconditionFailed` raised."""
    if not any(name.startswith("if-") and name != "if-range" for name in forwarded):
        return None
    modified = response.headers.get("last-modified")
    try:
        mtime = int(parsedate_to_datetime(modified).timestamp()) if modified else None
    except (TypeError, ValueError, IndexError):
        mtime = None
    return precondition_status(forwarded, response.headers.get("etag"), mtime)


def _content_policy(stored_type: str | None) -> list[tuple[bytes, bytes]]:
    """What the site's origin adds to S3's own Content-Type: the same sandbox as local
    delivery for a type that could run script, decided from the type S3 sends (an
    object stored as text/html under a .png name is sandboxed too)."""
    if stored_type is None:
        # With no type and nosniff, a browser would still sniff a navigation.
        return [(b"content-type", b"application/octet-stream")]
    return [SANDBOX_HEADER] if is_active(stored_type) else []


def _error_for(response: httpx.Response) -> RequestError:
    status = response.status_code
    if status == 404:
        return NotFound()
    if status in (500, 503):
        return ServiceUnavailable()
    # 400/403 from S3 mean our credentials, clock or bucket are wrong: an operator's
    # problem, logged with S3's reason; the client only learns that storage failed.
    logger.error("S3 answered %s: %s", status, response.text[:300])
    return BadGateway()
