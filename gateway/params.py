"""PutObject parameters (django-storages' ``AWS_S3_OBJECT_PARAMETERS``) as headers."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["object_headers"]

# Each parameter and its header, as boto3's PutObject and CreateMultipartUpload send it.
_PARAMETER_HEADERS = {
    "ACL": "x-amz-acl",
    "CacheControl": "cache-control",
    "ContentDisposition": "content-disposition",
    "ContentEncoding": "content-encoding",
    "ContentLanguage": "content-language",
    "ContentType": "content-type",
    "Expires": "expires",
    "GrantFullControl": "x-amz-grant-full-control",
    "GrantRead": "x-amz-grant-read",
    "GrantReadACP": "x-amz-grant-read-acp",
    "GrantWriteACP": "x-amz-grant-write-acp",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "StorageClass": "x-amz-storage-class",
    "WebsiteRedirectLocation": "x-amz-website-redirect-location",
    "SSECustomerAlgorithm": "x-amz-server-side-encryption-customer-algorithm",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
    "SSEKMSEncryptionContext": "x-amz-server-side-encryption-context",
    "BucketKeyEnabled": "x-amz-server-side-encryption-bucket-key-enabled",
    "Tagging": "x-amz-tagging",
    "ObjectLockMode": "x-amz-object-lock-mode",
    "ObjectLockRetainUntilDate": "x-amz-object-lock-retain-until-date",
    "ObjectLockLegalHoldStatus": "x-amz-object-lock-legal-hold",
    "ExpectedBucketOwner": "x-amz-expected-bucket-owner",
}


def object_headers(parameters: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Headers for PutObject parameters, as ``(write_headers, read_headers)``.

    ``read_headers`` are what HEAD, GET and UploadPart must repeat (SSE-C keys). Raises
    ``ValueError`` naming an unsupported parameter.
    """
    write: dict[str, str] = {}
    read: dict[str, str] = {}
    for name, value in parameters.items():
        if name == "Metadata":
            if not isinstance(value, Mapping):
                raise ValueError("Metadata: expected an object of strings")
            write.update({f"x-amz-meta-{k.lower()}": str(v) for k, v in value.items()})
        elif name == "SSECustomerKey":
            raw = value.encode() if isinstance(value, str) else bytes(value)
            read["x-amz-server-side-encryption-customer-key"] = base64.b64encode(raw).decode()
            read["x-amz-server-side-encryption-customer-key-md5"] = base64.b64encode(
                hashlib.md5(raw).digest()  # noqa: S324 - the SSE-C protocol's own check
            ).decode()
        elif name in _PARAMETER_HEADERS:
            write[_PARAMETER_HEADERS[name]] = _header_value(value)
        else:
            known = ", ".join(sorted([*_PARAMETER_HEADERS, "Metadata", "SSECustomerKey"]))
            raise ValueError(f"unsupported parameter {name!r}; supported: {known}")
    if "x-amz-server-side-encryption-customer-algorithm" in write:
        read["x-amz-server-side-encryption-customer-algorithm"] = write.pop(
            "x-amz-server-side-encryption-customer-algorithm"
        )
    return {**write, **read}, read


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    return " ".join(str(value).split())  # SigV4 signs values with spaces collapsed
