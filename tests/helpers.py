"""Small clients for tests: an in-process ASGI call and a raw HTTP/1.1 request that
sends the request target byte for byte (httpx would normalise ``..`` segments)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from typing import Any
from urllib.parse import urlsplit


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    header_list: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def http_scope(
    target: bytes | str,
    *,
    method: str = "GET",
    headers: dict[str, str] | list[tuple[bytes, bytes]] | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    """An HTTP scope as uvicorn builds it for a raw request target. ``headers`` as a list
    is sent as it is: repeats, and names in any case. ``path`` replaces the decoded
    path, as a middleware in front that rewrote it (but not the raw path) would."""
    if isinstance(target, str):
        target = target.encode("utf-8")
    raw_path, _, query = target.partition(b"?")
    from urllib.parse import unquote

    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("latin-1"), errors="replace") if path is None else path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers
        if isinstance(headers, list)
        else [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def call(
    app: Any,
    target: bytes | str,
    *,
    method: str = "GET",
    headers: dict[str, str] | list[tuple[bytes, bytes]] | None = None,
    path: str | None = None,
) -> Reply:
    """Run one HTTP request through an ASGI app in-process (:func:`http_scope`)."""
    scope = http_scope(target, method=method, headers=headers, path=path)
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    start = messages[0]
    header_list = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return Reply(start["status"], dict(header_list), body, header_list)


def raw_request(
    base_url: str, target: bytes, *, method: bytes = b"GET", headers: bytes = b""
) -> Reply:
    """Send one request with an exact request target over a socket; read the reply."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            method
            + b" "
            + target
            + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            + headers
            + b"\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    header_list: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, value = line.split(": ", 1)
        header_list.append((name, value))
    return Reply(status, {k.lower(): v for k, v in header_list}, body, header_list)


def wait_until_serving(url: str, proc: Any, *, seconds: float = 20) -> None:
    """Poll ``url`` until a server started as ``proc`` answers; fail if it dies first."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"server did not start (exit code {proc.poll()})") from None
            time.sleep(0.1)


def stop(proc: Any, *, sig: int | None = None, seconds: float = 10) -> None:
    """Stop a server process (SIGINT by default), killing it if it lingers."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGINT if sig is None else sig)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def settle(files: Any, *, later: float = 0.0) -> None:
    """Make every file of a LocalFiles count as settled (changed long ago), so small
    files are kept from their first request; ``later`` moves its clock further on."""
    files.clock = lambda: time.time() + 60 + later
