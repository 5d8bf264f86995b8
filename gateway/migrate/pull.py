"""Pull: the rollback. Copy back to disk every object that is missing or different there.

After a while on S3 the bucket holds files the app wrote since the switch; pulling them
into MEDIA_ROOT before turning USE_S3 off loses none. Each file is written to a
temporary file in its directory, flushed, then renamed over the old one, so a reader
or a crash sees the old file or the new one, never half of one. The decision to skip
is the uploader's, mirrored: state row, else ``x-amz-meta-sha256`` against the file's
hash, else download and compare. Local files without an object are left alone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Mapping

from ..exceptions import MediaGatewayError
from ..paths import validate_relpath
from .progress import Progress
from .runner import Copier, Outcome
from .state import Record, State
from .walk import MAX_KEY_BYTES, LocalFile, Problem, fingerprint, hash_file
from .wire import ObjectInfo, S3Wire

__all__ = ["Puller"]


class Puller(Copier):
    """Download into ``dest`` the objects of a listing (keyed by relpath) that the walk
    of ``dest`` lacks or holds different bytes of."""

    verb = "pull"
    moved = "pulled"

    def __init__(
        self,
        wire: S3Wire,
        *,
        key_for: Callable[[str], str],
        dest: str,
        state: State,
        workers: int = 32,
        read_headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> None:
        super().__init__(
            wire,
            key_for=key_for,
            state=state,
            workers=workers,
            read_headers=read_headers,
            progress=progress,
        )
        self.dest = os.path.realpath(dest)

    def _plan(self, local: LocalFile | Problem | None, remote: ObjectInfo | None) -> None:
        if remote is None:
            return  # a local file without an object is left alone
        if isinstance(local, Problem):
            self._record(Outcome(local.relpath, "failed", error=local.error))
            return
        relpath = remote.key
        problem = _unsafe(relpath)
        if problem:
            self._record(Outcome(relpath, "failed", error=problem))
        elif local is None or local.size != remote.size:
            self.runner.submit(relpath, lambda: self._download(remote, None))
        else:
            record = self.state.get(relpath)
            if record and record.etag == remote.etag and record.trusted_for(local.fingerprint):
                self._record(Outcome(relpath, "skipped", local.size))
            else:
                self.runner.submit(relpath, lambda: self._check(remote, local))

    # --- on worker threads -----------------------------------------------------

    def _check(self, remote: ObjectInfo, local: LocalFile) -> Outcome:
        head = self.wire.head_object(self.key_for(remote.key), self.read_headers)
        if head is None:  # deleted since the listing: nothing to pull
            return Outcome(remote.key, "skipped", local.size)
        checked = time.time_ns()
        sha256, _ = hash_file(local)
        stored = head.metadata.get("sha256", "").lower()
        if not stored:
            return self._download(remote, sha256)
        if stored != sha256:
            return self._download(remote, None)
        record = Record(local.fingerprint, sha256, head.etag, checked)
        return Outcome(remote.key, "skipped", local.size, record=record)

    def _download(self, remote: ObjectInfo, local_sha256: str | None) -> Outcome:
        """Download into a temporary file, then rename it into place, unless its hash is
        ``local_sha256`` (the file on disk already holds these bytes)."""
        relpath = remote.key
        target = os.path.join(self.dest, relpath)
        parent = os.path.dirname(target)
        # Checked before makedirs, which would follow a symlinked directory out.
        real = os.path.realpath(parent)
        if real != self.dest and not real.startswith(self.dest + os.sep):
            return Outcome(relpath, "failed", error="a symlink leads out of the destination")
        os.makedirs(parent, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".pull-", suffix=".tmp", dir=parent)
        try:
            with os.fdopen(fd, "w+b") as out:
                info, sha256 = self.wire.get_object(self.key_for(relpath), out, self.read_headers)
                out.flush()
                os.fsync(out.fileno())
            if sha256 == local_sha256:
                os.unlink(temp)
                st = os.stat(target)
                record = Record(fingerprint(st), sha256, info.etag, time.time_ns())
                return Outcome(relpath, "skipped", info.size, record=record)
            stored = info.metadata.get("sha256", "").lower()
            if stored and stored != sha256:
                raise OSError(f"downloaded bytes do not match x-amz-meta-sha256 {stored}")
            mtime = _mtime_ns(info)
            if mtime is not None:
                os.utime(temp, ns=(mtime, mtime))
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        st = os.stat(target)
        record = Record(fingerprint(st), sha256, info.etag, time.time_ns())
        return Outcome(relpath, "pulled", info.size, record=record)


def _unsafe(relpath: str) -> str:
    """Why an object's relpath cannot become a file under the destination, or ''."""
    try:
        validate_relpath(relpath)
    except MediaGatewayError:
        return "the key is not a safe relative path (.., //, backslash or a trailing /)"
    if len(relpath.encode("utf-8")) > MAX_KEY_BYTES:
        return "the key is too long"
    return ""


def _mtime_ns(info: ObjectInfo) -> int | None:
    """The file's original mtime, kept in ``x-amz-meta-mtime`` by upload (and by rclone
    and s5cmd), else the object's Last-Modified."""
    raw = info.metadata.get("mtime", "")
    if raw:
        seconds, _, fraction = raw.partition(".")
        with contextlib.suppress(ValueError):
            return int(seconds) * 10**9 + int((fraction + "000000000")[:9])
    if info.last_modified is not None:
        return int(info.last_modified * 10**9)
    return None
