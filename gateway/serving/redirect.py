"""Redirect mode: a 302 to a presigned S3 URL, and the redirects of the current second.

The presigned URL is stable for a whole window, so the answer for a (method, path,
query) is the same for the rest of its second and is remembered for it
(:class:`RecentRedirects`).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from starlette.types import Message, Scope, Send

from ..http import content_type, is_active
from ..settings import Settings
from ..sigv4 import Presigner
from .access import Access, Authorizer, attachment, disposition
from .responses import send_redirect

__all__ = ["RecentRedirects", "Redirector"]

# Requests with a longer target (raw path and query, in bytes) are answered but their
# redirects never remembered; signing.MAX_REMEMBERED bounds remembered signatures.
MAX_REMEMBERED_TARGET = 1024
# Seconds a cached redirect stops short of its presigned URL's expiry, so a browser
# never follows a cached redirect to a URL that has just expired.
REDIRECT_MARGIN = 60


class Redirector:
    """Answer an authorised request with a 302 to its presigned URL (or the CDN's).

    :param remember: keep each answer for the rest of its second (pure redirect mode;
        in hybrid mode the disk decides first, so nothing is remembered).
    """

    def __init__(
        self,
        settings: Settings,
        presigner: Presigner,
        authorizer: Authorizer,
        *,
        clock: Callable[[], float],
        remember: bool,
    ) -> None:
        self.settings = settings
        self.presigner = presigner
        self.authorizer = authorizer
        self.clock = clock
        self.recent = RecentRedirects(clock) if remember else None

    async def send(self, scope: Scope, send: Send, access: Access) -> None:
        now = int(self.clock())
        location, max_age = self._location(scope, access, now)
        headers = [
            (b"location", location.encode("latin-1")),
            (b"content-length", b"0"),
            *self.authorizer.cache_headers(access, max_age=max(0, max_age)),
        ]
        start = {"type": "http.response.start", "status": 302, "headers": headers}
        if (
            self.recent is not None
            and not access.delegated
            and (access.public or access.expires > now)
        ):
            # The same answer for the rest of this second: its inputs are the request's
            # method, path and query and the current second (the signature stays valid
            # through it). Never a delegated one, which depends on the cookies.
            self.recent.put(scope, now, headers)
        await send_redirect(send, start)

    def _location(self, scope: Scope, access: Access, now: int) -> tuple[str, int]:
        """The URL to send the client to, and how long the redirect may be cached."""
        key = self.settings.key_for(access.relpath)
        custom = self.settings.aws_s3_custom_domain
        if access.public and custom:
            return f"{custom}/{quote(key)}", self.settings.public_max_age
        # The type S3 sends is pinned to the one local mode would send (the signed
        # override, else the name's), never the stored one: an object stored as
        # text/html under a .png name is sent as image/png. S3 sends no sandbox header
        # of ours, so a type that could run script is downloaded instead, and even a
        # bucket on a subdomain of the site (a custom domain, a CDN) never renders an
        # upload as a page.
        sent_type = access.content_type or content_type(access.relpath)
        sent_disposition = disposition(access)
        if sent_disposition is None and is_active(sent_type):
            sent_disposition = attachment(access)
        # Signed for the request's method: a HEAD that follows a redirect signed for GET
        # is refused by S3. RecentRedirects keys on the method, so a GET is never
        # answered with a HEAD's URL or the reverse.
        presigned = self.presigner.presign(
            key,
            content_disposition=sent_disposition,
            content_type=sent_type,
            method=scope["method"],
        )
        # A cached redirect must never outlive the URL it points to.
        max_age = presigned.expires_at - now - REDIRECT_MARGIN
        if not access.public:
            max_age = min(max_age, access.expires - now)
        return presigned.url, max_age


class RecentRedirects:
    """Redirects given in the current second, by (method, raw path, query string).

    In redirect mode a signed or public request's answer depends on nothing else: the
    presigned URL changes per window, the max-age per second, and a signature that is
    valid at the start of a second stays valid through it (expiries are whole seconds).
    Remembering the answer for that second makes a popular file's redirect cost a
    lookup, not a signature check and a presign: a few microseconds over what uvicorn
    alone needs for this response, a third of the cost of URLs that are not remembered
    (bench/results/redirect.md, the 1,000 and 20,000 URL rows).
    Like nginx's "microcaching", but exact: tests/serving/test_s3.py checks every answer
    against a fresh gateway's. Bounded; entries of a past second are ignored.
    """

    SIZE = 1024

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        #: Requests answered from here so far (for the metrics).
        self.hits = 0
        self._entries: dict[tuple[str, bytes, bytes], tuple[int, list[tuple[bytes, bytes]]]] = {}

    def get(self, scope: Scope) -> Message | None:
        # Not _request_key's checks: this runs for every media request in redirect
        # mode, and a key put() refused (no raw path, too long) is never found anyway.
        key = scope["method"], scope.get("raw_path", b""), scope.get("query_string", b"")
        entry = self._entries.get(key)
        if entry is None or entry[0] != int(self.clock()):
            return None
        self.hits += 1
        # A fresh message and list each time: middleware around the gateway may edit
        # the headers of a message in place (Starlette's CORSMiddleware does).
        return {"type": "http.response.start", "status": 302, "headers": list(entry[1])}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, scope: Scope, second: int, headers: list[tuple[bytes, bytes]]) -> None:
        key = _request_key(scope)
        if key is None:
            return
        self._entries.pop(key, None)
        if len(self._entries) >= self.SIZE:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[key] = second, list(headers)


def _request_key(scope: Scope) -> tuple[str, bytes, bytes] | None:
    """What a redirect depends on besides the time: the method and the exact request
    target, as Authorizer.relpath() reads it. None when the request is too long to remember
    (a padded query must not grow the memory) or has no raw path (then Authorizer.relpath()
    reads the decoded one, which other raw paths may share)."""
    raw_path = scope.get("raw_path")
    query = scope.get("query_string", b"")
    if not raw_path or len(raw_path) + len(query) > MAX_REMEMBERED_TARGET:
        return None
    return scope["method"], raw_path, query
