"""Turn a request path into a safe relative media path, and open it under a root.

A relative path is what the signature covers, what the local lookup uses and what
becomes the S3 key under ``AWS_LOCATION``: one value, so authorization and lookup
always agree on which file is meant.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
from urllib.parse import unquote_to_bytes

from .exceptions import BadRequest, NotFound, URITooLong

__all__ = [
    "UPLOAD_TEMP_PREFIX",
    "decoded_relative_path",
    "is_temporary_name",
    "open_regular_file",
    "relative_path",
    "validate_relpath",
]

#: A direct upload's file under MEDIA_ROOT until it is complete: this prefix and 16 hex
#: digits. Never a name the key chooser makes (those start with 20 hex digits).
UPLOAD_TEMP_PREFIX = ".upload-"
_TEMP_PREFIX_BYTES = UPLOAD_TEMP_PREFIX.encode()
_TEMP_HEX = frozenset(b"0123456789abcdef")


def is_temporary_name(name: bytes) -> bool:
    """Whether the file name ``name`` is a direct upload's temporary file, which a crash
    may leave behind: never media to migrate, list or serve."""
    hexpart = name[len(_TEMP_PREFIX_BYTES) :]
    return (
        name.startswith(_TEMP_PREFIX_BYTES) and len(hexpart) == 16 and _TEMP_HEX.issuperset(hexpart)
    )


# PATH_MAX on Linux. A longer path cannot name a file, so it is refused before any
# work is done (tests/README.md, item 12).
MAX_PATH_BYTES = 4096
# NAME_MAX on Linux and the usual limit of other file systems.
MAX_SEGMENT_BYTES = 255
# Below S3's 1,024-byte key limit there is no deep tree worth more segments; bounding
# them keeps hostile paths cheap.
MAX_SEGMENTS = 256

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOCTTY", 0)
    # A FIFO or device under the root must not block the open.
    | getattr(os, "O_NONBLOCK", 0)
)
# Paths up to this long are remembered once validated: 4,096 of them, held as bytes and
# as text, 9 MiB at most (tracemalloc, tests/serving/test_attacks.py).
REMEMBERED_PATH_BYTES = 1024
_BAD_SEGMENTS = frozenset({"", ".", ".."})
_PROC_FD = "/proc/self/fd" if sys.platform.startswith("linux") else None


def relative_path(raw_path: bytes, prefix: str) -> str:
    """Decode a request's percent-encoded ``raw_path`` and return the part after ``prefix``.

    The path is percent-decoded exactly once: ``%252e`` names a file called ``%2e``,
    never ``.``. Raises :class:`NotFound`, :class:`BadRequest` or :class:`URITooLong`.
    """
    if len(raw_path) <= REMEMBERED_PATH_BYTES:
        # A pure function of its arguments, and the same paths come again and again:
        # remembered, it costs a lookup instead of a decode and a validation (a tenth
        # of a small file's in-process cost). Refusals raise and are never kept.
        return _remembered_relative_path(raw_path, prefix)
    return _relative_path(raw_path, prefix)


def _relative_path(raw_path: bytes, prefix: str) -> str:
    if len(raw_path) > 3 * MAX_PATH_BYTES:
        raise URITooLong()
    try:
        # Most paths have no escapes, and unquote_to_bytes is Python code.
        path = (unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path).decode("utf-8")
    except UnicodeDecodeError:
        # S3 keys are UTF-8, so a name that is not cannot be served in either mode.
        raise NotFound() from None
    return decoded_relative_path(path, prefix)


_remembered_relative_path = functools.lru_cache(maxsize=4096)(_relative_path)


def decoded_relative_path(path: str, prefix: str) -> str:
    """Like :func:`relative_path` for a path that is already percent-decoded (an ASGI
    scope without ``raw_path``, a WSGI ``PATH_INFO``): it is never decoded again."""
    if not path.startswith(prefix):
        raise NotFound()
    return validate_relpath(path[len(prefix) :])


def validate_relpath(relpath: str) -> str:
    """Return ``relpath`` when it is a safe, normalised relative file path; else raise.

    Refused: NUL (400); empty, absolute, ``.``/``..``/empty segments, backslashes and
    directory URLs ending in ``/`` (404); paths longer than PATH_MAX (414).
    """
    if "\x00" in relpath:
        raise BadRequest("Bad path")
    encoded_length = len(relpath.encode("utf-8", "surrogatepass"))
    if encoded_length > MAX_PATH_BYTES:
        raise URITooLong()
    if not relpath or relpath.startswith("/") or relpath.endswith("/") or "\\" in relpath:
        raise NotFound()
    segments = relpath.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise URITooLong()
    if not _BAD_SEGMENTS.isdisjoint(segments):
        raise NotFound()
    if encoded_length > MAX_SEGMENT_BYTES and any(
        len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for segment in segments
    ):
        raise NotFound()
    return relpath


def open_regular_file(root: str, relpath: str) -> tuple[int, os.stat_result]:
    """Open ``relpath`` under the real path ``root`` and return ``(fd, fstat)``.

    Symlinks are followed only while the file they reach lies under ``root``. The check
    is made on the opened descriptor, so a symlink swapped in between a check and the
    open cannot make us serve a file outside the root (tests/README.md, item 7).

    Cost: one open, one fstat and one readlink, all on cached metadata; measured at a
    few microseconds, so callers may run it on the event loop.
    """
    try:
        # root is a real path and relpath validated: no os.path.join needed.
        fd = os.open(f"{root}/{relpath}", _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise  # out of descriptors: a server fault, not a missing file
        raise NotFound() from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _inside(root, relpath, fd, st):
            raise NotFound()
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _inside(root: str, relpath: str, fd: int, st: os.stat_result) -> bool:
    if _PROC_FD is not None:
        try:
            real = os.readlink(f"{_PROC_FD}/{fd}")
        except OSError:
            return False
    else:  # pragma: no cover - exercised on non-Linux systems only
        real = os.path.realpath(os.path.join(root, relpath))
        try:
            again = os.stat(real)
        except OSError:
            return False
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
            return False
    return real.startswith(root + os.sep)
