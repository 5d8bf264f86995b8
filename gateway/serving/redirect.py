"""Redirect mode: a 302 to a presigned S3 URL, and the redirects already given.

The presigned URL is stable for a whole window, so the answer for a (method, path,
query) stays the same but for its max-age, which counts down by the second: it is
remembered (:mod:`.recent`) and reused, its max-age renewed each second, for as
long as a fresh gateway would give the same.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from starlette.types import Scope, Send

from ..http import content_type, is_active
from ..settings import Settings
from ..sigv4 import Credentials, Presigner
from .access import Access, Authorizer, attachment, disposition
from .recent import RecentAnswers, Remembered, request_key
from .responses import send_redirect

__all__ = ["Redirector", "RememberedRedirect"]

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
        self.recent: RecentAnswers[RememberedRedirect] | None = (
            RecentAnswers() if remember else None
        )

    async def send(self, scope: Scope, send: Send, access: Access) -> None:
        now = int(self.clock())
        url, expires_at, window = self._location(scope, access)
        location = url.encode("latin-1")
        headers = self._headers(location, access, self._max_age(access, expires_at, now))
        # A copy: what middleware around the gateway does to the message's list (it may
        # edit it in place) must not reach the remembered one.
        start = {"type": "http.response.start", "status": 302, "headers": list(headers)}
        if (
            self.recent is not None
            and not access.delegated
            and (access.public or access.expires > now)
        ):
            # The same answer for the rest of this second, and after it as long as
            # remembered() finds its inputs unchanged: the request's method, path and
            # query, the presign window and credentials, the link still valid (the
            # signature stays valid through a second). Never a delegated one, which
            # depends on the cookies.
            remembered = RememberedRedirect(
                now + 1.0, headers, access, location, expires_at, window
            )
            self.recent.put(scope, remembered)
        await send_redirect(send, start)

    def remembered(self, scope: Scope) -> tuple[Remembered, bytes] | None:
        """The answer given earlier to this request, if it is the answer now. Its
        max-age is renewed in a new second. Most requests repeat one of this second's:
        for them this is a lookup and a comparison, and a renewal (once a second per
        URL) costs a tenth of a new answer."""
        recent = self.recent
        if recent is None:
            return None
        try:
            remembered = recent.entries.get(request_key(scope))
        except KeyError:
            return None
        if remembered is None:
            return None
        if self.clock() >= remembered.until and not self._renew(remembered):
            return None
        recent.hits += 1
        return remembered, b""

    def _renew(self, remembered: RememberedRedirect) -> bool:
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

    def _headers(self, location: bytes, access: Access, max_age: int) -> list[tuple[bytes, bytes]]:
        return [
            (b"location", location),
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
        # is refused by S3. RecentAnswers keys on the method, so a GET is never
        # answered with a HEAD's URL or the reverse.
        presigned = self.presigner.presign(
            key,
            content_disposition=sent_disposition,
            content_type=sent_type,
            method=scope["method"],
        )
        return presigned.url, presigned.expires_at, presigned.window


class RememberedRedirect(Remembered):
    """A redirect given, and what renewing it for a later second takes
    (:meth:`Redirector.remembered`)."""

    __slots__ = ("access", "expires_at", "location", "window")

    def __init__(
        self,
        until: float,
        headers: list[tuple[bytes, bytes]],
        access: Access,
        location: bytes,
        expires_at: int | None,
        window: tuple[int, Credentials] | None,
    ) -> None:
        super().__init__(until, 302, headers, 0)
        self.access = access
        self.location = location
        self.expires_at = expires_at
        self.window = window
