"""A direct upload's body, written to disk under the media root.

The body goes to a temporary file in the directory of its final name, chunk by chunk
as it arrives (constant memory for any size), and stops at the declared size: one byte
more and the upload is refused. Only a complete body is linked into place, and
``link`` never replaces a file, so no partial file is ever visible and a replayed
upload URL cannot overwrite the first upload. The directory is opened once and checked
to lie under the root, and every later call works relative to that descriptor: a
symlink swapped in afterwards cannot move the write elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import AsyncIterator

import anyio
from starlette.types import Receive

from ..exceptions import BadRequest, Forbidden, PayloadTooLarge, RequestTimeout
from ..paths import UPLOAD_TEMP_PREFIX

__all__ = ["Incoming", "body_pieces", "receive_to_file"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# Temporary files start with this and 16 hex digits (paths.is_temporary_name), which
# the migration's walk skips: a crash may leave one behind.
TEMP_PREFIX = UPLOAD_TEMP_PREFIX


class Incoming:
    """A complete upload in its temporary file, not yet in place: :meth:`publish` links
    it to its name, :meth:`discard` removes it. Used as a context manager, whatever
    was not published is removed."""

    def __init__(self, dir_fd: int, temp: str, name: str, size: int) -> None:
        self.dir_fd = dir_fd
        self.temp = temp
        self.name = name
        self.size = size

    def open_for_reading(self) -> int:
        return os.open(self.temp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0), dir_fd=self.dir_fd)

    def publish(self) -> None:
        """Give the file its name; :class:`Forbidden` when one is there already."""
        try:
            os.link(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except FileExistsError:
            raise Forbidden("Upload already done") from None

    def unpublish(self) -> None:
        """Take the published name away again (its upload failed elsewhere)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name, dir_fd=self.dir_fd)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp, dir_fd=self.dir_fd)

    def __enter__(self) -> Incoming:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
        os.close(self.dir_fd)


async def receive_to_file(
    receive: Receive, *, root: str, relpath: str, size: int, idle_timeout: float
) -> Incoming:
    """Read the request body into a temporary file beside ``root/relpath``; return it
    complete. Raises :class:`PayloadTooLarge` past ``size`` bytes, :class:`BadRequest`
    when the body ends short, :class:`RequestTimeout` when no byte came for
    ``idle_timeout`` seconds; the temporary file is gone by then."""
    directory, _, name = relpath.rpartition("/")
    dir_fd = await anyio.to_thread.run_sync(_open_directory, root, directory)
    temp = f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    incoming = Incoming(dir_fd, temp, name, size)
    try:
        fd = os.open(temp, _TEMP_FLAGS, 0o644, dir_fd=dir_fd)
        try:
            await _copy(receive, fd, size, idle_timeout)
            await anyio.to_thread.run_sync(os.fsync, fd)
        finally:
            os.close(fd)
    except BaseException:
        incoming.discard()
        os.close(dir_fd)
        raise
    return incoming


async def body_pieces(receive: Receive, idle_timeout: float, what: str) -> AsyncIterator[bytes]:
    """The pieces of a request body as they come: 408 when none comes for
    ``idle_timeout`` seconds, 400 when the client leaves before the end."""
    more = True
    while more:
        with anyio.move_on_after(idle_timeout) as waited:
            message = await receive()
        if waited.cancelled_caught:
            raise RequestTimeout()
        if message["type"] == "http.disconnect":
            raise BadRequest(f"{what} ended early")
        more = message.get("more_body", False)
        yield message.get("body", b"")


async def _copy(receive: Receive, fd: int, size: int, idle_timeout: float) -> None:
    written = 0
    async for chunk in body_pieces(receive, idle_timeout, "Upload body"):
        written += len(chunk)
        if written > size:
            # Refused at the first byte too many, before it reaches the disk.
            raise PayloadTooLarge("Upload body larger than declared")
        if chunk:
            # Off the loop: a write may wait on a slow or full disk.
            await anyio.to_thread.run_sync(_write_all, fd, chunk)
    if written != size:
        raise BadRequest("Upload body shorter than declared")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open_directory(root: str, directory: str) -> int:
    """Open ``root/directory`` (made when missing) and check that it lies under the
    root: a symlinked directory pointing out is refused, not written through."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for segment in directory.split("/") if directory else ():
            with contextlib.suppress(FileExistsError):
                os.mkdir(segment, 0o755, dir_fd=fd)
            try:
                # O_NOFOLLOW: no segment may be a symlink, inside the root or not.
                child = os.open(segment, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Forbidden("Upload directory is not a directory") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd
