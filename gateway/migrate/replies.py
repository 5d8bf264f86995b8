"""What S3 answers, read: XML documents, errors (and the region an error names), and the
headers that describe an object."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from datetime import datetime

from ..exceptions import S3Error

__all__ = [
    "ObjectInfo",
    "etag_header",
    "http_time",
    "iso_time",
    "object_info",
    "object_size",
    "parse_xml",
    "s3_error",
    "xml_children",
    "xml_text",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object of a listing or a HEAD. ``metadata`` names are lower case (servers
    written in Go answer ``X-Amz-Meta-Sha256``)."""

    key: str
    size: int
    etag: str
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    last_modified: float | None = None


# Where S3 names the region of an endpoint: bucket.s3.eu-west-1.amazonaws.com,
# s3-eu-west-1.amazonaws.com, bucket.s3.dualstack.eu-west-1.amazonaws.com.
ENDPOINT_REGION = re.compile(r"s3[.-](?:dualstack\.)?([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.")
# Statuses S3 answers for a bucket addressed through another region's endpoint.
REGION_STATUSES = frozenset({301, 307, 400})


def s3_error(
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
            code = xml_text(root, "Code") or code
            message = xml_text(root, "Message")
    elif status == 404:
        code = "NotFound"
    elif status in (301, 307):  # a HEAD: no body, only the header
        code = "PermanentRedirect" if status == 301 else "TemporaryRedirect"
    region = None
    if status in REGION_STATUSES:
        region = (headers or {}).get("x-amz-bucket-region") or None
        if region is None and root is not None:
            found = ENDPOINT_REGION.search(xml_text(root, "Endpoint"))
            region = xml_text(root, "Region") or (found[1] if found else None)
        if region == asked:
            region = None  # a 400 for another reason
        if region is not None:
            message = (
                f"the bucket is in region {region}, not {asked or 'the one configured'}:"
                f" set AWS_S3_REGION_NAME={region}"
            )
    return S3Error(code, message, status, region)


def object_size(text: str) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise S3Error("BadResponse", f"listing with a bad object size {text[:40]!r}")
    return int(text)


def parse_xml(data: bytes) -> ET.Element:
    try:
        return ET.fromstring(data)  # noqa: S314 - the configured S3 server's answer
    except ET.ParseError as exc:
        raise S3Error("BadResponse", f"unreadable XML from S3: {exc}") from None


def xml_children(root: ET.Element, name: str) -> Iterator[ET.Element]:
    for child in root:
        if child.tag.rpartition("}")[2] == name:
            yield child


def xml_text(element: ET.Element, name: str) -> str:
    for child in xml_children(element, name):
        return child.text or ""
    return ""


def etag_header(headers: Mapping[str, str]) -> str:
    return headers.get("etag", "").strip('"')


def object_info(key: str, headers: Mapping[str, str]) -> ObjectInfo:
    metadata = {
        k[len("x-amz-meta-") :]: v for k, v in headers.items() if k.startswith("x-amz-meta-")
    }
    modified = headers.get("last-modified")
    return ObjectInfo(
        key=key,
        size=int(headers.get("content-length", 0)),
        etag=etag_header(headers),
        metadata=metadata,
        last_modified=http_time(modified) if modified else None,
    )


def iso_time(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def http_time(value: str) -> float | None:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
