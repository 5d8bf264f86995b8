"""Temporary credentials from boto3's chain (gateway/s3.py ``credentials_provider``), here
a real ``credential_process`` profile, against the real S3 server: nothing signed with
them outlives them. RELIABILITY item 61."""

from __future__ import annotations

import contextlib
import datetime
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from gateway import MediaGateway, Settings
from gateway.s3 import credentials_provider
from gateway.sigv4 import Presigner
from tests.conftest import SECRET
from tests.helpers import call
from tests.s3server import S3Server

DATA = b"temporary" * 100
TOKEN = "FwoGZXIvYXdzEXAMPLE/session+token="
TWO_HOURS = 7200


def credential_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, *, expiration: str
) -> Path:
    """Point boto3's chain at a profile whose ``credential_process`` prints the S3
    server's keys, a session token and ``expiration`` (a Python expression for a UTC
    datetime, evaluated each time the process runs). Returns the file that counts runs."""
    runs = tmp_path / "runs"
    script = tmp_path / "creds.py"
    script.write_text(
        "import datetime, json, pathlib\n"
        "from datetime import UTC, timedelta\n"
        f"runs = pathlib.Path({str(runs)!r})\n"
        "runs.write_text(str(int(runs.read_text() or 0) + 1) if runs.exists() else '1')\n"
        f"expiration = {expiration}\n"
        "print(json.dumps({\n"
        "    'Version': 1,\n"
        f"    'AccessKeyId': {s3_server.access_key!r},\n"
        f"    'SecretAccessKey': {s3_server.secret_key!r},\n"
        f"    'SessionToken': {TOKEN!r},\n"
        "    'Expiration': expiration.strftime('%Y-%m-%dT%H:%M:%SZ'),\n"
        "}))\n"
    )
    config = tmp_path / "aws-config"
    config.write_text(f'[profile temporary]\ncredential_process = "{sys.executable}" "{script}"\n')
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_PROFILE", "temporary")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return runs


@pytest.fixture
def settings(s3_server: S3Server, s3_bucket: str, media_root: Path) -> Callable[..., Settings]:
    """Gateway settings for the test bucket with no keys: boto3's chain finds them."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "secret_keys": (SECRET,),
            "media_root": media_root,
            "use_s3": True,
            "aws_location": "media",  # as .env.example sets it
            "aws_storage_bucket_name": s3_bucket,
            "aws_s3_endpoint_url": s3_server.endpoint_url,
            "presign_ttl": TWO_HOURS,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def put(s3_server: S3Server, s3_bucket: str) -> None:
    with contextlib.closing(s3_server.client()) as client:
        client.put_object(Bucket=s3_bucket, Key="media/a.bin", Body=DATA)


def amz(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))


def max_age(reply_headers: Mapping[str, str]) -> int:
    return int(reply_headers["cache-control"].rsplit("=", 1)[1])


def test_presigned_urls_stop_at_the_credentials_expiry(
    settings: Callable[..., Settings],
    put: None,
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    serve: Callable[..., str],
) -> None:
    """Item 61: credentials ending in 30 minutes while GATEWAY_PRESIGN_TTL is two hours:
    X-Amz-Expires ends at their expiry, the redirect's max-age a minute before it, and
    the URL (session token included) is served by the S3 server until then."""
    expiry = int(time.time()) + 1800
    credential_process(
        tmp_path,
        monkeypatch,
        s3_server,
        expiration=f"datetime.datetime.fromtimestamp({expiry}, UTC)",
    )
    gateway = MediaGateway(settings=settings())
    base = serve(gateway)
    with httpx.Client() as client:
        for method in ("GET", "HEAD"):
            signed = base + gateway.signer.sign_url("a.bin", expires_in=TWO_HOURS)
            asked = time.time()
            redirect = client.request(method, signed)
            now = time.time()
            assert redirect.status_code == 302
            params = amz(redirect.headers["location"])
            assert params["X-Amz-Security-Token"] == TOKEN
            date = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%S%z")
            assert date.timestamp() + int(params["X-Amz-Expires"]) == expiry
            # A minute short of the expiry (REDIRECT_MARGIN), counted in whole seconds
            # at some moment between asking and the answer (a loaded machine is slow).
            assert expiry - now - 61 < max_age(redirect.headers) < expiry - asked - 59
            followed = client.request(method, redirect.headers["location"])
            assert followed.status_code == 200, followed.text
            assert followed.headers["content-length"] == str(len(DATA))
            assert followed.content == (DATA if method == "GET" else b"")


def test_nothing_outlives_the_credentials(
    settings: Callable[..., Settings],
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 61, on the gateway's clock: a redirect remembered in the last second before
    the credentials end points to a URL that ends with them and may not be cached; from
    their expiry on, neither a remembered redirect nor the presigner's window state is
    reused (503 until the chain has new credentials), in redirect and proxy mode."""
    expiry = int(time.time()) + 1800
    credential_process(
        tmp_path,
        monkeypatch,
        s3_server,
        expiration=f"datetime.datetime.fromtimestamp({expiry}, UTC)",
    )
    now = [float(expiry - 1800)]
    clock = lambda: now[0]  # noqa: E731
    gateway = MediaGateway(settings=settings(), clock=clock)
    proxy = MediaGateway(settings=settings(s3_delivery="proxy"), clock=clock)
    signed = gateway.signer.sign_url("a.bin", expires_in=10 * TWO_HOURS)
    assert gateway._recent is not None
    for moment, expected_age in ((expiry - 900.0, 900 - 60), (expiry - 0.5, 0)):
        now[0] = moment
        first, again = call(gateway, signed), call(gateway, signed)
        assert first.headers == again.headers  # the second is the remembered one
        params = amz(first.headers["location"])
        date = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%S%z")
        assert date.timestamp() + int(params["X-Amz-Expires"]) == expiry
        assert max_age(first.headers) == expected_age
    hits = gateway._recent.hits
    for moment in (expiry, expiry + 0.5, expiry + 3600):
        now[0] = moment
        for app in (gateway, proxy):
            for method in ("GET", "HEAD"):
                refused = call(app, signed, method=method)
                assert refused.status == 503, (moment, method)
                assert "location" not in refused.headers
    assert gateway._recent.hits == hits


def test_credentials_carry_their_expiry(
    settings: Callable[..., Settings],
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The provider reads botocore's expiry with the keys, once per refresh; static keys
    have none."""
    expiry = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    runs = credential_process(
        tmp_path,
        monkeypatch,
        s3_server,
        expiration=f"datetime.datetime.fromisoformat({str(expiry)!r})",
    )
    current = credentials_provider(settings())
    first = current()
    assert (first.access_key, first.token) == (s3_server.access_key, TOKEN)
    assert first.expires_at == int(expiry.timestamp())
    assert current() is first
    assert runs.read_text() == "1"
    static = credentials_provider(
        settings(aws_access_key_id="AKIDSTATIC", aws_secret_access_key="static-secret")
    )
    assert static().expires_at is None


def test_short_lived_credentials_end_their_urls_at_the_server(
    settings: Callable[..., Settings],
    put: None,
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 61 end to end: credentials that end in three seconds (botocore fetches them
    again on every call, as they are inside its ten-minute refresh margin) give a URL
    that the S3 server serves now and refuses once they have ended, although
    GATEWAY_PRESIGN_TTL is two hours."""
    credential_process(
        tmp_path,
        monkeypatch,
        s3_server,
        expiration="datetime.datetime.now(UTC) + timedelta(seconds=3)",
    )
    gateway = MediaGateway(settings=settings())
    redirect = call(gateway, gateway.signer.sign_url("a.bin"))
    location = redirect.headers["location"]
    params = amz(location)
    date = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%S%z")
    ends = date.timestamp() + int(params["X-Amz-Expires"])
    assert ends <= time.time() + 3
    assert max_age(redirect.headers) == 0
    assert httpx.get(location).content == DATA
    time.sleep(max(0.0, ends - time.time()) + 1.1)  # at most four seconds
    refused = httpx.get(location)
    # rclone's answer to a presigned URL past X-Amz-Date + X-Amz-Expires.
    assert refused.status_code == 400, refused.text
    assert "<Code>AccessDenied</Code>" in refused.text


def test_presigner_refuses_after_the_expiry() -> None:
    """The presigner never hands out a URL signed with credentials that have ended, even
    from the state it keeps for the window."""
    from gateway.exceptions import ServiceUnavailable
    from gateway.sigv4 import Credentials

    now = [1_800_000_100.0]
    creds = Credentials("AK", "SK", "T", expires_at=1_800_000_150)
    presigner = Presigner(
        bucket="b",
        region="us-east-1",
        endpoint_url="http://h",
        addressing_style="path",
        credentials=lambda: creds,
        ttl=3600,
        window=300,
        clock=lambda: now[0],
    )
    assert presigner.presign("k").expires_at == 1_800_000_150
    assert "X-Amz-Expires=150&" in presigner.presign("k").url
    now[0] = 1_800_000_149.999
    assert presigner.presign("k").expires_at == 1_800_000_150
    now[0] = 1_800_000_150.0
    with pytest.raises(ServiceUnavailable):
        presigner.presign("k")
