"""A small S3 client for the migration tools: SigV4 over plain HTTP/1.1, with retries.

Why not boto3 here: botocore spends about a millisecond of CPU per request (event hooks,
request model, XML parsing) and a 1,000-key listing page costs it ~150 ms to parse. On
the 2-core machine of bench/upload.py, 5,000 files of 4 KiB took boto3's put_object 17 s
from 32 threads (11 s from 2 processes) and this client 4 s; listing 5,000 keys took
botocore 1 s and this client 0.12 s. One SigV4 signature is a SHA-256 and an HMAC
(:mod:`gateway.sigv4`); the connection is :mod:`gateway.migrate.http11`.

Requests carry no ``aws-chunked`` bodies and no ``x-amz-checksum-*`` headers, which
boto3 >= 1.36 adds by default and which S3-compatible servers may reject: small bodies
are signed with their SHA-256 (S3 checks it), multipart parts are sent UNSIGNED-PAYLOAD.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Protocol
from urllib.parse import quote, unquote_plus, urlsplit

from ..network import redact
from ..sigv4 import Credentials, HeaderSigner
from .http11 import Connection, ProtocolError, ProxyError, Response

__all__ = ["Body", "ObjectInfo", "S3Error", "S3Wire", "Sink"]

UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Statuses worth another try: S3's SlowDown is 503, rclone answers 500 when two PUTs
# race to create one folder, and proxies answer 502/504 while a server restarts.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Connection failures worth another try: a server closing an idle keep-alive connection
# shows up as a reset or an empty answer on the next request.
RETRY_ERRORS = (ConnectionError, ProtocolError, TimeoutError)
# Bodies are sent and received in blocks of this size: few system calls on large parts.
SEND_BLOCK = 1 << 20


class Body(Protocol):
    """A request body read in blocks (a part of a file), sent again from its start on a
    retry."""

    length: int

    def read(self, size: int = -1) -> bytes: ...

    def rewind(self) -> None: ...


class Sink(Protocol):
    """Where a download goes: a file, or nothing (verify only hashes)."""

    def write(self, data: bytes, /) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def truncate(self, size: int | None = None, /) -> int: ...

    def tell(self) -> int: ...


class S3Error(Exception):
    """S3 refused a request (``code`` from its XML, or the HTTP status), or it could not
    be reached after every retry (``status`` None). ``region`` is the bucket's region
    when S3 sent us elsewhere (301, 307, or a 400 naming the region it expects)."""

    def __init__(
        self, code: str, message: str, status: int | None = None, region: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status
        self.region = region


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object of a listing or a HEAD. ``metadata`` names are lower case (servers
    written in Go answer ``X-Amz-Meta-Sha256``)."""

    key: str
    size: int
    etag: str
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    last_modified: float | None = None


class S3Wire:
    """Requests to one bucket. Thread-safe: each thread keeps its own keep-alive
    connection; :meth:`close` closes them all.

    :param credentials: returns the current credentials (refreshed ones included).
    :param timeout: seconds to connect and between bytes of an answer; generous, since a
        server busy with 64 uploads may take a while to acknowledge one part.
    :param max_attempts: tries per request on 5xx, 429 and dropped connections, with
        exponential backoff and full jitter capped at ``backoff_cap`` seconds.
    :param tls: the TLS context of every connection (:func:`gateway.network.tls_context`);
        by default the system store's, built once.
    :param proxy_for: the proxy URL for a URL, or None (:func:`gateway.network.proxy_for`);
        by default every connection is direct.
    """

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        bucket: str,
        addressing_style: str,
        credentials: Callable[[], Credentials],
        timeout: float = 60.0,
        max_attempts: int = 10,
        backoff_base: float = 0.05,
        backoff_cap: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        tls: ssl.SSLContext | None = None,
        proxy_for: Callable[[str], str | None] | None = None,
    ) -> None:
        parts = urlsplit(endpoint_url)
        self._https = parts.scheme == "https"
        base_path = parts.path.rstrip("/")
        if addressing_style == "virtual":
            self._host = f"{bucket}.{parts.netloc}"
            self._prefix = base_path
        else:
            self._host = parts.netloc
            self._prefix = f"{base_path}/{quote(bucket, safe='~')}"
        self.bucket = bucket
        self.region = region
        self.origin = f"{parts.scheme}://{self._host}"
        # One context for all connections: building one loads the CA store (milliseconds).
        self.tls = (tls or ssl.create_default_context()) if self._https else None
        self.proxy = proxy_for(self.origin) if proxy_for is not None else None
        if self.proxy is not None and not self.proxy.startswith("http://"):
            raise ValueError(f"expected an http:// proxy (got {redact(self.proxy)!r})")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.signer = HeaderSigner(host=self._host, region=region, credentials=credentials)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self.retries = 0  # requests tried again, for the summary and the tests

    # --- objects ---------------------------------------------------------------

    def put_object(self, key: str, body: bytes, headers: Mapping[str, str], sha256_hex: str) -> str:
        """PutObject; returns the ETag. ``sha256_hex`` signs the body, so S3 refuses a
        body that was corrupted on the way."""
        reply = self.request("PUT", key, headers=dict(headers), body=body, payload=sha256_hex)
        return _etag(reply.headers)

    def head_object(self, key: str, headers: Mapping[str, str] | None = None) -> ObjectInfo | None:
        """HeadObject, or None when there is no such object."""
        reply = self.request("HEAD", key, headers=dict(headers or {}), ok_missing=True)
        if reply.status == 404:
            return None
        return _object_info(key, reply.headers)

    def get_object(
        self, key: str, out: Sink, headers: Mapping[str, str] | None = None
    ) -> tuple[ObjectInfo, str]:
        """Stream an object into ``out`` (from its start, again on each retry); return its
        info and the SHA-256 of the bytes written."""

        def receive(response: Response) -> str:
            out.seek(0)
            out.truncate()
            digest = hashlib.sha256()
            while chunk := response.read(SEND_BLOCK):
                digest.update(chunk)
                out.write(chunk)
            return digest.hexdigest()

        reply = self.request("GET", key, headers=dict(headers or {}), receive=receive)
        info = _object_info(key, reply.headers)
        if reply.received is None or out.tell() != info.size:
            raise S3Error("IncompleteBody", f"got {out.tell()} of {info.size} bytes")
        return info, reply.received

    def list_objects(self, prefix: str, *, strip: bool = False) -> Iterator[ObjectInfo]:
        """ListObjectsV2 under ``prefix``, page by page, in S3's order (UTF-8 bytes).
        With ``strip``, keys are given relative to ``prefix``."""
        token: str | None = None
        cut = len(prefix) if strip else 0
        while True:
            query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
            if token:
                query["continuation-token"] = token
            root = _xml(self.request("GET", "", query=query).body)
            for item in _children(root, "Contents"):
                key = _text(item, "Key")
                if "%" in key or "+" in key:
                    key = unquote_plus(key, errors="strict")
                etag = _text(item, "ETag")
                yield ObjectInfo(key[cut:], _size(_text(item, "Size")), etag.strip('"'))
            token = _text(root, "NextContinuationToken")
            if _text(root, "IsTruncated") != "true" or not token:
                return

    def check_bucket(self) -> None:
        """Raise S3Error unless the bucket exists and the credentials may list it; tried
        three times only, so that a wrong endpoint fails fast."""
        self.request("GET", "", query={"list-type": "2", "max-keys": "1"}, attempts=3)

    # --- multipart -------------------------------------------------------------

    def create_multipart_upload(self, key: str, headers: Mapping[str, str]) -> str:
        reply = self.request("POST", key, query={"uploads": ""}, headers=dict(headers))
        return _text(_xml(reply.body), "UploadId")

    def upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        body: bytes | Body,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        query = {"partNumber": str(number), "uploadId": upload_id}
        reply = self.request("PUT", key, query=query, headers=dict(headers or {}), body=body)
        return _etag(reply.headers)

    def complete_multipart_upload(self, key: str, upload_id: str, etags: list[str]) -> str:
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>&quot;{etag}&quot;</ETag></Part>"
            for n, etag in enumerate(etags, 1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        reply = self.request(
            "POST",
            key,
            query={"uploadId": upload_id},
            body=body,
            payload=hashlib.sha256(body).hexdigest(),
        )
        return _text(_xml(reply.body), "ETag").strip('"')

    def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        self.request("DELETE", key, query={"uploadId": upload_id}, ok_missing=True)

    def list_multipart_uploads(self, prefix: str) -> Iterator[tuple[str, str, float | None]]:
        """(key, upload id, initiated) of the incomplete uploads under ``prefix``."""
        markers: dict[str, str] = {}
        while True:
            query = {"uploads": "", "prefix": prefix, "encoding-type": "url", **markers}
            reply = self.request("GET", "", query=query, ok_missing=True)
            if reply.status == 404:  # rclone: NoSuchUpload until the bucket has had one
                return
            root = _xml(reply.body)
            for item in _children(root, "Upload"):
                initiated = _text(item, "Initiated")
                key = unquote_plus(_text(item, "Key"))
                yield key, _text(item, "UploadId"), _parse_time(initiated) if initiated else None
            if _text(root, "IsTruncated") != "true":
                return
            markers = {
                "key-marker": unquote_plus(_text(root, "NextKeyMarker")),
                "upload-id-marker": _text(root, "NextUploadIdMarker"),
            }

    # --- plumbing --------------------------------------------------------------

    def request(
        self,
        method: str,
        key: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | Body = b"",
        payload: str | None = None,
        ok_missing: bool = False,
        receive: Callable[[Response], str] | None = None,
        attempts: int | None = None,
    ) -> _Reply:
        """Send one signed request, retrying what is worth retrying. Raises S3Error."""
        path = f"{self._prefix}/{quote(key, safe='/~')}" if key else self._prefix or "/"
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, v in sorted((query or {}).items())
        )
        target = f"{path}?{canonical_query}" if canonical_query else path
        length = len(body) if isinstance(body, bytes) else body.length
        if payload is None:
            payload = UNSIGNED if length else EMPTY_SHA256
        attempt = 0
        while True:
            attempt += 1
            signed = self.signer.sign(method, path, canonical_query, headers or {}, payload)
            if length or method in ("PUT", "POST"):
                signed["content-length"] = str(length)
            if not isinstance(body, bytes):
                body.rewind()
            try:
                return self._send(method, target, signed, body, ok_missing, receive)
            except _Retry as exc:
                if attempt >= (attempts or self.max_attempts):
                    raise exc.error from None
                with self._lock:
                    self.retries += 1
                # Full jitter: many threads hit by one 503 storm must not come back in step.
                delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))  # noqa: S311
                self.sleep(delay)

    def _send(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | Body,
        ok_missing: bool,
        receive: Callable[[Response], str] | None,
    ) -> _Reply:
        conn = self._connection()
        try:
            response = conn.request(method, target, headers, body if body else None, SEND_BLOCK)
            status = response.status
            if 200 <= status < 300 and receive is not None:
                received: str | None = receive(response)
                data = b""
            else:
                received = None
                data = response.read()
        except RETRY_ERRORS as exc:
            self._drop_connection()
            if isinstance(exc, ProxyError):
                raise _Retry(S3Error("ProxyError", str(exc))) from None
            raise _Retry(S3Error("ConnectionError", f"{type(exc).__name__}: {exc}")) from None
        except OSError as exc:  # TLS, routing, name resolution: not worth retrying
            self._drop_connection()
            untrusted = isinstance(exc, ssl.SSLCertVerificationError)
            code = "TLSError" if untrusted else "ConnectionError"
            raise S3Error(code, f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            self._drop_connection()  # a body that failed mid-send leaves the stream unusable
            raise
        reply_headers = response.headers
        if response.will_close:
            self._drop_connection()
        if 200 <= status < 300:
            if data.startswith(b"<?xml") and b"<Error>" in data[:200]:
                # CompleteMultipartUpload may fail after its 200 status line.
                error = _error(status, data, reply_headers, self.region)
                raise _Retry(error) if error.code == "InternalError" else error
            return _Reply(status, reply_headers, data, received)
        if status == 404 and ok_missing:
            return _Reply(status, reply_headers, data, None)
        error = _error(status, data, reply_headers, self.region)
        if status in RETRY_STATUSES or error.code in ("SlowDown", "RequestTimeout"):
            raise _Retry(error)
        raise error

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = Connection(
                self._host,
                tls=self._https,
                timeout=self.timeout,
                context=self.tls,
                proxy=self.proxy,
            )
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()  # the next request on this thread opens a new one

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()


@dataclasses.dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    received: str | None


class _Retry(Exception):
    def __init__(self, error: S3Error) -> None:
        super().__init__(str(error))
        self.error = error


# Where S3 names the region of an endpoint: bucket.s3.eu-west-1.amazonaws.com,
# s3-eu-west-1.amazonaws.com, bucket.s3.dualstack.eu-west-1.amazonaws.com.
_ENDPOINT_REGION = re.compile(r"s3[.-](?:dualstack\.)?([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.")
# Statuses S3 answers for a bucket addressed through another region's endpoint.
_REGION_STATUSES = frozenset({301, 307, 400})


def _error(
    status: int, data: bytes, headers: Mapping[str, str] | None = None, asked: str = ""
) -> S3Error:
    code, message = str(status), ""
    root: ET.Element | None = None
    if data:
        try:
            root = ET.fromstring(data)  # noqa: S314 - the configured S3 server's answer
        except ET.ParseError:
            message = data[:200].decode("utf-8", "replace")
        else:
            code = _text(root, "Code") or code
            message = _text(root, "Message")
    elif status == 404:
        code = "NotFound"
    elif status in (301, 307):  # a HEAD: no body, only the header
        code = "PermanentRedirect" if status == 301 else "TemporaryRedirect"
    region = None
    if status in _REGION_STATUSES:
        region = (headers or {}).get("x-amz-bucket-region") or None
        if region is None and root is not None:
            found = _ENDPOINT_REGION.search(_text(root, "Endpoint"))
            region = _text(root, "Region") or (found[1] if found else None)
        if region == asked:
            region = None  # a 400 for another reason
        if region is not None:
            message = (
                f"the bucket is in region {region}, not {asked or 'the one configured'}:"
                f" set AWS_S3_REGION_NAME={region}"
            )
    return S3Error(code, message, status, region)


def _size(text: str) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise S3Error("BadResponse", f"listing with a bad object size {text[:40]!r}")
    return int(text)


def _xml(data: bytes) -> ET.Element:
    try:
        return ET.fromstring(data)  # noqa: S314 - the configured S3 server's answer
    except ET.ParseError as exc:
        raise S3Error("BadResponse", f"unreadable XML from S3: {exc}") from None


def _children(root: ET.Element, name: str) -> Iterator[ET.Element]:
    for child in root:
        if child.tag.rpartition("}")[2] == name:
            yield child


def _text(element: ET.Element, name: str) -> str:
    for child in _children(element, name):
        return child.text or ""
    return ""


def _etag(headers: Mapping[str, str]) -> str:
    return headers.get("etag", "").strip('"')


def _object_info(key: str, headers: Mapping[str, str]) -> ObjectInfo:
    metadata = {
        k[len("x-amz-meta-") :]: v for k, v in headers.items() if k.startswith("x-amz-meta-")
    }
    modified = headers.get("last-modified")
    return ObjectInfo(
        key=key,
        size=int(headers.get("content-length", 0)),
        etag=_etag(headers),
        metadata=metadata,
        last_modified=_http_time(modified) if modified else None,
    )


def _parse_time(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _http_time(value: str) -> float | None:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
