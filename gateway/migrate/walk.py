"""The local side of a migration: a streaming walk in S3's order, selection, hashing.

The walk yields files in the order ListObjectsV2 lists keys (UTF-8 bytes), so that
:func:`join` can pair each file with its object by merging two sorted streams: memory
stays flat whatever the size of the tree. Within a directory, names are sorted as
bytes with ``/`` appended to subdirectories, since every key below ``d/`` sorts as
``d/...`` against its siblings (``d-x`` < ``d/a`` < ``d0``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import stat
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

from ..exceptions import MediaGatewayError, SourceChanged
from ..paths import is_temporary_name, validate_relpath

__all__ = [
    "MAX_KEY_BYTES",
    "LocalFile",
    "Problem",
    "Selector",
    "SourceChanged",
    "display",
    "fingerprint",
    "hash_file",
    "join",
    "walk",
]

# S3 refuses longer keys.
MAX_KEY_BYTES = 1024
# Files are read in blocks this big: large enough that hashing releases the GIL for
# most of the time, small enough to keep 64 concurrent readers under 64 MiB.
READ_BLOCK = 1 << 20
# O_NONBLOCK: a FIFO swapped in after the walk must not hang the open.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclasses.dataclass(frozen=True, slots=True)
class LocalFile:
    """A regular file to migrate (a symlink's target when it stays under the root)."""

    relpath: str
    path: str
    size: int
    mtime_ns: int
    #: (size, mtime_ns, ctime_ns, inode): any change to the file's content changes one.
    fingerprint: tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """An entry that cannot be migrated, and why: reported per file, the rest go on."""

    relpath: str
    error: str


class Keyed(Protocol):
    """What :func:`join` needs of a remote entry: its relpath as ``key``."""

    @property
    def key(self) -> str: ...


R = TypeVar("R", bound=Keyed)


def fingerprint(st: os.stat_result) -> tuple[int, int, int, int]:
    # ctime cannot be set from user space, so a content change that restores the
    # mtime (cp -p, rsync -t, touch -d) still shows.
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def display(relpath: str) -> str:
    """``relpath`` printable and JSON-safe: undecodable bytes as ``\\xNN``."""
    return relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Selector:
    """Which relative paths this run handles: ``--include``/``--exclude`` globs
    (``fnmatch`` on the whole path, ``*`` crosses ``/``, as in ``aws s3 sync``) and
    ``--shard I/N`` (a stable hash of the path, the same on every machine)."""

    def __init__(
        self,
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.index, self.count = shard
        if not 0 <= self.index < self.count:
            raise ValueError(f"expected I/N with 0 <= I < N (got {self.index}/{self.count})")

    def __call__(self, relpath: str) -> bool:
        if self.include and not any(fnmatch.fnmatchcase(relpath, p) for p in self.include):
            return False
        if any(fnmatch.fnmatchcase(relpath, p) for p in self.exclude):
            return False
        return self.count == 1 or shard_of(relpath, self.count) == self.index


def shard_of(relpath: str, count: int) -> int:
    digest = hashlib.blake2b(relpath.encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % count


def walk(root: str, select: Selector | None = None) -> Iterator[LocalFile | Problem]:
    """Every regular file under ``root``, in S3 key order, or the problem with an entry.

    Refused with a :class:`Problem`: names that are not UTF-8 or that the gateway could
    not serve, keys over 1,024 bytes, FIFOs and other special files, broken symlinks,
    symlinks to directories or out of the root, unreadable directories.
    """
    root = os.path.realpath(root)
    select = select or Selector()
    broot = os.fsencode(root)
    # A stack of (directory relpath in bytes, its sorted names, next index); names of
    # subdirectories end in b"/".
    stack: list[tuple[bytes, list[bytes], int]] = []
    names, problem = _list(broot)
    if problem:
        raise OSError(f"cannot list {root}: {problem}")
    stack.append((b"", names, 0))
    while stack:
        base, names, index = stack[-1]
        if index == len(names):
            stack.pop()
            continue
        stack[-1] = (base, names, index + 1)
        name = names[index]
        if name.endswith(b"/"):
            rel = base + name
            relpath = os.fsdecode(rel[:-1])
            error = _name_error(relpath)
            if error:
                if select(relpath):
                    yield Problem(relpath, error)
                continue
            children, problem = _list(os.path.join(broot, rel[:-1]))
            if problem:
                if select(relpath):
                    yield Problem(relpath, f"cannot list directory: {problem}")
                continue
            names[index] = b""  # what was visited need not stay in memory
            stack.append((rel, children, 0))
            continue
        if is_temporary_name(name):
            continue  # a direct upload under way, or one a crash cut short
        relpath = os.fsdecode(base + name)
        if not select(relpath):
            continue
        yield _entry(root, relpath)


def _list(path: bytes) -> tuple[list[bytes], str]:
    try:
        with os.scandir(path) as entries:
            names = [e.name + b"/" if e.is_dir(follow_symlinks=False) else e.name for e in entries]
    except OSError as exc:
        return [], exc.strerror or str(exc)
    names.sort()
    return names, ""


def _name_error(relpath: str) -> str:
    try:
        key_length = len(relpath.encode("utf-8"))
    except UnicodeEncodeError:
        return "name is not valid UTF-8, and S3 keys must be"
    if key_length > MAX_KEY_BYTES:
        return f"path is {key_length} bytes; S3 keys are limited to {MAX_KEY_BYTES}"
    try:
        validate_relpath(relpath)
    except MediaGatewayError:
        # From a walk only a backslash can get here: the gateway refuses it in URLs.
        return "name has a backslash, which the gateway cannot serve"
    return ""


def _entry(root: str, relpath: str) -> LocalFile | Problem:
    error = _name_error(relpath)
    if error:
        return Problem(relpath, error)
    path = os.path.join(root, relpath)
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return Problem(relpath, "broken symlink")
            if stat.S_ISDIR(st.st_mode):
                return Problem(relpath, "symlink to a directory: not followed")
            if not os.path.realpath(path).startswith(root + os.sep):
                return Problem(relpath, "symlink leads out of the source directory")
    except FileNotFoundError:
        return Problem(relpath, "vanished before it could be read")
    except OSError as exc:
        return Problem(relpath, f"cannot stat: {exc.strerror or exc}")
    if not stat.S_ISREG(st.st_mode):
        return Problem(relpath, f"not a regular file ({_kind(st.st_mode)})")
    return LocalFile(relpath, path, st.st_size, st.st_mtime_ns, fingerprint(st))


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return "special file"


def hash_file(file: LocalFile, *, part_size: int = 0) -> tuple[str, list[int]]:
    """SHA-256 of ``file`` and, with ``part_size``, the CRC32 of each part.

    Raises :class:`SourceChanged` when the file is not the one the walk saw or changes
    while it is read, ``OSError`` when it cannot be read.
    """
    digest = hashlib.sha256()
    crcs: list[int] = []
    fd = os.open(file.path, OPEN_FLAGS)
    try:
        check_unchanged(file, os.fstat(fd))
        crc, filled = 0, 0
        while block := os.read(fd, READ_BLOCK):
            digest.update(block)
            view = memoryview(block)
            while part_size and view:
                take = view[: part_size - filled]
                crc = zlib.crc32(take, crc)
                filled += len(take)
                view = view[len(take) :]
                if filled == part_size:
                    crcs.append(crc)
                    crc, filled = 0, 0
        if part_size and (filled or not crcs):
            crcs.append(crc)
        check_unchanged(file, os.fstat(fd))
    finally:
        os.close(fd)
    return digest.hexdigest(), crcs


def check_unchanged(file: LocalFile, st: os.stat_result) -> None:
    """Raise :class:`SourceChanged` unless ``st`` is the file as the walk saw it."""
    if not stat.S_ISREG(st.st_mode):
        raise SourceChanged("is no longer a regular file")
    if fingerprint(st) != file.fingerprint:
        raise SourceChanged(
            f"changed while being read (size {file.size} -> {st.st_size}, "
            f"mtime_ns {file.mtime_ns} -> {st.st_mtime_ns})"
        )


def join(
    local: Iterable[LocalFile | Problem], remote: Iterable[R]
) -> Iterator[tuple[LocalFile | Problem | None, R | None]]:
    """Pair each local entry with the remote one of the same relpath, by merging two
    streams sorted by UTF-8 bytes. Either side is None where the other has no match.

    ``remote`` yields objects whose ``key`` attribute is the relpath. Raises
    ``RuntimeError`` when a stream is out of order, which would pair wrongly.
    """
    remote_items = iter(remote)
    last_remote = b""

    def next_remote() -> tuple[R | None, bytes]:
        nonlocal last_remote
        item = next(remote_items, None)
        if item is None:
            return None, b""
        encoded = item.key.encode("utf-8")
        if encoded < last_remote:
            raise RuntimeError(f"the S3 listing is out of order at {item.key!r}")
        last_remote = encoded
        return item, encoded

    other, other_key = next_remote()
    last_local = b""
    for entry in local:
        key = entry.relpath.encode("utf-8", "surrogateescape")
        if key < last_local:
            raise RuntimeError(f"the walk is out of order at {display(entry.relpath)!r}")
        last_local = key
        while other is not None and other_key < key:
            yield None, other
            other, other_key = next_remote()
        if other is not None and other_key == key:
            yield entry, other
            other, other_key = next_remote()
        else:
            yield entry, None
    while other is not None:
        yield None, other
        other, other_key = next_remote()
