"""S3 delivery against real S3 servers (rclone, and SeaweedFS where marked on_every_s3):
redirects, stable URLs, public endpoints, CDN domains, hybrid mode and proxy mode.
RELIABILITY items 13, 36-41 and 67."""

from __future__ import annotations

import datetime
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from gateway import ConfigError, MediaGateway, Settings
from tests.conftest import SECRET
from tests.helpers import call, raw_request
from tests.s3server import S3Server, on_every_s3

DATA = bytes(range(256)) * 40  # 10 KiB


@pytest.fixture
def s3_settings(s3_server: S3Server, s3_bucket: str, media_root: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "secret_keys": (SECRET,),
            "media_root": media_root,
            "use_s3": True,
            "aws_location": "media",  # as .env.example sets it
            "aws_access_key_id": s3_server.access_key,
            "aws_secret_access_key": s3_server.secret_key,
            "aws_storage_bucket_name": s3_bucket,
            "aws_s3_endpoint_url": s3_server.endpoint_url,
            "public_prefixes": ("public",),
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def put(s3_server: S3Server, s3_bucket: str) -> Iterator[Callable[..., None]]:
    client = s3_server.client()

    def put(key: str, data: bytes = DATA, **extra: Any) -> None:
        client.put_object(Bucket=s3_bucket, Key=key, Body=data, **extra)

    yield put
    client.close()


def follow(location: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(location, **kwargs)


@on_every_s3
def test_redirect_to_presigned_url(
    s3_settings: Callable[..., Settings],
    put: Callable[..., None],
    serve: Callable[..., str],
    s3_server: S3Server,
) -> None:
    """An authorised GET gets a 302 to a presigned URL that serves the exact bytes."""
    put("media/docs/a b#1.bin")
    gateway = MediaGateway(settings=s3_settings())
    base = serve(gateway)
    r = httpx.get(base + gateway.signer.sign_url("docs/a b#1.bin"))
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(f"{s3_server.endpoint_url}/")
    assert "X-Amz-Signature=" in location
    assert r.headers["x-content-type-options"] == "nosniff"
    cache = re.fullmatch(r"private, max-age=(\d+)", r.headers["cache-control"])
    assert cache and 0 < int(cache.group(1)) <= 3600 - 60
    assert follow(location).content == DATA
    head = httpx.head(base + gateway.signer.sign_url("docs/a b#1.bin"))
    assert head.status_code == 302
    assert head.headers["location"] != location  # signed for HEAD: see the next test


@on_every_s3
@pytest.mark.parametrize("hybrid", [False, True], ids=["redirect", "hybrid"])
def test_head_follows_the_redirect_to_the_object(
    s3_settings: Callable[..., Settings],
    put: Callable[..., None],
    serve: Callable[..., str],
    hybrid: bool,
) -> None:
    """Item 59: a HEAD redirected to S3 and followed gets the object's headers (200), as
    a GET does, never a 403 for a URL signed for GET (SigV4 signs the method), in
    redirect mode and in hybrid mode for a file no longer on disk."""
    put("media/docs/h.bin", ContentType="application/pdf")
    gateway = MediaGateway(settings=s3_settings(local_fallback=hybrid))
    base = serve(gateway)
    signed = base + gateway.signer.sign_url("docs/h.bin")
    got = httpx.get(signed, follow_redirects=True)
    assert (got.status_code, got.content) == (200, DATA)
    redirect = httpx.head(signed)
    assert redirect.status_code == 302
    assert "X-Amz-Signature=" in redirect.headers["location"]
    head = httpx.head(redirect.headers["location"])
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-length", "content-type", "etag", "last-modified"):
        assert head.headers[name] == got.headers[name], name
    assert head.headers["content-length"] == str(len(DATA))
    # As a client sees it, in one call; and the GET's URL is what S3 refuses a HEAD.
    assert httpx.head(signed, follow_redirects=True).status_code == 200
    get_location = httpx.get(signed).headers["location"]
    assert httpx.head(get_location).status_code == 403


@on_every_s3
def test_redirect_followed_with_range_and_conditionals(
    s3_settings: Callable[..., Settings],
    put: Callable[..., None],
    serve: Callable[..., str],
    s3_server: S3Server,
) -> None:
    """Item 67: a ranged GET through the redirect gets exactly the bytes asked for, and
    S3 answers the conditionals a browser sends. Where the servers differ, the answer
    belongs to the server: SeaweedFS answers as AWS does (206, 304, 412); rclone answers a
    range with 200 plus a Content-Range, and ignores If-Modified-Since, If-Match and
    If-Unmodified-Since."""
    put("media/docs/r.bin")
    gateway = MediaGateway(settings=s3_settings())
    signed = serve(gateway) + gateway.signer.sign_url("docs/r.bin")
    ranged = httpx.get(signed, headers={"range": "bytes=10-19"}, follow_redirects=True)
    assert ranged.history[0].status_code == 302
    assert ranged.content == DATA[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
    rclone = s3_server.kind == "rclone"
    assert ranged.status_code == (200 if rclone else 206)
    location = httpx.get(signed).headers["location"]
    whole = follow(location)
    etag, modified = whole.headers["etag"], whole.headers["last-modified"]
    assert follow(location, headers={"if-none-match": etag}).status_code == 304
    preconditions = [
        {"if-modified-since": modified},
        {"if-match": '"not-the-etag"'},
        {"if-unmodified-since": "Sat, 01 Jan 2000 00:00:00 GMT"},
    ]
    answers = [follow(location, headers=headers).status_code for headers in preconditions]
    assert answers == ([200, 200, 200] if rclone else [304, 412, 412])


def test_unsigned_is_denied_before_s3(
    s3_settings: Callable[..., Settings], serve: Callable[..., str]
) -> None:
    """Deny by default: no signature, no redirect."""
    gateway = MediaGateway(settings=s3_settings())
    r = httpx.get(serve(gateway) + "/media/docs/a.bin")
    assert r.status_code == 403
    assert "location" not in r.headers


def test_urls_are_stable_across_workers_and_windows(s3_settings: Callable[..., Settings]) -> None:
    """Every worker hands out the byte-identical URL within a window; each stays valid
    at least TTL minus the window; the next window gives a new one."""
    now = [1_800_000_000.0]
    settings = s3_settings(presign_ttl=3600, presign_window=300)
    workers = [MediaGateway(settings=settings, clock=lambda: now[0]) for _ in range(2)]
    signed = workers[0].signer.sign_url("docs/a.bin", expires_in=7200)
    locations = set()
    for offset in (0, 120, 299):
        now[0] = 1_800_000_000.0 + offset
        for worker in workers:
            reply = call(worker, signed)
            locations.add(reply.headers["location"])
            age = int(reply.headers["cache-control"].split("=")[1])
            assert age >= 3600 - 300 - 60
    assert len(locations) == 1
    now[0] += 1
    assert call(workers[0], signed).headers["location"] not in locations


@on_every_s3
def test_presigned_url_expires_at_s3(
    s3_settings: Callable[..., Settings], put: Callable[..., None]
) -> None:
    """S3 itself refuses the URL once its TTL has passed (rclone checks expiry)."""
    put("media/a.bin")
    past = time.time() - 7200
    gateway = MediaGateway(settings=s3_settings(presign_ttl=3600), clock=lambda: past)
    signed = gateway.signer.sign_url("a.bin", expires_in=10**6)
    location = call(gateway, signed).headers["location"]
    assert follow(location).status_code in (400, 403)


@on_every_s3
def test_download_disposition(
    s3_settings: Callable[..., Settings], put: Callable[..., None]
) -> None:
    """download=True makes S3 answer with an attachment disposition, non-ASCII included:
    both servers honour response-content-disposition (rclone v1.75 too, measured)."""
    put('media/docs/caf\u00e9 "x".txt')
    gateway = MediaGateway(settings=s3_settings())
    location = call(
        gateway, gateway.signer.sign_url('docs/caf\u00e9 "x".txt', download=True)
    ).headers["location"]
    params = dict(parse_qsl(urlsplit(location).query))
    assert params["response-content-disposition"] == (
        "attachment; filename=\"cafe _x_.txt\"; filename*=UTF-8''caf%C3%A9%20%22x%22.txt"
    )
    r = follow(location)
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["content-disposition"] == params["response-content-disposition"]


@on_every_s3
def test_public_endpoint_is_signed_for_its_host(
    s3_settings: Callable[..., Settings], put: Callable[..., None], s3_server: S3Server
) -> None:
    """With GATEWAY_S3_PUBLIC_ENDPOINT_URL the URL is signed for that host; rewriting
    the host afterwards would break the signature."""
    put("media/a.bin")
    public = s3_server.endpoint_url.replace("127.0.0.1", "localhost")
    gateway = MediaGateway(settings=s3_settings(s3_public_endpoint_url=public))
    location = call(gateway, gateway.signer.sign_url("a.bin")).headers["location"]
    assert location.startswith(public + "/")
    assert follow(location).content == DATA
    rewritten = location.replace("localhost", "127.0.0.1", 1)
    assert follow(rewritten).status_code == 403


def test_public_prefix_and_custom_domain(s3_settings: Callable[..., Settings]) -> None:
    """Public prefixes redirect to the CDN domain, unsigned, with a public max-age."""
    gateway = MediaGateway(
        settings=s3_settings(aws_s3_custom_domain="cdn.example.com", public_max_age=86400)
    )
    reply = call(gateway, "/media/public/logo%20x.png")
    assert reply.status == 302
    assert reply.headers["location"] == "https://cdn.example.com/media/public/logo%20x.png"
    assert reply.headers["cache-control"] == "public, max-age=86400"
    private = call(gateway, gateway.signer.sign_url("docs/a.bin"))
    assert "cdn.example.com" not in private.headers["location"]


@on_every_s3
def test_public_prefix_without_cdn_is_presigned(
    s3_settings: Callable[..., Settings], put: Callable[..., None]
) -> None:
    """Without a custom domain a public file gets a presigned URL and public caching."""
    put("media/public/p.bin")
    gateway = MediaGateway(settings=s3_settings())
    reply = call(gateway, "/media/public/p.bin")
    assert reply.status == 302
    assert reply.headers["cache-control"].startswith("public, max-age=")
    assert follow(reply.headers["location"]).content == DATA


@pytest.mark.parametrize("host", [b"evil.example", b"attacker:1"])
def test_location_host_comes_from_config(
    s3_settings: Callable[..., Settings],
    serve: Callable[..., str],
    s3_server: S3Server,
    host: bytes,
) -> None:
    """Item 13: a hostile Host header never reaches the Location."""
    gateway = MediaGateway(settings=s3_settings())
    base = serve(gateway)
    reply = raw_request(
        base, gateway.signer.sign_url("a.bin").encode(), headers=b"Host: " + host + b"\r\n"
    )
    assert reply.status == 302
    assert reply.headers["location"].startswith(s3_server.endpoint_url + "/")


@on_every_s3
def test_missing_key_redirects_to_s3_404(s3_settings: Callable[..., Settings]) -> None:
    """Item 39, documented: redirect mode does not ask S3 first (that would cost a call
    per request); a missing key is S3's 404 after the redirect."""
    gateway = MediaGateway(settings=s3_settings())
    location = call(gateway, gateway.signer.sign_url("missing.bin")).headers["location"]
    assert follow(location).status_code == 404


@on_every_s3
def test_hybrid_mode(
    s3_settings: Callable[..., Settings], put: Callable[..., None], media_root: Path
) -> None:
    """During a migration: on disk means served from disk; only in S3 means redirect;
    so no file in either place ever gets a 404 from the gateway."""
    (media_root / "local.bin").write_bytes(b"on disk")
    put("media/remote.bin")
    gateway = MediaGateway(settings=s3_settings(local_fallback=True))
    local = call(gateway, gateway.signer.sign_url("local.bin"))
    assert (local.status, local.body) == (200, b"on disk")
    remote = call(gateway, gateway.signer.sign_url("remote.bin"))
    assert remote.status == 302
    assert follow(remote.headers["location"]).content == DATA
    (media_root / "local.bin").unlink()
    assert call(gateway, gateway.signer.sign_url("local.bin")).status == 302


@on_every_s3
def test_wrong_credentials(s3_settings: Callable[..., Settings], put: Callable[..., None]) -> None:
    """Item 38: presigning works offline, so the gateway still redirects; S3 refuses the
    URL, and `media-gateway check` reports it (tests/test_cli_s3.py)."""
    put("media/a.bin")
    gateway = MediaGateway(settings=s3_settings(aws_secret_access_key="wrong-secret"))
    location = call(gateway, gateway.signer.sign_url("a.bin")).headers["location"]
    assert follow(location).status_code == 403


def test_presign_ttl_over_seven_days_is_refused(s3_settings: Callable[..., Settings]) -> None:
    """Item 41: an expiry over 604800 seconds is refused when the settings load."""
    with pytest.raises(ConfigError, match="GATEWAY_PRESIGN_TTL"):
        s3_settings(presign_ttl=604801)
    assert s3_settings(presign_ttl=604800).presign_ttl == 604800


class GatewayClient(httpx.Client):
    """A client that knows the gateway it talks to, to sign its URLs."""

    gateway: MediaGateway


@on_every_s3
class TestProxy:
    """GATEWAY_S3_DELIVERY=proxy streams through the gateway."""

    @pytest.fixture
    def client(
        self,
        s3_settings: Callable[..., Settings],
        put: Callable[..., None],
        serve: Callable[..., str],
    ) -> Iterator[GatewayClient]:
        put("media/docs/p.bin")
        gateway = MediaGateway(settings=s3_settings(s3_delivery="proxy"))
        with GatewayClient(base_url=serve(gateway)) as client:
            client.gateway = gateway
            yield client

    def url(self, client: GatewayClient, path: str = "docs/p.bin", **kwargs: Any) -> str:
        return client.gateway.signer.sign_url(path, **kwargs)

    def test_body_and_headers(self, client: GatewayClient) -> None:
        """200 with S3's validators and our cache policy."""
        r = client.get(self.url(client))
        assert r.status_code == 200
        assert r.content == DATA
        assert r.headers["content-length"] == str(len(DATA))
        assert r.headers["etag"]
        assert r.headers["cache-control"].startswith("private, max-age=")
        assert r.headers["x-content-type-options"] == "nosniff"

    def test_range_and_conditionals(self, client: GatewayClient) -> None:
        """Range gives 206 from either server (rclone's 200 with a Content-Range becomes a
        206), a matching If-None-Match 304, bad ranges 416. If-Modified-Since, If-Match and
        If-Unmodified-Since give 304 and 412 from either server: SeaweedFS answers them as
        AWS does; rclone ignores them and sends the object, which the gateway then judges on
        rclone's own validators (item 67)."""
        r = client.get(self.url(client), headers={"range": "bytes=10-19"})
        assert r.status_code == 206
        assert r.content == DATA[10:20]
        assert r.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
        whole = client.get(self.url(client))
        etag, modified = whole.headers["etag"], whole.headers["last-modified"]
        assert client.get(self.url(client), headers={"if-none-match": etag}).status_code == 304
        earlier = "Sat, 01 Jan 2000 00:00:00 GMT"
        asked = [
            ({"if-modified-since": modified}, 304),
            ({"if-modified-since": earlier}, 200),
            ({"if-match": '"not-the-etag"'}, 412),
            ({"if-match": etag, "range": "bytes=0-9"}, 206),
            ({"if-unmodified-since": earlier}, 412),
        ]
        for headers, status in asked:
            r = client.get(self.url(client), headers=headers)
            assert r.status_code == status, headers
            if status == 304:
                assert (r.content, r.headers["etag"]) == (b"", etag)
                assert "content-length" not in r.headers or r.headers["content-length"] == "0"
        assert (
            client.get(self.url(client), headers={"range": f"bytes={len(DATA) + 5}-"}).status_code
            == 416
        )

    def test_head_and_missing(self, client: GatewayClient) -> None:
        """HEAD has the length and no body; a missing key is 404."""
        r = client.head(self.url(client))
        assert r.status_code == 200
        assert r.headers["content-length"] == str(len(DATA))
        assert r.content == b""
        assert client.get(self.url(client, "docs/missing.bin")).status_code == 404

    def test_download(self, client: GatewayClient) -> None:
        """download=True gives an attachment disposition through the proxy."""
        r = client.get(self.url(client, download=True))
        assert r.headers["content-disposition"] == 'attachment; filename="p.bin"'


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP server on loopback that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    accepted = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    sock.close()


def test_blackholed_s3_gives_504_in_time(
    s3_settings: Callable[..., Settings],
    blackhole: str,
    media_root: Path,
    serve: Callable[..., str],
) -> None:
    """Item 36: a silent endpoint gives 504 within the timeout, and local files served
    by the same gateway are unaffected meanwhile."""
    (media_root / "local.bin").write_bytes(b"local")
    gateway = MediaGateway(
        settings=s3_settings(
            s3_delivery="proxy", aws_s3_endpoint_url=blackhole, s3_timeout=1.0, local_fallback=True
        )
    )
    base = serve(gateway)
    results: dict[str, float] = {}

    def slow() -> None:
        started = time.monotonic()
        results["status"] = httpx.get(
            base + gateway.signer.sign_url("remote.bin"), timeout=10
        ).status_code
        results["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert httpx.get(base + gateway.signer.sign_url("local.bin")).content == b"local"
    assert time.monotonic() - started < 0.5
    thread.join(10)
    assert results["status"] == 504
    assert results["seconds"] < 3


def test_refused_connection_gives_502(
    s3_settings: Callable[..., Settings], media_root: Path
) -> None:
    """A closed port gives 502 after one retry, with a short reason."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gateway = MediaGateway(
        settings=s3_settings(s3_delivery="proxy", aws_s3_endpoint_url=f"http://127.0.0.1:{port}")
    )
    reply = call(gateway, gateway.signer.sign_url("a.bin"))
    assert reply.status == 502
    assert reply.body == b"Storage unreachable\n"


@pytest.mark.parametrize(("status", "expected"), [(500, 503), (503, 503), (403, 502), (400, 502)])
def test_s3_errors_are_mapped(
    s3_settings: Callable[..., Settings], status: int, expected: int
) -> None:
    """Item 37: 500/503 are retried once, then 503 with Retry-After; 4xx auth errors 502."""
    attempts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        return httpx.Response(status, text="<Error><Code>SlowDown</Code></Error>")

    gateway = MediaGateway(
        settings=s3_settings(s3_delivery="proxy"), transport=httpx.MockTransport(handler)
    )
    reply = call(gateway, gateway.signer.sign_url("a.bin"))
    assert reply.status == expected
    assert len(attempts) == (2 if status in (500, 503) else 1)
    if expected == 503:
        assert reply.headers["retry-after"] == "1"


def test_presign_needs_no_network(s3_settings: Callable[..., Settings], blackhole: str) -> None:
    """Presigning is offline: an unreachable endpoint does not slow redirects."""
    gateway = MediaGateway(settings=s3_settings(aws_s3_endpoint_url=blackhole))
    started = time.monotonic()
    for _ in range(100):
        assert call(gateway, gateway.signer.sign_url("a.bin")).status == 302
    assert time.monotonic() - started < 5


def test_credentials_from_boto3_chain(
    s3_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, put: Callable[..., None]
) -> None:
    """Without explicit keys, credentials (session token included) come from boto3's
    chain, here the environment."""
    put("media/a.bin")
    settings = s3_settings(aws_access_key_id=None, aws_secret_access_key=None)
    keys = s3_settings()
    assert keys.aws_access_key_id is not None and keys.aws_secret_access_key is not None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys.aws_access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys.aws_secret_access_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token/+=")
    gateway = MediaGateway(settings=settings)
    location = call(gateway, gateway.signer.sign_url("a.bin")).headers["location"]
    assert "X-Amz-Security-Token=session-token%2F%2B%3D" in location
    assert dict(parse_qsl(urlsplit(location).query))["X-Amz-Credential"].startswith(
        keys.aws_access_key_id
    )


def test_no_credentials_fails_at_start(
    s3_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No credentials anywhere stops start-up with a message naming the variables."""
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        MediaGateway(settings=s3_settings(aws_access_key_id=None, aws_secret_access_key=None))


def test_datetime_is_utc_window_start(s3_settings: Callable[..., Settings]) -> None:
    """X-Amz-Date is the window start, in UTC."""
    gateway = MediaGateway(settings=s3_settings(presign_window=300), clock=lambda: 1_800_000_123.0)
    location = call(gateway, gateway.signer.sign_url("a.bin")).headers["location"]
    amz_date = dict(parse_qsl(urlsplit(location).query))["X-Amz-Date"]
    expected = datetime.datetime.fromtimestamp(1_800_000_000, datetime.UTC).strftime(
        "%Y%m%dT%H%M%SZ"
    )
    assert amz_date == expected


def test_content_type_override_redirect_and_proxy(
    s3_settings: Callable[..., Settings], put: Callable[..., None]
) -> None:
    """A signed content-type override reaches S3 as response-content-type (redirect)
    and replaces S3's type (proxy)."""
    put("media/docs/x.bin")
    gateway = MediaGateway(settings=s3_settings())
    location = call(
        gateway, gateway.signer.sign_url("docs/x.bin", content_type="image/png")
    ).headers["location"]
    assert dict(parse_qsl(urlsplit(location).query))["response-content-type"] == "image/png"
    proxy = MediaGateway(
        settings=s3_settings(s3_delivery="proxy"),
        transport=httpx.MockTransport(
            lambda r: httpx.Response(
                200,
                headers={"content-type": "application/octet-stream"},
                stream=httpx.ByteStream(b"png"),
            )
        ),
    )
    reply = call(proxy, proxy.signer.sign_url("docs/x.bin", content_type="image/png"))
    assert reply.headers["content-type"] == "image/png"
    assert [k for k, _ in reply.header_list].count("content-type") == 1


# Redirects remembered for the rest of their second (gateway.serving.recent).
# Presigning needs no network, so these run without an S3 server.


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def offline_settings(media_root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "secret_keys": (SECRET,),
        "media_root": media_root,
        "use_s3": True,
        "aws_location": "media",  # as .env.example sets it
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "offline-secret",
        "aws_storage_bucket_name": "bucket",
        "aws_s3_endpoint_url": "http://127.0.0.1:9",
        "public_prefixes": ("public",),
        "presign_window": 60,
    }
    values.update(overrides)
    return Settings(**values)


def test_remembered_redirects_equal_fresh_ones(media_root: Path) -> None:
    """Every answer of a gateway that remembers redirects equals that of a fresh gateway
    at the same moment: across seconds, presign windows, the URL's expiry, HEAD, public
    files and a signed download."""
    start = 1_800_000_000.0
    clock = Clock(start)
    settings = offline_settings(media_root)
    gateway = MediaGateway(settings=settings, clock=clock)
    signer = gateway.signer
    targets = [
        signer.sign_url("docs/a.pdf", expires_in=300),
        signer.sign_url("docs/a.pdf", expires_in=300, download=True),
        "/media/public/logo.png",
    ]
    # Expiries fall on a window boundary: the signed URLs expire at start + 300.
    moments = [start + offset for offset in (0, 0.2, 0.99, 1.0, 59.5, 60.0, 61.3, 299.0)]
    moments += [start + 299.999, start + 300.0, start + 300.5, start + 301.2]
    seen = set()
    for moment in moments:
        clock.now = moment
        for target in targets:
            for method in ("GET", "HEAD", "GET"):
                remembered = call(gateway, target, method=method)
                fresh = call(MediaGateway(settings=settings, clock=clock), target, method=method)
                assert (remembered.status, remembered.headers, remembered.body) == (
                    fresh.status,
                    fresh.headers,
                    fresh.body,
                ), (moment, target, method)
                seen.add(remembered.status)
    assert seen == {302, 403}  # the signed URLs expired during the run
    assert gateway._recent is not None and len(gateway._recent) > 0
    # Reused across seconds too, not only within one: of the 36 answers, 24 repeat one
    # given in the same second, and the moments 0.99 -> 1.0 renew the max-age.
    assert gateway._recent.hits > 24


def test_remembered_redirects_follow_new_credentials(media_root: Path) -> None:
    """Credentials that change within a presign window (a role's refresh) change the
    URL: a remembered redirect signed with the old ones (still valid: refreshes come
    before the expiry) ends with its second, and the next one is a fresh gateway's."""
    from gateway.sigv4 import Credentials

    clock = Clock(1_800_000_000.0)
    keys = [Credentials("AKIDONE", "secret-one")]
    settings = offline_settings(media_root, presign_window=300)

    def gateway_with_keys() -> MediaGateway:
        gateway = MediaGateway(settings=settings, clock=clock)
        assert gateway.redirector is not None
        gateway.redirector.presigner.credentials = lambda: keys[0]
        return gateway

    gateway = gateway_with_keys()
    url = gateway.signer.sign_url("docs/a.pdf", expires_in=3600)
    first = call(gateway, url).headers["location"]
    assert "AKIDONE" in first
    clock.now += 1.5
    assert call(gateway, url).headers["location"] == first  # renewed: same window, keys
    keys[0] = Credentials("AKIDTWO", "secret-two")
    clock.now += 0.1
    assert call(gateway, url).headers["location"] == first  # the rest of its second
    clock.now += 1.0
    location = call(gateway, url).headers["location"]
    assert "AKIDTWO" in location
    assert location == call(gateway_with_keys(), url).headers["location"]


def test_redirect_is_not_remembered_past_the_urls_expiry(media_root: Path) -> None:
    """A URL expiring at T is redirected at T itself and refused half a second later,
    within the same second: its redirect is not remembered for the rest of it."""
    clock = Clock(1_800_000_000.0)
    gateway = MediaGateway(settings=offline_settings(media_root), clock=clock)
    url = gateway.signer.sign_url("docs/a.pdf", expires_in=300)
    expiry = int(dict(parse_qsl(urlsplit(url).query))["exp"])
    clock.now = expiry - 0.5
    assert [call(gateway, url).status for _ in range(2)] == [302, 302]
    clock.now = float(expiry)
    assert call(gateway, url).status == 302
    clock.now = expiry + 0.5
    assert call(gateway, url).status == 403


def test_delegated_redirects_are_not_remembered(media_root: Path) -> None:
    """The app's decision depends on the cookies: a redirect it allowed for one user is
    not handed to the next request for the same path, even in the same second."""
    from tests.serving.test_delegate import AuthApp

    app = AuthApp({"session=alice": 200, "session=mallory": 403})
    gateway = MediaGateway(
        app, settings=offline_settings(media_root, auth_delegate="/auth"), clock=Clock(1.8e9)
    )
    target = "/media/docs/alice.pdf"
    assert call(gateway, target, headers={"cookie": "session=alice"}).status == 302
    assert call(gateway, target, headers={"cookie": "session=mallory"}).status == 403
    assert call(gateway, target).status == 403


def test_remembered_redirects_survive_middleware_that_edits_headers(media_root: Path) -> None:
    """Middleware around the gateway may add headers to a message in place (Starlette's
    CORSMiddleware does): each answer still carries its headers once."""
    gateway = MediaGateway(settings=offline_settings(media_root), clock=Clock(1.8e9))

    async def tagging(scope: Scope, receive: Receive, send: Send) -> None:
        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-tag", b"1"))
            await send(message)

        await gateway(scope, receive, tagged)

    url = gateway.signer.sign_url("docs/a.pdf")
    replies = [call(tagging, url) for _ in range(3)]
    for reply in replies:
        assert reply.status == 302
        assert sum(1 for name, _ in reply.header_list if name == "x-tag") == 1
    assert len({reply.headers["location"] for reply in replies}) == 1


def test_remembered_redirects_are_bounded(media_root: Path) -> None:
    """However many distinct URLs arrive in one second, at most SIZE are remembered."""
    from gateway.serving.recent import RecentAnswers

    gateway = MediaGateway(settings=offline_settings(media_root), clock=Clock(1.8e9))
    for index in range(RecentAnswers.SIZE + 50):
        assert call(gateway, f"/media/public/{index}.png").status == 302
    assert gateway._recent is not None
    assert len(gateway._recent) == RecentAnswers.SIZE


def test_redirects_without_a_raw_path_are_not_remembered(media_root: Path) -> None:
    """A server (or middleware) that leaves raw_path empty makes the gateway read the
    decoded path; such requests never share a remembered answer."""
    gateway = MediaGateway(settings=offline_settings(media_root), clock=Clock(1.8e9))

    async def no_raw_path(scope: Scope, receive: Receive, send: Send) -> None:
        await gateway({**scope, "raw_path": b""}, receive, send)

    assert call(no_raw_path, "/media/public/logo.png").status == 302
    assert call(no_raw_path, "/media/private/secret.pdf").status == 403
    assert gateway._recent is not None and len(gateway._recent) == 0


def test_padded_urls_are_answered_but_not_remembered(media_root: Path) -> None:
    """Extra query parameters still verify, but a long padded request is neither a
    remembered signature nor a remembered redirect: it cannot fill the memory."""
    gateway = MediaGateway(settings=offline_settings(media_root), clock=Clock(1.8e9))
    url = gateway.signer.sign_url("docs/a.pdf") + "&utm=" + "x" * 2000
    assert call(gateway, url).status == 302
    assert call(gateway, url).status == 302
    assert gateway.signer.remembered().currsize == 0
    assert gateway._recent is not None and len(gateway._recent) == 0


def test_reused_redirects_are_counted(media_root: Path) -> None:
    """The metrics count redirects reused within their second."""
    from tests.serving.test_observe import metric

    gateway = MediaGateway(
        settings=offline_settings(media_root, metrics_path="/-/metrics"), clock=Clock(1.8e9)
    )
    url = gateway.signer.sign_url("docs/a.pdf")
    assert [call(gateway, url).status for _ in range(3)] == [302, 302, 302]
    text = call(gateway, "/-/metrics").body.decode()
    assert metric(text, "media_gateway_memory_hits_total", kind="redirect") == 2
    assert metric(text, "media_gateway_memory_entries", kind="redirect") == 1
    assert metric(text, "media_gateway_requests_total", outcome="redirect") == 3
