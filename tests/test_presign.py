"""Our SigV4 presigner is byte-identical to botocore's for the same time and inputs."""

from __future__ import annotations

import datetime

import boto3
import botocore.auth
import pytest
from botocore.config import Config

from gateway.presign import MAX_EXPIRES, Credentials, Presigner

MOMENT = datetime.datetime(2026, 11, 25, 18, 0, 0)
TIMESTAMP = MOMENT.replace(tzinfo=datetime.UTC).timestamp()
KEYS = [
    "media/a.jpg",
    "media/a b/c+d#\u00e9~!$&'()*,;=:@.txt",
    "media/\u65e5\u672c/%2e%2e",
    "media/x?y",
]


@pytest.fixture
def frozen_botocore(monkeypatch):
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
def test_identical_to_botocore(frozen_botocore, token, style, endpoint, options):
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


def test_limits():
    """SigV4 caps validity at seven days; the window must be shorter than the TTL."""
    creds = lambda: Credentials("a", "b")  # noqa: E731
    common = {
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


def test_refreshed_credentials_are_used():
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
