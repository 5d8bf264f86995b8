"""The access log: one line per HTTP request, through the ``gateway.access`` logger.

The line is the Common Log Format plus the time taken, in microseconds (Apache's
``%D``), with the values of ``sig``, ``X-Amz-Signature``, ``X-Amz-Credential``
and ``X-Amz-Security-Token`` redacted::

    127.0.0.1 - - [25/Nov/2026:21:36:00 +0000] "GET /media/a.jpg?exp=1767225600&sig=[REDACTED]
    HTTP/1.1" 200 4096 143

(one line).

It replaces uvicorn's access log, which prints the signature. It must stay cheap: a
remembered redirect costs uvicorn and the gateway little more than uvicorn's own answer,
and a ``logger.info`` would cost a sixth of it. So the line is built from a per-second
timestamp and a remembered redacted target (``python -m bench.instructions`` counts
it; bench/results/redirect.md compares the log on and off), and
:class:`AccessLogHandler` (what ``media-gateway serve`` configures) buffers lines and
writes them at most ``flush_interval`` seconds late. While that handler is the logger's
only destination (no filters, no formatter, no propagation), the gateway hands it the
line without building a ``LogRecord``: the same output, without what a record costs.
Any other logging configuration gets ordinary records; which applies is checked once a
second. A gateway wrapped in another logs its requests twice: give the inner one
``access_log=False``.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import select
import signal
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..redact import redact_query

if TYPE_CHECKING:
    from .recent import Remembered

__all__ = [
    "AccessLog",
    "AccessLogHandler",
    "Watch",
    "access_logger",
    "flush_access_logs",
    "watching",
]

access_logger = logging.getLogger("gateway.access")

# Redacted request targets remembered, by (raw path, query): a page's signed URLs come
# back over and over, and redacting one is a parse. Longer targets are not remembered,
# so a padded query cannot grow the memory (<= 2 MiB in all).
TARGETS = 1024
MAX_REMEMBERED_TARGET = 1024
# Client addresses remembered with their printable form: the proxies' and browsers' of
# the moment, checked once each rather than by a regular expression per request.
HOSTS = 1024
MAX_REMEMBERED_HOST = 64
# What a pipe writes atomically (POSIX: at least 512; Linux: 4096).
PIPE_BUF = getattr(select, "PIPE_BUF", 512)
#: A watched request: status (0 until the response starts), body bytes, start time (ns).
Watch = list[int]
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class AccessLog:
    """ASGI middleware: a line for every HTTP request ``app`` answers.

    :class:`~gateway.serving.middleware.MediaGateway` uses one around itself when
    ``GATEWAY_ACCESS_LOG`` is on; it also wraps any other app.
    """

    def __init__(self, app: ASGIApp | None = None, *, logger: logging.Logger = access_logger):
        self.app = app
        self.logger = logger
        self._requests: dict[tuple[str | None, bytes | None, bytes | None], str] = {}
        self._hosts: dict[str, str] = {}
        # The answers of logger.isEnabledFor(), which it keeps in this dict and logging
        # clears in place on every setLevel(): read without the call (a tenth of a
        # remembered redirect's line). Empty where a logging has none: then the call.
        self._enabled: dict[int, bool] = getattr(logger, "_cache", {})
        self._refresh_at = 0
        self._stamp = ""
        self._direct: AccessLogHandler | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        if not self.wants(scope):
            await self.app(scope, receive, send)
            return
        watch: Watch = [0, 0, time.perf_counter_ns()]
        try:
            await self.app(scope, receive, watching(send, watch))
        finally:
            self.done(scope, watch)

    def wants(self, scope: Scope) -> bool:
        """Whether this request gets a line."""
        return scope["type"] == "http" and self.logger.isEnabledFor(20)

    def done(self, scope: Scope, watch: Watch) -> None:
        """Log the request, with the [status, body bytes, start ns] of ``watch`` (0 for
        the status: no answer started, logged as the 500 the server sends)."""
        key = scope.get("method"), scope.get("raw_path"), scope.get("query_string")
        request = self._requests.get(key)
        if request is None:
            request = self._request(scope)
        self._line(scope, request, watch[0], watch[1], watch[2])

    def remembered(self, scope: Scope, remembered: Remembered, unsent: int, began: int) -> None:
        """Log a remembered answer (``unsent``: 0 if it was sent, 1 if not, logged as
        the 500 the server sends then), whose request text it keeps for its next lines.

        :meth:`_line` again, inline: this is the gateway's cheapest answer, and a call
        less is a tenth of what its line costs (``python -m bench.instructions``)."""
        logger = self.logger
        if logger.disabled or not (self._enabled.get(20) or logger.isEnabledFor(20)):
            return
        end = time.perf_counter_ns()
        if end >= self._refresh_at:
            self._refresh(end)
        request = remembered.log_request
        if request is None:
            request = remembered.log_request = self._request(scope)
        client = scope.get("client")
        host = (self._hosts.get(client[0]) or self._host(client[0])) if client else "-"
        line = (
            f"{host}{self._stamp}{request}{scope.get('http_version', '1.1')}"
            f"{remembered.log_status[unsent]}{(end - began) // 1000}"
        )
        direct = self._direct
        if direct is not None:
            queue = direct.queue
            queue.append(line)
            if len(queue) >= direct.buffer_lines:
                direct.flush()
        else:
            logger.info(line)

    def _line(self, scope: Scope, request: str, status: int, size: int, began: int) -> None:
        # Everything here costs every request: a clock read, a host looked up, one
        # f-string, one append.
        end = time.perf_counter_ns()
        if end >= self._refresh_at:
            self._refresh(end)
        client = scope.get("client")
        host = (self._hosts.get(client[0]) or self._host(client[0])) if client else "-"
        # No response started: the server answers 500 (an exception, or an app that
        # returned without answering).
        line = (
            f'{host}{self._stamp}{request}{scope.get("http_version", "1.1")}" '
            f"{status or 500} {size} {(end - began) // 1000}"
        )
        direct = self._direct
        if direct is not None:
            queue = direct.queue
            queue.append(line)
            if len(queue) >= direct.buffer_lines:
                direct.flush()
        else:
            self.logger.info(line)

    def _host(self, host: str) -> str:
        # An address taken from X-Forwarded-For is the client's own text.
        printable = host if _PLAIN_HOST(host) else _printable(host).replace(" ", "\\x20")
        if len(self._hosts) >= HOSTS:
            self._hosts.clear()
        if len(host) <= MAX_REMEMBERED_HOST:
            self._hosts[host] = printable
        return printable

    def _refresh(self, now_ns: int) -> None:
        # Once a second: the timestamp, and whether the line may skip the LogRecord.
        # The next refresh is due when perf_counter_ns() reaches the next wall second,
        # so the request path reads one clock, not two.
        wall = time.time()
        second = int(wall)
        t = time.gmtime(second)
        self._stamp = (
            f" - - [{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000] "'
        )
        self._refresh_at = now_ns + int((second + 1 - wall) * 1e9)
        self._direct = _only_handler(self.logger)

    def _request(self, scope: Scope) -> str:
        """The line's method and target, up to the HTTP version's number. Remembered by
        (method, raw_path, query_string) as the scope has them, which done() looks up
        without building anything else."""
        key = scope.get("method"), scope.get("raw_path"), scope.get("query_string")
        raw: bytes = key[1] or scope["path"].encode("utf-8")
        query: bytes = key[2] or b""
        target = raw.decode("latin-1")
        if query:
            target += "?" + redact_query(query.decode("latin-1"))
        request = f"{scope['method']} {_printable(target)} HTTP/"
        # Only an exact raw path is a key: without one, requests with other paths would
        # share (None, query) and be logged with the first one's path.
        if key[1] and len(raw) + len(query) <= MAX_REMEMBERED_TARGET:
            if len(self._requests) >= TARGETS:
                self._requests.clear()
            self._requests[key] = request
        return request


def watching(send: Send, watch: Watch) -> Send:
    """``send``, noting the status and the body bytes in ``watch``. A closure and a list
    rather than an object: half the cost per request. The server's own send is returned
    to be awaited as it is, not wrapped in another coroutine."""

    def observed(message: Message) -> Any:
        if message["type"] == "http.response.start":
            watch[0] = message["status"]
        else:
            body = message.get("body")
            if body:
                watch[1] += len(body)
        return send(message)

    return observed


_PLAIN_HOST = re.compile(r"[0-9A-Za-z.:%_\[\]-]+").fullmatch


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
    flush=``: written when ``buffer_lines`` lines are waiting, every ``flush_interval``
    seconds, and when logging shuts down.

    Writing each line at once costs a ``write`` system call per request (uvicorn's
    handler does that); many lines in one call cost a fraction of it. Lines wait in a
    deque, whose ``append`` and ``popleft`` need no lock: the request path only appends.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        buffer_lines: int = 256,
        flush_interval: float = 1.0,
    ) -> None:
        super().__init__(stream if stream is not None else sys.stdout)
        #: ~25 KiB of lines at most, ~100 writes a second at 25,000 requests a second.
        self.buffer_lines = max(1, buffer_lines)
        self.flush_interval = flush_interval
        self.queue: collections.deque[str] = collections.deque()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        _HANDLERS.add(self)
        _exit_on_sigterm()
        self._start_flusher()

    def format(self, record: logging.LogRecord) -> str:
        if self.formatter is None:
            return record.getMessage()  # the access line is complete as it is
        return super().format(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.queue.append(self.format(record))
            if len(self.queue) >= self.buffer_lines:
                self.flush()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        queue = self.queue
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            if queue:
                lines = [queue.popleft() for _ in range(len(queue))]
                self._write("\n".join(lines) + "\n")
            if self.stream is not None and hasattr(self.stream, "flush"):
                self.stream.flush()

    def _write(self, text: str) -> None:
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # StringIO and the like
            self.stream.write(text)
            return
        # Straight to the descriptor, in chunks of whole lines of at most PIPE_BUF bytes:
        # a pipe writes those atomically, so the lines of several workers sharing
        # stdout never mix mid-line (a buffered stream would cut them anywhere).
        self.stream.flush()
        data = text.encode("utf-8", "backslashreplace")
        view = memoryview(data)
        start, end = 0, len(data)
        while start < end:
            stop = end
            if end - start > PIPE_BUF:
                cut = data.rfind(b"\n", start, start + PIPE_BUF)
                if cut < start:  # one line longer than PIPE_BUF: it goes alone
                    cut = data.find(b"\n", start + PIPE_BUF)
                stop = cut + 1 if cut >= 0 else end
            while start < stop:
                start += os.write(fd, view[start:stop])

    def close(self) -> None:
        self._wake.set()
        try:
            self.flush()
        finally:
            super().close()

    def _start_flusher(self) -> None:
        if self.flush_interval > 0:
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
        # The flusher thread does not survive a fork (gunicorn forks its workers), and
        # the parent writes what it had queued.
        self.queue.clear()
        self._wake = threading.Event()
        self._start_flusher()


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
