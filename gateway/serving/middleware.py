"""The ASGI middleware: answer media requests, pass everything else to the app.

Routing and dispatch only: who may have a file is decided in :mod:`.access`, files are
sent by :mod:`.local`, redirects by :mod:`.redirect`, objects streamed by :mod:`.proxy`,
operations paths answered by :mod:`.operations`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..exceptions import ConfigError, Forbidden, NotFound, RequestError
from ..http import plan_response
from ..network import proxy_for, tls_context
from ..redact import guard_logs
from ..s3 import make_presigner
from ..settings import Settings
from ..signing import URLSigner
from .access import Access, Authorizer, request_headers
from .access_log import AccessLog, Watch, flush_access_logs, watching
from .delegate import Delegate
from .local import LocalFiles, MediaFile, send_file, whole_body
from .observe import MemoryUse, Metrics, Observer
from .operations import Operations
from .proxy import S3Proxy
from .recent import RecentFiles, Remembered
from .redirect import Redirector
from .responses import send_error, send_redirect, standalone
from .uploads import UploadEndpoint

__all__ = ["MediaGateway"]


class MediaGateway:
    """Answer requests under ``MEDIA_URL``; pass everything else to ``app`` untouched.

    Media requests are authorised (public prefix or signed URL; deny by default), then
    served from local disk (``USE_S3`` off), redirected to a presigned S3 URL or
    proxied from S3 (``USE_S3`` on), or, during a migration, served from disk when the
    file is still there and from S3 otherwise (``GATEWAY_LOCAL_FALLBACK``).

    :param app: the wrapped ASGI app. When None, the gateway is a standalone media
        server and every other path gets 404.
    :param settings: defaults to :meth:`Settings.from_env`. Invalid settings raise
        :class:`ConfigError` here, at start-up, never on a request.
    :param clock: returns the current Unix time; injected for tests.
    :param transport: httpx transport for proxy mode; injected for tests.
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.app = app
        self.settings = settings = settings if settings is not None else Settings.from_env()
        # One line per HTTP request, signatures redacted; the gateway's other logs and
        # the server's (its access log, should it be on) redacted too.
        self.access_log = AccessLog() if settings.access_log else None
        guard_logs()
        self.prefix = settings.media_url
        self.clock = clock
        self.signer = URLSigner.from_settings(settings, clock=clock)
        self.files = _local_files(settings)
        self.delegate = _delegate(settings, app, transport)
        self.authorizer = Authorizer(settings, self.signer, delegate=self.delegate, clock=clock)
        self.metrics: Metrics | None = None
        if settings.metrics_path or settings.metrics_port:
            self.metrics = Metrics(memory=lambda: _memory_use(self))
        self.operations = Operations(settings, self.metrics)
        self._operations = self.operations.routes
        self.uploads = UploadEndpoint(settings, clock=clock, transport=transport)
        self.redirector: Redirector | None = None
        self.proxy: S3Proxy | None = None
        if settings.use_s3:
            # Presigning is offline: no S3 call here, so start-up never waits on S3.
            if settings.s3_delivery == "proxy":
                self.proxy = S3Proxy(
                    make_presigner(settings, public=False, clock=clock),
                    timeout=settings.s3_timeout,
                    idle_timeout=settings.send_timeout,
                    transport=transport,
                    tls=tls_context(settings),
                    proxy=proxy_for(settings.s3_endpoint_url),
                )
            else:
                # Pure redirect mode answers a (method, path, query) alike for a whole
                # second; in hybrid mode the disk decides first.
                self.redirector = Redirector(
                    settings,
                    make_presigner(settings, clock=clock),
                    self.authorizer,
                    clock=clock,
                    remember=self.files is None,
                )
        self._recent = self.redirector.recent if self.redirector is not None else None
        self.recent_files, self._fast = _remembering(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        log = self.access_log
        fast = self._fast
        if fast is not None and (found := fast(scope)) is not None:
            # Two messages and, with the log on, its line: what the replayed responses
            # of bench/ cost, and little more. Inline, not in a coroutine of its own,
            # which would cost a tenth of it. A fresh message and list each time:
            # middleware around the gateway may edit the headers of a message in place
            # (Starlette's CORSMiddleware does).
            remembered, body = found
            start = {
                "type": "http.response.start",
                "status": remembered.status,
                "headers": [*remembered.headers],
            }
            if log is None:
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            began, unsent = time.perf_counter_ns(), 1
            try:
                await send(start)
                await send({"type": "http.response.body", "body": body})
                unsent = 0  # as watched: an answer cut short is logged as the 500 0
            finally:
                log.remembered(scope, remembered, unsent, began)
            return
        if log is None or not log.wants(scope):
            await self._route(scope, receive, send)
            return
        watch: Watch = [0, 0, time.perf_counter_ns()]
        try:
            if self.metrics is None and scope["path"].startswith(self.prefix):
                # A media request: the gateway knows the status and size of what it
                # answers itself (a redirect, a file in memory, an error), so only
                # streamed bodies are watched send by send (bench/results/redirect.md).
                await self._answer(scope, receive, send, watch)
            else:
                await self._route(scope, receive, watching(send, watch))
        finally:
            log.done(scope, watch)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(self.prefix):
                if self.metrics is not None:
                    await self.handle(scope, receive, send)
                else:
                    await self._answer(scope, receive, send)
                return
            if path in self._operations:
                await self._operations[path](send)
                return
            if path == self.uploads.path:
                await self.uploads(scope, receive, send)
                return
        if scope["type"] == "lifespan":
            receive = _closing_on_shutdown(self, receive)
        if self.app is not None:
            await self.app(scope, receive, send)
        else:
            await standalone(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one media request, counted and logged. Per-request state lives here,
        never on ``self``."""
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        observer = Observer(self.metrics, scope["method"], raw_path.decode("latin-1"))
        outcome = None
        try:
            redirector = self.redirector
            found = redirector.remembered(scope) if redirector is not None else None
            if found is not None:
                remembered = found[0]
                start = {
                    "type": "http.response.start",
                    "status": remembered.status,
                    "headers": [*remembered.headers],
                }
                await send_redirect(observer.wrap(send), start)
                outcome = "redirect"
            else:
                outcome = await self._answer(scope, receive, observer.wrap(send))
        finally:
            observer.finish(outcome)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, watch: Watch | None = None
    ) -> str | None:
        """Serve, redirect or proxy; return which, or None for an error response. The
        caller has looked for a redirect to reuse. ``watch`` gets the status and the
        body size for the access log."""
        head = scope["method"] == "HEAD"
        authorizer = self.authorizer
        try:
            relpath = authorizer.relpath(scope)
            try:
                access = authorizer.check(scope, relpath)
            except Forbidden as refused:
                access = await authorizer.ask_delegate(scope, relpath, refused)
            if self.files is not None:
                file = self._open_local(self.files, access.relpath)
                if file is not None:
                    await self._send_local(scope, receive, send, access, file, watch)
                    return "local"
            if self.redirector is not None:
                await self.redirector.send(scope, send, access)
                if watch is not None:
                    watch[0] = 302
                return "redirect"
            assert self.proxy is not None
            await self.proxy.send(
                send if watch is None else watching(send, watch),
                receive,
                key=self.settings.key_for(access.relpath),
                request_headers=request_headers(scope["headers"]),
                head=head,
                extra_headers=authorizer.proxy_headers(access),
            )
            return "proxy"
        except RequestError as exc:  # raised only before a response started
            size = await send_error(send, exc, head=head)
            if watch is not None:
                watch[0], watch[1] = exc.status_code, size
            return None

    def _open_local(self, files: LocalFiles, relpath: str) -> MediaFile | None:
        try:
            # Inline: a stat, or open + fstat + readlink (+ pread) of cached metadata,
            # cheap enough for the event loop (bench/results/local.md).
            return files.open(relpath)
        except NotFound:
            if self.settings.use_s3:
                return None  # hybrid mode: not on disk (any more), so S3 has it
            raise

    async def _send_local(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        access: Access,
        file: MediaFile,
        watch: Watch | None,
    ) -> None:
        head = scope["method"] == "HEAD"
        try:
            conditions = request_headers(scope["headers"])
            plan = plan_response(file.st, conditions)
            headers = self.authorizer.local_headers(access, file.st)
        except BaseException:
            if file.fd >= 0:
                os.close(file.fd)
            raise
        if file.body is not None:
            # In memory: two messages, sent here rather than through another coroutine
            # (bench/results/local.md).
            start, body = whole_body(file.body, plan, headers, head=head)
            if self.recent_files is not None and not conditions:
                self.recent_files.put(scope, access, start["headers"], file.st, head=head)
            await send(start)
            await send(body)
            if watch is not None:
                watch[0], watch[1] = start["status"], len(body["body"])
            return
        await send_file(
            send if watch is None else watching(send, watch),
            receive,
            file=file,
            plan=plan,
            headers=headers,
            head=head,
            idle_timeout=self.settings.send_timeout,
        )


def _local_files(settings: Settings) -> LocalFiles | None:
    """The files under MEDIA_ROOT, in local and hybrid mode."""
    if settings.use_s3 and not settings.local_fallback:
        return None
    root = os.path.realpath(settings.media_root)
    if not os.path.isdir(root):
        raise ConfigError("MEDIA_ROOT", f"directory {str(settings.media_root)!r} does not exist")
    return LocalFiles(root, cache_size=settings.file_cache_mb * 1024 * 1024)


def _delegate(
    settings: Settings, app: ASGIApp | None, transport: httpx.AsyncBaseTransport | None
) -> Delegate | None:
    if settings.auth_delegate is None:
        return None
    if app is None and not settings.auth_delegate.startswith(("http://", "https://")):
        raise ConfigError(
            "GATEWAY_AUTH_DELEGATE",
            "a path needs a wrapped app; a standalone gateway takes an http(s) URL",
        )
    return Delegate(
        settings.auth_delegate,
        app=app,
        timeout=settings.auth_timeout,
        cache_ttl=settings.auth_cache_ttl,
        transport=transport,
    )


def _memory_use(gateway: MediaGateway) -> dict[str, MemoryUse]:
    signatures = gateway.signer.remembered()
    use = {"signature": MemoryUse(signatures.hits, signatures.currsize)}
    if gateway.files is not None:
        use["file"] = MemoryUse(gateway.files.hits, len(gateway.files), gateway.files.kept_bytes)
    if gateway._recent is not None:
        use["redirect"] = MemoryUse(gateway._recent.hits, len(gateway._recent))
    return use


def _closing_on_shutdown(gateway: MediaGateway, receive: Receive) -> Receive:
    # The proxy's connection pool is closed when the server shuts down, before the
    # wrapped app hears of it; the metrics port opens at start-up.
    async def wrapped() -> Message:
        message = await receive()
        if message["type"] == "lifespan.startup" and gateway.settings.metrics_port:
            gateway.operations.start_metrics_server()
        if message["type"] == "lifespan.shutdown":
            flush_access_logs()
            if gateway.proxy is not None:
                await gateway.proxy.aclose()
            if gateway.delegate is not None:
                await gateway.delegate.aclose()
        return message

    return wrapped


def _remembering(
    gateway: MediaGateway,
) -> tuple[RecentFiles | None, Callable[[Scope], tuple[Remembered, bytes] | None] | None]:
    """Answers given, reused before anything else (gateway.serving.recent): where no
    metrics count them (handle() does, on the slower path), the redirects of pure
    redirect mode, or else the small files kept in memory."""
    if gateway.metrics is not None:
        return None, None
    if gateway.redirector is not None and gateway.redirector.recent is not None:
        return None, gateway.redirector.remembered
    if gateway.files is not None and gateway.files.cache_size > 0:
        files = RecentFiles(gateway.files, gateway.authorizer, clock=gateway.clock)
        return files, files.remembered
    return None, None
