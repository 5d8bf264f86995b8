"""Upload a media tree to S3: decide from one listing, transfer concurrently, resume.

Per file, in the order of the walk merged with the listing (:func:`gateway.migrate.walk.join`):

1. no object, or an object of another size: upload;
2. a state row for the same fingerprint and the same ETag: skip, reading nothing;
3. a state row for the same ETag but another fingerprint (touched, restored, racy):
   hash the file, skip when the hash is the recorded one;
4. otherwise (first run, other machine, object rewritten): HEAD the object and skip
   only when its ``x-amz-meta-sha256`` equals the file's SHA-256.

So a file is skipped only when the object is known to hold the same bytes; ETags are
compared only with ETags, never with an MD5. A run killed at any moment leaves complete
objects (resumed from the listing and their hash) and, at worst, incomplete multipart
uploads, which ``--cleanup`` aborts.

An object always holds the bytes its ``sha256`` metadata names: small files are sent
from the very buffer that was hashed; a large file is hashed first, then each part is
checked against the CRC32 taken while hashing as it is sent, and the upload is
completed only when every part matched and the file's fingerprint did not change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from ..http import content_type
from .runner import Cancelled, Outcome, Progress, Runner, Summary, prefetch
from .state import Record, State
from .walk import (
    OPEN_FLAGS,
    FileChanged,
    LocalFile,
    Problem,
    Selector,
    check_unchanged,
    fingerprint,
    hash_file,
    join,
)
from .wire import ObjectInfo, S3Error, S3Wire

__all__ = ["UploadOptions", "Uploader", "cleanup", "part_size_for", "relative_listing"]

MiB = 1 << 20
# S3's multipart limits.
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB
# How often a file that keeps changing while it is read is tried before it fails.
CHANGED_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class UploadOptions:
    """Knobs of an upload; the defaults suit a local network and a few CPU cores."""

    #: Files in flight. Small files are bound by request latency, so many help.
    workers: int = 32
    #: Files up to this size go in one PutObject, larger ones in parts: a photo or a
    #: document in one request, a video in parallel parts. 8 MiB, as aws and s3transfer.
    multipart_threshold: int = 8 * MiB
    #: Part size; grows for files that would need more than 10,000 parts.
    part_size: int = 8 * MiB
    #: Parts in flight across all large files. Each streams from disk in 1 MiB blocks,
    #: so memory does not grow with it.
    part_workers: int = 16
    #: Bytes of whole small files held in memory at once (each is sent from the buffer
    #: that was hashed); 32 workers on 8 MiB files would otherwise hold 256 MiB.
    buffer_bytes: int = 64 * MiB
    dry_run: bool = False


def part_size_for(size: int, preferred: int) -> int:
    """The part size for a ``size``-byte file: ``preferred``, or the smallest whole
    number of MiB that fits the file in 10,000 parts."""
    part = max(preferred, MIN_PART_SIZE)
    if math_ceil(size, part) > MAX_PARTS:
        part = math_ceil(math_ceil(size, MAX_PARTS), MiB) * MiB
    return part


def math_ceil(a: int, b: int) -> int:
    return -(-a // b)


def relative_listing(wire: S3Wire, prefix: str) -> Iterator[ObjectInfo]:
    """The objects under ``prefix``, keyed by their relpath; the next pages are fetched
    by a thread meanwhile, so the walk and the listing overlap."""
    # Keys ending in / are the "folders" consoles create: no file maps to them.
    items = wire.list_objects(prefix, strip=True)
    return prefetch(item for item in items if item.key and not item.key.endswith("/"))


class Uploader:
    """Upload the files of a walk that the listing lacks or holds different bytes of.

    :param headers: PutObject headers for every object (AWS_S3_OBJECT_PARAMETERS);
        Content-Type is guessed from the name unless they set one.
    :param read_headers: headers every request on an object repeats (SSE-C keys).
    :param key_for: the S3 key of a relpath.
    :param hook: called with (event, relpath) at points tests want to act on:
        ``"read"`` after a small file was read, ``"part"`` before each part is sent.
    """

    def __init__(
        self,
        wire: S3Wire,
        *,
        key_for: Callable[[str], str],
        state: State,
        options: UploadOptions,
        headers: Mapping[str, str] | None = None,
        read_headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        hook: Callable[[str, str], None] | None = None,
    ) -> None:
        self.wire = wire
        self.key_for = key_for
        self.state = state
        self.options = options
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.read_headers = dict(read_headers or {})
        self.progress = progress or Progress("upload", quiet=True)
        self.hook = hook or (lambda event, relpath: None)
        self.summary = Summary({"uploaded": 0, "skipped": 0, "failed": 0})
        self.runner = Runner(options.workers, self._record)
        self._parts = ThreadPoolExecutor(options.part_workers, thread_name_prefix="part")
        self._buffers = _Budget(options.buffer_bytes)
        self._hashing = threading.Semaphore(_cores())

    def run(self, entries: Iterable[LocalFile | Problem], listing: Iterable[ObjectInfo]) -> Summary:
        """Upload what needs it. Raises KeyboardInterrupt after cancelling in-flight
        uploads (their multipart uploads aborted) when interrupted; the summary so far
        stays in :attr:`summary`."""
        started = time.monotonic()
        try:
            for local, remote in join(entries, listing):
                if local is None:
                    continue
                if isinstance(local, Problem):
                    self._record(Outcome(local.relpath, "failed", error=local.error))
                    continue
                self._plan(local, remote)
            self.runner.finish()
        except BaseException:
            self.runner.cancel()
            self.summary.interrupted = True
            raise
        finally:
            self._parts.shutdown(wait=True, cancel_futures=True)
            self.state.commit()
            self.summary.seconds = time.monotonic() - started
            self.progress.done()
        return self.summary

    def _plan(self, file: LocalFile, remote: ObjectInfo | None) -> None:
        if remote is None or remote.size != file.size:
            self.runner.submit(file.relpath, lambda: self._upload(file))
            return
        record = self.state.get(file.relpath)
        if record is not None and record.etag == remote.etag:
            if record.trusted_for(file.fingerprint):
                self._record(Outcome(file.relpath, "skipped", file.size))
                return
            self.runner.submit(file.relpath, lambda: self._check_local(file, record))
            return
        self.runner.submit(file.relpath, lambda: self._check_remote(file))

    def _record(self, outcome: Outcome) -> None:
        self.summary.add(outcome)
        moved = outcome.status == "uploaded"
        if moved:
            self.summary.bytes += outcome.size
        if outcome.record is not None and not self.options.dry_run:
            self.state.put(outcome.relpath, outcome.record)
        self.progress.update(outcome.size, moved=moved)

    # --- on worker threads -----------------------------------------------------

    def _check_local(self, file: LocalFile, record: Record) -> Outcome:
        checked = time.time_ns()
        try:
            sha256, _ = hash_file(file)
        except FileChanged:
            return self._upload(_restat(file))
        if sha256 != record.sha256:
            return self._upload(file)
        fresh = Record(file.fingerprint, sha256, record.etag, checked)
        return Outcome(file.relpath, "skipped", file.size, record=fresh)

    def _check_remote(self, file: LocalFile) -> Outcome:
        head = self.wire.head_object(self.key_for(file.relpath), self.read_headers)
        stored = head.metadata.get("sha256") if head is not None else None
        if head is None or stored is None or head.size != file.size:
            return self._upload(file)
        checked = time.time_ns()
        try:
            sha256, _ = hash_file(file)
        except FileChanged:
            return self._upload(_restat(file))
        if sha256 != stored.lower():
            return self._upload(file)
        record = Record(file.fingerprint, sha256, head.etag, checked)
        return Outcome(file.relpath, "skipped", file.size, record=record)

    def _upload(self, file: LocalFile) -> Outcome:
        if self.options.dry_run:
            return Outcome(file.relpath, "uploaded", file.size)
        for _ in range(CHANGED_ATTEMPTS):
            if self.runner.cancelled.is_set():
                raise Cancelled()
            try:
                if file.size <= self.options.multipart_threshold:
                    return self._put(file)
                return self._put_multipart(file)
            except FileChanged:
                file = _restat(file)
        return Outcome(
            file.relpath,
            "failed",
            error=f"kept changing while being uploaded ({CHANGED_ATTEMPTS} tries)",
        )

    def _object_headers(self, file: LocalFile, sha256: str) -> dict[str, str]:
        headers = {"content-type": content_type(file.relpath), **self.headers}
        headers["x-amz-meta-sha256"] = sha256
        # rclone and s5cmd keep a file's mtime in this field, as Unix seconds.
        seconds, nanos = divmod(file.mtime_ns, 10**9)
        headers["x-amz-meta-mtime"] = f"{seconds}.{nanos:09d}"
        return headers

    def _put(self, file: LocalFile) -> Outcome:
        with self._buffers.hold(file.size):
            return self._put_buffered(file)

    def _put_buffered(self, file: LocalFile) -> Outcome:
        checked = time.time_ns()
        fd = os.open(file.path, OPEN_FLAGS)
        try:
            check_unchanged(file, os.fstat(fd))
            data = bytearray()
            # One byte more than expected, to notice a file that grew.
            while chunk := os.read(fd, file.size + 1 - len(data)):
                data += chunk
                if len(data) > file.size:
                    break
            check_unchanged(file, os.fstat(fd))
        finally:
            os.close(fd)
        body = bytes(data)
        self.hook("read", file.relpath)
        if len(body) != file.size:
            raise FileChanged(f"read {len(body)} bytes of {file.size}")
        check_unchanged(file, os.stat(file.path))  # replaced by a rename meanwhile?
        sha256 = hashlib.sha256(body).hexdigest()
        key = self.key_for(file.relpath)
        etag = self.wire.put_object(key, body, self._object_headers(file, sha256), sha256)
        record = Record(file.fingerprint, sha256, etag, checked)
        return Outcome(file.relpath, "uploaded", file.size, record=record)

    def _put_multipart(self, file: LocalFile) -> Outcome:
        checked = time.time_ns()
        part_size = part_size_for(file.size, self.options.part_size)
        # Hashing is CPU-bound: more large files hashed at once than there are cores only
        # delays the first part, while one hashed at a time lets the next hash as the
        # first one's parts go out.
        with self._hashing:
            sha256, crcs = hash_file(file, part_size=part_size)
        key = self.key_for(file.relpath)
        fd = os.open(file.path, OPEN_FLAGS)
        try:
            check_unchanged(file, os.fstat(fd))
            upload_id = self.wire.create_multipart_upload(key, self._object_headers(file, sha256))
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
        record = Record(file.fingerprint, sha256, etag, checked)
        return Outcome(file.relpath, "uploaded", file.size, record=record)

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
        if self.runner.cancelled.is_set():
            raise Cancelled()
        self.hook("part", file.relpath)
        etag = self.wire.upload_part(key, upload_id, number, part, self.read_headers)
        if part.crc != part.expected_crc or part.sent != part.length:
            raise FileChanged(f"part {number} changed while being sent")
        return etag


def _cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)  # Linux: the cores we may run on
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _abort(wire: S3Wire, key: str, upload_id: str) -> None:
    # On failure it is left for --cleanup; the error that made us abort is the one to report.
    with contextlib.suppress(S3Error):
        wire.abort_multipart_upload(key, upload_id)


def _restat(file: LocalFile) -> LocalFile:
    try:
        st = os.stat(file.path)
    except FileNotFoundError:
        raise FileNotFoundError(2, "vanished during the upload") from None
    return LocalFile(file.relpath, file.path, st.st_size, st.st_mtime_ns, fingerprint(st))


class _Budget:
    """At most ``limit`` units held at once; one holder may exceed it alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, amount: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.used == 0 or self.used + amount <= self.limit)
            self.used += amount
        try:
            yield
        finally:
            with self._changed:
                self.used -= amount
                self._changed.notify_all()


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
            raise FileChanged("shrank while being sent")
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
