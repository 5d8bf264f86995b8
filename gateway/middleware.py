"""The ASGI middleware: answer media requests, pass everything else to the app."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .exceptions import ConfigError, MethodNotAllowed, NotFound, RequestError
from .http import ACTIVE_TYPES, SANDBOX_CSP, content_disposition, content_type, plan_response
from .local import send_file
from .paths import open_regular_file, relative_path
from .settings import Settings
from .signing import URLSigner

__all__ = ["MediaGateway"]

ALLOWED_METHODS = ("GET", "HEAD")
_COMMON_HEADERS = [(b"x-content-type-options", b"nosniff")]


class MediaGateway:
    """Serve ``MEDIA_URL`` from local disk behind signed URLs; pass the rest to ``app``.

    :param app: the wrapped ASGI app. When None, the gateway is a standalone media
        server and every other path gets 404.
    :param settings: defaults to :meth:`Settings.from_env`. Invalid settings raise
        :class:`ConfigError` here, at start-up, never on a request.
    :param clock: returns the current Unix time; injected for tests.
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.settings = settings = settings if settings is not None else Settings.from_env()
        if settings.use_s3:
            raise ConfigError("USE_S3", "S3 delivery is not available in this version; set false")
        self.root = os.path.realpath(settings.media_root)
        if not os.path.isdir(self.root):
            raise ConfigError(
                "MEDIA_ROOT", f"directory {str(settings.media_root)!r} does not exist"
            )
        self.prefix = settings.media_url
        self.clock = clock
        self.signer = URLSigner(
            secret_keys=settings.secret_keys,
            media_url=settings.media_url,
            ttl=settings.url_ttl,
            window=settings.url_window,
            clock=clock,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            await self.handle(scope, receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        else:
            await _standalone(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one media request. Per-request state lives here, never on ``self``."""
        method = scope["method"]
        try:
            if method not in ALLOWED_METHODS:
                raise MethodNotAllowed(headers={"allow": ", ".join(ALLOWED_METHODS)})
            raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
            relpath = relative_path(raw_path.split(b"?", 1)[0], self.prefix)
            query = scope.get("query_string", b"").decode("latin-1")
            if self.settings.is_public(relpath):
                cache_control, download = f"public, max-age={self.settings.public_max_age}", False
            else:
                grant = self.signer.verify(relpath, query)
                remaining = max(0, grant.expires - int(self.clock()))
                cache_control, download = f"private, max-age={remaining}", grant.download
            # Inline: open + fstat + readlink of cached metadata, a few microseconds.
            fd, st = open_regular_file(self.root, relpath)
            try:
                request_headers = _header_dict(scope["headers"])
                plan = plan_response(st, request_headers)
            except BaseException:
                os.close(fd)
                raise
        except RequestError as exc:
            await send_error(send, exc, head=method == "HEAD")
            return
        mime = content_type(relpath)
        headers = [
            (b"content-type", mime.encode("latin-1")),
            (b"cache-control", cache_control.encode("latin-1")),
            *_COMMON_HEADERS,
        ]
        if mime.split(";", 1)[0] in ACTIVE_TYPES:
            headers.append((b"content-security-policy", SANDBOX_CSP.encode("latin-1")))
        if download:
            filename = relpath.rsplit("/", 1)[-1]
            value = content_disposition(filename, attachment=True)
            headers.append((b"content-disposition", value.encode("latin-1")))
        try:
            await send_file(send, receive, fd=fd, plan=plan, headers=headers, head=method == "HEAD")
        except RequestError as exc:  # raised only before the response started
            await send_error(send, exc, head=method == "HEAD")


async def send_error(send: Send, exc: RequestError, *, head: bool = False) -> None:
    """Send ``exc`` as a short plain-text response that no cache keeps."""
    body = f"{exc.reason}\n".encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        *_COMMON_HEADERS,
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()),
    ]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _standalone(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})
    else:
        await send_error(send, NotFound(), head=scope.get("method") == "HEAD")


def _header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    # Repeated fields (two If-None-Match lines) combine as one list (RFC 9110 5.3).
    headers: dict[str, str] = {}
    for key, value in raw:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers
