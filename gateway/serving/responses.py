"""Replies the gateway builds itself: errors, whole bodies, redirects, and the answer of a
standalone gateway to what it does not serve."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from ..exceptions import NotFound, RequestError

__all__ = ["NOSNIFF", "error_reply", "send_error", "send_redirect", "send_whole", "standalone"]

NOSNIFF = (b"x-content-type-options", b"nosniff")


async def send_redirect(send: Send, start: Message) -> None:
    await send(start)
    await send({"type": "http.response.body", "body": b""})


async def send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_reply(exc: RequestError) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of ``exc`` as a short plain-text response no cache keeps."""
    body = f"{exc.reason}\n".encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        NOSNIFF,
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()),
    ]
    return headers, body


async def send_error(send: Send, exc: RequestError, *, head: bool = False) -> int:
    """Send ``exc`` (:func:`error_reply`); return the size of the body sent."""
    headers, body = error_reply(exc)
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
    return 0 if head else len(body)


async def standalone(scope: Scope, receive: Receive, send: Send) -> None:
    """What a gateway with no app answers outside the media prefix."""
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
