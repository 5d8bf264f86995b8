"""Signed media URLs.

A URL looks like ``/media/docs/a%20b.pdf?exp=1764000000&dl=1&sig=...``. The signature
is an itsdangerous HMAC-SHA256 over the relative path, the expiry and every response
option, so a signature made for one path or one option set fails on every other.

The expiry is rounded up to a multiple of the window. itsdangerous's TimestampSigner
stamps the signing time, which gives a new URL on every call and defeats the browser
cache (pallets/itsdangerous#40); a rounded expiry gives the same URL for a whole window.
The window shrinks for short lifetimes, so a link never outlives the lifetime asked for
by more than max(1 s, 10%).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple
from urllib.parse import quote, unquote

from itsdangerous import Signer
from itsdangerous.encoding import base64_encode

from .exceptions import BadSignature, SignatureExpired
from .hmac_sha256 import HmacSha256
from .paths import validate_relpath
from .settings import Settings

__all__ = ["Grant", "URLSigner", "signable_content_type"]

# Part of the HMAC key: a signature made for another purpose with the same secret
# (a Django session, say) never verifies here (tests/README.md, item 15).
SALT = "media-gateway.url.v1"
# Valid (path, query) pairs remembered per signer, each at most MAX_REMEMBERED
# characters long: ~1.5 KiB each at worst, 3 MiB in all.
GRANT_CACHE_SIZE = 2048
MAX_REMEMBERED = 1024
_CANONICAL_ORDERS = (
    ("exp", "sig"),
    ("exp", "dl", "sig"),
    ("exp", "ct", "sig"),
    ("exp", "dl", "ct", "sig"),
)
_PARAMS = frozenset({"exp", "dl", "ct", "sig"})
# A content-type override: a MIME type and at most a charset, nothing a header could
# be smuggled through; ASCII only (re.ASCII: \w would match any script's letters).
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+(; ?charset=[\w-]+)?", re.ASCII)
# The query exactly as sign_url writes it, verified without a general parse. Expiries
# are Unix seconds with one spelling, as sign_url writes them: ASCII digits, no leading
# zero; 12 digits last until the year 33658 and bound the parse.
_FAST_QUERY = re.compile(
    r"exp=(?P<exp>[1-9][0-9]{0,11})(?P<dl>&dl=1)?&sig=(?P<sig>[A-Za-z0-9_-]{43})"
)
_EXPIRY = re.compile(r"[1-9][0-9]{0,11}")
# URL-safe base64 of a SHA-256 HMAC, without padding.
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")


class Grant(NamedTuple):
    """What a valid signature allows: until when, and with which response options."""

    expires: int
    download: bool = False
    #: A Content-Type to answer with instead of the one guessed from the name.
    content_type: str | None = None


class URLSigner:
    """Sign and verify media URLs.

    :param secret_keys: the last key signs; every key verifies, for rotation.
    :param media_url: the URL prefix, such as ``/media/``.
    :param ttl: default lifetime of a URL, in seconds.
    :param window: expiries are rounded up to a multiple of this many seconds, or of a
        tenth of the lifetime (at least one second) when that is shorter.
    :param clock: returns the current Unix time; injected for tests.
    """

    def __init__(
        self,
        *,
        secret_keys: Sequence[str],
        media_url: str = "/media/",
        ttl: int = 3600,
        window: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = Signer(
            list(secret_keys), salt=SALT, digest_method=hashlib.sha256, key_derivation="hmac"
        )
        # itsdangerous derives each key (one HMAC of the salt) on every verification;
        # derived once here, newest first, that is a third of the cost of a request.
        self._derived_keys = [self._signer.derive_key(key) for key in reversed(secret_keys)]
        self._macs = [HmacSha256(key) for key in self._derived_keys]
        # Signed URLs are byte-identical for a whole window, so a page's images are
        # requested with the same URLs by every viewer: a valid signature is checked
        # once per URL, then found here (a dict lookup instead of an HMAC). Only valid ones are
        # kept (a forged URL is checked every time and never fills the cache); expiry
        # is checked on every request.
        self._signed_grant = functools.lru_cache(maxsize=GRANT_CACHE_SIZE)(self._grant)
        self.media_url = media_url
        self.ttl = ttl
        self.window = window
        self.clock = clock

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> URLSigner:
        """The signer the gateway verifies with, for ``settings``."""
        return cls(
            secret_keys=settings.secret_keys,
            media_url=settings.media_url,
            ttl=settings.url_ttl,
            window=settings.url_window,
            clock=clock,
        )

    def sign_url(
        self,
        path: str,
        *,
        expires_in: int | None = None,
        download: bool = False,
        content_type: str | None = None,
    ) -> str:
        """Return the relative signed URL of ``path`` (``docs/a.pdf`` or ``/media/docs/a.pdf``)."""
        relpath = self._relpath(path)
        lifetime = self.ttl if expires_in is None else expires_in
        if not isinstance(lifetime, int) or lifetime < 1:
            raise ValueError(f"expires_in must be a positive number of seconds, not {lifetime!r}")
        if content_type is not None and not _CONTENT_TYPE.fullmatch(content_type):
            raise ValueError(
                f"content_type must be a MIME type like text/plain, not {content_type!r}"
            )
        window = rounding_window(self.window, lifetime)
        expires = math.ceil((self.clock() + lifetime) / window) * window
        payload = _payload(relpath, expires, download, content_type)
        raw = self._signer.algorithm.get_signature(self._derived_keys[0], payload)
        signature = base64_encode(raw).decode("ascii")
        # exp is digits and sig URL-safe base64: nothing to escape, so no urlencode.
        options = "&dl=1" if download else ""
        if content_type is not None:
            options += f"&ct={quote(content_type, safe='')}"
        return f"{self.media_url}{quote(relpath, safe='/')}?exp={expires}{options}&sig={signature}"

    def verify(self, relpath: str, query_string: str) -> Grant:
        """Check the signature in ``query_string`` for ``relpath``; return what it grants.

        Raises :class:`BadSignature` for a missing, malformed, duplicated, reordered or
        wrong signature, and :class:`SignatureExpired` for a valid but expired one.
        """
        if len(relpath) + len(query_string) <= MAX_REMEMBERED:
            grant = self._signed_grant(relpath, query_string)
        else:  # padded with other parameters, or a long path: not worth its memory
            grant = self._grant(relpath, query_string)
        if grant.expires < self.clock():
            raise SignatureExpired("Signature expired")
        return grant

    def remembered(self) -> functools._CacheInfo:
        """Hits, misses and size of the remembered valid signatures."""
        return self._signed_grant.cache_info()

    def _grant(self, relpath: str, query_string: str) -> Grant:
        """What a valid signature in ``query_string`` grants, expired or not."""
        match = _FAST_QUERY.fullmatch(query_string)
        if match is not None:
            # The query exactly as sign_url writes it: one regex instead of a parse.
            exp, dl, signature = match.group("exp", "dl", "sig")
            expires, download = int(exp), dl is not None
            if not self._verify_fast(_payload(relpath, expires, download), signature):
                raise BadSignature("Invalid signature")
            return Grant(expires, download)
        # Our parameters are plain ASCII and never percent-encoded, so a split is
        # enough, and 4x cheaper than parse_qsl; an encoded spelling is not ours.
        params = []
        for part in query_string.split("&"):
            name, _, value = part.partition("=")
            if name in _PARAMS:
                params.append((name, value))
        if not params:
            raise BadSignature("Missing signature")
        names = tuple(name for name, _ in params)
        values = dict(params)
        if names not in _CANONICAL_ORDERS:
            raise BadSignature("Malformed signature parameters")
        exp, download = values["exp"], "dl" in values
        if not _EXPIRY.fullmatch(exp) or values.get("dl", "1") != "1":
            raise BadSignature("Malformed signature parameters")
        content_type = unquote(values["ct"]) if "ct" in values else None
        if content_type is not None and (
            not _CONTENT_TYPE.fullmatch(content_type)
            or quote(content_type, safe="") != values["ct"]  # one spelling, sign_url's
        ):
            raise BadSignature("Malformed signature parameters")
        signature = values["sig"]
        # Only the exact form we issue: itsdangerous's decoder tolerates padding and
        # stray characters, which would give one signature many spellings.
        if not _SIGNATURE.fullmatch(signature):
            raise BadSignature("Invalid signature")
        payload = _payload(relpath, int(exp), download, content_type)
        if not self._verify_fast(payload, signature):
            raise BadSignature("Invalid signature")
        return Grant(expires=int(exp), download=download, content_type=content_type)

    def _verify_fast(self, payload: bytes, signature: str) -> bool:
        # The HMAC-SHA256 of itsdangerous's HMACAlgorithm, compared as the text we issue:
        # skips its base64 decode and two layers of calls (a tenth of a small-file
        # request, bench/local.py), and refuses the other spellings of a signature that
        # its lenient decoder accepts (the last character's two spare bits).
        # tests/test_signing.py checks it agrees with itsdangerous otherwise.
        expected = signature.encode("ascii")
        for mac in self._macs:
            if hmac.compare_digest(_signature_text(mac, payload), expected):
                return True
        return False

    def _relpath(self, path: str) -> str:
        if path.startswith(self.media_url):
            path = path[len(self.media_url) :]
        path = path.lstrip("/")
        try:
            return validate_relpath(path)
        except Exception:
            raise ValueError(f"not a valid media path: {path!r}") from None


def signable_content_type(value: str) -> bool:
    """Whether a link may carry ``value`` as its ``ct`` option (a type, at most a charset)."""
    return _CONTENT_TYPE.fullmatch(value) is not None


def rounding_window(window: int, lifetime: int) -> int:
    """The window a link of ``lifetime`` seconds has its expiry rounded up to.

    Rounding up adds less than one window to the lifetime, so the window is at most a
    tenth of it (at least a second): a link never lives more than max(1 s, 10%) longer
    than asked (tests/README.md, item 60); ``sign --expires 1`` dies within two seconds, not
    at the end of a five-minute window. It depends on the lifetime alone, not on the
    time, so links of one lifetime still share their expiry for a whole window: the
    default TTL (3600 s, a tenth is 360) keeps the full 300 s window, and a page
    rendered twice within it carries byte-identical URLs.
    """
    return min(window, max(1, lifetime // 10))


def _signature_text(mac: HmacSha256, message: bytes) -> bytes:
    """The URL-safe base64 of ``mac`` over ``message``, without padding: half the cost of
    ``base64.urlsafe_b64encode`` (one C call and a translate)."""
    # 32 bytes are 43 base64 characters and one "=" of padding.
    return binascii.b2a_base64(mac.digest(message), newline=False)[:43].translate(_URLSAFE)


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _payload(relpath: str, expires: int, download: bool, content_type: str | None = None) -> bytes:
    # NUL cannot occur in a path or a MIME type, so the fields never run into each
    # other; the type is a fourth field only when present.
    payload = b"%s\x00%d\x00%s" % (
        relpath.encode("utf-8", "surrogatepass"),
        expires,
        b"1" if download else b"0",
    )
    if content_type is not None:
        payload += b"\x00" + content_type.encode("ascii")
    return payload
