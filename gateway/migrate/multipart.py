"""Large files in parts: hashed first, then sent part by part from disk on a shared
pool, each part checked against the CRC32 taken while hashing, completed only when every
part matched; and the cleanup of the incomplete uploads a killed run leaves.
"""

from __future__ import annotations

import contextlib
import os
import threading
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from ..exceptions import Cancelled, S3Error, SourceChanged
from .walk import OPEN_FLAGS, LocalFile, Selector, check_unchanged, hash_file
from .wire import S3Wire

__all__ = ["MAX_PARTS", "MIN_PART_SIZE", "Multipart", "cleanup", "part_size_for"]

MiB = 1 << 20
# S3's multipart limits.
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB


def part_size_for(size: int, preferred: int) -> int:
    """The part size for a ``size``-byte file: ``preferred``, or the smallest whole
    number of MiB that fits the file in 10,000 parts."""
    part = max(preferred, MIN_PART_SIZE)
    if math_ceil(size, part) > MAX_PARTS:
        part = math_ceil(math_ceil(size, MAX_PARTS), MiB) * MiB
    return part


def math_ceil(a: int, b: int) -> int:
    return -(-a // b)


class Multipart:
    """Upload large files in parts, ``part_workers`` parts in flight across all of them.

    :param cancelled: set when the run stops; parts not yet sent are not.
    :param hook: called with ("part", relpath) before each part is sent (tests act on it).
    """

    def __init__(
        self,
        wire: S3Wire,
        *,
        part_size: int,
        part_workers: int,
        read_headers: Mapping[str, str],
        cancelled: threading.Event,
        hook: Callable[[str, str], None],
    ) -> None:
        self.wire = wire
        self.part_size = part_size
        self.read_headers = read_headers
        self.cancelled = cancelled
        self.hook = hook
        self._parts = ThreadPoolExecutor(part_workers, thread_name_prefix="part")
        # Hashing is CPU-bound: more large files hashed at once than there are cores only
        # delays the first part, while one hashed at a time lets the next hash as the
        # first one's parts go out.
        self._hashing = threading.Semaphore(_cores())

    def upload(
        self, file: LocalFile, key: str, headers_for: Callable[[str], dict[str, str]]
    ) -> tuple[str, str]:
        """Upload ``file`` to ``key`` with the headers ``headers_for`` its SHA-256; return
        the SHA-256 and the object's ETag. Raises :class:`SourceChanged` when the file
        changed meanwhile (the upload is then aborted)."""
        part_size = part_size_for(file.size, self.part_size)
        with self._hashing:
            sha256, crcs = hash_file(file, part_size=part_size)
        fd = os.open(file.path, OPEN_FLAGS)
        try:
            check_unchanged(file, os.fstat(fd))
            upload_id = self.wire.create_multipart_upload(key, headers_for(sha256))
            try:
                etags = self._send_parts(file, fd, key, upload_id, part_size, crcs)
                check_unchanged(file, os.fstat(fd))
                check_unchanged(file, os.stat(file.path))
                etag = self._complete(file, key, upload_id, etags, sha256)
            except BaseException:
                _abort(self.wire, key, upload_id)
                raise
        finally:
            os.close(fd)
        return sha256, etag

    def close(self) -> None:
        """Stop: parts not yet sent are dropped, the ones being sent are waited for."""
        self._parts.shutdown(wait=True, cancel_futures=True)

    def _send_parts(
        self, file: LocalFile, fd: int, key: str, upload_id: str, part_size: int, crcs: list[int]
    ) -> list[str]:
        """Send every part on the part pool; their ETags, or the first error once no part
        is still being sent (they read from ``fd``)."""
        futures: list[Future[str]] = []
        try:
            for number, crc in enumerate(crcs, 1):
                offset = (number - 1) * part_size
                part = _Part(fd, offset, min(part_size, file.size - offset), crc)
                futures.append(
                    self._parts.submit(self._send_part, file, key, upload_id, number, part)
                )
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            for future in futures:
                if not future.cancelled():
                    future.exception()
            raise

    def _complete(
        self, file: LocalFile, key: str, upload_id: str, etags: list[str], sha256: str
    ) -> str:
        try:
            return self.wire.complete_multipart_upload(key, upload_id, etags)
        except S3Error as exc:
            # A Complete retried after its answer was lost finds the upload gone: the
            # object is there when it has our size and hash.
            if exc.code != "NoSuchUpload":
                raise
            head = self.wire.head_object(key, self.read_headers)
            if head is None or head.size != file.size or head.metadata.get("sha256") != sha256:
                raise
            return head.etag

    def _send_part(
        self, file: LocalFile, key: str, upload_id: str, number: int, part: _Part
    ) -> str:
        if self.cancelled.is_set():
            raise Cancelled()
        self.hook("part", file.relpath)
        etag = self.wire.upload_part(key, upload_id, number, part, self.read_headers)
        if part.crc != part.expected_crc or part.sent != part.length:
            raise SourceChanged(f"part {number} changed while being sent")
        return etag


def _cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)  # Linux: the cores we may run on
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _abort(wire: S3Wire, key: str, upload_id: str) -> None:
    # On failure it is left for --cleanup; the error that made us abort is the one to report.
    with contextlib.suppress(S3Error):
        wire.abort_multipart_upload(key, upload_id)


class _Part:
    """One part of a file, read in blocks as it is sent, its CRC32 taken on the way."""

    def __init__(self, fd: int, offset: int, length: int, expected_crc: int) -> None:
        self.fd = fd
        self.offset = offset
        self.length = length
        self.expected_crc = expected_crc
        self.rewind()

    def rewind(self) -> None:
        self.sent = 0
        self.crc = 0

    def read(self, size: int = -1) -> bytes:
        want = self.length - self.sent if size < 0 else min(size, self.length - self.sent)
        if want <= 0:
            return b""
        block = os.pread(self.fd, want, self.offset + self.sent)
        if not block:
            raise SourceChanged("shrank while being sent")
        self.sent += len(block)
        self.crc = zlib.crc32(block, self.crc)
        return block


def cleanup(
    wire: S3Wire, prefix: str, selector: Selector, *, before: float, dry_run: bool = False
) -> int:
    """Abort the incomplete multipart uploads under ``prefix`` that this run would own
    (its shard and globs) and that began before ``before``; return how many (only count
    them with ``dry_run``)."""
    aborted = 0
    for key, upload_id, initiated in wire.list_multipart_uploads(prefix):
        relpath = key[len(prefix) :]
        if initiated is not None and initiated >= before:
            continue
        if relpath and selector(relpath):
            if not dry_run:
                wire.abort_multipart_upload(key, upload_id)
            aborted += 1
    return aborted
