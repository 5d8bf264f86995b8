"""The ASGI middleware: answer media requests, pass everything else to the app."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple
from urllib.parse import quote

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..exceptions import ConfigError, Forbidden, MethodNotAllowed, NotFound, RequestError
from ..http import (
    CONDITIONAL_HEADERS,
    SANDBOX_HEADER,
    content_disposition,
    content_type,
    is_active,
    plan_response,
    validator_headers,
)
from ..network import proxy_for, tls_context
from ..paths import decoded_relative_path, relative_path
from ..redact import guard_logs
from ..s3 import make_presigner
from ..settings import Settings
from ..signing import URLSigner
from ..sigv4 import Presigner
from .access_log import AccessLog, flush_access_logs
from .delegate import Delegate
from .local import LocalFiles, MediaFile, send_file, whole_body
from .observe import MemoryUse, Metrics, Observer
from .operations import Readiness, json_response
from .proxy import S3Proxy

__all__ = ["MediaGateway"]

logger = logging.getLogger("gateway")

ALLOWED_METHODS = ("GET", "HEAD")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_TYPE_HEADERS = frozenset({b"content-type", b"content-security-policy"})
# Requests with a longer target (raw path and query, in bytes) are answered but their
# redirects never remembered; signing.MAX_REMEMBERED bounds remembered signatures.
MAX_REMEMBERED_TARGET = 1024
# Seconds a cached redirect stops short of its presigned URL's expiry, so a browser
# never follows a cached redirect to a URL that has just expired.
REDIRECT_MARGIN = 60


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
        self.files: LocalFiles | None = None
        if not settings.use_s3 or settings.local_fallback:
            root = os.path.realpath(settings.media_root)
            if not os.path.isdir(root):
                raise ConfigError(
                    "MEDIA_ROOT", f"directory {str(settings.media_root)!r} does not exist"
                )
            self.files = LocalFiles(root, cache_size=settings.file_cache_mb * 1024 * 1024)
        self.delegate: Delegate | None = None
        if settings.auth_delegate is not None:
            if app is None and not settings.auth_delegate.startswith(("http://", "https://")):
                raise ConfigError(
                    "GATEWAY_AUTH_DELEGATE",
                    "a path needs a wrapped app; a standalone gateway takes an http(s) URL",
                )
            self.delegate = Delegate(
                settings.auth_delegate,
                app=app,
                timeout=settings.auth_timeout,
                cache_ttl=settings.auth_cache_ttl,
                transport=transport,
            )
        self.metrics: Metrics | None = None
        if settings.metrics_path or settings.metrics_port:
            self.metrics = Metrics(memory=self._memory_use)
        self.readiness = Readiness(settings)
        self._operations: dict[str, Callable[[Send], Awaitable[None]]] = {}
        if settings.metrics_path:
            self._operations[settings.metrics_path] = self._send_metrics
        if settings.ready_path:
            self._operations[settings.ready_path] = self._send_ready
        if settings.live_path:
            self._operations[settings.live_path] = self._send_live
        self.presigner: Presigner | None = None
        self.proxy: S3Proxy | None = None
        if settings.use_s3:
            # Presigning is offline: no S3 call here, so start-up never waits on S3.
            if settings.s3_delivery == "proxy":
                internal = make_presigner(settings, public=False, clock=clock)
                self.proxy = S3Proxy(
                    internal,
                    timeout=settings.s3_timeout,
                    idle_timeout=settings.send_timeout,
                    transport=transport,
                    tls=tls_context(settings),
                    proxy=proxy_for(settings.s3_endpoint_url),
                )
            else:
                self.presigner = make_presigner(settings, clock=clock)
        # Pure redirect mode answers a (method, path, query) alike for a whole second.
        self._recent: RecentRedirects | None = None
        if self.presigner is not None and self.files is None:
            self._recent = RecentRedirects(clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.access_log is not None and (watched := self.access_log.begin(scope, send)):
            try:
                await self._route(scope, receive, watched[0])
            finally:
                self.access_log.done(scope, watched[1])
        else:
            await self._route(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(self.prefix):
                if self.metrics is not None:
                    await self.handle(scope, receive, send)
                elif self._recent is not None and (start := self._recent.get(scope)):
                    # A redirect given this second, sent without another coroutine:
                    # half of what the gateway adds to uvicorn's own cost here.
                    await send(start)
                    await send({"type": "http.response.body", "body": b""})
                else:
                    await self._answer(scope, receive, send)
                return
            if path in self._operations:
                await self._operations[path](send)
                return
        if scope["type"] == "lifespan":
            receive = self._closing_on_shutdown(receive)
        if self.app is not None:
            await self.app(scope, receive, send)
        else:
            await _standalone(scope, receive, send)

    def _memory_use(self) -> dict[str, MemoryUse]:
        signatures = self.signer.remembered()
        use = {"signature": MemoryUse(signatures.hits, signatures.currsize)}
        if self.files is not None:
            use["file"] = MemoryUse(self.files.hits, len(self.files), self.files.kept_bytes)
        if self._recent is not None:
            use["redirect"] = MemoryUse(self._recent.hits, len(self._recent))
        return use

    def _start_metrics_server(self) -> None:
        from prometheus_client import start_http_server

        assert self.metrics is not None and self.settings.metrics_port is not None
        try:
            start_http_server(
                self.settings.metrics_port,
                addr=self.settings.metrics_addr,
                registry=self.metrics.registry,
            )
        except OSError as exc:
            # With several workers only the first can bind the port; the others say so
            # once and keep serving media (use GATEWAY_METRICS_PATH for per-worker data).
            logger.warning("metrics port %s not opened: %s", self.settings.metrics_port, exc)

    async def _send_metrics(self, send: Send) -> None:
        assert self.metrics is not None
        body = self.metrics.render()
        headers = [
            (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"cache-control", b"no-store"),
        ]
        await _send_whole(send, 200, headers, body)

    async def _send_ready(self, send: Send) -> None:
        ok, details = await self.readiness.check()
        await _send_whole(send, *json_response(200 if ok else 503, {"ready": ok, **details}))

    async def _send_live(self, send: Send) -> None:
        await _send_whole(send, *json_response(200, {"live": True}))

    def _closing_on_shutdown(self, receive: Receive) -> Receive:
        # The proxy's connection pool is closed when the server shuts down, before the
        # wrapped app hears of it; the metrics port opens at start-up.
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and self.settings.metrics_port:
                self._start_metrics_server()
            if message["type"] == "lifespan.shutdown":
                flush_access_logs()
                if self.proxy is not None:
                    await self.proxy.aclose()
                if self.delegate is not None:
                    await self.delegate.aclose()
            return message

        return wrapped

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one media request, counted and logged. Per-request state lives here,
        never on ``self``."""
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        observer = Observer(self.metrics, scope["method"], raw_path.decode("latin-1"))
        outcome = None
        try:
            if self._recent is not None and (start := self._recent.get(scope)):
                await _send_redirect(observer.wrap(send), start)
                outcome = "redirect"
            else:
                outcome = await self._answer(scope, receive, observer.wrap(send))
        finally:
            observer.finish(outcome)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        """Serve, redirect or proxy; return which, or None for an error response. The
        caller has looked for a redirect to reuse."""
        head = scope["method"] == "HEAD"
        try:
            relpath = self._relpath(scope)
            try:
                access = self._access(scope, relpath)
            except Forbidden:
                if self.delegate is None:
                    raise
                # No valid signature (an expired link, say): the app decides per request.
                await self.delegate.check(scope, relpath)
                access = Access(relpath, public=False, delegated=True)
            request_headers = _conditional_headers(scope["headers"])
            if self.files is not None:
                file = self._open_local(self.files, access.relpath)
                if file is not None:
                    try:
                        plan = plan_response(file.st, request_headers)
                        headers = self._local_headers(access, file.st)
                    except BaseException:
                        if file.fd >= 0:
                            os.close(file.fd)
                        raise
                    if file.body is not None:
                        # In memory: two messages, sent here rather than through
                        # another coroutine (2.5 us a request under load).
                        start, body = whole_body(file.body, plan, headers, head=head)
                        await send(start)
                        await send(body)
                        return "local"
                    await send_file(
                        send,
                        receive,
                        file=file,
                        plan=plan,
                        headers=headers,
                        head=head,
                        idle_timeout=self.settings.send_timeout,
                    )
                    return "local"
            if self.presigner is not None:
                await self._redirect(scope, send, access)
                return "redirect"
            assert self.proxy is not None
            # The options are set here rather than through response-content-*, which
            # some S3-compatible servers ignore; the proxy adds the sandbox for the
            # type S3 sends when no override is signed.
            headers = [*self._headers(access, access.relpath), *_option_headers(access)]
            await self.proxy.send(
                send,
                receive,
                key=self.settings.key_for(access.relpath),
                request_headers=request_headers,
                head=head,
                extra_headers=headers,
            )
            return "proxy"
        except RequestError as exc:  # raised only before a response started
            await send_error(send, exc, head=head)
            return None

    def _relpath(self, scope: Scope) -> str:
        """The method and the path, checked first: 405, 400, 404 or 414 before
        anything touches the disk or S3."""
        if scope["method"] not in ALLOWED_METHODS:
            raise MethodNotAllowed(headers={"allow": ", ".join(ALLOWED_METHODS)})
        raw_path = scope.get("raw_path")
        if raw_path:
            return relative_path(raw_path.split(b"?", 1)[0], self.prefix)
        return decoded_relative_path(scope["path"], self.prefix)

    def _access(self, scope: Scope, relpath: str) -> Access:
        """A public prefix or a valid signature; else :class:`Forbidden`, which the
        app's delegate may still overrule. Deny by default."""
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

    def _open_local(self, files: LocalFiles, relpath: str) -> MediaFile | None:
        try:
            # Inline: a stat, or open + fstat + readlink (+ pread) of cached metadata,
            # a few microseconds.
            return files.open(relpath)
        except NotFound:
            if self.settings.use_s3:
                return None  # hybrid mode: not on disk (any more), so S3 has it
            raise

    def _local_headers(self, access: Access, st: os.stat_result) -> list[tuple[bytes, bytes]]:
        validators = validator_headers(access.relpath, st)
        if access.content_type is not None:
            # A signed override replaces the guess, and the sandbox follows the type
            # sent, not the name: a .txt signed as text/html is sandboxed, an .html
            # signed as text/plain needs none.
            validators = tuple(h for h in validators if h[0] not in _TYPE_HEADERS)
        return [*validators, *self._headers(access, access.relpath), *_option_headers(access)]

    async def _redirect(self, scope: Scope, send: Send, access: Access) -> None:
        assert self.presigner is not None
        now = int(self.clock())
        key = self.settings.key_for(access.relpath)
        custom = self.settings.aws_s3_custom_domain
        if access.public and custom:
            location = f"{custom}/{quote(key)}"
            max_age = self.settings.public_max_age
        else:
            # The type S3 sends is pinned to the one local mode would send (the signed
            # override, else the name's), never the stored one: an object stored as
            # text/html under a .png name is sent as image/png. S3 sends no sandbox
            # header of ours, so a type that could run script is downloaded instead,
            # and even a bucket on a subdomain of the site (a custom domain, a CDN)
            # never renders an upload as a page.
            sent_type = access.content_type or content_type(access.relpath)
            disposition = _disposition(access)
            if disposition is None and is_active(sent_type):
                disposition = _attachment(access)
            # Signed for the request's method: a HEAD that follows a redirect signed for
            # GET is refused by S3. RecentRedirects keys on the method, so a GET is never
            # answered with a HEAD's URL or the reverse.
            presigned = self.presigner.presign(
                key,
                content_disposition=disposition,
                content_type=sent_type,
                method=scope["method"],
            )
            location = presigned.url
            # A cached redirect must never outlive the URL it points to.
            max_age = presigned.expires_at - now - REDIRECT_MARGIN
            if not access.public:
                max_age = min(max_age, access.expires - now)
        headers = [
            (b"location", location.encode("latin-1")),
            (b"content-length", b"0"),
            *self._headers(access, access.relpath, max_age=max(0, max_age)),
        ]
        start = {"type": "http.response.start", "status": 302, "headers": headers}
        if (
            self._recent is not None
            and not access.delegated
            and (access.public or access.expires > now)
        ):
            # The same answer for the rest of this second: its inputs are the request's
            # method, path and query and the current second (the signature stays valid
            # through it). Never a delegated one, which depends on the cookies.
            self._recent.put(scope, now, headers)
        await _send_redirect(send, start)

    def _headers(
        self, access: Access, relpath: str, *, max_age: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        if access.public:
            age = self.settings.public_max_age if max_age is None else max_age
            cache_control = b"public, max-age=%d" % age
        elif access.delegated:
            # The app decided for this request only: browsers revalidate every time.
            cache_control = b"private, no-cache"
        else:
            age = max(0, access.expires - int(self.clock())) if max_age is None else max_age
            cache_control = b"private, max-age=%d" % age
        return [(b"cache-control", cache_control), _NOSNIFF]


class RecentRedirects:
    """Redirects given in the current second, by (method, raw path, query string).

    In redirect mode a signed or public request's answer depends on nothing else: the
    presigned URL changes per window, the max-age per second, and a signature that is
    valid at the start of a second stays valid through it (expiries are whole seconds).
    Remembering the answer for that second makes a popular file's redirect cost a
    lookup, not a signature check and a presign: 28 us of server CPU per request under
    load where uvicorn alone needs 25.5 for this response, against 76 us for URLs that
    are not remembered (bench/results/redirect.md).
    Like nginx's "microcaching", but exact: tests/test_s3.py checks every answer
    against a fresh gateway's. Bounded; entries of a past second are ignored.
    """

    SIZE = 1024

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        #: Requests answered from here so far (for the metrics).
        self.hits = 0
        self._entries: dict[tuple[str, bytes, bytes], tuple[int, list[tuple[bytes, bytes]]]] = {}

    def get(self, scope: Scope) -> Message | None:
        # Not _request_key's checks: this runs for every media request in redirect
        # mode, and a key put() refused (no raw path, too long) is never found anyway.
        key = scope["method"], scope.get("raw_path", b""), scope.get("query_string", b"")
        entry = self._entries.get(key)
        if entry is None or entry[0] != int(self.clock()):
            return None
        self.hits += 1
        # A fresh message and list each time: middleware around the gateway may edit
        # the headers of a message in place (Starlette's CORSMiddleware does).
        return {"type": "http.response.start", "status": 302, "headers": list(entry[1])}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, scope: Scope, second: int, headers: list[tuple[bytes, bytes]]) -> None:
        key = _request_key(scope)
        if key is None:
            return
        self._entries.pop(key, None)
        if len(self._entries) >= self.SIZE:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[key] = second, list(headers)


def _request_key(scope: Scope) -> tuple[str, bytes, bytes] | None:
    """What a redirect depends on besides the time: the method and the exact request
    target, as _relpath() reads it. None when the request is too long to remember
    (a padded query must not grow the memory) or has no raw path (then _relpath()
    reads the decoded one, which other raw paths may share)."""
    raw_path = scope.get("raw_path")
    query = scope.get("query_string", b"")
    if not raw_path or len(raw_path) + len(query) > MAX_REMEMBERED_TARGET:
        return None
    return scope["method"], raw_path, query


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


def _disposition(access: Access) -> str | None:
    if not access.download:
        return None
    return _attachment(access)


def _attachment(access: Access) -> str:
    return content_disposition(access.relpath.rsplit("/", 1)[-1], attachment=True)


def _option_headers(access: Access) -> list[tuple[bytes, bytes]]:
    """The signed response options as headers, the same for local and proxy delivery
    (redirects carry them as response-content-* parameters instead)."""
    headers = []
    disposition = _disposition(access)
    if disposition is not None:
        headers.append((b"content-disposition", disposition.encode("latin-1")))
    if access.content_type is not None:
        headers.append((b"content-type", access.content_type.encode("ascii")))
        if is_active(access.content_type):
            headers.append(SANDBOX_HEADER)
    return headers


async def _send_redirect(send: Send, start: Message) -> None:
    await send(start)
    await send({"type": "http.response.body", "body": b""})


async def _send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: RequestError, *, head: bool = False) -> None:
    """Send ``exc`` as a short plain-text response that no cache keeps."""
    body = f"{exc.reason}\n".encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        _NOSNIFF,
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


def _conditional_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    # Only Range and the preconditions matter to a GET's answer; most requests carry
    # none, and then nothing is decoded. Repeated fields (two If-None-Match lines)
    # combine as one list (RFC 9110 5.3).
    headers: dict[str, str] = {}
    for key, value in raw:
        if key in CONDITIONAL_HEADERS:  # ASGI header names are lower-case
            name, text = key.decode("latin-1").lower(), value.decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers
