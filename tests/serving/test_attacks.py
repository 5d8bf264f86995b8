"""Attacks that once worked (issue 17, items 5 and 6), each reproduced against a real
server (uvicorn or gunicorn) and kept as a regression test. The forged delegate headers
are in tests/serving/test_delegate.py and tests/django/test_django_integration.py; the content policy
in tests/serving/test_content_policy.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from gateway import MediaGateway, Settings, URLSigner
from gateway.signing import _payload, _signature_text
from tests.conftest import SECRET
from tests.s3server import S3Server
from tests.serving.test_wsgi import gunicorn  # noqa: F401 (a fixture)


@pytest.fixture
def served(
    media_root: Path, make_settings: Callable[..., Settings], serve: Callable[..., str]
) -> tuple[MediaGateway, str]:
    (media_root / "a.txt").write_bytes(b"private")
    gateway = MediaGateway(settings=make_settings())
    return gateway, serve(gateway)


def forge(signer: URLSigner, relpath: str, exp: str, *, ct: str | None = None) -> str:
    """A query whose signature is valid for int(exp) and ct, in another spelling."""
    payload = _payload(relpath, int(exp), False, ct)
    sig = _signature_text(signer._macs[0], payload).decode()
    options = "" if ct is None else f"&ct={quote(ct, safe='')}"
    return f"exp={exp}{options}&sig={sig}"


@pytest.mark.parametrize(
    "query",
    [
        "exp=1&ct=text%2F%C3%A9&sig=" + "A" * 43,
        "exp=1&ct=%C3%A9%2Fx&sig=" + "A" * 43,
        "exp=1&ct=text%2Fplain%3B%20charset%3D%C3%A9&sig=" + "A" * 43,
        "exp=%D9%A1&sig=" + "A" * 43,
    ],
)
def test_non_ascii_options_are_403_without_traceback(
    served: tuple[MediaGateway, str], caplog: pytest.LogCaptureFixture, query: str
) -> None:
    """A non-ASCII ct once gave a 500 and a logged traceback on every request."""
    _, base = served
    with caplog.at_level(logging.ERROR):
        response = httpx.get(f"{base}/media/a.txt?{query}")
    assert response.status_code == 403
    assert not [r for r in caplog.records if r.exc_info]


def test_an_expiry_has_one_spelling(served: tuple[MediaGateway, str]) -> None:
    """Item 6 (INFO, decided): a grant has one spelling. Leading zeros and non-ASCII
    digits (int() reads both) are refused, although the HMAC is right."""
    gateway, base = served
    far = str(int(gateway.signer.clock()) + 3600)
    assert httpx.get(f"{base}/media/a.txt?{forge(gateway.signer, 'a.txt', far)}").content == (
        b"private"
    )
    arabic = far.translate(
        str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")
    )
    for exp in ("0" + far, "00" + far, quote(arabic)):
        query = forge(gateway.signer, "a.txt", far).replace(f"exp={far}", f"exp={exp}")
        assert httpx.get(f"{base}/media/a.txt?{query}").status_code == 403, exp


def test_a_content_type_has_one_spelling(served: tuple[MediaGateway, str]) -> None:
    """ct as sign_url writes it, percent-encoded; a raw or re-encoded spelling of the
    same type is another URL for one grant and is refused."""
    gateway, base = served
    far = str(int(gateway.signer.clock()) + 3600)
    query = forge(gateway.signer, "a.txt", far, ct="text/plain")
    assert httpx.get(f"{base}/media/a.txt?{query}").status_code == 200
    for spelling in ("text/plain", "text%2fplain", "%74ext%2Fplain"):
        other = query.replace("ct=text%2Fplain", f"ct={spelling}")
        assert httpx.get(f"{base}/media/a.txt?{other}").status_code == 403, spelling


def test_signed_urls_still_verify(served: tuple[MediaGateway, str]) -> None:
    """The URLs sign_url writes, with every option, are unaffected."""
    _, base = served
    signer = URLSigner(secret_keys=[SECRET])
    for url in (
        signer.sign_url("a.txt"),
        signer.sign_url("a.txt", download=True),
        signer.sign_url("a.txt", content_type="text/plain; charset=utf-8"),
        signer.sign_url("a.txt", download=True, content_type="application/x-thing+json"),
    ):
        assert httpx.get(base + url).status_code == 200, url


@pytest.mark.parametrize("target", ["/media/%FF", "/media/%C3%28", "/media/a%FF.txt?exp=1"])
def test_invalid_utf8_under_gunicorn_is_404(gunicorn: str, target: str) -> None:  # noqa: F811
    """MediaGatewayWSGI under gunicorn once answered these with a 500."""
    assert httpx.get(gunicorn + target).status_code == 404


def test_readiness_keeps_the_details_to_the_log(
    s3_server: S3Server,
    media_root: Path,
    make_settings: Callable[..., Settings],
    serve: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anyone who reaches the probe learns a short reason code; the bucket name and the
    internal endpoint go to the log (and to `media-gateway check`)."""
    settings = make_settings(
        use_s3=True,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        aws_storage_bucket_name="secret-bucket-name",
        aws_s3_endpoint_url=s3_server.endpoint_url,
        ready_path="/-/ready",
    )
    base = serve(MediaGateway(settings=settings))
    with caplog.at_level(logging.WARNING, logger="gateway.health"):
        response = httpx.get(base + "/-/ready")
    assert response.status_code == 503
    assert response.json() == {
        "ready": False,
        "mode": "s3",
        "bucket_reachable": False,
        "problems": ["bucket"],
    }
    assert "secret-bucket-name" not in response.text
    assert s3_server.endpoint_url.split("//")[1] not in response.text
    assert "secret-bucket-name" in caplog.text


def test_a_slow_steady_reader_is_not_dropped(
    media_root: Path, make_settings: Callable[..., Settings], serve: Callable[..., str]
) -> None:
    """GATEWAY_SEND_TIMEOUT once bounded the send of a whole 1 MiB chunk, so a client
    reading steadily, but slower than 1 MiB per timeout, was dropped as idle once the
    kernel's buffers were full. Here: a 0.5 s timeout, a reader paced at 768 KB/s (a
    1 MiB send waits 1.4 s for it), small kernel buffers: every byte arrives."""
    import os
    import socket
    import time

    rate = 768 * 1024
    data = os.urandom(3 * 1024 * 1024)
    (media_root / "big.bin").write_bytes(data)
    gateway = MediaGateway(settings=make_settings(send_timeout=0.5))
    host, port = serve(gateway, send_buffer=32768).removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect((host, int(port)))
    target = gateway.signer.sign_url("big.bin")
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    received = bytearray()
    started = time.monotonic()
    try:
        while time.monotonic() - started < 30:
            chunk = sock.recv(16384)
            if not chunk:
                break
            received += chunk
            # Paced: never ahead of `rate` bytes a second since the start.
            time.sleep(max(0.0, len(received) / rate - (time.monotonic() - started)))
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert len(body) == len(data)
    assert body == data
    assert len(received) / elapsed < 1024 * 1024 / 0.5  # slower than 1 MiB per timeout
