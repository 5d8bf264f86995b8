"""Bounded load against a gateway in its own process: RELIABILITY items 53 and 54.

The server runs in a subprocess so that its memory and descriptors are its own; every
loop here is bounded in count and time, on loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import URLSigner
from tests.conftest import SECRET, free_port
from tests.helpers import stop, wait_until_serving

BIG = 5 * 1024**3  # sparse: takes no disk, reads as zeros


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def server(media_root: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    with open(media_root / "big.bin", "wb") as f:
        f.truncate(BIG)
    (media_root / "stream.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_SECRET_KEY": SECRET,
        "MEDIA_ROOT": str(media_root),
        "GATEWAY_SEND_TIMEOUT": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_serving(f"http://127.0.0.1:{port}/media/x", proc)
    yield proc, port
    stop(proc)


async def ranged_get(port: int, target: bytes, start: int, length: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Range: bytes=%d-%d\r\n\r\n" % (start, start + length - 1)
        )
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


def test_thousand_concurrent_ranged_gets(server: tuple[subprocess.Popen[bytes], int]) -> None:
    """Item 53: 1,000 concurrent ranged GETs on a 5 GB file: all 206, RSS bounded, and
    the server's descriptors back to their baseline afterwards."""
    proc, port = server
    target = URLSigner(secret_keys=[SECRET]).sign_url("big.bin").encode()
    base_fds, base_rss = fds(proc.pid), rss_kib(proc.pid)

    async def main() -> list[bytes]:
        rng = random.Random(7)
        jobs = [
            ranged_get(port, target, rng.randrange(0, BIG - 2**20), 256 * 1024) for _ in range(1000)
        ]
        return await asyncio.wait_for(asyncio.gather(*jobs), timeout=120)

    replies = asyncio.run(main())
    assert all(r.startswith(b"HTTP/1.1 206") for r in replies)
    assert all(r.endswith(b"\0" * 1024) for r in replies)
    growth_mib = (rss_kib(proc.pid) - base_rss) / 1024
    assert growth_mib < 300, growth_mib
    deadline = time.monotonic() + 10
    while fds(proc.pid) > base_fds + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fds(proc.pid) <= base_fds + 2


def open_files(pid: int, name: str) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed while we looked
            count += os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name)
    return count


def test_slow_reader_is_dropped(server: tuple[subprocess.Popen[bytes], int]) -> None:
    """Item 54: a reader that takes (almost) nothing gets no unbounded buffering: the
    send waits on flow control, then the idle timeout (2 s here) stops the stream and
    closes the file. uvicorn then closes the socket gracefully, so the at most one
    chunk already handed to it waits for the client (bounded memory, no file held)."""
    proc, port = server
    target = URLSigner(secret_keys=[SECRET]).sign_url("stream.bin").encode()
    base_rss = rss_kib(proc.pid)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    try:
        started = time.monotonic()
        assert sock.recv(1)
        assert open_files(proc.pid, "stream.bin") == 1
        while open_files(proc.pid, "stream.bin") and time.monotonic() - started < 12:
            sock.recv(1)  # one byte a tick: a 1 B/s reader
            time.sleep(0.2)
        assert open_files(proc.pid, "stream.bin") == 0, "the idle timeout never fired"
        assert time.monotonic() - started < 12
        assert (rss_kib(proc.pid) - base_rss) / 1024 < 16
    finally:
        sock.close()
