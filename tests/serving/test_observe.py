"""Metrics, readiness and liveness (the access log: tests/serving/test_access_log.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway import ConfigError, MediaGateway, Settings
from tests.conftest import free_port
from tests.helpers import call, settle
from tests.s3server import S3Server


@pytest.fixture
def gateway(media_root: Path, make_settings: Callable[..., Settings]) -> MediaGateway:
    (media_root / "a.txt").write_bytes(b"12345")
    return MediaGateway(
        settings=make_settings(
            metrics_path="/-/metrics", ready_path="/-/ready", live_path="/-/live"
        )
    )


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + label_text + '}') if labels else ''} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def test_metrics_count_outcomes(gateway: MediaGateway) -> None:
    """Requests are counted by outcome, with latency and local bytes."""
    call(gateway, gateway.signer.sign_url("a.txt"))
    call(gateway, "/media/a.txt")
    call(gateway, gateway.signer.sign_url("missing.txt"))
    call(gateway, "/media/../x")
    text = call(gateway, "/-/metrics").body.decode()
    assert metric(text, "media_gateway_requests_total", outcome="local") == 1
    assert metric(text, "media_gateway_requests_total", outcome="denied") == 1
    assert metric(text, "media_gateway_requests_total", outcome="not_found") == 2
    assert metric(text, "media_gateway_local_bytes_total") == 5
    assert metric(text, "media_gateway_request_duration_seconds_count", outcome="local") == 1


def test_metrics_never_under_media_url(make_settings: Callable[..., Settings]) -> None:
    """An operations path under MEDIA_URL is refused at start-up."""
    with pytest.raises(ConfigError, match="GATEWAY_METRICS_PATH"):
        make_settings(metrics_path="/media/metrics")


def test_metrics_off_by_default(media_root: Path, make_settings: Callable[..., Settings]) -> None:
    """Without a metrics path the request goes to the app (here: a standalone 404)."""
    gateway = MediaGateway(settings=make_settings())
    assert gateway.metrics is None
    assert call(gateway, "/metrics").status == 404


def test_metrics_on_separate_port(
    media_root: Path, make_settings: Callable[..., Settings], serve: Callable[..., str]
) -> None:
    """GATEWAY_METRICS_PORT serves the metrics on a port of their own, on loopback."""
    port = free_port()
    gateway = MediaGateway(settings=make_settings(metrics_port=port))
    base = serve(gateway)
    httpx.get(base + "/media/a.txt")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert metric(text, "media_gateway_requests_total", outcome="denied") == 1


def test_ready_and_live(gateway: MediaGateway, media_root: Path) -> None:
    """Readiness reports the settings' health; liveness only that we run."""
    live = call(gateway, "/-/live")
    assert (live.status, live.body) == (200, b'{"live": true}')
    ready = call(gateway, "/-/ready")
    assert ready.status == 200
    assert ready.headers["cache-control"] == "no-store"
    assert b'"ready": true' in ready.body


def test_ready_fails_without_bucket(
    s3_server: S3Server, s3_bucket: str, media_root: Path, make_settings: Callable[..., Settings]
) -> None:
    """In S3 mode readiness fails (503) when the bucket cannot be reached."""
    settings = make_settings(
        use_s3=True,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        aws_storage_bucket_name="no-such-bucket",
        aws_s3_endpoint_url=s3_server.endpoint_url,
        ready_path="/ready",
    )
    reply = call(MediaGateway(settings=settings), "/ready")
    assert reply.status == 503
    assert json.loads(reply.body)["problems"] == ["bucket"]
    good = MediaGateway(
        settings=settings.__class__(**{**settings.__dict__, "aws_storage_bucket_name": s3_bucket})
    )
    assert call(good, "/ready").status == 200


def test_metrics_count_answers_from_memory(gateway: MediaGateway) -> None:
    """Kept files and remembered signatures are counted, with what they hold."""
    settle(gateway.files)
    url = gateway.signer.sign_url("a.txt")
    for _ in range(3):
        assert call(gateway, url).body == b"12345"
    text = call(gateway, "/-/metrics").body.decode()
    assert metric(text, "media_gateway_memory_hits_total", kind="file") == 2
    assert metric(text, "media_gateway_memory_hits_total", kind="signature") == 2
    assert metric(text, "media_gateway_memory_entries", kind="file") == 1
    assert metric(text, "media_gateway_memory_entries", kind="signature") == 1
    assert metric(text, "media_gateway_memory_bytes", kind="file") >= 5
