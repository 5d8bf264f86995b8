"""A minimal HTTP/1.1 client connection for the migration tools' S3 client.

Why not ``http.client``: it sends the headers and a small body in two writes, adds
each header through a method call, and parses every response's headers with the
``email`` package; under cProfile that was most of the uploader's CPU on 4 KiB files
(see bench/results/upload.md for the rate the uploader reaches without it).
This speaks only what S3 answers: a status line, headers, and a body framed by
Content-Length or chunked encoding. One request at a time per connection.
"""

from __future__ import annotations

import base64
import io
import select
import socket
import ssl
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import unquote, urlsplit

from ..exceptions import ProtocolError, ProxyError
from ..network import redact

__all__ = ["Connection", "ProtocolError", "ProxyError", "Response"]

# Bodies up to this size go out in the same write as the headers: one system call, and
# no Nagle delay between a header segment and a tiny body segment.
INLINE_BODY = 64 * 1024
# Limits on what a server may send before we give up on it.
MAX_LINE = 64 * 1024
MAX_HEADERS = 200
# Bodies from this size on are sent after the server's "100 Continue": a refusal (bad
# signature, wrong region, missing bucket) then costs one round trip, not a whole part.
# botocore's threshold is the same.
EXPECT_CONTINUE = 1 << 20
# Seconds to wait for the "100 Continue" before sending the body anyway: servers and
# proxies that ignore Expect (HTTP/1.0 ones) never send it. botocore waits as long.
CONTINUE_WAIT = 1.0
_HEX = frozenset(b"0123456789abcdefABCDEF")


class _Readable(Protocol):
    length: int

    def read(self, size: int = -1) -> bytes: ...


class Response:
    """A status, lower-cased headers, and a body read with :meth:`read`."""

    def __init__(
        self, status: int, headers: dict[str, str], reader: io.BufferedReader, head: bool
    ) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        no_body = head or status in (204, 304) or 100 <= status < 200
        length = headers.get("content-length")
        # Checked even when there is no body: HEAD's Content-Length is the object's size.
        if length is not None and not (length.isascii() and length.isdigit()):
            raise ProtocolError(f"bad Content-Length {length[:40]!r}")
        self._remaining = 0 if no_body else int(length) if length is not None else -1
        self._chunk_left = 0
        self._done = no_body or (self._remaining == 0 and not self._chunked)
        #: The connection cannot serve another request after this answer.
        self.will_close = headers.get("connection", "").lower() == "close" or (
            not self._chunked and self._remaining < 0 and not no_body
        )

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the body (all of it with -1); b"" at its end."""
        if self._done:
            return b""
        if self._chunked:
            return self._read_chunked(size)
        reader = self._reader
        if self._remaining < 0:  # delimited by the connection's close
            data = reader.read() if size < 0 else reader.read(size)
            self._done = not data
            return data
        want = self._remaining if size < 0 else min(size, self._remaining)
        data = reader.read(want)
        if len(data) < want and (size < 0 or not data):
            raise ProtocolError("connection closed mid-body")
        self._remaining -= len(data)
        self._done = self._remaining == 0
        return data

    def _read_chunked(self, size: int) -> bytes:
        reader = self._reader
        parts: list[bytes] = []
        while size < 0 or sum(map(len, parts)) < size:
            if self._chunk_left == 0:
                line = reader.readline(MAX_LINE)
                if not line:
                    raise ProtocolError("connection closed mid-chunk")
                size_field = line.split(b";", 1)[0].strip()
                # int(x, 16) alone would take "-1", "+f" and "1_0".
                if not size_field or not _HEX.issuperset(size_field):
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}")
                self._chunk_left = int(size_field, 16)
                if self._chunk_left == 0:
                    while reader.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._done = True
                    break
            want = self._chunk_left if size < 0 else min(self._chunk_left, size)
            data = reader.read(want)
            if len(data) < want:
                raise ProtocolError("connection closed mid-chunk")
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                reader.readline(MAX_LINE)  # the CRLF after the chunk
            parts.append(data)
            if size >= 0:
                break
        return b"".join(parts)


class Connection:
    """One keep-alive connection to ``host`` (``name:port``), TLS when ``tls``; opened
    on the first request, and again on the next one after :meth:`close`.

    :param context: the TLS context (one per client, shared by its connections).
    :param proxy: an ``http://`` proxy URL: https is tunnelled through CONNECT, http is
        sent in absolute form.
    """

    def __init__(
        self,
        host: str,
        *,
        tls: bool,
        timeout: float,
        context: ssl.SSLContext | None = None,
        proxy: str | None = None,
    ) -> None:
        self.host = host
        self.tls = tls
        self.timeout = timeout
        self.context = context
        self.proxy = proxy
        self._proxy_auth: str | None = None
        if proxy is not None:
            parts = urlsplit(proxy)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"expected an http:// proxy URL (got {redact(proxy)!r})")
            if parts.username is not None:
                pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                self._proxy_auth = "Basic " + base64.b64encode(pair.encode()).decode()
        self._sock: socket.socket | None = None
        self._reader: io.BufferedReader | None = None

    def _connect(self) -> socket.socket:
        name, _, port = self.host.rpartition(":")
        if not name or not port.isdigit():
            name, port = self.host, "443" if self.tls else "80"
        if self.proxy is None:
            sock = socket.create_connection((name.strip("[]"), int(port)), self.timeout)
        else:
            sock = self._open_proxy(f"{name}:{port}")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            context = self.context or ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=name.strip("[]"))
            except BaseException:
                sock.close()
                raise
        self._sock = sock
        self._reader = sock.makefile("rb")
        return sock

    def _open_proxy(self, authority: str) -> socket.socket:
        assert self.proxy is not None
        parts = urlsplit(self.proxy)
        shown = redact(self.proxy)
        try:
            sock = socket.create_connection((parts.hostname or "", parts.port or 80), self.timeout)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ProxyError(f"cannot reach the proxy {shown}: {reason}") from None
        if not self.tls:
            return sock  # plain http: each request names its URL (absolute form)
        auth = f"Proxy-Authorization: {self._proxy_auth}\r\n" if self._proxy_auth else ""
        try:
            sock.sendall(
                f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode()
            )
            # The proxy sends nothing after its answer until the TLS server speaks, so
            # this reader cannot swallow bytes of the tunnel.
            with sock.makefile("rb") as reader:
                line = reader.readline(MAX_LINE)
                for _ in range(MAX_HEADERS):
                    if reader.readline(MAX_LINE) in (b"\r\n", b"\n", b""):
                        break
        except OSError as exc:
            sock.close()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ProxyError(f"the proxy {shown} dropped CONNECT {authority}: {reason}") from None
        status = line.decode("latin-1").strip()
        if status.split(" ", 2)[1:2] != ["200"]:
            sock.close()
            answer = status[:100] or "no answer"
            raise ProxyError(f"the proxy {shown} refused CONNECT {authority}: {answer}")
        return sock

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | _Readable | None,
        block: int,
    ) -> Response:
        """Send one request and read the answer's status and headers.

        A body of :data:`EXPECT_CONTINUE` bytes or more waits for the server's
        ``100 Continue``; when a final answer comes instead, the body is never sent and
        the answer says the connection closes.
        """
        sock = self._sock or self._connect()
        if self.proxy is not None and not self.tls:
            target = f"http://{self.host}{target}"
        lines = [f"{method} {target} HTTP/1.1\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if self.proxy is not None and not self.tls and self._proxy_auth:
            lines.append(f"Proxy-Authorization: {self._proxy_auth}\r\n")
        size = 0 if body is None else len(body) if isinstance(body, bytes) else body.length
        expect = size >= EXPECT_CONTINUE
        if expect:
            lines.append("Expect: 100-continue\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        if isinstance(body, bytes) and len(body) <= INLINE_BODY:
            sock.sendall(head + body)
        else:
            sock.sendall(head)
            if expect and self._answered(sock):
                status, headers_in, version = self._read_head()
                if status != 100:  # refused before the body: it stays unsent
                    response = self._make(status, headers_in, version, method == "HEAD")
                    response.will_close = True
                    return response
            if isinstance(body, bytes):
                sock.sendall(body)
            elif body is not None:
                while data := body.read(block):
                    sock.sendall(data)
        return self._response(method == "HEAD")

    def _answered(self, sock: socket.socket) -> bool:
        """True when the server has begun an answer within :data:`CONTINUE_WAIT`."""
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        readable, _, _ = select.select([sock], [], [], CONTINUE_WAIT)
        return bool(readable)

    def _read_head(self) -> tuple[int, dict[str, str], str]:
        reader = self._reader
        assert reader is not None
        line = reader.readline(MAX_LINE)
        if not line:
            raise ProtocolError("the server closed the connection")
        version, _, rest = line.decode("latin-1").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
            raise ProtocolError(f"bad status line {line[:100]!r}")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            field = reader.readline(MAX_LINE)
            if field in (b"\r\n", b"\n", b""):
                break
            name, _, value = field.decode("latin-1").partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        else:
            raise ProtocolError("too many headers")
        return int(code), headers, version

    def _make(self, status: int, headers: dict[str, str], version: str, head: bool) -> Response:
        if version == "HTTP/1.0" and "keep-alive" not in headers.get("connection", ""):
            headers["connection"] = "close"
        assert self._reader is not None
        return Response(status, headers, self._reader, head)

    def _response(self, head: bool) -> Response:
        while True:  # past interim answers (a 100 Continue) to the real one
            status, headers, version = self._read_head()
            if status != 100:
                return self._make(status, headers, version, head)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
