"""A small, bounded HTTP/1.1 client for when ``wrk`` or ``curl`` is missing.

Run as a subprocess (``python -m bench._loadgen load URL ...``) so that it can be pinned
to its own core like wrk, and prints one JSON object. Only plain ``http://`` on loopback,
and only responses that carry a Content-Length (every server the benchmarks start does).

``load`` keeps N keep-alive connections busy, one request in flight on each (as wrk does),
until the duration or the request cap runs out. It is written on bare asyncio protocols,
not streams, because a Python client is easily slower than the server it measures; it can
still saturate before a fast server does (the report says which generator ran).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, cast
from urllib.parse import urlsplit

# Bounds every load by count as well as by time: ~10x what a fast server does in 5 s here.
MAX_REQUESTS = 2_000_000
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)")
_READ_SIZE = 1 << 20


class _Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.non_2xx_3xx = 0
        self.socket_errors = 0


class _Connection(asyncio.Protocol):
    """One keep-alive connection that sends the next request when a response is complete."""

    def __init__(self, requests: Iterator[bytes], stats: _Stats, deadline: float) -> None:
        self.requests, self.stats, self.deadline = requests, stats, deadline
        self.buffer = bytearray()
        self.needed: int | None = None  # bytes of the current response, once its head is in
        self.status = 0
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(next(self.requests))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if self.needed is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            match = _CONTENT_LENGTH.search(head)
            if match is None:  # chunked or close-delimited: not something we can pace
                self.stats.socket_errors += 1
                self.transport.close()
                return
            self.status = int(head[9:12])
            self.needed = end + 4 + int(match.group(1))
        if len(self.buffer) < self.needed:
            return
        del self.buffer[: self.needed]
        self.needed = None
        self.stats.requests += 1
        if not 200 <= self.status < 400:
            self.stats.non_2xx_3xx += 1
        loop = asyncio.get_running_loop()
        if loop.time() >= self.deadline or self.stats.requests >= MAX_REQUESTS:
            self.transport.close()
        else:
            self.transport.write(next(self.requests))

    def connection_lost(self, exc: Exception | None) -> None:
        if asyncio.get_running_loop().time() < self.deadline and self.stats.requests < MAX_REQUESTS:
            self.stats.socket_errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


async def _load(
    url: str, connections: int, duration: float, targets: list[str]
) -> dict[str, float]:
    """Load ``url``, or each of ``targets`` in turn on its host when there are some."""
    host, port, target = _split(url)
    # One shared cycle: connections take the next target as wrk's Lua script does.
    requests = itertools.cycle(
        f"GET {t} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("latin-1")
        for t in targets or [target]
    )
    loop = asyncio.get_running_loop()
    # A bug in a callback would otherwise be logged and read as a slow server.
    failures: list[str] = []
    loop.set_exception_handler(lambda _, context: failures.append(str(context)))
    stats = _Stats()
    started = loop.time()
    deadline = started + duration
    protocols: list[_Connection] = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(
            lambda: _Connection(requests, stats, deadline), host, port
        )
        protocols.append(protocol)
    # A server that stops answering must not hang the run: wait at most 10 s past the end.
    await asyncio.wait([p.closed for p in protocols], timeout=duration + 10)
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.close()
    if failures:
        raise RuntimeError(f"load generator failed: {failures[0]}")
    elapsed = loop.time() - started
    return {
        "requests": stats.requests,
        "seconds": elapsed,
        "requests_per_s": stats.requests / elapsed,
        "non_2xx_3xx": stats.non_2xx_3xx,
        "socket_errors": stats.socket_errors,
    }


def download(url: str, timeout: float = 120.0) -> dict[str, float]:
    """GET ``url`` once and read the whole body into a reused buffer; report bytes/s."""
    host, port, target = _split(url)
    buffer = bytearray(_READ_SIZE)
    view = memoryview(buffer)
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the response head")
            head += chunk
        head, _, first = head.partition(b"\r\n\r\n")
        match = _CONTENT_LENGTH.search(head.lower())
        if match is None:
            raise ConnectionError("response without Content-Length")
        remaining = int(match.group(1)) - len(first)
        received = len(first)
        while remaining > 0:
            n = sock.recv_into(view, min(_READ_SIZE, remaining))
            if n == 0:
                break
            received += n
            remaining -= n
    elapsed = time.perf_counter() - started
    return {
        "status": int(head[9:12]),
        "bytes": received,
        "seconds": elapsed,
        "bytes_per_s": received / elapsed,
    }


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only http:// URLs are supported, not {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.hostname, parts.port or 80, target


def _runner() -> Callable[[Coroutine[Any, Any, dict[str, float]]], dict[str, float]]:
    try:  # uvicorn[standard] brings uvloop; it roughly doubles what this client can send
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._loadgen")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="keep-alive load for a fixed duration")
    load.add_argument("url")
    load.add_argument("--connections", type=int, default=32)
    load.add_argument("--duration", type=float, default=5.0)
    load.add_argument("--targets", help="file of request targets, one per line, used in turn")
    get = commands.add_parser("download", help="download one body, report bytes/s")
    get.add_argument("url")
    args = parser.parse_args(argv)
    if args.command == "load":
        targets = []
        if args.targets:
            with open(args.targets, encoding="ascii") as file:
                targets = [line.strip() for line in file if line.strip()]
        result = _runner()(_load(args.url, args.connections, args.duration, targets))
    else:
        result = download(args.url)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
