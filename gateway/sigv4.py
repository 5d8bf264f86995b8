"""Every SigV4 computation: query presigning for S3 URLs, stable for a whole time window,
and header signing for the migration tools' requests.

Why our own presigner rather than boto3's ``generate_presigned_url``:

- Speed. boto3 runs its event hooks, endpoint resolution and request model on every
  call, which a page of a thousand links pays a thousand times; one SigV4 signature is a
  SHA-256 and an HMAC. See bench/results/redirect.md ("one presigned URL, in process")
  for both, and the SigV4 floor.
- Stable URLs. The date of a SigV4 signature is part of the URL. We sign with the
  start of the current window as the date, so every worker process hands out the
  byte-identical URL for the same object until the window turns, and browsers and
  CDNs reuse what they cached. boto3 signs with "now", a new URL every second.

tests/test_presign.py proves the output byte-identical to botocore's for the same
time, credentials and inputs. Credentials come from boto3's chain (session tokens too),
read on each call; a URL is never signed to outlive temporary ones.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from .exceptions import ServiceUnavailable
from .hmac_sha256 import HmacSha256

__all__ = [
    "MAX_EXPIRES",
    "BucketAddress",
    "Credentials",
    "HeaderSigner",
    "Presigned",
    "Presigner",
    "bucket_address",
    "signing_key",
    "virtual_hostable",
]

# SigV4 presigned URLs cannot live longer than seven days.
MAX_EXPIRES = 7 * 24 * 3600


class _WindowState(NamedTuple):
    """What every URL of one window and set of credentials shares."""

    #: The auth parameters in botocore's order (the URL) and sorted (the canonical query).
    query: str
    canonical_query: str
    #: The string to sign up to the canonical request's hash.
    string_to_sign: bytes
    mac: HmacSha256
    #: Unix time after which S3 refuses the window's URLs.
    expires_at: int


@dataclasses.dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None
    #: Unix time at which temporary credentials end (S3 then refuses every URL signed
    #: with them); None for long-term keys and tokens of unknown lifetime.
    expires_at: int | None = None


class BucketAddress(NamedTuple):
    """Where the requests for one bucket go, and what SigV4 signs of it."""

    #: ``https`` or ``http``.
    scheme: str
    #: The Host header: ``name[:port]``, with the bucket in front in virtual style.
    host: str
    #: What every object's path starts with: the endpoint's path, then the bucket in
    #: path style; "" for a bare host in virtual style.
    path_prefix: str

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}"


def bucket_address(endpoint_url: str, bucket: str, addressing_style: str) -> BucketAddress:
    """The address of ``bucket`` at ``endpoint_url``: ``path`` style puts the bucket in
    the path (``host/bucket/key``), ``virtual`` in the host name (``bucket.host/key``).
    Shared by the presigner and the migration tools' client, so both sign one URL."""
    parts = urlsplit(endpoint_url)
    base_path = parts.path.rstrip("/")
    if addressing_style == "virtual":
        return BucketAddress(parts.scheme, f"{bucket}.{parts.netloc}", base_path)
    return BucketAddress(parts.scheme, parts.netloc, f"{base_path}/{_uri_encode(bucket)}")


class Presigned(NamedTuple):
    url: str
    #: Unix time after which S3 refuses the URL.
    expires_at: int
    #: The window and credentials it was signed in; None if not windowed.
    window: tuple[int, Credentials] | None = None


class Presigner:
    """Presign GET URLs for keys of one bucket.

    :param endpoint_url: the address clients use to reach the storage
        (``GATEWAY_S3_PUBLIC_ENDPOINT_URL`` or ``AWS_S3_ENDPOINT_URL``); SigV4 signs
        its host, so it cannot be rewritten afterwards.
    :param addressing_style: ``path`` (``host/bucket/key``) or ``virtual``
        (``bucket.host/key``).
    :param credentials: returns the current credentials (boto3's chain).
    :param ttl: URLs are signed for this many seconds from the window start, never
        past the expiry of the credentials.
    :param window: URLs are identical within a window of this many seconds, and stay
        valid at least ``ttl - window`` seconds after they are handed out (or until
        temporary credentials end, if sooner).
    """

    def __init__(
        self,
        *,
        bucket: str,
        region: str,
        endpoint_url: str,
        addressing_style: str,
        credentials: Callable[[], Credentials],
        ttl: int = 3600,
        window: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < window < ttl <= MAX_EXPIRES:
            raise ValueError(f"need 0 < window < ttl <= {MAX_EXPIRES}, got {window=} {ttl=}")
        address = bucket_address(endpoint_url, bucket, addressing_style)
        self._origin = address.origin
        self._host = address.host
        self._path_prefix = address.path_prefix
        self.region = region
        self.credentials = credentials
        self.ttl = ttl
        self.window = window
        self.clock = clock
        self._scope_suffix = f"/{region}/s3/aws4_request"
        self._window: tuple[tuple[int, Credentials], _WindowState] | None = None

    def presign(
        self,
        key: str,
        *,
        content_disposition: str | None = None,
        content_type: str | None = None,
        method: str = "GET",
    ) -> Presigned:
        """Return the presigned URL of ``key``, identical within the current window.

        ``method`` is the client's (GET or HEAD): SigV4 signs the method, and a HEAD
        with a GET signature is refused. Raises :class:`ServiceUnavailable` when the
        credentials have ended and the chain gave no new ones: a URL signed with them
        would be refused.
        """
        now = int(self.clock())
        creds = self.credentials()
        if creds.expires_at is not None and now >= creds.expires_at:
            # The window's state was made while they were valid; reusing it now would
            # hand out a URL that is dead on arrival.
            raise ServiceUnavailable("Storage credentials expired; retry")
        start = now // self.window * self.window
        state = self._window_state(start, creds)
        # Request parameters come first in the URL, after the auth parameters in the
        # canonical query: sorted by name, "X-Amz-" precedes "response-".
        query, canonical_query = state.query, state.canonical_query
        if content_disposition is not None:
            param = "response-content-disposition=" + _uri_encode(content_disposition, "")
            query, canonical_query = f"{param}&{query}", f"{canonical_query}&{param}"
        if content_type is not None:
            param = "response-content-type=" + _uri_encode(content_type, "")
            if content_disposition is None:
                query = f"{param}&{query}"
            else:  # after the disposition, as botocore orders them
                first, _, rest = query.partition("&")
                query = f"{first}&{param}&{rest}"
            canonical_query = f"{canonical_query}&{param}"
        path = f"{self._path_prefix}/{_uri_encode(key)}"
        canonical_request = (
            f"{method}\n{path}\n{canonical_query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        )
        digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
        signature = state.mac.digest(state.string_to_sign + digest.encode("ascii")).hex()
        url = f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"
        return Presigned(url, state.expires_at, (start, creds))

    def signs_alike(self, window: tuple[int, Credentials] | None, now: int) -> bool:
        """Whether :meth:`presign` at ``now`` signs in ``window`` (a :class:`Presigned`'s)
        with the same credentials, still valid: then it gives the same URLs again."""
        if window is None or now // self.window * self.window != window[0]:
            return False
        creds = window[1]
        if creds.expires_at is not None and now >= creds.expires_at:
            return False
        current = self.credentials()
        return current is creds or current == creds

    def presign_request(
        self,
        method: str,
        key: str,
        *,
        expires_in: int,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Presigned:
        """A URL for one request that changes the bucket (a direct upload's PUT, a part,
        the gateway's own multipart calls), signed now for ``expires_in`` seconds.

        ``headers`` are signed and must be sent exactly so (S3 refuses the request
        otherwise): a ``Content-Type`` and ``Content-Length`` here make S3 itself refuse
        another type or size. ``query`` holds request parameters (``uploadId``). Not
        windowed like :meth:`presign`: nobody caches these URLs, and each names one upload.
        """
        now = int(self.clock())
        creds = self.credentials()
        if creds.expires_at is not None and now >= creds.expires_at:
            raise ServiceUnavailable("Storage credentials expired; retry")
        lifetime = min(expires_in, MAX_EXPIRES)
        if creds.expires_at is not None:
            lifetime = min(lifetime, creds.expires_at - now)
        amz_date = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        scope = amz_date[:8] + self._scope_suffix
        signed = {"host": self._host} | {k.lower(): v.strip() for k, v in (headers or {}).items()}
        names = sorted(signed)
        params = [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"{creds.access_key}/{scope}"),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(lifetime)),
            ("X-Amz-SignedHeaders", ";".join(names)),
        ]
        if creds.token:
            params.append(("X-Amz-Security-Token", creds.token))
        params += list((query or {}).items())
        encoded = sorted((_uri_encode(k, ""), _uri_encode(v, "")) for k, v in params)
        canonical_query = "&".join(f"{k}={v}" for k, v in encoded)
        path = f"{self._path_prefix}/{_uri_encode(key)}"
        canonical_request = "\n".join(
            [
                method,
                path,
                canonical_query,
                "".join(f"{name}:{signed[name]}\n" for name in names),
                ";".join(names),
                "UNSIGNED-PAYLOAD",
            ]
        )
        digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}".encode()
        signature = hmac.new(
            signing_key(creds.secret_key, amz_date[:8], self.region), to_sign, hashlib.sha256
        ).hexdigest()
        url = f"{self._origin}{path}?{canonical_query}&X-Amz-Signature={signature}"
        return Presigned(url, now + lifetime)

    def _window_state(self, start: int, creds: Credentials) -> _WindowState:
        # Everything but the key and the options is fixed for a window and a set of
        # credentials: computed once, which halves the cost of a presign.
        cached = self._window
        if cached is not None and cached[0] == (start, creds):
            return cached[1]
        amz_date = datetime.fromtimestamp(start, UTC).strftime("%Y%m%dT%H%M%SZ")
        # A URL cannot outlive the credentials it is signed with (S3 refuses it then), so
        # it is not signed to: its expiry stops at theirs, and so do the redirect's
        # max-age and the browser caches that trust it. presign() has checked that they
        # are still valid, so at least one second remains after the window start.
        expires = self.ttl
        if creds.expires_at is not None:
            expires = min(expires, creds.expires_at - start)
        scope = amz_date[:8] + self._scope_suffix
        auth = [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"{creds.access_key}/{scope}"),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        if creds.token:
            auth.append(("X-Amz-Security-Token", creds.token))
        encoded = [(k, _uri_encode(v, "")) for k, v in auth]
        state = _WindowState(
            query="&".join(f"{k}={v}" for k, v in encoded),
            canonical_query="&".join(f"{k}={v}" for k, v in sorted(encoded)),
            string_to_sign=f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n".encode(),
            mac=HmacSha256(signing_key(creds.secret_key, amz_date[:8], self.region)),
            expires_at=start + expires,
        )
        self._window = ((start, creds), state)
        return state


@functools.lru_cache(maxsize=16)
def signing_key(secret: str, datestamp: str, region: str) -> bytes:
    """The SigV4 signing key: four chained HMACs that change once a day, so cached.
    Shared by the presigner and the migration tools' request signer."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), datestamp)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    return key


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def _uri_encode(value: str, safe: str = "/") -> str:
    # SigV4 URI encoding: everything but unreserved characters (and "/" in paths);
    # quote() always keeps the unreserved "-_.~". Most keys need none, and quote() is
    # Python code where the check is one regular expression match, several times cheaper.
    if safe == "/" and _UNRESERVED_PATH.fullmatch(value):
        return value
    return quote(value, safe=safe)


_UNRESERVED_PATH = re.compile(r"[A-Za-z0-9/_.~-]*")


class HeaderSigner:
    """Sign requests to one host and region with the current credentials."""

    def __init__(self, *, host: str, region: str, credentials: Callable[[], Credentials]) -> None:
        self.host = host
        self.region = region
        self.credentials = credentials
        self._scope_suffix = f"/{region}/s3/aws4_request"

    def sign(
        self,
        method: str,
        path: str,
        canonical_query: str,
        extra: Mapping[str, str],
        payload: str,
    ) -> dict[str, str]:
        """The headers to send: ``extra`` plus host, date, payload hash, token and
        Authorization. ``path`` and ``canonical_query`` are already URI-encoded."""
        creds = self.credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        date = amz_date[:8]
        headers = {k.lower(): v for k, v in extra.items()}
        headers["host"] = self.host
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = payload
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        names = sorted(headers)
        signed_names = ";".join(names)
        canonical = "\n".join(
            [
                method,
                path,
                canonical_query,
                "".join(f"{n}:{headers[n].strip()}\n" for n in names),
                signed_names,
                payload,
            ]
        )
        scope = date + self._scope_suffix
        to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        )
        signature = hmac.new(
            signing_key(creds.secret_key, date, self.region),
            to_sign.encode("utf-8"),
            hashlib.sha256,
        ).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return headers


def virtual_hostable(bucket: str, *, dots: bool) -> bool:
    """True when ``bucket`` can be the first label(s) of a host name: botocore's
    ``aws.isVirtualHostableS3Bucket`` (lower case, 3 characters or more, not an IPv4
    address, each label an RFC 1123 host label; several labels only with ``dots``)."""
    if len(bucket) < 3 or bucket.lower() != bucket or _IPV4.fullmatch(bucket):
        return False
    labels = bucket.split(".")
    if len(labels) > 1 and not dots:
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


_IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
_HOST_LABEL = re.compile(r"(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")
