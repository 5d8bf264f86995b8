"""A small S3 client for the migration tools: the operations upload, verify and pull
need, on one bucket, over :class:`~gateway.migrate.transport.Transport`.

Why not boto3 here: botocore spends more CPU on a request than the request costs (event
hooks, request model, XML parsing), and parsing a 1,000-key listing page far more, which
on a 2-core machine bounds small-file uploads (``aws s3 sync`` next to ``media-gateway
upload`` in bench/results/upload.md). One SigV4 signature is a SHA-256 and an HMAC
(:mod:`gateway.sigv4`); the connection is :mod:`gateway.migrate.http11`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Protocol
from urllib.parse import unquote_plus

from ..exceptions import S3Error
from .http11 import Response
from .replies import (
    ObjectInfo,
    etag_header,
    iso_time,
    object_info,
    object_size,
    parse_xml,
    xml_children,
    xml_text,
)
from .transport import SEND_BLOCK, Body, Transport

__all__ = ["Body", "ObjectInfo", "S3Error", "S3Wire", "Sink"]


class Sink(Protocol):
    """Where a download goes: a file, or nothing (verify only hashes)."""

    def write(self, data: bytes, /) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def truncate(self, size: int | None = None, /) -> int: ...

    def tell(self) -> int: ...


class S3Wire(Transport):
    """The S3 operations of a migration, on one bucket. Thread-safe: each thread keeps
    its own keep-alive connection; :meth:`close` closes them all. The parameters are
    :class:`~gateway.migrate.transport.Transport`'s."""

    # --- objects ---------------------------------------------------------------

    def put_object(self, key: str, body: bytes, headers: Mapping[str, str], sha256_hex: str) -> str:
        """PutObject; returns the ETag. ``sha256_hex`` signs the body, so S3 refuses a
        body that was corrupted on the way."""
        reply = self.request("PUT", key, headers=dict(headers), body=body, payload=sha256_hex)
        return etag_header(reply.headers)

    def head_object(self, key: str, headers: Mapping[str, str] | None = None) -> ObjectInfo | None:
        """HeadObject, or None when there is no such object."""
        reply = self.request("HEAD", key, headers=dict(headers or {}), ok_missing=True)
        if reply.status == 404:
            return None
        return object_info(key, reply.headers)

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
        info = object_info(key, reply.headers)
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
            root = parse_xml(self.request("GET", "", query=query).body)
            for item in xml_children(root, "Contents"):
                key = xml_text(item, "Key")
                if "%" in key or "+" in key:
                    key = unquote_plus(key, errors="strict")
                etag = xml_text(item, "ETag")
                yield ObjectInfo(key[cut:], object_size(xml_text(item, "Size")), etag.strip('"'))
            token = xml_text(root, "NextContinuationToken")
            if xml_text(root, "IsTruncated") != "true" or not token:
                return

    def check_bucket(self) -> None:
        """Raise S3Error unless the bucket exists and the credentials may list it; tried
        three times only, so that a wrong endpoint fails fast."""
        self.request("GET", "", query={"list-type": "2", "max-keys": "1"}, attempts=3)

    # --- multipart -------------------------------------------------------------

    def create_multipart_upload(self, key: str, headers: Mapping[str, str]) -> str:
        reply = self.request("POST", key, query={"uploads": ""}, headers=dict(headers))
        return xml_text(parse_xml(reply.body), "UploadId")

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
        return etag_header(reply.headers)

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
        return xml_text(parse_xml(reply.body), "ETag").strip('"')

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
            root = parse_xml(reply.body)
            for item in xml_children(root, "Upload"):
                initiated = xml_text(item, "Initiated")
                key = unquote_plus(xml_text(item, "Key"))
                yield key, xml_text(item, "UploadId"), iso_time(initiated) if initiated else None
            if xml_text(root, "IsTruncated") != "true":
                return
            markers = {
                "key-marker": unquote_plus(xml_text(root, "NextKeyMarker")),
                "upload-id-marker": xml_text(root, "NextUploadIdMarker"),
            }
