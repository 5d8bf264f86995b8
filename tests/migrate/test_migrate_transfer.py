"""The migration tools' S3 client (gateway/migrate/wire.py): signatures identical to
botocore's, object parameters as headers, retries, listings across pages."""

from __future__ import annotations

import datetime
import hashlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from gateway.migrate.transport import EMPTY_SHA256
from gateway.migrate.wire import S3Error, S3Wire
from gateway.params import object_headers
from gateway.sigv4 import Credentials
from tests.migrate import support
from tests.migrate.support import FlakyProxy, make_wire
from tests.s3server import S3Server

# Fixtures shared with the other migration tests.
wire = support.wire

NOW = datetime.datetime(2026, 11, 25, 18, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize("token", [None, "session-token"])
def test_signature_matches_botocore(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    """For the same time, credentials and request, our Authorization header is
    botocore's, odd key and query string included."""
    monkeypatch.setattr("gateway.sigv4.time.gmtime", lambda: NOW.timetuple())
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW.replace(tzinfo=None))
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    client = S3Wire(
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-3",
        bucket="my-bucket",
        addressing_style="path",
        credentials=lambda: creds,
    )
    key = "media/a b+c%d#e?f/caf\u00e9~.txt"
    body = b"hello"
    payload = hashlib.sha256(body).hexdigest()
    extra = {"Content-Type": "text/plain", "x-amz-meta-sha256": payload}
    query = {"partNumber": "3", "uploadId": "a/b+c="}
    path = f"/my-bucket/{quote(key, safe='/~')}"
    canonical_query = "partNumber=3&uploadId=a%2Fb%2Bc%3D"
    ours = client.signer.sign("PUT", path, canonical_query, extra, payload)

    request = AWSRequest(
        method="PUT",
        url=f"http://127.0.0.1:9000{path}",
        data=body,
        params=query,
        headers=dict(extra),
    )
    S3SigV4Auth(
        BotoCredentials(creds.access_key, creds.secret_key, token), "s3", "eu-west-3"
    ).add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    client.close()


def test_object_parameters_become_headers() -> None:
    """AWS_S3_OBJECT_PARAMETERS map to PutObject headers; SSE-C keys are repeated on
    reads; no ACL is sent unless configured (private by default)."""
    assert object_headers({}) == ({}, {})
    write, read = object_headers(
        {
            "CacheControl": "max-age=86400,  public",
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": "key-1",
            "BucketKeyEnabled": True,
            "Metadata": {"Owner": "web"},
        }
    )
    assert write == {
        "cache-control": "max-age=86400, public",
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": "key-1",
        "x-amz-server-side-encryption-bucket-key-enabled": "true",
        "x-amz-meta-owner": "web",
    }
    assert read == {}
    write, read = object_headers({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32})
    assert read["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    assert set(read) <= set(write) and len(read) == 3
    with pytest.raises(ValueError, match="unsupported parameter 'Colour'"):
        object_headers({"Colour": "blue"})


def test_retries_503_and_not_403(s3_server: S3Server, s3_bucket: str) -> None:
    """503 SlowDown is tried again with backoff; 403 fails at once."""
    answers = {1: 503, 2: 503, 4: 403}
    with (
        FlakyProxy(s3_server.endpoint_url, lambda n, m, p: answers.get(n)) as proxy,
        make_wire(s3_server, s3_bucket, proxy.url) as wire,
    ):
        body = b"x"
        wire.put_object("media/a", body, {}, hashlib.sha256(body).hexdigest())
        assert (wire.retries, proxy.count) == (2, 3)
        with pytest.raises(S3Error) as error:
            list(wire.list_objects("media/"))
        assert (error.value.code, error.value.status) == ("AccessDenied", 403)
        assert wire.retries == 2


def test_listing_spans_pages_in_key_order(wire: S3Wire) -> None:
    """More than one 1,000-key page, keys with spaces and plus signs decoded exactly,
    yielded in UTF-8 byte order."""
    keys = [f"media/p{i:04} {'+' if i % 2 else ''}x" for i in range(1005)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: wire.put_object(k, b"", {}, EMPTY_SHA256), keys))
    listed = [item.key for item in wire.list_objects("media/", strip=True)]
    assert listed == sorted((k.removeprefix("media/") for k in keys), key=str.encode)
