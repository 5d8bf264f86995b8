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
completed only when every part matched and the file's fingerprint did not change
(:mod:`gateway.migrate.multipart`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from ..exceptions import Cancelled, SourceChanged
from ..http import content_type
from .multipart import MAX_PARTS, MiB, Multipart, cleanup, part_size_for
from .progress import Progress
from .runner import Copier, Outcome, prefetch
from .state import Record, State
from .walk import OPEN_FLAGS, LocalFile, Problem, check_unchanged, fingerprint, hash_file
from .wire import ObjectInfo, S3Wire

__all__ = [
    "MAX_PARTS",
    "UploadOptions",
    "Uploader",
    "cleanup",
    "part_size_for",
    "relative_listing",
]

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


def relative_listing(wire: S3Wire, prefix: str) -> Iterator[ObjectInfo]:
    """The objects under ``prefix``, keyed by their relpath; the next pages are fetched
    by a thread meanwhile, so the walk and the listing overlap."""
    # Keys ending in / are the "folders" consoles create: no file maps to them.
    items = wire.list_objects(prefix, strip=True)
    return prefetch(item for item in items if item.key and not item.key.endswith("/"))


class Uploader(Copier):
    """Upload the files of a walk that the listing lacks or holds different bytes of.

    :param headers: PutObject headers for every object (AWS_S3_OBJECT_PARAMETERS);
        Content-Type is guessed from the name unless they set one.
    :param read_headers: headers every request on an object repeats (SSE-C keys).
    :param key_for: the S3 key of a relpath.
    :param hook: called with (event, relpath) at points tests want to act on:
        ``"read"`` after a small file was read, ``"part"`` before each part is sent.
    """

    verb = "upload"
    moved = "uploaded"

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
        super().__init__(
            wire,
            key_for=key_for,
            state=state,
            workers=options.workers,
            read_headers=read_headers,
            progress=progress,
        )
        self.options = options
        self.remember = not options.dry_run
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.hook = hook or (lambda event, relpath: None)
        self.multipart = Multipart(
            wire,
            part_size=options.part_size,
            part_workers=options.part_workers,
            read_headers=self.read_headers,
            cancelled=self.runner.cancelled,
            hook=self.hook,
        )
        self._buffers = _Budget(options.buffer_bytes)

    def _plan(self, local: LocalFile | Problem | None, remote: ObjectInfo | None) -> None:
        if local is None:
            return  # an object without a file: nothing to upload
        if isinstance(local, Problem):
            self._record(Outcome(local.relpath, "failed", error=local.error))
            return
        file = local
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

    def _close(self, seconds: float, *, interrupted: bool) -> None:
        self.multipart.close()
        super()._close(seconds, interrupted=interrupted)

    # --- on worker threads -----------------------------------------------------

    def _check_local(self, file: LocalFile, record: Record) -> Outcome:
        checked = time.time_ns()
        try:
            sha256, _ = hash_file(file)
        except SourceChanged:
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
        except SourceChanged:
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
            except SourceChanged:
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
            raise SourceChanged(f"read {len(body)} bytes of {file.size}")
        check_unchanged(file, os.stat(file.path))  # replaced by a rename meanwhile?
        sha256 = hashlib.sha256(body).hexdigest()
        key = self.key_for(file.relpath)
        etag = self.wire.put_object(key, body, self._object_headers(file, sha256), sha256)
        record = Record(file.fingerprint, sha256, etag, checked)
        return Outcome(file.relpath, "uploaded", file.size, record=record)

    def _put_multipart(self, file: LocalFile) -> Outcome:
        checked = time.time_ns()
        key = self.key_for(file.relpath)
        sha256, etag = self.multipart.upload(
            file, key, lambda sha256: self._object_headers(file, sha256)
        )
        record = Record(file.fingerprint, sha256, etag, checked)
        return Outcome(file.relpath, "uploaded", file.size, record=record)


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
