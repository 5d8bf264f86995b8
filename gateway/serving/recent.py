"""Answers given, reused while a fresh gateway would give the same.

A signed or public media request's answer depends on the request (method, raw path,
query), the time and, for a file, the file: the redirect's presigned URL changes per
window (or with new credentials), a file's answer when the file does, and either's
max-age by the second. So an answer is remembered by request and handed out again, its
max-age renewed each second, until one of its inputs changes: a popular file then
costs a lookup and a comparison (a ``stat`` for a file) instead of a signature check and
a presign or a set of headers, little more than uvicorn's own cost of the same response
(bench/results/redirect.md and local.md, the replayed rows). Like nginx's
"microcaching", but exact: tests/serving/test_s3.py and test_local.py check every
answer against a fresh gateway's. Bounded.

Never for a request the app's delegate allowed (its answer depends on the cookies), nor
one with Range or a precondition (plain requests are the ones that repeat).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from starlette.types import Scope

from ..http import CONDITIONAL_HEADERS, Plan
from .access import Access, Authorizer
from .local import LocalFiles, whole_body

__all__ = ["RecentAnswers", "RecentFiles", "Remembered", "RememberedFile"]

# Requests with a longer target (raw path and query, in bytes) are answered but never
# remembered, so a padded query cannot grow the memory; signing.MAX_REMEMBERED bounds
# remembered signatures.
MAX_REMEMBERED_TARGET = 1024


class Remembered:
    """An answer given: the response for the second before ``until``."""

    __slots__ = ("body", "headers", "log_request", "log_status", "status", "until")

    def __init__(
        self, until: float, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        self.until = until
        self.status = status
        self.headers = headers
        self.body = body
        #: The access log's text for it, made on its first line there: the request
        #: (:class:`AccessLog`), and the status and size (sent, or "500 0" if not).
        self.log_request: str | None = None
        self.log_status = (f'" {status} {len(body)} ', '" 500 0 ')


class RecentAnswers:
    """Remembered answers by (method, raw path, query string); at most ``SIZE``."""

    SIZE = 1024

    def __init__(self) -> None:
        #: Requests answered from here so far (for the metrics).
        self.hits = 0
        self.entries: dict[tuple[str | None, bytes | None, bytes | None], Remembered] = {}

    def get(self, scope: Scope) -> Remembered | None:
        # Not put()'s checks: this runs for every media request, and a key put()
        # refused (no raw path, too long) is never found anyway. Any scope may ask: a
        # lifespan one has none of these, and nothing has its key.
        return self.entries.get(
            (scope.get("method"), scope.get("raw_path"), scope.get("query_string"))
        )

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, scope: Scope, remembered: Remembered) -> None:
        """Remember the answer to ``scope``'s request, unless it is too long to, or has
        no raw path (then Authorizer.relpath() reads the decoded one, which other raw
        paths may share)."""
        raw_path = scope.get("raw_path")
        query = scope.get("query_string", b"")
        if not raw_path or len(raw_path) + len(query) > MAX_REMEMBERED_TARGET:
            return
        key = scope["method"], raw_path, query
        self.entries.pop(key, None)
        if len(self.entries) >= self.SIZE:
            del self.entries[next(iter(self.entries))]  # the oldest
        self.entries[key] = remembered


class RememberedFile(Remembered):
    """A small file's answer (200, from memory) and what renewing it for a later second
    takes: the body it was read as (``kept``) and the terms of access."""

    __slots__ = ("access", "head", "kept")

    def __init__(
        self,
        until: float,
        headers: list[tuple[bytes, bytes]],
        kept: bytes,
        access: Access,
        *,
        head: bool,
    ) -> None:
        super().__init__(until, 200, headers, b"" if head else kept)
        self.kept = kept
        self.access = access
        self.head = head


class RecentFiles:
    """The answers given for small files kept in memory (:class:`LocalFiles`).

    Each reuse still asks ``files`` whether it would answer from memory (a ``stat``, as
    on any request): only while it would hand out the very body read for the answer
    does the answer stand. When the path is due a check (every second), the full path
    makes it.
    """

    def __init__(
        self, files: LocalFiles, authorizer: Authorizer, *, clock: Callable[[], float]
    ) -> None:
        self.files = files
        self.authorizer = authorizer
        self.clock = clock
        self.recent = RecentAnswers()

    def remembered(self, scope: Scope) -> Remembered | None:
        recent = self.recent
        remembered = recent.get(scope)
        if remembered is None:
            return None
        for name, _ in scope["headers"]:
            if name in CONDITIONAL_HEADERS:  # ASGI header names are lower-case
                return None
        assert isinstance(remembered, RememberedFile)
        kept = self.files.kept(remembered.access.relpath)
        if kept is None or kept[1] is not remembered.kept:
            return None  # changed, gone or due a check: the full path answers
        if self.clock() >= remembered.until and not self._renew(remembered, kept[0]):
            return None
        recent.hits += 1
        return remembered

    def put(
        self,
        scope: Scope,
        access: Access,
        headers: list[tuple[bytes, bytes]],
        kept: bytes,
        *,
        head: bool,
    ) -> None:
        """Remember a 200 of a kept file to a plain request (no Range, no precondition),
        with the headers it was sent with (a copy: middleware may edit the sent list)."""
        now = int(self.clock())
        if access.delegated or not (access.public or access.expires > now):
            return
        self.recent.put(scope, RememberedFile(now + 1.0, list(headers), kept, access, head=head))

    def _renew(self, remembered: RememberedFile, st: os.stat_result) -> bool:
        second = int(self.clock())
        access = remembered.access
        if not (access.public or access.expires > second):
            return False  # the link has expired: a fresh gateway refuses it
        headers = self.authorizer.local_headers(access, st)
        plan = Plan(200, 0, len(remembered.kept))
        start, _ = whole_body(remembered.kept, plan, headers, head=remembered.head)
        remembered.headers = start["headers"]
        remembered.until = second + 1.0
        return True
