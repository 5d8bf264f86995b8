"""Local disk delivery: open a file under the root, then send it as an ASGI response.

Why not Starlette's FileResponse: it takes a path and opens it again, which reopens
the door to a symlink swapped in after our check (tests/README.md, item 7); and it pays a
thread hop for the stat, the open and every read. Measured with bench/local.py on
4 KiB files, StaticFiles reaches 0.03x of a bare ASGI 302 where the target is 0.35x.
We serve from the descriptor that passed the check, read small files in one inline
``pread`` (page-cache reads of <= 64 KiB cost a few microseconds, less than a thread
hop), and move larger reads to a worker thread. tests/serving/test_local.py checks that the
ranges and headers agree with FileResponse's.

Small files are also kept in memory (:class:`LocalFiles`), like nginx's
open_file_cache but checked on every request: one ``stat`` of the path must still
show the same inode, size, mtime and ctime, or the file is opened and checked again.
Measured on 4 KiB files under load (bench/results/local.md, the rows with and without
GATEWAY_FILE_CACHE_MB): the stat costs a third of open, fstat, readlink, pread and close.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

import anyio
from starlette.types import Message, Receive, Send

from ..exceptions import FileChanged
from ..http import Plan
from ..paths import open_regular_file

__all__ = ["SMALL_FILE", "LocalFiles", "MediaFile", "relay", "send_file", "whole_body"]

logger = logging.getLogger("gateway.local")

# Bodies up to this size are read on the event loop in one pread: cheaper than a thread
# hop, and short enough to never stall other requests noticeably (bench/results/local.md).
SMALL_FILE = 64 * 1024
# Read size for larger bodies. Measured on a 512 MiB file (bench/local.py): 256 KiB
# gave 1,360 MB/s, 1 MiB 1,835 MB/s at 2 MiB more RSS; beyond, gains shrink while
# memory per stream grows (1,000 concurrent streams hold 1 GiB at most).
CHUNK_SIZE = 1024 * 1024
# A file changed this recently may be changing still: a read between two writes that
# share a timestamp would be kept, torn, under a stat that keeps matching. Older files
# are kept; a later write gets a later timestamp (git's "racily clean" rule). Two
# seconds also cover file systems with 2 s timestamps (FAT).
SETTLED_SECONDS = 2.0
# Bookkeeping per kept file besides its body and name (stat result, tuples, list node:
# ~730 bytes measured), counted against the budget so many tiny files cannot exceed it.
ENTRY_OVERHEAD = 1024
# Seconds a kept file is served on a stat alone before its path is checked again.
RECHECK_SECONDS = 1.0


class MediaFile(NamedTuple):
    """A file opened under the root: its status, and either its whole ``body`` (small
    files) or an open descriptor ``fd`` that :func:`send_file` closes."""

    st: os.stat_result
    fd: int = -1
    body: bytes | None = None


class _Kept(NamedTuple):
    st: os.stat_result
    body: bytes
    #: When the path was last opened and checked to lead under the root.
    checked: float
    #: What the entry counts against the budget.
    cost: int


class LocalFiles:
    """Open files under ``root`` (a real path), keeping small ones in memory.

    What is served from memory was read through a descriptor that passed
    :func:`open_regular_file`'s check. On each request a ``stat`` of the path must show
    the same inode, size, mtime and ctime: a file deleted, rewritten, re-linked,
    replaced or re-permissioned (all change one of them), or a symlink swapped in for
    it (another inode), is opened and checked again at once (tests/README.md, item 7). A
    ``stat`` cannot tell whether a directory on the path was moved out of the root and
    a symlink left in its place (the file is unchanged), so every ``RECHECK_SECONDS``
    the path is opened and checked again as on a miss (without reading it): such a
    file stops being served within that time, and never is one that was not under the
    root when it was read.

    :param cache_size: bytes of small files to keep; 0 keeps none and serves every
        file from its descriptor.
    :param clock: the current Unix time, for the settled-file rule and the recheck;
        injected for tests.
    """

    def __init__(
        self, root: str, *, cache_size: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = root
        self.cache_size = cache_size
        self.clock = clock
        # Files up to this size may be kept; none when nothing may be kept.
        self._max_file = min(SMALL_FILE, cache_size - ENTRY_OVERHEAD)
        self._kept: collections.OrderedDict[str, _Kept] = collections.OrderedDict()
        self._kept_bytes = 0
        #: Requests answered from memory so far (for the metrics).
        self.hits = 0

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def kept_bytes(self) -> int:
        """What the kept files count against ``cache_size``."""
        return self._kept_bytes

    def open(self, relpath: str) -> MediaFile:
        """The file at ``relpath``; raises :class:`NotFound` or :class:`FileChanged`."""
        kept = self._kept.pop(relpath, None)  # put back below while it is still good
        if kept is not None:
            self._kept_bytes -= kept.cost
            now = self.clock()
            if now - kept.checked < RECHECK_SECONDS:
                if self._unchanged(relpath, kept.st):
                    return self._serve_kept(relpath, kept)
            else:
                # Time to check the path again as on a miss, without reading the file.
                fd, st = open_regular_file(self.root, relpath)
                if not _same_file(st, kept.st):
                    return self._read(relpath, fd, st)
                os.close(fd)
                return self._serve_kept(relpath, kept._replace(checked=now))
        return self._read(relpath, *open_regular_file(self.root, relpath))

    def kept(self, relpath: str) -> tuple[os.stat_result, bytes] | None:
        """The status and body kept for ``relpath`` while :meth:`open` would answer
        from them now (the same ``stat``, counted as a hit); else None, having read
        nothing, and :meth:`open` decides (and checks the path again when it is due)."""
        kept = self._kept.get(relpath)
        if kept is None or self.clock() - kept.checked >= RECHECK_SECONDS:
            return None
        if not self._unchanged(relpath, kept.st):
            return None
        self._kept.move_to_end(relpath)
        self.hits += 1
        return kept.st, kept.body

    def _unchanged(self, relpath: str, st: os.stat_result) -> bool:
        try:
            return _same_file(os.stat(f"{self.root}/{relpath}"), st)
        except OSError:
            return False

    def _serve_kept(self, relpath: str, kept: _Kept) -> MediaFile:
        self._kept[relpath] = kept  # back in, as the most recently used
        self._kept_bytes += kept.cost
        self.hits += 1
        return MediaFile(kept.st, body=kept.body)

    def _read(self, relpath: str, fd: int, st: os.stat_result) -> MediaFile:
        """Keep the opened file when it is small and settled; else hand out ``fd``."""
        now = self.clock()
        if st.st_size > self._max_file or st.st_ctime >= now - SETTLED_SECONDS:
            return MediaFile(st, fd)
        try:
            body = os.pread(fd, st.st_size, 0)
        finally:
            os.close(fd)
        if len(body) != st.st_size:
            raise FileChanged()
        cost = len(body) + len(relpath) + ENTRY_OVERHEAD
        self._kept[relpath] = _Kept(st, body, now, cost)
        self._kept_bytes += cost
        while self._kept_bytes > self.cache_size:
            _, oldest = self._kept.popitem(last=False)
            self._kept_bytes -= oldest.cost
        return MediaFile(st, body=body)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    # ctime changes with every write, chmod, link or unlink and cannot be set back.
    return (
        a.st_ino == b.st_ino
        and a.st_dev == b.st_dev
        and a.st_ctime_ns == b.st_ctime_ns
        and a.st_mtime_ns == b.st_mtime_ns
        and a.st_size == b.st_size
    )


async def send_file(
    send: Send,
    receive: Receive,
    *,
    file: MediaFile,
    plan: Plan,
    headers: list[tuple[bytes, bytes]],
    head: bool,
    idle_timeout: float = 60.0,
) -> None:
    """Send ``plan`` for ``file`` and close its descriptor, with ``headers`` (a list of
    its own: ``send_file`` appends to it)."""
    fd = file.fd
    try:
        if plan.status == 304 or head:
            await send(_start(plan, headers))
            await send({"type": "http.response.body", "body": b""})
        elif file.body is not None:
            for message in whole_body(file.body, plan, headers, head=head):
                await send(message)
        elif plan.length <= SMALL_FILE:
            body = os.pread(fd, plan.length, plan.start)
            if len(body) != plan.length:
                raise FileChanged()
            await send(_start(plan, headers))
            await send({"type": "http.response.body", "body": body})
        else:
            await send(_start(plan, headers))
            await _stream(send, receive, fd, plan.start, plan.length, idle_timeout)
    finally:
        if fd >= 0:
            os.close(fd)


def whole_body(
    body: bytes, plan: Plan, headers: list[tuple[bytes, bytes]], *, head: bool
) -> tuple[Message, Message]:
    """The two messages of ``plan`` for a file whose whole ``body`` is in memory."""
    if plan.status == 304 or head:
        body = b""
    elif plan.length != len(body):
        body = body[plan.start : plan.start + plan.length]
    return _start(plan, headers), {"type": "http.response.body", "body": body}


def _start(plan: Plan, headers: list[tuple[bytes, bytes]]) -> Message:
    if plan.status == 304:
        # A 304 describes no body: no type or length (RFC 9110 15.4.5).
        headers = [h for h in headers if h[0] != b"content-type"]
    else:
        headers.append((b"content-length", b"%d" % plan.length))
    if plan.content_range is not None:
        headers.append((b"content-range", plan.content_range.encode("ascii")))
    return {"type": "http.response.start", "status": plan.status, "headers": headers}


async def _stream(
    send: Send, receive: Receive, fd: int, start: int, length: int, idle_timeout: float
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        offset, end = start, start + length
        while offset < end:
            chunk = await anyio.to_thread.run_sync(
                os.pread, fd, min(CHUNK_SIZE, end - offset), offset
            )
            if not chunk:
                # Truncated while streaming: raising aborts the connection, so the
                # client sees a short body, never padding (tests/README.md, item 33).
                raise FileChanged()
            offset += len(chunk)
            yield chunk

    await relay(send, receive, chunks(), idle_timeout)


async def relay(
    send: Send, receive: Receive, chunks: AsyncIterator[bytes], idle_timeout: float
) -> None:
    """Send ``chunks`` as the response body, stopping early when the client leaves or
    takes no bytes for ``idle_timeout`` seconds. Shared by local and proxy delivery."""
    # uvicorn drops sends after a disconnect without raising, so a watcher stops the
    # copy when the client goes away instead of reading the rest of a 5 GB file.
    async with anyio.create_task_group() as tg:

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch_disconnect)
        async for chunk in chunks:
            if not await _send_in_pieces(send, chunk, idle_timeout):
                # Left incomplete on purpose: the server then closes the connection.
                logger.warning(
                    "client took under %d bytes in %s s: stream stopped", PIECE, idle_timeout
                )
                break
        else:
            await send({"type": "http.response.body", "body": b""})
        tg.cancel_scope.cancel()


# The timeout bounds the time without progress, not the time per chunk. A send waits
# until the client has taken what was sent before, so with 1 MiB sends a phone at
# 60 KB/s waited 17 s per send and a steady reader was dropped as idle. Sends of
# PIECE bytes make the timeout mean "took less than 256 KiB in that time" (4.4 KB/s
# at the default 60 s), while a 1 B/s reader is still dropped (tests/README.md, item 54).
# 256 KiB, not smaller: 64 KiB sends cost about 10% more server CPU for a 512 MiB file
# than 1 MiB sends, 256 KiB within the noise (measured with uvicorn and curl).
PIECE = 256 * 1024


async def _send_in_pieces(send: Send, chunk: bytes, idle_timeout: float) -> bool:
    """Send ``chunk`` in pieces of at most PIECE bytes; False when the client stalled."""
    for offset in range(0, len(chunk), PIECE):
        piece = chunk if len(chunk) <= PIECE else chunk[offset : offset + PIECE]
        with anyio.move_on_after(idle_timeout) as idle:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        if idle.cancelled_caught:
            return False
    return True
