"""The direct upload endpoint at ``GATEWAY_UPLOAD_PATH`` (README "Direct uploads").

``POST`` with JSON ``{"token", "filename", "size", "content_type"}`` answers where to
PUT the file: ``{"method": "PUT", "url", "headers", "key", "receipt"}``, or for a large
file in S3 mode ``{"method": "PUT", "parts": [...], "complete", "key"}``, and ``POST``
``{"complete", "parts": [{"number", "etag"}]}`` then completes it and answers the
receipt. Where the PUT goes depends on the mode:

- S3: straight to the bucket, presigned with Content-Type, Content-Length and the
  object parameters signed, so S3 itself refuses another size or type;
- local and migrating: to this endpoint, ``PUT ?sig=<grant>``, which writes the body
  under ``MEDIA_ROOT`` (:mod:`.receive`) and, migrating, to the bucket too: the two
  places the app's storage writes in that phase.

Errors are JSON ``{"error": reason}``: 400 malformed, 403 bad or expired token, 413
over the cap, 415 a type not allowed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
from starlette.types import Receive, Scope, Send

from ..exceptions import (
    BadGateway,
    BadRequest,
    ConfigError,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestError,
    UnsupportedMediaType,
)
from ..network import proxy_for, tls_context
from ..params import object_headers
from ..s3 import make_presigner
from ..settings import Settings
from ..sigv4 import Presigner
from ..uploads import Grant, UploadSigner
from .receive import body_pieces, receive_to_file
from .s3writes import S3Writer

__all__ = ["UploadEndpoint"]

logger = logging.getLogger("gateway.uploads")

MiB = 1 << 20
# A plan request is a few hundred bytes; a completion lists up to 10,000 ETags.
MAX_JSON_BYTES = 1 * MiB
MAX_PARTS = 10_000
# S3's largest single PUT: larger files need parts (S3 mode) or cannot go through the
# gateway to the bucket in one piece (migrating phase).
MAX_PUT = 5 * 1024 * MiB
# Part URLs and the completion live this long: a large file over a slow link takes
# hours, not days. ``upload --cleanup --older-than`` this aborts what was abandoned.
MULTIPART_TTL = 24 * 3600


class UploadEndpoint:
    """Answer the requests of direct uploads for one gateway's ``settings``."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.path = settings.upload_path
        self.signer = UploadSigner(secret_keys=settings.secret_keys, clock=clock)
        self.to_disk = not settings.use_s3 or settings.local_fallback
        self.root = os.path.realpath(settings.media_root) if self.to_disk else ""
        self.part_size = settings.upload_multipart_mb * MiB
        self.headers: dict[str, str] = {}
        self.own_headers: dict[str, str] = {}
        self.sse_c = False
        self._clock = clock
        self._transport = transport
        self._s3: tuple[Presigner, S3Writer] | None = None
        if settings.use_s3:
            try:
                write, read = object_headers(settings.aws_s3_object_parameters)
            except ValueError as exc:
                raise ConfigError("AWS_S3_OBJECT_PARAMETERS", str(exc)) from None
            write.pop("content-type", None)  # the upload's own type wins
            self.headers = {k: v for k, v in write.items() if k not in read}
            # What the gateway sends when it writes itself (migrating), SSE-C key included.
            self.own_headers = write
            # An SSE-C key would have to go to the browser to be sent with the PUT.
            self.sse_c = bool(read)

    async def storage(self) -> tuple[Presigner, S3Writer]:
        """The presigner for browsers' URLs and the writer of the gateway's own
        requests; made on the first upload rather than at start-up, in a thread (each
        reads boto3's credential chain, a blocking tenth of a second)."""
        if self._s3 is None:
            self._s3 = await anyio.to_thread.run_sync(self._make_storage)
        return self._s3

    def _make_storage(self) -> tuple[Presigner, S3Writer]:
        settings = self.settings
        writer = S3Writer(
            make_presigner(settings, public=False, clock=self._clock),
            timeout=settings.s3_timeout,
            tls=tls_context(settings),
            proxy=proxy_for(settings.s3_endpoint_url),
            transport=self._transport,
        )
        return make_presigner(settings, clock=self._clock), writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        try:
            if method == "POST":
                request = await _read_json(receive, self.settings.send_timeout)
                if "complete" in request:
                    answer = await self._complete(request)
                else:
                    answer = await self._plan(request)
                await _send_json(send, 200, answer)
            elif method == "PUT" and self.to_disk:
                await self._receive(scope, receive)
                await _send_json(send, 201, {"ok": True})
            else:
                allow = "POST, PUT" if self.to_disk else "POST"
                raise MethodNotAllowed(headers={"allow": allow})
        except RequestError as exc:
            body = {"error": exc.reason}
            await _send_json(send, exc.status_code, body, exc.headers)

    async def _plan(self, request: dict[str, Any]) -> dict[str, Any]:
        ticket = self.signer.open_ticket(request.get("token"))
        grant = self.signer.grant(
            ticket, request.get("filename"), request.get("size"), request.get("content_type")
        )
        headers = {"Content-Type": grant.content_type}
        answer: dict[str, Any] = {"method": "PUT", "key": grant.relpath}
        if self.to_disk:
            if self.settings.use_s3 and grant.size > MAX_PUT:
                raise BadRequest("size: over 5 GiB cannot be uploaded while migrating")
            token = self.signer.sign_grant("put", grant)
            answer.update(url=f"{self.path}?sig={token}", headers=headers)
            answer["receipt"] = self.signer.sign_receipt(grant)
            return answer
        if self.sse_c:
            logger.error("direct uploads cannot send an SSE-C key through the browser")
            raise BadGateway("Direct uploads are not available with SSE-C")
        headers.update(self.headers)
        public, _ = await self.storage()
        key = self.settings.key_for(grant.relpath)
        if grant.size <= self.part_size:
            signed = {**headers, "Content-Length": str(grant.size)}
            remaining = max(1, grant.expires - int(self.signer.clock()))
            url = public.presign_request("PUT", key, expires_in=remaining, headers=signed)
            answer.update(url=url.url, headers=headers)
            answer["receipt"] = self.signer.sign_receipt(grant)
            return answer
        return answer | await self._start_multipart(grant, key, headers)

    async def _start_multipart(
        self, grant: Grant, key: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        public, writer = await self.storage()
        part_size = self._part_size(grant.size)
        upload_id = await writer.create_multipart(key, headers)
        grant = grant._replace(
            upload_id=upload_id, expires=int(self.signer.clock()) + MULTIPART_TTL
        )

        def sign_parts() -> list[dict[str, Any]]:
            parts = []
            for number, offset in enumerate(range(0, grant.size, part_size), start=1):
                length = min(part_size, grant.size - offset)
                url = public.presign_request(
                    "PUT",
                    key,
                    expires_in=MULTIPART_TTL,
                    headers={"Content-Length": str(length)},
                    query={"partNumber": str(number), "uploadId": upload_id},
                )
                parts.append({"number": number, "url": url.url, "size": length})
            return parts

        # Up to 10,000 signatures (0.24 s measured): in a thread, not on the event loop.
        parts = await anyio.to_thread.run_sync(sign_parts)
        return {
            "part_size": part_size,
            "parts": parts,
            "complete": self.signer.sign_grant("complete", grant),
        }

    def _part_size(self, size: int) -> int:
        """GATEWAY_UPLOAD_MULTIPART_MB, or the whole MiB that fits ``size`` in 10,000
        parts, S3's most."""
        if _ceil(size, self.part_size) > MAX_PARTS:
            return _ceil(_ceil(size, MAX_PARTS), MiB) * MiB
        return self.part_size

    async def _complete(self, request: dict[str, Any]) -> dict[str, Any]:
        grant = self.signer.open_grant("complete", request.get("complete"))
        if not self.settings.use_s3 or grant.upload_id is None:
            raise BadRequest("complete: not a multipart upload")
        listed = request.get("parts")
        count = _ceil(grant.size, self._part_size(grant.size))
        etags: list[tuple[int, str]] = []
        if isinstance(listed, list):
            for index, part in enumerate(listed, start=1):
                if not isinstance(part, dict) or part.get("number") != index:
                    break
                etag = part.get("etag")
                if not isinstance(etag, str) or not 0 < len(etag) <= 200:
                    break
                etags.append((index, etag))
        if not isinstance(listed, list) or len(etags) != len(listed) or len(etags) != count:
            raise BadRequest("parts: expected every part, as {number, etag}, in order")
        key = self.settings.key_for(grant.relpath)
        _, writer = await self.storage()
        await writer.complete_multipart(key, grant.upload_id, etags)
        return {"key": grant.relpath, "receipt": self.signer.sign_receipt(grant)}

    async def _receive(self, scope: Scope, receive: Receive) -> None:
        token = _query_value(scope.get("query_string", b""), "sig")
        grant = self.signer.open_grant("put", token)
        headers = dict(scope["headers"])
        sent_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        if sent_type.partition(";")[0].strip() != grant.content_type:
            raise UnsupportedMediaType("Content-Type differs from the declared one")
        length = headers.get(b"content-length")
        if length is not None and length != str(grant.size).encode():
            raise _wrong_length(length, grant.size)
        incoming = await receive_to_file(
            receive,
            root=self.root,
            relpath=grant.relpath,
            size=grant.size,
            idle_timeout=self.settings.send_timeout,
        )
        with incoming:
            # The disk first: link() never replaces a file, so it claims the name once
            # and a replayed URL is refused before it could overwrite the object.
            incoming.publish()
            if self.settings.use_s3:
                # Migrating: the bucket too, the other place the app's storage writes in
                # this phase; if S3 fails, the disk copy goes, leaving neither.
                try:
                    _, writer = await self.storage()
                    fd = incoming.open_for_reading()
                    try:
                        headers_out = {"content-type": grant.content_type, **self.own_headers}
                        key = self.settings.key_for(grant.relpath)
                        await writer.put_file(key, fd, grant.size, headers_out)
                    finally:
                        os.close(fd)
                except BaseException:
                    incoming.unpublish()
                    raise


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _wrong_length(length: bytes, size: int) -> RequestError:
    if length.isdigit() and int(length) > size:
        return PayloadTooLarge("Content-Length larger than declared")
    return BadRequest("Content-Length differs from the declared one")


def _query_value(query: bytes, name: str) -> str | None:
    found = [v for k, _, v in (p.partition(b"=") for p in query.split(b"&")) if k == name.encode()]
    return found[0].decode("latin-1") if len(found) == 1 else None


async def _read_json(receive: Receive, idle_timeout: float) -> dict[str, Any]:
    body = bytearray()
    async for piece in body_pieces(receive, idle_timeout, "Request body"):
        body += piece
        if len(body) > MAX_JSON_BYTES:
            raise BadRequest("Request body too large")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        # RecursionError: a body of nested brackets deeper than the parser recurses
        # ("[" * 100_000 fits in MAX_JSON_BYTES), which was a 500 with a traceback.
        raise BadRequest("Expected a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("Expected a JSON object")
    return value


async def _send_json(
    send: Send, status: int, value: dict[str, Any], extra: dict[str, str] | None = None
) -> None:
    body = json.dumps(value).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
