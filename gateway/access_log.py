"""The access log: one line per HTTP request, through the ``gateway.access`` logger.

The line is the Common Log Format plus the time taken, in seconds (nginx's
``$request_time``), with the values of ``sig``, ``X-Amz-Signature``, ``X-Amz-Credential``
and ``X-Amz-Security-Token`` redacted::

    127.0.0.1 - - [25/Nov/2026:21:36:00 +0000] "GET /media/a.jpg?exp=1767225600&sig=[REDACTED]
    HTTP/1.1" 200 4096 0.000143

(one line).

It replaces uvicorn's access log, which prints the signature. It must stay cheap: a
redirect costs the gateway ~28 us of CPU, and ``logger.info`` alone costs 5. So the line
is built from a per-second timestamp and a remembered redacted target, and
:class:`AccessLogHandler` (what ``media-gateway serve`` configures) buffers lines and
writes them at most ``flush_interval`` seconds late. While that handler is the logger's
only destination (no filters, no formatter, no propagation), the gateway hands it the
line without building a ``LogRecord``: the same output for a fifth of the cost. Any other
logging configuration gets ordinary records, checked once a second.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import weakref
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .redact import redact_query

__all__ = ["AccessLog", "AccessLogHandler", "access_logger", "flush_access_logs"]

access_logger = logging.getLogger("gateway.access")

# Set in the scope by the outermost access log, so a gateway wrapped in another (the
# soak benchmark's proxy under its hybrid) logs each request once.
LOGGED = "gateway.access_logged"
# Redacted request targets remembered, by (raw path, query): a page's signed URLs come
# back over and over, and redacting one costs ~3 us. Longer targets are not remembered,
# so a padded query cannot grow the memory (<= 2 MiB in all).
TARGETS = 1024
MAX_REMEMBERED_TARGET = 1024
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class AccessLog:
    """ASGI middleware: a line for every HTTP request ``app`` answers.

    :class:`~gateway.middleware.MediaGateway` uses one around itself when
    ``GATEWAY_ACCESS_LOG`` is on; it also wraps any other app.
    """

    def __init__(self, app: ASGIApp | None = None, *, logger: logging.Logger = access_logger):
        self.app = app
        self.logger = logger
        self._targets: dict[tuple[bytes, bytes], str] = {}
        self._second = -1
        self._stamp = ""
        self._direct: AccessLogHandler | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        exchange = self.begin(scope, send)
        if exchange is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, exchange)
        finally:
            exchange.done()

    def begin(self, scope: Scope, send: Send) -> Exchange | None:
        """Start watching an HTTP request: None when it is not logged here (not HTTP,
        the logger is off for INFO, or an outer access log has it)."""
        if scope["type"] != "http" or LOGGED in scope or not self.logger.isEnabledFor(20):
            return None
        scope[LOGGED] = True
        return Exchange(self, scope, send)

    def write(self, scope: Scope, status: int, size: int, seconds: float) -> None:
        second = int(time.time())
        if second != self._second:
            self._refresh(second)
        client = scope.get("client")
        line = (
            f"{client[0] if client else '-'} - - [{self._stamp}] "
            f'"{scope["method"]} {self._target(scope)} HTTP/{scope.get("http_version", "1.1")}" '
            f"{status} {size} {seconds:.6f}"
        )
        direct = self._direct
        if direct is not None:
            direct.write(line)
        else:
            self.logger.info(line)

    def _refresh(self, second: int) -> None:
        # Once a second: the timestamp, and whether the line may skip the LogRecord.
        t = time.gmtime(second)
        self._stamp = (
            f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
        )
        self._second = second
        self._direct = _only_handler(self.logger)

    def _target(self, scope: Scope) -> str:
        raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        query: bytes = scope.get("query_string", b"")
        key = raw, query
        target = self._targets.get(key)
        if target is None:
            target = raw.decode("latin-1")
            if query:
                target += "?" + redact_query(query.decode("latin-1"))
            target = _printable(target)
            if len(raw) + len(query) <= MAX_REMEMBERED_TARGET:
                if len(self._targets) >= TARGETS:
                    self._targets.clear()
                self._targets[key] = target
        return target


class Exchange:
    """One logged request: a ``send`` that notes the status and the body bytes."""

    __slots__ = ("log", "scope", "send", "size", "started", "status")

    def __init__(self, log: AccessLog, scope: Scope, send: Send) -> None:
        self.log = log
        self.scope = scope
        self.send = send
        self.status = 0
        self.size = 0
        self.started = time.perf_counter()

    def __call__(self, message: Message) -> Any:
        # Not a coroutine: the server's own send is awaited as it is, which saves a
        # coroutine per message.
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            body = message.get("body")
            if body:
                self.size += len(body)
        return self.send(message)

    def done(self) -> None:
        # No response started: the server answers 500 (an exception, or an app that
        # returned without answering).
        status = self.status or 500
        self.log.write(self.scope, status, self.size, time.perf_counter() - self.started)


def _printable(target: str) -> str:
    # No line may be forged through the target: quotes, backslashes, control and
    # non-ASCII bytes are escaped as \xHH, as nginx does.
    if target.isascii() and target.isprintable() and '"' not in target and "\\" not in target:
        return target
    return "".join(
        c if " " <= c < "\x7f" and c not in '"\\' else f"\\x{ord(c):02X}" for c in target
    )


def _only_handler(logger: logging.Logger) -> AccessLogHandler | None:
    """The :class:`AccessLogHandler` that is ``logger``'s only destination and would
    write the message as it is; else None (records go through logging)."""
    if logger.filters or logger.propagate or len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    if (
        type(handler) is not AccessLogHandler
        or handler.formatter is not None
        or handler.filters
        or handler.level > logging.INFO
    ):
        return None
    return handler


_HANDLERS: weakref.WeakSet[AccessLogHandler] = weakref.WeakSet()


class AccessLogHandler(logging.StreamHandler[TextIO]):
    """A stream handler that buffers lines, like nginx's ``access_log ... buffer=
    flush=``: written when ``buffer_size`` characters are waiting or ``flush_interval``
    seconds after the first, and when logging shuts down.

    Writing each line at once costs a ``write`` system call per request (uvicorn's
    handler does that); a second's lines in one call cost a fraction of it.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        buffer_size: int = 64 * 1024,
        flush_interval: float = 1.0,
    ) -> None:
        super().__init__(stream if stream is not None else sys.stdout)
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        self._lines: list[str] = []
        self._size = 0
        self._wake = threading.Event()
        self._closed = False
        self._flusher: threading.Thread | None = None
        _HANDLERS.add(self)
        _exit_on_sigterm()

    def format(self, record: logging.LogRecord) -> str:
        if self.formatter is None:
            return record.getMessage()  # the access line is complete as it is
        return super().format(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:
            self.handleError(record)

    def write(self, line: str) -> None:
        """Queue one line (without its newline)."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._lines.append(line)
            self._size += len(line) + 1
            full = self._size >= self.buffer_size or self.flush_interval <= 0
            if self._flusher is None and not full and not self._closed:
                self._start_flusher()
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._lines:
                lines, self._lines, self._size = self._lines, [], 0
                self.stream.write("\n".join(lines) + "\n")
            if self.stream is not None and hasattr(self.stream, "flush"):
                self.stream.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        try:
            self.flush()
        finally:
            super().close()

    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(
            target=self._flush_periodically, name="gateway-access-log", daemon=True
        )
        self._flusher.start()

    def _flush_periodically(self) -> None:
        while not self._wake.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # a closed or broken stream: logging.raiseExceptions decides
                if logging.raiseExceptions:
                    raise

    def _after_fork(self) -> None:
        # The flusher thread does not survive a fork (gunicorn forks its workers).
        self._flusher = None
        self._lines, self._size = [], 0


def _exit_on_sigterm() -> None:
    # uvicorn ends a graceful shutdown on SIGTERM by raising it again under the handler
    # it found. The default one kills the process before logging.shutdown() writes what
    # is buffered; SystemExit runs it. Only where nothing else handles SIGTERM.
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def flush_access_logs() -> None:
    """Write what every :class:`AccessLogHandler` holds: called at lifespan shutdown,
    because uvicorn ends on SIGTERM by raising it again, and nothing runs after that."""
    for handler in list(_HANDLERS):
        handler.flush()


def _after_fork_in_child() -> None:
    for handler in list(_HANDLERS):
        handler._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
