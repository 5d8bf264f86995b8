"""Our SigV4 presigner is byte-identical to botocore's for the same time and inputs, and
addresses buckets as botocore does (RELIABILITY item 64)."""

from __future__ import annotations

import datetime
from typing import Any, Literal

import boto3
import botocore.auth
import pytest
from botocore.config import Config

from gateway import Settings
from gateway.s3 import make_presigner
from gateway.sigv4 import MAX_EXPIRES, Credentials, Presigner

MOMENT = datetime.datetime(2026, 11, 25, 18, 0, 0)
# botocore's addressing styles, as its Config's s3 option types them.
AddressingStyle = Literal["auto", "virtual", "path"]
TIMESTAMP = MOMENT.replace(tzinfo=datetime.UTC).timestamp()
KEYS = [
    "media/a.jpg",
    "media/a b/c+d#\u00e9~!$&'()*,;=:@.txt",
    "media/\u65e5\u672c/%2e%2e",
    "media/x?y",
]


@pytest.fixture
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore stamps presigned URLs with this function's time.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: MOMENT)


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdz/+=token"])
@pytest.mark.parametrize(
    ("style", "endpoint"),
    [
        ("path", "http://127.0.0.1:9000"),
        ("path", "https://minio.example.com:9000"),
        ("virtual", "https://s3.eu-west-3.amazonaws.com"),
    ],
)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "ResponseContentDisposition": "attachment; filename=\"a.txt\"; filename*=UTF-8''%C3%A9.txt"
        },
        {
            "ResponseContentDisposition": "inline",
            "ResponseContentType": "text/plain; charset=utf-8",
        },
    ],
)
def test_identical_to_botocore(
    frozen_botocore: None,
    token: str | None,
    style: AddressingStyle,
    endpoint: str,
    options: dict[str, str],
) -> None:
    """Same credentials, time, endpoint, key and options give the same URL, byte for byte."""
    session = boto3.Session(
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="secret/key+",
        aws_session_token=token,
        region_name="eu-west-3",
    )
    client = session.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    )
    ours = Presigner(
        bucket="my-bucket",
        region="eu-west-3",
        endpoint_url=endpoint,
        addressing_style=style,
        credentials=lambda: Credentials("AKIAEXAMPLE", "secret/key+", token),
        ttl=3600,
        window=300,
        clock=lambda: TIMESTAMP + 299,  # anywhere in the window signs with its start
    )
    try:
        for key in KEYS:
            expected = client.generate_presigned_url(
                "get_object", Params={"Bucket": "my-bucket", "Key": key, **options}, ExpiresIn=3600
            )
            got = ours.presign(
                key,
                content_disposition=options.get("ResponseContentDisposition"),
                content_type=options.get("ResponseContentType"),
            )
            assert got.url == expected
            assert got.expires_at == TIMESTAMP + 3600
    finally:
        client.close()


def test_limits() -> None:
    """SigV4 caps validity at seven days; the window must be shorter than the TTL."""
    creds = lambda: Credentials("a", "b")  # noqa: E731
    common: dict[str, Any] = {
        "bucket": "b",
        "region": "r",
        "endpoint_url": "http://h",
        "addressing_style": "path",
        "credentials": creds,
    }
    with pytest.raises(ValueError):
        Presigner(**common, ttl=MAX_EXPIRES + 1, window=300)
    with pytest.raises(ValueError):
        Presigner(**common, ttl=300, window=300)
    assert Presigner(**common, ttl=MAX_EXPIRES, window=300).ttl == MAX_EXPIRES


def test_refreshed_credentials_are_used() -> None:
    """New credentials from the chain give a new URL at once."""
    current = [Credentials("AK1", "S1")]
    p = Presigner(
        bucket="b",
        region="us-east-1",
        endpoint_url="http://h",
        addressing_style="path",
        credentials=lambda: current[0],
        clock=lambda: TIMESTAMP,
    )
    first = p.presign("k").url
    current[0] = Credentials("AK2", "S2", "T")
    second = p.presign("k").url
    assert "AK1%2F" in first and "AK2%2F" in second and "X-Amz-Security-Token=T" in second


def aws_settings(bucket: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "secret_keys": ("test-secret-key-0123456789",),
        "use_s3": True,
        "aws_location": "media",  # as .env.example sets it
        "aws_access_key_id": "AKIAEXAMPLE",
        "aws_secret_access_key": "secret/key+",
        "aws_storage_bucket_name": bucket,
        "aws_s3_region_name": "eu-west-1",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.mark.parametrize(
    ("bucket", "overrides", "style"),
    [
        ("media", {}, "virtual"),
        ("media-example-com", {}, "virtual"),
        ("a--b", {}, "virtual"),
        ("media.example.com", {}, "path"),  # dots over HTTPS: no certificate can match
        ("media.example.com", {"aws_s3_addressing_style": "virtual"}, "path"),
        ("Media", {}, "path"),  # not a host name (legacy us-east-1 names)
        ("my_bucket", {}, "path"),
        ("ab", {}, "path"),
        ("192.168.1.1", {}, "path"),
        ("media-", {}, "path"),
        ("a.-b", {}, "path"),
        ("media", {"aws_s3_addressing_style": "path"}, "path"),
        ("media.example.com", {"aws_s3_endpoint_url": "https://minio.example.com"}, "path"),
        (
            "media.example.com",
            {
                "aws_s3_endpoint_url": "https://minio.example.com",
                "aws_s3_addressing_style": "virtual",
            },
            "path",
        ),
        # Plain HTTP checks no certificate: dots are fine, as botocore allows.
        (
            "media.example.com",
            {"aws_s3_endpoint_url": "http://minio:9000", "aws_s3_addressing_style": "virtual"},
            "virtual",
        ),
        # ...unless the URLs handed to browsers are HTTPS.
        (
            "media.example.com",
            {
                "aws_s3_endpoint_url": "http://minio:9000",
                "s3_public_endpoint_url": "https://media.example.org",
                "aws_s3_addressing_style": "virtual",
            },
            "path",
        ),
        ("media", {"aws_s3_endpoint_url": "https://minio.example.com"}, "path"),
    ],
)
def test_addressing_style(bucket: str, overrides: dict[str, str], style: str) -> None:
    """Item 64: virtual-hosted only for a bucket that can be a host name whose
    certificate matches; a dotted bucket over HTTPS is path-style, on AWS or not."""
    assert aws_settings(bucket, **overrides).addressing_style == style


@pytest.mark.parametrize("style", ["auto", "virtual"])
@pytest.mark.parametrize(
    "bucket", ["media.example.com", "media-example", "Media", "ab", "192.168.1.1", "a.-b"]
)
def test_dotted_bucket_on_aws_is_botocore_url(
    frozen_botocore: None, style: AddressingStyle, bucket: str
) -> None:
    """Item 64: with no endpoint URL, our presigned URL for a bucket with dots is
    botocore's, byte for byte: path-style on the regional HTTPS endpoint; a bucket that
    is a host name stays virtual-hosted, as botocore's virtual style gives; other names
    are path-style in both."""
    settings = aws_settings(bucket, aws_s3_addressing_style=style)
    url = make_presigner(settings, clock=lambda: TIMESTAMP).presign(KEY).url
    assert url == botocore_url(bucket, None, "virtual")
    if bucket == "media.example.com":
        assert url.startswith("https://s3.eu-west-1.amazonaws.com/media.example.com/media/")
    elif bucket == "media-example":
        assert url.startswith("https://media-example.s3.eu-west-1.amazonaws.com/media/")


@pytest.mark.parametrize("style", ["auto", "path", "virtual"])
@pytest.mark.parametrize("endpoint", ["http://minio.internal:9000", "https://minio.example.com"])
def test_dotted_bucket_on_a_custom_endpoint_is_botocore_url(
    frozen_botocore: None, style: AddressingStyle, endpoint: str
) -> None:
    """Item 64: on a custom endpoint a dotted bucket is addressed as botocore does:
    virtual-hosted only when asked for over plain HTTP, path-style otherwise."""
    settings = aws_settings(
        "media.example.com", aws_s3_addressing_style=style, aws_s3_endpoint_url=endpoint
    )
    ours = make_presigner(settings, clock=lambda: TIMESTAMP).presign(KEY).url
    assert ours == botocore_url("media.example.com", endpoint, style)


KEY = "media/a b.jpg"


def botocore_url(bucket: str, endpoint: str | None, style: AddressingStyle) -> str:
    client = boto3.Session(
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="secret/key+",
        region_name="eu-west-1",
    ).client(
        "s3",
        endpoint_url=endpoint,
        # Without an endpoint botocore's "auto" presigns on the global endpoint
        # (s3.amazonaws.com); its "virtual" names the region, as we do.
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    )
    try:
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": KEY}, ExpiresIn=3600
        )
    finally:
        client.close()
