"""Redirect mode: a 302 to a presigned S3 URL, and the redirects already given.

The presigned URL is stable for a whole window, so the answer for a (method, path,
query) stays the same but for its max-age, which counts down by the second: it is
remembered (:class:`RecentRedirects`) and reused, its max-age renewed each second, for as
long as a fresh gateway would give the same.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from starlette.types import Message, Scope, Send

from ..http import content_type, is_active
from ..settings import Settings
from ..sigv4 import Credentials, Presigner
from .access import Access, Authorizer, attachment, disposition
from .responses import send_redirect

__all__ = ["RecentRedirects", "Redirector", "Remembered"]

# Requests with a longer target (raw path and query, in bytes) are answered but their
# redirects never remembered; signing.MAX_REMEMBERED bounds remembered signatures.
MAX_REMEMBERED_TARGET = 1024
# Seconds a cached redirect stops short of its presigned URL's expiry, so a browser
# never follows a cached redirect to a URL that has just expired.
REDIRECT_MARGIN = 60


class Redirector:
    """Answer an authorised request with a 302 to its presigned URL (or the CDN's).

    :param remember: keep each answer for reuse (pure redirect mode; in hybrid mode the
        disk decides first, so nothing is remembered).
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
        self.recent = RecentRedirects() if remember else None

    async def send(self, scope: Scope, send: Send, access: Access) -> None:
        now = int(self.clock())
        location, expires_at, window = self._location(scope, access)
        headers = self._headers(location, access, self._max_age(access, expires_at, now))
        # A copy: what middleware around the gateway does to the message's list (it may
        # edit it in place) must not reach the remembered one.
        start = {"type": "http.response.start", "status": 302, "headers": list(headers)}
        if (
            self.recent is not None
            and not access.delegated
            and (access.public or access.expires > now)
        ):
            # The same answer for the rest of this second: its inputs are the request's
            # method, path and query and the current second (the signature stays valid
            # through it). Never a delegated one, which depends on the cookies.
            remembered = Remembered(now + 1.0, headers, access, location, expires_at, window)
            self.recent.put(scope, remembered)
        await send_redirect(send, start)

    def remembered(self, scope: Scope) -> Remembered | None:
        """The answer given earlier to this request, if it is the answer now. Its
        max-age is renewed in a new second. Most requests repeat one of this second's:
        for them this is a lookup and a comparison, and a renewal (once a second per
        URL) costs a tenth of a new answer."""
        recent = self.recent
        if recent is None:
            return None
        # Not _request_key's checks: this runs for every media request in redirect
        # mode, and a key put() refused (no raw path, too long) is never found anyway.
        # Any scope may ask: a lifespan one has none of these, and nothing has its key.
        key = scope.get("method"), scope.get("raw_path"), scope.get("query_string")
        remembered = recent.entries.get(key)
        if remembered is None:
            return None
        if self.clock() >= remembered.until and not self._renew(remembered):
            return None
        recent.hits += 1
        return remembered

    def _renew(self, remembered: Remembered) -> bool:
        second = int(self.clock())
        access = remembered.access
        if not (access.public or access.expires > second):
            return False  # the link has expired: a fresh gateway refuses it
        if remembered.expires_at is not None and not self.presigner.signs_alike(
            remembered.window, second
        ):
            return False  # a new window or new credentials: a new URL
        max_age = self._max_age(access, remembered.expires_at, second)
        remembered.headers = self._headers(remembered.location, access, max_age)
        remembered.until = second + 1.0
        return True

    def _headers(self, location: str, access: Access, max_age: int) -> list[tuple[bytes, bytes]]:
        return [
            (b"location", location.encode("latin-1")),
            (b"content-length", b"0"),
            *self.authorizer.cache_headers(access, max_age=max(0, max_age)),
        ]

    def _max_age(self, access: Access, expires_at: int | None, now: int) -> int:
        """How long the redirect may be cached: never past the URL it points to."""
        if expires_at is None:  # the CDN's URL, which does not expire
            return self.settings.public_max_age
        max_age = expires_at - now - REDIRECT_MARGIN
        if not access.public:
            max_age = min(max_age, access.expires - now)
        return max_age

    def _location(
        self, scope: Scope, access: Access
    ) -> tuple[str, int | None, tuple[int, Credentials] | None]:
        """The URL to send the client to, when S3 stops accepting it (None: never), and
        the presign window it belongs to."""
        key = self.settings.key_for(access.relpath)
        custom = self.settings.aws_s3_custom_domain
        if access.public and custom:
            return f"{custom}/{quote(key)}", None, None
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
        return presigned.url, presigned.expires_at, presigned.window


class Remembered:
    """A redirect given: its headers for the second before ``until``, and what renewing
    them for a later second takes (:meth:`Redirector.reuse`)."""

    __slots__ = ("access", "expires_at", "headers", "location", "log_request", "until", "window")

    def __init__(
        self,
        until: float,
        headers: list[tuple[bytes, bytes]],
        access: Access,
        location: str,
        expires_at: int | None,
        window: tuple[int, Credentials] | None,
    ) -> None:
        self.until = until
        self.headers = headers
        self.access = access
        self.location = location
        self.expires_at = expires_at
        self.window = window
        #: The access log's request text for it, once made (:class:`AccessLog`).
        self.log_request: str | None = None

    def start(self) -> Message:
        # A fresh message and list each time: middleware around the gateway may edit
        # the headers of a message in place (Starlette's CORSMiddleware does).
        return {"type": "http.response.start", "status": 302, "headers": list(self.headers)}


class RecentRedirects:
    """Redirects given, by (method, raw path, query string).

    In redirect mode a signed or public request's answer depends on nothing else but
    the time: the presigned URL changes per window (or with new credentials), the
    max-age per second, and a signature that is valid at the start of a second stays
    valid through it (expiries are whole seconds). Reusing the answer makes a popular
    file's redirect cost a lookup, not a signature check and a presign: a few
    microseconds over what uvicorn alone needs for this response (bench/results/
    redirect.md, the 1,000 and 20,000 URL rows). Like nginx's "microcaching", but exact:
    tests/serving/test_s3.py checks every answer against a fresh gateway's. Bounded.
    """

    SIZE = 1024

    def __init__(self) -> None:
        #: Requests answered from here so far (for the metrics).
        self.hits = 0
        #: By request; looked up by Redirector.remembered().
        self.entries: dict[tuple[str | None, bytes | None, bytes | None], Remembered] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, scope: Scope, remembered: Remembered) -> None:
        key = _request_key(scope)
        if key is None:
            return
        self.entries.pop(key, None)
        if len(self.entries) >= self.SIZE:
            del self.entries[next(iter(self.entries))]  # the oldest
        self.entries[key] = remembered


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
