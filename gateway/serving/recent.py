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

import operator
import os
from collections.abc import Callable
from typing import Generic, TypeVar

from starlette.types import Scope

from ..http import Plan
from .access import Access, Authorizer, request_headers
from .local import LocalFiles, whole_body

__all__ = ["RecentAnswers", "RecentFiles", "Remembered", "RememberedFile", "request_key"]

# Requests with a longer target (raw path, query and path) are answered but never
# remembered, so a padded query cannot grow the memory; signing.MAX_REMEMBERED bounds
# remembered signatures.
MAX_REMEMBERED_TARGET = 1024


class Remembered:
    """An answer given: the response for the second before ``until`` (its body sent
    with it: none for a redirect, the kept file's for a file)."""

    __slots__ = ("headers", "log_request", "log_status", "status", "until")

    def __init__(
        self, until: float, status: int, headers: list[tuple[bytes, bytes]], size: int
    ) -> None:
        self.until = until
        self.status = status
        self.headers = headers
        #: The access log's text for it, made on its first line there: the request
        #: (:class:`AccessLog`), and the status and size (sent, or "500 0" if not).
        self.log_request: str | None = None
        self.log_status = (f'" {status} {size} ', '" 500 0 ')


R = TypeVar("R", bound=Remembered)
#: The request an answer is remembered by: the method, the raw path and query the
#: gateway authorises, and the path it routes on (middleware in front may rewrite one
#: and not the other). One call in C, where ``scope.get`` for each cost a tenth of a
#: remembered answer.
request_key = operator.itemgetter("method", "raw_path", "query_string", "path")


class RecentAnswers(Generic[R]):
    """Remembered answers by :data:`request_key`; at most ``SIZE``.

    Looked up as ``entries.get(request_key(scope))``, inline where it runs for every
    request: not put()'s checks, since a key put() refused (no raw path, too long) is
    never found anyway. :func:`request_key` raises KeyError for a scope without them
    (lifespan, websocket, a server that gives no raw path): nothing has its key.
    """

    SIZE = 1024

    def __init__(self) -> None:
        #: Requests answered from here so far (for the metrics).
        self.hits = 0
        self.entries: dict[tuple[str, bytes, bytes, str], R] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, scope: Scope, remembered: R) -> None:
        """Remember the answer to ``scope``'s request, unless it is too long to, or has
        no raw path (then Authorizer.relpath() reads the decoded one, which other raw
        paths may share)."""
        raw_path = scope.get("raw_path")
        query = scope.get("query_string", b"")
        path = scope["path"]
        if not raw_path or len(raw_path) + len(query) + len(path) > MAX_REMEMBERED_TARGET:
            return
        key = scope["method"], raw_path, query, path
        self.entries.pop(key, None)
        if len(self.entries) >= self.SIZE:
            del self.entries[next(iter(self.entries))]  # the oldest
        self.entries[key] = remembered


class RememberedFile(Remembered):
    """A small file's answer (200, from memory) and what renewing it for a later second
    takes. It holds the file's status as kept, not its body: whatever LocalFiles
    evicts is freed, and the memory stays within GATEWAY_FILE_CACHE_MB."""

    __slots__ = ("access", "head", "st")

    def __init__(
        self,
        until: float,
        headers: list[tuple[bytes, bytes]],
        st: os.stat_result,
        access: Access,
        *,
        head: bool,
    ) -> None:
        super().__init__(until, 200, headers, 0 if head else st.st_size)
        self.st = st
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
        self.recent: RecentAnswers[RememberedFile] = RecentAnswers()

    def remembered(self, scope: Scope) -> tuple[Remembered, bytes] | None:
        """The answer given earlier to this request and its body, if it is the answer
        now."""
        recent = self.recent
        try:
            remembered = recent.entries.get(request_key(scope))
        except KeyError:
            return None
        if remembered is None:
            return None
        if request_headers(scope["headers"]):
            return None  # Range or a precondition: _send_local never remembered those
        kept = self.files.kept(remembered.access.relpath)
        # The very status object read with the kept body: re-read, it is another one.
        if kept is None or kept[0] is not remembered.st:
            return None  # changed, gone or due a check: the full path answers
        if self.clock() >= remembered.until and not self._renew(remembered):
            return None
        recent.hits += 1
        return remembered, b"" if remembered.head else kept[1]

    def put(
        self,
        scope: Scope,
        access: Access,
        headers: list[tuple[bytes, bytes]],
        st: os.stat_result,
        *,
        head: bool,
    ) -> None:
        """Remember a 200 of a kept file (``st`` as LocalFiles keeps it) to a plain
        request (no Range, no precondition), with the headers it was sent with (a copy:
        middleware may edit the sent list)."""
        now = int(self.clock())
        if access.delegated or not (access.public or access.expires > now):
            return
        self.recent.put(scope, RememberedFile(now + 1.0, list(headers), st, access, head=head))

    def _renew(self, remembered: RememberedFile) -> bool:
        second = int(self.clock())
        access = remembered.access
        if not (access.public or access.expires > second):
            return False  # the link has expired: a fresh gateway refuses it
        headers = self.authorizer.local_headers(access, remembered.st)
        plan = Plan(200, 0, remembered.st.st_size)
        start, _ = whole_body(b"", plan, headers, head=True)
        remembered.headers = start["headers"]
        remembered.until = second + 1.0
        return True
