"""The app behind the gateway in tests/test_deploy.py: it says what it was told.

``/media-auth/`` is the gateway's delegate: it allows a file when the request's cookie
``seen`` names the scheme and client address the app sees ("https 127.0.0.2"), so a
200 proves what reached the delegate. A WebSocket at ``/ws`` echoes with the same two.
Any other path answers them as JSON, with the HTTP version the app was spoken to in.
"""

from __future__ import annotations

import json
from typing import Any


def _seen(scope: dict[str, Any]) -> str:
    client = scope.get("client") or ("", 0)
    return f"{scope['scheme']} {client[0]}"


def _cookie(scope: dict[str, Any], name: str) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key_, _, value_ = part.strip().partition("=")
                if key_ == name:
                    return value_
    return None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": f"{_seen(scope)} {message['text']}"})
            await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"] == "/media-auth/":
        status = 200 if _cookie(scope, "seen") == _seen(scope) else 403
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    client = scope.get("client") or ("", 0)
    body = json.dumps(
        {"scheme": scope["scheme"], "client": client[0], "http_version": scope["http_version"]}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
