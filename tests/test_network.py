"""One network policy for every S3 call (gateway/network.py), against a real https S3
server (rclone with a certificate from a CA the test generates) and a real CONNECT
proxy on loopback. RELIABILITY items 62 and 63.

The clients: boto3 (``check``, the readiness probe), httpx (proxy mode) and the
migration client (``upload``, ``verify``, ``pull``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.utils import get_environ_proxies

from gateway import MediaGateway, Settings
from gateway.cli import main
from gateway.migrate.wire import S3Error, S3Wire
from gateway.network import proxy_for, tls_context
from gateway.serving.operations import REASON_CODES
from gateway.sigv4 import Credentials
from tests.conftest import SECRET, free_port, run_server
from tests.connectproxy import ConnectProxy
from tests.helpers import call
from tests.migrate.support import write_tree
from tests.s3server import S3Server

# Variables through which OpenSSL, requests, curl or botocore could learn of a CA or a
# proxy: the tests set the ones they mean.
_NETWORK_VARIABLES = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)

TREE = {
    "a.txt": b"alpha",
    "d/b.txt": b"bravo",
    # From 1 MiB on, bodies wait for "100 Continue": rclone (Go) must send it over TLS.
    "big.bin": os.urandom(2 << 20),
}


@pytest.fixture
def tls_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    s3_tls_server: S3Server,
    s3_tls_bucket: str,
    media_root: Path,
) -> Path:
    """The environment of a gateway and a migration on the https server, with nothing
    that trusts its CA; returns the CA's PEM file."""
    for name in _NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    # No profile of this machine may name a ca_bundle or a proxy.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    monkeypatch.setenv("MEDIA_ROOT", str(media_root))
    monkeypatch.setenv("GATEWAY_READY_PATH", "/-/ready")
    for name, value in s3_tls_server.env(s3_tls_bucket).items():
        monkeypatch.setenv(name, value)
    write_tree(media_root, TREE)
    assert s3_tls_server.ca_file is not None
    return Path(s3_tls_server.ca_file)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def readiness() -> tuple[int, dict[str, object]]:
    reply = call(MediaGateway(settings=Settings.from_env()), "/-/ready")
    return reply.status, json.loads(reply.body)


def proxied(path: str = "a.txt") -> tuple[int, bytes]:
    """Fetch ``path`` through the gateway in proxy mode (httpx to S3), served by uvicorn,
    whose shutdown closes the gateway's S3 connections."""
    settings = Settings.from_env({**os.environ, "GATEWAY_S3_DELIVERY": "proxy"})
    gateway = MediaGateway(settings=settings)
    with run_server(gateway) as base, httpx.Client(base_url=base, trust_env=False) as client:
        reply = client.get(gateway.signer.sign_url(path))
    return reply.status_code, reply.content


def every_client_works(capsys: pytest.CaptureFixture[str], media_root: Path) -> None:
    """check, readiness, upload, verify, pull and proxy mode, each succeeding."""
    code, out, err = run(capsys, "check")
    assert code == 0, err
    status, body = readiness()
    assert status == 200, body
    code, out, err = run(capsys, "upload", "--json")
    assert code == 0, err
    assert json.loads(out)["uploaded"] == len(TREE)
    code, out, err = run(capsys, "verify")
    assert code == 0, err
    (media_root / "d" / "b.txt").unlink()
    code, out, err = run(capsys, "pull", "--json")
    assert (code, json.loads(out)["pulled"]) == (0, 1), err
    assert (media_root / "d" / "b.txt").read_bytes() == b"bravo"
    assert proxied() == (200, b"alpha")


def every_client_fails(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, variable: str
) -> None:
    """check, readiness, upload, verify, pull and proxy mode, each failing with one line
    that names ``variable`` (readiness: its short code, the line in the log)."""
    code, out, err = run(capsys, "check")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"media-gateway: {variable}: "), err
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.health"):
        status, body = readiness()
    assert status == 503
    assert body["problems"] == [REASON_CODES[variable]]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.health"]
    assert line.startswith(f"not ready: {variable}: ")
    for command in ("upload", "verify", "pull"):
        code, out, err = run(capsys, command)
        assert code == 2, command
        assert out == ""
        assert err.count("\n") == 1 and err.startswith(f"media-gateway: {variable}: "), err
    assert proxied()[0] == 502


def test_private_ca_from_aws_ca_bundle_alone(
    tls_env: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 62: with the private CA given as AWS_CA_BUNDLE alone, check, readiness,
    upload, verify, pull and proxy mode all work; without it, each fails with one line
    that names AWS_CA_BUNDLE (exit 1 for check, 2 for the migration commands)."""
    every_client_fails(capsys, caplog, "AWS_CA_BUNDLE")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_env))
    every_client_works(capsys, media_root)


def test_aws_ca_bundle_adds_to_the_system_store(
    tls_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Item 62: AWS_CA_BUNDLE is trusted besides the system store, not instead of it (as
    boto3 alone would), and OpenSSL's SSL_CERT_FILE is honoured by every client too; a
    bundle that cannot be read is a setting error naming AWS_CA_BUNDLE."""
    system = len(tls_context(Settings.from_env()).get_ca_certs())
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_env))
    with_bundle = tls_context(Settings.from_env()).get_ca_certs()
    assert len(with_bundle) == system + 1
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(Exception, match="AWS_CA_BUNDLE: cannot load the CA bundle"):
        tls_context(Settings.from_env())
    assert main(["upload"]) == 2


def test_ssl_cert_file_is_trusted_by_every_client(
    tls_env: Path,
    capsys: pytest.CaptureFixture[str],
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 62: the system store as OpenSSL reads it (SSL_CERT_FILE) serves boto3 as well
    as the others: no client trusts a different set of CAs."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_env))
    every_client_works(capsys, media_root)


def test_https_proxy_carries_every_s3_call(
    tls_env: Path,
    capsys: pytest.CaptureFixture[str],
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 63: with HTTPS_PROXY set, every S3 call of every client goes through the
    proxy's CONNECT tunnels. The endpoint's name (s3.test) resolves only inside the
    proxy, so a call that went direct would fail rather than go unseen."""
    port = urlsplit(os.environ["AWS_S3_ENDPOINT_URL"]).port
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", f"https://s3.test:{port}")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_env))
    with ConnectProxy(hosts={"s3.test": "127.0.0.1"}) as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)  # either case, as urllib reads it
        every_client_works(capsys, media_root)
        assert proxy.refused == []
        assert len(proxy.tunnels) >= 6  # at least one per client run
        assert set(proxy.tunnels) == {f"s3.test:{port}"}


def test_dead_proxy_is_a_clear_failure(
    tls_env: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 63: a proxy that cannot be reached fails every client with one line naming
    HTTPS_PROXY, though the endpoint itself is reachable directly: never a silent
    direct connection."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_env))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    every_client_fails(capsys, caplog, "HTTPS_PROXY")


def test_no_proxy_is_obeyed_alike(
    tls_env: Path,
    capsys: pytest.CaptureFixture[str],
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 63: NO_PROXY exempts the endpoint for every client alike (here a dead proxy
    is never tried), and our reading of it is botocore's for every form of entry."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_env))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")
    every_client_works(capsys, media_root)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    urls = [
        "https://s3.example.com",
        "https://bucket.s3.example.com:9000",
        "http://s3.example.com/b",
        "https://example.com.evil.org",
        "https://localhost:9000",
        "https://10.0.0.1",
    ]
    for entries in ("", "example.com", ".example.com", "s3.example.com:9000", "*", "localhost"):
        monkeypatch.setenv("no_proxy", entries)
        monkeypatch.setenv("NO_PROXY", entries)
        for url in urls:
            scheme = url.partition(":")[0]
            assert proxy_for(url) == get_environ_proxies(url).get(scheme), (entries, url)


def test_refused_large_body_is_never_sent(
    tls_env: Path, s3_tls_server: S3Server, s3_tls_bucket: str
) -> None:
    """Item 8 (issue 12): a part of 1 MiB or more waits for "100 Continue"; when S3
    refuses it first (here a wrong secret key, against real rclone over TLS), the body
    never crosses the tunnel, and the refusal is reported as S3 gave it."""
    body = os.urandom(4 << 20)
    port = urlsplit(s3_tls_server.endpoint_url).port
    with ConnectProxy(hosts={"s3.test": "127.0.0.1"}) as proxy:
        wrong = Credentials(s3_tls_server.access_key, "not-the-secret-key")
        wire = S3Wire(
            endpoint_url=f"https://s3.test:{port}",
            region=s3_tls_server.region,
            bucket=s3_tls_bucket,
            addressing_style="path",
            credentials=lambda: wrong,
            tls=tls_context(Settings(secret_keys=(SECRET,), aws_ca_bundle=str(tls_env))),
            proxy_for=lambda url: proxy.url,
        )
        try:
            with pytest.raises(S3Error) as refused:
                wire.request("PUT", "big.bin", body=body)
        finally:
            wire.close()
        assert refused.value.status == 403
        assert 0 < proxy.sent < len(body) // 4  # TLS handshakes and headers only
