"""The gateway for WSGI apps (Django under gunicorn or uWSGI).

``MediaGatewayWSGI(application)`` is a WSGI app: media and operations paths are answered
by the same :class:`~gateway.serving.middleware.MediaGateway` (bridged with a2wsgi, one event
loop in a background thread), every other request goes straight to ``application``,
with no ASGI conversion on the way.

    # mysite/wsgi.py
    from django.core.wsgi import get_wsgi_application
    from gateway.wsgi import MediaGatewayWSGI

    application = MediaGatewayWSGI(get_wsgi_application())
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from a2wsgi.wsgi_typing import Environ, StartResponse, WSGIApp
from starlette.types import ASGIApp

from .exceptions import NotFound
from .serving.middleware import MediaGateway
from .serving.responses import error_reply
from .settings import Settings

__all__ = ["MediaGatewayWSGI"]


class MediaGatewayWSGI:
    """Serve ``MEDIA_URL`` like :class:`MediaGateway`; pass the rest to a WSGI app.

    :param app: the wrapped WSGI application.
    :param settings: defaults to :meth:`Settings.from_env`.
    """

    def __init__(self, app: WSGIApp, *, settings: Settings | None = None) -> None:
        from a2wsgi import ASGIMiddleware, WSGIMiddleware

        self.app = app
        # The ASGI view of the app is only used for delegated authorization checks.
        self.gateway = MediaGateway(cast(ASGIApp, WSGIMiddleware(app)), settings=settings)
        self.settings = self.gateway.settings
        self._asgi = ASGIMiddleware(self._media_only)
        self._prefix = self.settings.media_url
        # Operations paths and the direct upload endpoint are the gateway's too.
        self._operations = {*self.gateway._operations, self.settings.upload_path}

    async def _media_only(self, scope: Any, receive: Any, send: Any) -> None:
        environ = scope.get("wsgi_environ", {})
        # gunicorn and uWSGI keep the undecoded target: exact bytes, decoded once.
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        if raw.startswith(("http://", "https://")):
            # An absolute-form target (a request through a forward proxy): its path.
            slash = raw.find("/", raw.index("//") + 2)
            raw = raw[slash:] if slash >= 0 else "/"
        if raw.startswith("/"):
            scope = {**scope, "raw_path": raw.split("?", 1)[0].encode("latin-1")}
        await self.gateway(scope, receive, send)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        # PATH_INFO is latin-1 decoded bytes (PEP 3333); the prefix is ASCII.
        path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
        if path.startswith(self._prefix) or path in self._operations:
            if not _is_utf8(path):
                # No media file has a name that is not UTF-8, and a2wsgi's scope
                # builder raises on one (a 500 under gunicorn): answered here.
                return _not_found(start_response, head=environ.get("REQUEST_METHOD") == "HEAD")
            return self._asgi(environ, start_response)
        return self.app(environ, start_response)


def _is_utf8(path: str) -> bool:
    try:
        path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return False
    return True


def _not_found(start_response: StartResponse, *, head: bool) -> list[bytes]:
    headers, body = error_reply(NotFound())
    start_response(
        "404 Not Found", [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
    )
    return [] if head else [body]
