"""Verify a migration: every local file has an object of the same size and SHA-256.

The content check reads the file and compares its SHA-256 with the object's
``x-amz-meta-sha256`` (one HEAD per object). An object without that metadata (written
by something else than ``upload``) is downloaded and hashed, and so is every object
with ``deep``, which proves the bytes rather than the recorded hash. An ETag is never
taken for an MD5. The state file is not consulted: a verification that trusted the
uploader's own notes would prove little.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

from .progress import Progress
from .runner import Job, Outcome
from .walk import LocalFile, Problem, display, hash_file
from .wire import ObjectInfo, S3Wire

__all__ = ["Report", "Verifier"]


@dataclasses.dataclass
class Report:
    """What a verification found. ``ok`` when nothing is missing, different or failed;
    ``extra`` objects (in S3, not on disk) are listed but do not count against it, since
    the app may have written them after the switch to S3."""

    checked: int = 0
    matched: int = 0
    missing: list[str] = dataclasses.field(default_factory=list)
    mismatched: list[dict[str, str]] = dataclasses.field(default_factory=list)
    extra: list[str] = dataclasses.field(default_factory=list)
    failures: list[dict[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.failures)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **dataclasses.asdict(self), "seconds": round(self.seconds, 3)}


class Verifier(Job[Report]):
    """Compare a walk with a listing (both keyed by relpath)."""

    verb = "verify"

    def __init__(
        self,
        wire: S3Wire,
        *,
        key_for: Callable[[str], str],
        workers: int = 32,
        deep: bool = False,
        read_headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> None:
        super().__init__(
            wire, key_for=key_for, workers=workers, read_headers=read_headers, progress=progress
        )
        self.deep = deep
        self.report = Report()

    def _plan(self, local: LocalFile | Problem | None, remote: ObjectInfo | None) -> None:
        if local is None:
            assert remote is not None
            self.report.extra.append(display(remote.key))
        elif isinstance(local, Problem):
            self._record(Outcome(local.relpath, "failed", error=local.error))
        elif remote is None:
            self._record(Outcome(local.relpath, "missing", local.size))
        elif remote.size != local.size:
            reason = f"size: {local.size} on disk, {remote.size} in S3"
            self._record(Outcome(local.relpath, "mismatched", local.size, reason))
        else:
            self.runner.submit(local.relpath, functools.partial(self._compare, local))

    def _close(self, seconds: float, *, interrupted: bool) -> None:
        self.report.seconds = seconds

    def _result(self) -> Report:
        # Workers finish in any order; report in the walk's.
        self.report.missing.sort(key=str.encode)
        self.report.mismatched.sort(key=lambda item: item["path"].encode())
        self.report.failures.sort(key=lambda item: item["path"].encode())
        return self.report

    def _record(self, outcome: Outcome) -> None:
        path = display(outcome.relpath)
        if outcome.status == "matched":
            self.report.matched += 1
        elif outcome.status == "missing":
            self.report.missing.append(path)
        elif outcome.status == "mismatched":
            self.report.mismatched.append({"path": path, "reason": outcome.error})
        else:
            self.report.failures.append({"path": path, "error": outcome.error})
        self.report.checked += 1
        self.progress.update(outcome.size, moved=False)

    def _compare(self, file: LocalFile) -> Outcome:
        key = self.key_for(file.relpath)
        head = self.wire.head_object(key, self.read_headers)
        if head is None:
            return Outcome(file.relpath, "missing", file.size)
        stored = head.metadata.get("sha256", "").lower()
        if self.deep or not stored:
            _, actual = self.wire.get_object(key, _Discard(), self.read_headers)
            if stored and actual != stored:
                reason = "content: the object's bytes do not match its x-amz-meta-sha256"
                return Outcome(file.relpath, "mismatched", file.size, reason)
            stored = actual
        local, _ = hash_file(file)
        if local != stored:
            return Outcome(file.relpath, "mismatched", file.size, "content: SHA-256 differs")
        return Outcome(file.relpath, "matched", file.size)


class _Discard:
    """A sink that keeps nothing: verify only needs the hash of a download."""

    def __init__(self) -> None:
        self.position = 0

    def write(self, data: bytes, /) -> int:
        self.position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0, /) -> int:
        self.position = offset
        return offset

    def truncate(self, size: int | None = None, /) -> int:
        return self.position if size is None else size

    def tell(self) -> int:
        return self.position
