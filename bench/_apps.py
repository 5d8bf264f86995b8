"""The ASGI apps the benchmarks serve, as uvicorn ``--factory`` callables.

The benchmark process passes the media root and key in ``BENCH_*`` variables rather than
the gateway's own (``MEDIA_ROOT``, ``GATEWAY_SECRET_KEY``) so that a developer's ``.env``
or shell settings cannot change what is measured.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import MediaGateway, Settings

MEDIA_URL = "/media/"
PUBLIC_PREFIX = "public"


def settings(media_root: Path, secret: str) -> Settings:
    """The gateway settings both the server and the URL signer in the benchmark use."""
    return Settings(
        secret_keys=(secret,),
        media_root=media_root,
        media_url=MEDIA_URL,
        public_prefixes=(PUBLIC_PREFIX,),
    )


def gateway_settings(media_root: Path, secret: str) -> dict[str, str]:
    """The variables ``media-gateway serve`` reads for what :func:`settings` says: the
    gateway as a user configures it, every other setting at its default."""
    return {
        "GATEWAY_SECRET_KEY": secret,
        "MEDIA_ROOT": str(media_root),
        "MEDIA_URL": MEDIA_URL,
        "GATEWAY_PUBLIC_PREFIXES": PUBLIC_PREFIX,
    }


def gateway() -> MediaGateway:
    """Our gateway, standalone, as deployed in front of a media root."""
    return MediaGateway(settings=settings(_root(), os.environ["BENCH_SECRET"]))


def redirect() -> ASGIApp:
    """The cheapest useful answer an ASGI app can give on this server: a fixed 302.

    Every other app is measured against it, so the ratio shows what serving a file costs
    on top of uvicorn's own per-request work.
    """
    start = {
        "type": "http.response.start",
        "status": 302,
        "headers": [(b"location", b"/elsewhere"), (b"content-length", b"0")],
    }
    body = {"type": "http.response.body", "body": b""}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send(start)
            await send(body)

    return app


def replay() -> ASGIApp:
    """The gateway's own response to ``BENCH_REPLAY_TARGET``, recorded once and replayed.

    Same status, headers and body as the gateway, none of its per-request work: the
    ceiling for any code that answers the way the gateway does. Its gap to the bare 302
    is uvicorn's cost of the response's shape; the gateway's gap to it is our own code.
    """
    return replaying(gateway(), os.environ["BENCH_REPLAY_TARGET"])


def replaying(media: ASGIApp, target: str) -> ASGIApp:
    """An app that answers every request with what ``media`` answered to a GET of
    ``target``, recorded on the first request (the warm-up absorbs it)."""
    path, _, query = target.encode("latin-1").partition(b"?")
    recorded: Scope = {
        "type": "http",
        "method": "GET",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1")],
    }
    messages: list[Message] = []

    async def record(message: Message) -> None:
        messages.append(message)

    async def disconnected() -> Message:
        return {"type": "http.disconnect"}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if not messages:
            await media(recorded, disconnected, record)
        for message in messages:
            await send(message)

    return app


def starlette_static() -> ASGIApp:
    """Starlette's StaticFiles mounted as an app would mount it (FileResponse inside)."""
    return Starlette(routes=[Mount(MEDIA_URL.rstrip("/"), app=StaticFiles(directory=_root()))])


def servestatic() -> ASGIApp:
    """servestatic's ASGI server (whitenoise's successor), files indexed at start-up."""
    from servestatic import ServeStaticASGI  # type: ignore[import-untyped]

    app: ASGIApp = ServeStaticASGI(None, root=_root(), prefix=MEDIA_URL)
    return app


def _root() -> Path:
    return Path(os.environ["BENCH_MEDIA_ROOT"])
