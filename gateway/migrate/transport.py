"""Signed requests to one bucket: SigV4 headers, retries with backoff and jitter, and a
keep-alive connection per thread (:mod:`gateway.migrate.http11`).

Requests carry no ``aws-chunked`` bodies and no ``x-amz-checksum-*`` headers, which
boto3 >= 1.36 adds by default and which S3-compatible servers may reject: small bodies
are signed with their SHA-256 (S3 checks it), multipart parts are sent UNSIGNED-PAYLOAD.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import quote

from ..exceptions import MigrationError, ProtocolError, ProxyError, S3Error
from ..network import redact
from ..sigv4 import Credentials, HeaderSigner, bucket_address
from .http11 import Connection, Response
from .replies import s3_error

__all__ = ["EMPTY_SHA256", "SEND_BLOCK", "Body", "Reply", "Transport"]

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


class Transport:
    """Signed requests to one bucket. Thread-safe: each thread keeps its own keep-alive
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
        address = bucket_address(endpoint_url, bucket, addressing_style)
        self._https = address.scheme == "https"
        self._host = address.host
        self._prefix = address.path_prefix
        self.bucket = bucket
        self.region = region
        self.origin = address.origin
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
    ) -> Reply:
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
    ) -> Reply:
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
                error = s3_error(status, data, reply_headers, self.region)
                raise _Retry(error) if error.code == "InternalError" else error
            return Reply(status, reply_headers, data, received)
        if status == 404 and ok_missing:
            return Reply(status, reply_headers, data, None)
        error = s3_error(status, data, reply_headers, self.region)
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
class Reply:
    """An answer: ``received`` is what ``receive`` made of a 2xx body (then not kept)."""

    status: int
    headers: dict[str, str]
    body: bytes
    received: str | None


class _Retry(MigrationError):
    """A failure worth another try; ``error`` is raised when none is left."""

    def __init__(self, error: S3Error) -> None:
        super().__init__(str(error))
        self.error = error
