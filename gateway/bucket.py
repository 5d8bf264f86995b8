"""What an operator must know about the bucket before switching over.

``check_bucket`` answers the readiness probe (HeadBucket and clock skew) and, with
``inventory=True``, ``media-gateway check`` (versioning, default encryption, objects and
bytes under the prefix, and where the bucket's objects lie when that is not under
``AWS_LOCATION``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, ProxyConnectionError

from .cors import judge, upload_headers
from .exceptions import ConfigError
from .network import (
    ca_bundle,
    is_untrusted,
    proxy_for,
    proxy_variable,
    redact,
    untrusted_message,
)
from .params import object_headers
from .s3 import credentials_provider, make_s3_client
from .settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["MAX_CLOCK_SKEW", "check_bucket", "layout_problems"]

# S3 refuses SigV4 requests more than 15 minutes off its clock.
MAX_CLOCK_SKEW = 15 * 60


def check_bucket(
    settings: Settings,
    *,
    inventory: bool = False,
    origin: str | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[dict[str, Any], list[str]]:
    """Return ``(report, problems)``; each problem is one line naming the variable.
    With ``origin``, also whether browsers there may PUT direct uploads (CORS)."""
    bucket = str(settings.aws_storage_bucket_name)
    try:
        credentials_provider(settings)
    except ConfigError as exc:
        return {"bucket_reachable": False}, [str(exc)]
    try:
        client = make_s3_client(settings, retries={"max_attempts": 1, "mode": "standard"})
    except ConfigError as exc:  # an unreadable AWS_CA_BUNDLE
        return {"bucket_reachable": False}, [str(exc)]
    try:
        try:
            response = client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            return {"bucket_reachable": False}, [_explain(exc, settings)]
        except BotoCoreError as exc:
            return {"bucket_reachable": False}, [_unreachable(exc, settings)]
        report: dict[str, Any] = {"bucket_reachable": True}
        problems = []
        date = response["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
        if date:
            skew = round(clock() - parsedate_to_datetime(date).timestamp())
            report["clock_skew_seconds"] = skew
            if abs(skew) > MAX_CLOCK_SKEW:
                problems.append(
                    f"clock: this machine is {skew} s off the S3 server's clock; S3 refuses"
                    " signatures beyond 15 minutes, so presigned URLs will fail: sync with NTP"
                )
        if inventory:
            report.update(_inventory(client, bucket, settings.aws_location))
            wrong, doubts = layout_problems(settings, report)
            problems += wrong
            report["warnings"] = doubts
        if origin is not None:
            wrong, doubts = _cors(client, bucket, settings, origin)
            problems += wrong
            report["warnings"] = [*report.get("warnings", []), *doubts]
            report["cors_origin"] = origin
        return report, problems
    finally:
        client.close()


def _cors(
    client: S3Client, bucket: str, settings: Settings, origin: str
) -> tuple[list[str], list[str]]:
    if settings.local_fallback:
        # Migrating: the browser PUTs to the gateway itself, on the site's own origin.
        return [], [f"CORS: not needed while migrating (uploads go to {settings.upload_path})"]
    try:
        rules = client.get_bucket_cors(Bucket=bucket).get("CORSRules", [])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code != "NoSuchCORSConfiguration":
            return [], [f"CORS: the S3 server does not report its CORS rules ({code}): unchecked"]
        rules = []
    try:
        write, _ = object_headers(settings.aws_s3_object_parameters)
    except ValueError as exc:
        return [f"AWS_S3_OBJECT_PARAMETERS: {exc}"], []
    return judge(list(rules), origin, upload_headers(write))


def _explain(exc: ClientError, settings: Settings) -> str:
    bucket = settings.aws_storage_bucket_name
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status == 404 or code in ("404", "NoSuchBucket"):
        return f"AWS_STORAGE_BUCKET_NAME: bucket {bucket!r} does not exist"
    if status in (401, 403) or code in ("403", "AccessDenied", "SignatureDoesNotMatch"):
        return (
            f"AWS_ACCESS_KEY_ID: S3 refused the credentials for bucket {bucket!r}"
            f" ({code or status}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return f"AWS_S3_ENDPOINT_URL: S3 answered {code or status} for bucket {bucket!r}"


def _unreachable(exc: BotoCoreError, settings: Settings) -> str:
    url = settings.s3_endpoint_url
    if is_untrusted(exc):
        return f"AWS_CA_BUNDLE: {untrusted_message(url, ca_bundle(settings))}"
    if isinstance(exc, ProxyConnectionError):
        proxy = redact(proxy_for(url) or "")
        reason = exc.kwargs.get("error", exc)
        return f"{proxy_variable(url)}: cannot reach the proxy {proxy} for {url}: {reason}"
    return f"AWS_S3_ENDPOINT_URL: cannot reach {url}: {exc}"


def _inventory(client: S3Client, bucket: str, location: str) -> dict[str, Any]:
    # Each call may be unsupported by an S3-compatible server: "unknown", not an error.
    found: dict[str, Any] = {}
    try:
        found["versioning"] = client.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
    except (ClientError, BotoCoreError):
        found["versioning"] = "unknown"
    try:
        config = client.get_bucket_encryption(Bucket=bucket)
        rules = config.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        algorithms = [
            rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
            for rule in rules
            if "ApplyServerSideEncryptionByDefault" in rule
        ]
        found["default_encryption"] = ",".join(algorithms) or "none"
    except ClientError as exc:
        missing = exc.response.get("Error", {}).get("Code") in (
            "ServerSideEncryptionConfigurationNotFoundError",
        )
        found["default_encryption"] = "none" if missing else "unknown"
    except BotoCoreError:
        found["default_encryption"] = "unknown"
    prefix = f"{location}/" if location else ""
    objects = size = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                objects += 1
                size += item.get("Size", 0)
        found.update(objects=objects, bytes=size)
    except (ClientError, BotoCoreError) as exc:
        found.update(objects="unknown", bytes="unknown", inventory_error=str(exc))
        return found
    try:
        found["layout"] = _layout(client, bucket)
    except (ClientError, BotoCoreError) as exc:
        found["layout"] = f"unknown: {exc}"
    return found


def _layout(client: S3Client, bucket: str) -> dict[str, Any]:
    """Where the bucket's objects are: how many lie at its root and its top-level
    prefixes, from one listing page (at most 1,000 of each, a single request)."""
    page = client.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=1000)
    return {
        "root_objects": len(page.get("Contents", [])),
        "prefixes": [entry["Prefix"] for entry in page.get("CommonPrefixes", [])],
        "complete": not page.get("IsTruncated", False),
    }


def layout_problems(settings: Settings, found: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` when ``AWS_LOCATION`` does not seem to be where the
    bucket's objects are: the likeliest mistake of a switch, each with its fix.

    No object under the prefix but objects elsewhere: every file the gateway looks for
    would be missing, and the storages would write beside the existing ones. A problem
    when the gateway serves from S3 alone; a warning during a migration
    (``GATEWAY_LOCAL_FALLBACK``), where an empty prefix is where the upload starts.
    ``AWS_LOCATION`` at the root and every object under one prefix is a warning only:
    it is also a layout of its own (every name under ``uploads/``).
    """
    layout = found.get("layout")
    if not isinstance(layout, dict) or found.get("objects") == "unknown":
        return [], []
    location = settings.aws_location
    prefix = f"{location}/" if location else ""
    elsewhere = [p for p in layout["prefixes"] if p != prefix]
    if location and found["objects"] == 0 and (layout["root_objects"] or elsewhere):
        where = ", ".join(
            ([f"{layout['root_objects']} at the bucket root"] if layout["root_objects"] else [])
            + [f"under {p}" for p in elsewhere[:5]]
        )
        message = (
            f"AWS_LOCATION: no object under {prefix!r}, but the bucket holds objects"
            f" elsewhere ({where}). If your files are there, set AWS_LOCATION to their"
            f" prefix ('' for the root, django-storages' default), for Django and the"
            f" gateway alike"
        )
        return ([], [message]) if settings.local_fallback else ([message], [])
    if not location and not layout["root_objects"] and len(layout["prefixes"]) == 1:
        only = layout["prefixes"][0].rstrip("/")
        return [], [
            f"AWS_LOCATION: the bucket root (unset or empty), and every object lies under"
            f" {only + '/'!r}. If they were written with AWS_LOCATION={only} (the gateway's"
            f" default before it took django-storages' root), set AWS_LOCATION={only};"
            f" if your names begin with {only + '/'!r}, all is well"
        ]
    if not location and OLD_DEFAULT_LOCATION in layout["prefixes"]:
        # The same upgrade in a shared bucket: media/ beside static/ (collectstatic) or
        # another app's keys hid it from the rule above, and check said nothing.
        others = [p for p in layout["prefixes"] if p != OLD_DEFAULT_LOCATION]
        beside = ", ".join(
            ([f"{layout['root_objects']} at the bucket root"] if layout["root_objects"] else [])
            + [f"under {p}" for p in others[:5]]
        )
        return [], [
            f"AWS_LOCATION: the bucket root (unset or empty), and objects lie under"
            f" {OLD_DEFAULT_LOCATION!r}, the gateway's default before it took django-storages'"
            f" root (and objects {beside}). If the gateway wrote them, set AWS_LOCATION=media;"
            f" if your names begin with {OLD_DEFAULT_LOCATION!r}, all is well"
        ]
    return [], []


# Where the gateway put every key until AWS_LOCATION took django-storages' default.
OLD_DEFAULT_LOCATION = "media/"
