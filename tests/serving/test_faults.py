"""Fault injection between the gateway and S3: RELIABILITY items 36, 37 and 56."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gateway import MediaGateway, Settings
from tests.conftest import SECRET
from tests.faultproxy import FaultProxy
from tests.s3server import S3Server

DATA = b"x" * 50_000


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    port = urlsplit(s3_server.endpoint_url).port
    assert port is not None
    fault = FaultProxy(port)
    yield fault
    fault.close()


@pytest.fixture
def gateway_url(
    proxy: FaultProxy,
    s3_server: S3Server,
    s3_bucket: str,
    media_root: Path,
    serve: Callable[..., str],
) -> Callable[[str], str]:
    (media_root / "local.bin").write_bytes(b"local file")
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="media/remote.bin", Body=DATA)
    client.close()
    settings = Settings(
        secret_keys=(SECRET,),
        media_root=media_root,
        use_s3=True,
        aws_location="media",  # as .env.example sets it
        local_fallback=True,
        s3_delivery="proxy",
        s3_timeout=1.0,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        aws_storage_bucket_name=s3_bucket,
        aws_s3_endpoint_url=proxy.url,
    )
    gateway = MediaGateway(settings=settings)
    base = serve(gateway)
    return lambda path: base + gateway.signer.sign_url(path)


def test_pass_through(proxy: FaultProxy, gateway_url: Callable[[str], str]) -> None:
    """With no fault the proxy is transparent."""
    assert httpx.get(gateway_url("remote.bin")).content == DATA


def test_dropped_connection_gives_504_in_time(
    proxy: FaultProxy, gateway_url: Callable[[str], str]
) -> None:
    """Item 36: a connection that is accepted but never answered gives 504 within the
    configured timeout (1 s here)."""
    proxy.mode = "drop"
    started = time.monotonic()
    r = httpx.get(gateway_url("remote.bin"), timeout=10)
    assert r.status_code == 504
    assert time.monotonic() - started < 2.5


def test_reset_connection_gives_502(proxy: FaultProxy, gateway_url: Callable[[str], str]) -> None:
    """A reset connection is retried once, then 502; nothing hangs."""
    proxy.mode = "reset"
    before = proxy.connections
    r = httpx.get(gateway_url("remote.bin"), timeout=10)
    assert r.status_code == 502
    assert proxy.connections - before == 2


def test_slow_s3_does_not_block_local_files(
    proxy: FaultProxy, gateway_url: Callable[[str], str]
) -> None:
    """Item 56: with 3 s of S3 latency and S3 requests in flight, local-file latency
    stays where it was: the event loop is never blocked."""
    local = gateway_url("local.bin")
    remote = gateway_url("remote.bin")
    with httpx.Client() as client, httpx.Client(timeout=10) as slow_client:

        def latencies(n: int) -> list[float]:
            times = []
            for _ in range(n):
                started = time.perf_counter()
                assert client.get(local).status_code == 200
                times.append(time.perf_counter() - started)
            return times

        baseline = latencies(200)
        proxy.mode, proxy.delay = "delay", 3.0
        # One client built up front: building one costs CPU (a TLS context) that would
        # show up here as the test's own latency, not the gateway's.
        slow = [threading.Thread(target=slow_client.get, args=(remote,)) for _ in range(8)]
        before = proxy.connections
        for thread in slow:
            thread.start()
        deadline = time.monotonic() + 2
        while proxy.connections - before < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        loaded = latencies(200)
        for thread in slow:
            thread.join(15)
    p99_before = statistics.quantiles(baseline, n=100)[98]
    p99_during = statistics.quantiles(loaded, n=100)[98]
    # A blocked loop would show the 3 s of S3 latency; 0.1 s absorbs scheduler noise.
    assert p99_during < max(0.1, 5 * p99_before)
