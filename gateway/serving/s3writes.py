"""The gateway's own writes to the bucket for direct uploads: a multipart upload's
creation and completion, and, in the migrating phase, the PUT of a file the browser
sent to the gateway. Each is a presigned request (:meth:`Presigner.presign_request`)
sent with httpx, so the same SigV4 code signs every request the gateway makes.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from xml.sax.saxutils import escape

import anyio
import httpx

from ..exceptions import BadGateway, BadRequest, GatewayTimeout
from ..sigv4 import Presigner

__all__ = ["S3Writer"]

logger = logging.getLogger("gateway.uploads")

# A request the gateway makes for itself is sent at once: a minute is plenty.
OWN_REQUEST_TTL = 60
_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")
_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
# Read from the temporary file and sent in blocks of this size: constant memory.
BLOCK = 256 * 1024


class S3Writer:
    """Write to the bucket through presigned requests.

    :param presigner: signs for the endpoint the gateway reaches (not the public one).
    :param timeout: seconds for connecting and for each read or write.
    """

    def __init__(
        self,
        presigner: Presigner,
        *,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        proxy: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.presigner = presigner
        self.timeout = timeout
        self._tls = tls or ssl.create_default_context()
        self._proxy = proxy
        self._transport = transport

    def _client(self) -> httpx.AsyncClient:
        # A client per call: uploads are rare next to downloads, and a shared pool would
        # belong to one event loop (see proxy.py for the pool's troubles).
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            transport=self._transport,
            verify=self._tls,
            proxy=self._proxy,
            trust_env=False,
        )

    async def create_multipart(self, key: str, headers: Mapping[str, str]) -> str:
        """Start a multipart upload of ``key`` with ``headers`` (type, object parameters)."""
        url = self.presigner.presign_request(
            "POST", key, expires_in=OWN_REQUEST_TTL, headers=headers, query={"uploads": ""}
        ).url
        body = await self._send("POST", url, headers=dict(headers))
        found = _UPLOAD_ID.search(body)
        if found is None:
            logger.error("CreateMultipartUpload answered without an UploadId")
            raise BadGateway()
        return found.group(1).decode()

    async def complete_multipart(
        self, key: str, upload_id: str, etags: Sequence[tuple[int, str]]
    ) -> None:
        parts = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
            for number, etag in etags
        )
        xml = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        url = self.presigner.presign_request(
            "POST", key, expires_in=OWN_REQUEST_TTL, query={"uploadId": upload_id}
        ).url
        body = await self._send("POST", url, content=xml, refused=BadRequest)
        # S3 may answer 200 and report the failure in the body, once it streamed.
        if b"<Error>" in body:
            code = _ERROR_CODE.search(body)
            reason = code.group(1).decode() if code else "error"
            raise BadRequest(f"Storage refused to complete the upload: {reason}")

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        url = self.presigner.presign_request(
            "DELETE", key, expires_in=OWN_REQUEST_TTL, query={"uploadId": upload_id}
        ).url
        await self._send("DELETE", url)

    async def put_file(self, key: str, fd: int, size: int, headers: Mapping[str, str]) -> None:
        """PUT ``size`` bytes read from ``fd`` (from its start) to ``key``."""
        signed = {**headers, "content-length": str(size)}
        url = self.presigner.presign_request(
            "PUT", key, expires_in=OWN_REQUEST_TTL, headers=signed
        ).url

        async def blocks() -> AsyncIterator[bytes]:
            offset = 0
            while offset < size:
                block = await anyio.to_thread.run_sync(os.pread, fd, BLOCK, offset)
                if not block:
                    raise BadGateway("Upload file shrank")
                offset += len(block)
                yield block

        await self._send("PUT", url, headers=signed, content=blocks())

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        refused: type[BadGateway] | type[BadRequest] = BadGateway,
    ) -> bytes:
        try:
            async with self._client() as client:
                response = await client.request(method, url, headers=headers, content=content)
        except httpx.TimeoutException:
            raise GatewayTimeout() from None
        except httpx.TransportError as exc:
            logger.error("S3 unreachable: %s", exc)
            raise BadGateway("Storage unreachable") from None
        if response.status_code >= 300:
            # Our own signature and settings: an operator's problem, logged; the browser
            # learns only that storage refused (400 when it sent the wrong parts).
            logger.error(
                "S3 answered %s to %s: %s", response.status_code, method, response.text[:300]
            )
            if response.status_code == 400 and refused is BadRequest:
                raise BadRequest("Storage refused to complete the upload")
            raise BadGateway()
        return response.content
