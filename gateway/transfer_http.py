"""A minimal HTTP/1.1 client connection for the migration tools' S3 client.

Why not ``http.client``: it sends the headers and a small body in two writes, adds
each header through a method call, and parses every response's headers with the
``email`` package; together about 300 us of CPU per request, which for 4 KiB files is
most of the uploader's CPU (measured with cProfile; bench/upload.py shows the effect).
This speaks only what S3 answers: a status line, headers, and a body framed by
Content-Length or chunked encoding. One request at a time per connection.
"""

from __future__ import annotations

import io
import socket
import ssl
from collections.abc import Mapping
from typing import Protocol

__all__ = ["Connection", "ProtocolError", "Response"]

# Bodies up to this size go out in the same write as the headers: one system call, and
# no Nagle delay between a header segment and a tiny body segment.
INLINE_BODY = 64 * 1024
# Limits on what a server may send before we give up on it.
MAX_LINE = 64 * 1024
MAX_HEADERS = 200


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.1 we understand, or it closed the connection
    mid-answer: the connection is dropped and the request tried again."""


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
                try:
                    self._chunk_left = int(line.split(b";", 1)[0].strip() or b"0", 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
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
    on the first request, and again on the next one after :meth:`close`."""

    def __init__(self, host: str, *, tls: bool, timeout: float) -> None:
        self.host = host
        self.tls = tls
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: io.BufferedReader | None = None

    def _connect(self) -> socket.socket:
        name, _, port = self.host.rpartition(":")
        if not name or not port.isdigit():
            name, port = self.host, "443" if self.tls else "80"
        sock = socket.create_connection((name.strip("[]"), int(port)), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=name)
        self._sock = sock
        self._reader = sock.makefile("rb")
        return sock

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | _Readable | None,
        block: int,
    ) -> Response:
        """Send one request and read the answer's status and headers."""
        sock = self._sock or self._connect()
        lines = [f"{method} {target} HTTP/1.1\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        if isinstance(body, bytes) and len(body) <= INLINE_BODY:
            sock.sendall(head + body)
        else:
            sock.sendall(head)
            if isinstance(body, bytes):
                sock.sendall(body)
            elif body is not None:
                while data := body.read(block):
                    sock.sendall(data)
        return self._response(method == "HEAD")

    def _response(self, head: bool) -> Response:
        reader = self._reader
        assert reader is not None
        while True:
            line = reader.readline(MAX_LINE)
            if not line:
                raise ProtocolError("the server closed the connection")
            version, _, rest = line.decode("latin-1").partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
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
            if int(code) != 100:  # an interim answer: the real one follows
                if version == "HTTP/1.0" and "keep-alive" not in headers.get("connection", ""):
                    headers["connection"] = "close"
                return Response(int(code), headers, reader, head)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
