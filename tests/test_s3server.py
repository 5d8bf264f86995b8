"""The S3 fixtures are real S3 servers: they store bytes, check signatures and presigned-URL
expiry, and take multipart uploads. Each test runs against rclone and SeaweedFS (item 67);
what rclone v1.75 or SeaweedFS 4.x does differently from AWS is asserted per server."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import botocore.auth
import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.compat import get_current_datetime
from botocore.exceptions import ClientError

from tests.s3server import S3Server, on_every_s3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = on_every_s3

KEY = "media/a b/ünï #1.txt"  # spaces, non-ASCII and "#", all of which need URL quoting
BODY = b"\x00media bytes\xff"
PART = 5 * 1024 * 1024  # the smallest part S3 accepts, except for the last one


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[S3Client]:
    with contextlib.closing(s3_server.client()) as client:
        yield client


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def read(s3: S3Client, bucket: str, key: str) -> bytes:
    with s3.get_object(Bucket=bucket, Key=key)["Body"] as body:
        return body.read()


def presign(s3: S3Client, bucket: str, *, expires_in: int, signed_ago: float = 0) -> str:
    """A presigned GET URL for ``KEY``, signed ``signed_ago`` seconds in the past."""
    signed_at = get_current_datetime() - datetime.timedelta(seconds=signed_ago)
    with pytest.MonkeyPatch.context() as patch:
        # botocore's SigV4 signers read the time from here; no sleeping needed.
        patch.setattr(botocore.auth, "get_current_datetime", lambda: signed_at)
        return s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": KEY}, ExpiresIn=expires_in
        )


def test_round_trip(s3: S3Client, s3_bucket: str) -> None:
    """Bytes put under an awkward key come back unchanged, with an MD5 ETag, and are listed."""
    put = s3.put_object(Bucket=s3_bucket, Key=KEY, Body=BODY)
    assert put["ETag"] == f'"{md5(BODY)}"'
    assert read(s3, s3_bucket, KEY) == BODY
    listed = s3.list_objects_v2(Bucket=s3_bucket)
    assert [(item["Key"], item["Size"]) for item in listed["Contents"]] == [(KEY, len(BODY))]


def test_env_points_at_the_bucket(s3_server: S3Server, s3_bucket: str) -> None:
    """``env()`` turns on S3, and a client built from its variables reaches the bucket."""
    env = s3_server.env(s3_bucket)
    assert env["USE_S3"] == "true"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=env["AWS_S3_ENDPOINT_URL"],
        region_name=env["AWS_S3_REGION_NAME"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    with contextlib.closing(client):
        client.head_bucket(Bucket=env["AWS_STORAGE_BUCKET_NAME"])  # raises unless it exists


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"secret_key": "wrong-secret"}, "SignatureDoesNotMatch"),
        ({"access_key": "AKIAUNKNOWN"}, "InvalidAccessKeyId"),
    ],
)
def test_bad_credentials_are_refused(
    s3_server: S3Server, s3_bucket: str, change: dict[str, Any], code: str
) -> None:
    """A request signed with a wrong secret or an unknown access key gets 403."""
    impostor = dataclasses.replace(s3_server, **change)
    with contextlib.closing(impostor.client()) as client, pytest.raises(ClientError) as caught:
        client.list_objects_v2(Bucket=s3_bucket)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unsigned_request_is_refused(s3: S3Client, s3_bucket: str, s3_server: S3Server) -> None:
    """An unsigned GET of an existing object is refused: AWS and SeaweedFS (with its
    identity file) answer 403 AccessDenied, rclone 400 UnsupportedAlgorithm."""
    s3.put_object(Bucket=s3_bucket, Key="public.txt", Body=BODY)
    endpoint = s3.meta.endpoint_url
    response = httpx.get(f"{endpoint}/{s3_bucket}/public.txt")
    expected = {"rclone": (400, "UnsupportedAlgorithm"), "seaweedfs": (403, "AccessDenied")}
    status, code = expected[s3_server.kind]
    assert response.status_code == status
    assert f"<Code>{code}</Code>" in response.text
    assert BODY not in response.content


def test_presigned_get(s3: S3Client, s3_bucket: str) -> None:
    """A presigned URL serves the object; one altered signature character gets 403."""
    s3.put_object(Bucket=s3_bucket, Key=KEY, Body=BODY)
    url = presign(s3, s3_bucket, expires_in=60)
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == BODY
    start = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    tampered = url[:start] + ("1" if url[start] == "0" else "0") + url[start + 1 :]
    response = httpx.get(tampered)
    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text


def test_presigned_url_honours_its_expiry(
    s3: S3Client, s3_bucket: str, s3_server: S3Server
) -> None:
    """A URL works until X-Amz-Expires runs out, not merely within a clock-skew window."""
    s3.put_object(Bucket=s3_bucket, Key=KEY, Body=BODY)
    old_but_valid = presign(s3, s3_bucket, expires_in=3600, signed_ago=3000)
    assert httpx.get(old_but_valid).content == BODY
    expired = httpx.get(presign(s3, s3_bucket, expires_in=3600, signed_ago=3660))
    # AWS and SeaweedFS answer 403 "Request has expired"; rclone 400 with a clock-skew message.
    assert expired.status_code == {"rclone": 400, "seaweedfs": 403}[s3_server.kind]
    assert "<Code>AccessDenied</Code>" in expired.text


def test_content_md5_is_verified(s3: S3Client, s3_bucket: str) -> None:
    """A body that does not match its Content-MD5 is refused with BadDigest and not stored."""
    # rclone stores x-amz-checksum-* headers and echoes them back without verifying them.
    wrong = hashlib.md5(b"other", usedforsecurity=False).digest()
    with pytest.raises(ClientError) as caught:
        s3.put_object(
            Bucket=s3_bucket, Key=KEY, Body=BODY, ContentMD5=base64.b64encode(wrong).decode()
        )
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_bucket)


def test_multipart_upload(s3: S3Client, s3_bucket: str, s3_server: S3Server) -> None:
    """Two 5 MiB parts complete into one object with an S3 multipart ETag and intact bytes."""
    parts = [os.urandom(PART), os.urandom(PART)]
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key=KEY)["UploadId"]
    etags = [
        s3.upload_part(Bucket=s3_bucket, Key=KEY, UploadId=upload_id, PartNumber=number, Body=data)[
            "ETag"
        ]
        for number, data in enumerate(parts, start=1)
    ]
    done = s3.complete_multipart_upload(
        Bucket=s3_bucket,
        Key=KEY,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    digests = b"".join(hashlib.md5(data, usedforsecurity=False).digest() for data in parts)
    assert done["ETag"] == f'"{md5(digests)}-2"'
    assert read(s3, s3_bucket, KEY) == b"".join(parts)
    # AWS and SeaweedFS keep the multipart ETag; rclone re-hashes the stored file, so HEAD
    # shows its MD5.
    whole = {"rclone": f'"{md5(b"".join(parts))}"', "seaweedfs": done["ETag"]}
    assert s3.head_object(Bucket=s3_bucket, Key=KEY)["ETag"] == whole[s3_server.kind]


def test_transfer_manager_upload(s3: S3Client, s3_bucket: str) -> None:
    """boto3's managed upload, split into three parts sent concurrently, stores the bytes."""
    data = os.urandom(2 * PART + 1)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART)
    s3.upload_fileobj(io.BytesIO(data), s3_bucket, KEY, Config=config)
    assert read(s3, s3_bucket, KEY) == data


def test_list_multipart_uploads_after_abort(
    s3: S3Client, s3_bucket: str, s3_server: S3Server
) -> None:
    """An open upload is listed with its part; once aborted none is listed and no object stored."""
    rclone = s3_server.kind == "rclone"
    # ListMultipartUploads and ListParts work in v1.75 although `rclone serve s3 --help` does
    # not list them. Unlike AWS and SeaweedFS, rclone answers 404 NoSuchUpload for a bucket
    # that never had an upload.
    if rclone:
        with pytest.raises(ClientError, match="NoSuchUpload"):
            s3.list_multipart_uploads(Bucket=s3_bucket)
    else:
        assert "Uploads" not in s3.list_multipart_uploads(Bucket=s3_bucket)
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key=KEY)["UploadId"]
    s3.upload_part(Bucket=s3_bucket, Key=KEY, UploadId=upload_id, PartNumber=1, Body=BODY)
    uploads = s3.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
    assert [(upload["Key"], upload["UploadId"]) for upload in uploads] == [(KEY, upload_id)]
    parts = s3.list_parts(Bucket=s3_bucket, Key=KEY, UploadId=upload_id)["Parts"]
    assert [(part["PartNumber"], part["Size"]) for part in parts] == [(1, len(BODY))]
    s3.abort_multipart_upload(Bucket=s3_bucket, Key=KEY, UploadId=upload_id)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=s3_bucket)
    listed = s3.list_objects_v2(Bucket=s3_bucket, Delimiter="/")
    assert "Contents" not in listed
    # Unlike AWS and SeaweedFS, rclone leaves the aborted upload's empty folder behind,
    # listed as a prefix.
    prefixes = [prefix["Prefix"] for prefix in listed.get("CommonPrefixes", [])]
    assert prefixes == (["media/"] if rclone else [])
    with pytest.raises(ClientError, match="NoSuchUpload"):
        s3.upload_part(Bucket=s3_bucket, Key=KEY, UploadId=upload_id, PartNumber=2, Body=BODY)
