"""Fixtures and helpers shared by the migration tests (upload, verify, pull).

Imported by those modules; pytest collects this one too, and finds no test in it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from gateway.cli import main
from gateway.migrate.wire import S3Wire
from gateway.sigv4 import Credentials
from tests.conftest import SECRET
from tests.s3server import S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import MultipartUploadTypeDef

# Names that must round-trip exactly (RELIABILITY item 47). NFC and NFD spellings of
# "café" are two different files and two different keys.
ODD_NAMES = [
    "a b.txt",
    "100%.txt",
    "c++.txt",
    "x#y.txt",
    "what?.txt",
    "caf\u00e9.txt",
    "cafe\u0301.txt",
    "\u65e5\u672c/\u0444\u0430\u0439\u043b.txt",
    "deep/" + "/".join(f"d{i}" for i in range(40)) + "/leaf.txt",
    "empty.bin",
    "new\nline.txt",
    "%2e%2e/encoded.txt",
    "plus+and space/x.txt",
]


@pytest.fixture
def migrate_env(
    monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, s3_bucket: str, media_root: Path
) -> str:
    """The environment of a migration to a fresh bucket; returns the bucket name."""
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    monkeypatch.setenv("MEDIA_ROOT", str(media_root))
    for name, value in s3_server.env(s3_bucket).items():
        monkeypatch.setenv(name, value)
    return s3_bucket


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[Any]:
    """A boto3 client on the test server, to look at what the tools did."""
    client = s3_server.client()
    yield client
    client.close()


@contextlib.contextmanager
def make_wire(s3_server: S3Server, bucket: str, endpoint: str | None = None) -> Iterator[S3Wire]:
    """Our own client on ``bucket``, through ``endpoint`` (a proxy) if given."""
    fixed = Credentials(s3_server.access_key, s3_server.secret_key)
    client = S3Wire(
        endpoint_url=endpoint or s3_server.endpoint_url,
        region=s3_server.region,
        bucket=bucket,
        addressing_style="path",
        credentials=lambda: fixed,
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def wire(s3_server: S3Server, s3_bucket: str) -> Iterator[S3Wire]:
    """Our own client on the test bucket, for calling the tools' classes directly."""
    with make_wire(s3_server, s3_bucket) as client:
        yield client


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """``media-gateway ARGV --json``: the exit code and the parsed JSON."""
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for relpath, data in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def odd_tree() -> dict[str, bytes]:
    return {
        name: (b"" if name == "empty.bin" else f"data of {name}".encode()) for name in ODD_NAMES
    }


def objects(s3: S3Client, bucket: str, prefix: str = "media/") -> dict[str, dict[str, Any]]:
    """Every object under ``prefix``: key -> {size, body, metadata, content_type, ...}."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=item["Key"])
            with contextlib.closing(got["Body"]) as body:
                data = body.read()
            found[item["Key"]] = {
                "size": item["Size"],
                "body": data,
                "metadata": {k.lower(): v for k, v in got["Metadata"].items()},
                "content_type": got.get("ContentType"),
                "cache_control": got.get("CacheControl"),
            }
    return found


def incomplete_uploads(s3: S3Client, bucket: str) -> list[MultipartUploadTypeDef]:
    """ListMultipartUploads; rclone answers NoSuchUpload until a bucket has had one."""
    from botocore.exceptions import ClientError

    try:
        return list(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchUpload":
            return []
        raise


class FlakyProxy:
    """A loopback HTTP proxy in front of the S3 server. ``fail(n, method, path)`` (n
    counts requests from 1) returns a status to answer instead of forwarding (503 says
    SlowDown, others AccessDenied) or None. Every request's method, path and headers
    are recorded. The client signs the proxy's host, forwarded as is, so signatures
    still verify."""

    def __init__(
        self,
        upstream: str,
        fail: Callable[[int, str, str], int | None] = lambda *a: None,
        *,
        part_delay: float = 0.0,
        lose_reply: Callable[[str, str], bool] = lambda method, path: False,
    ) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.fail = fail
        #: Seconds each UploadPart waits before it is forwarded: a window to act in.
        self.part_delay = part_delay
        #: Requests forwarded whose answer is then lost (replaced by a 503).
        self.lose_reply = lose_reply
        self.count = 0
        self.failed = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.count += 1
                    number = proxy.count
                    proxy.requests.append((self.command, self.path, dict(self.headers)))
                status = proxy.fail(number, self.command, self.path)
                if status is not None:
                    with proxy._lock:
                        proxy.failed += 1
                    code = b"SlowDown" if status == 503 else b"AccessDenied"
                    payload = (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
                        + code
                        + b"</Code><Message>injected by the test</Message></Error>"
                    )
                    self.send_response(status)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                if proxy.part_delay and "partNumber=" in self.path:
                    time.sleep(proxy.part_delay)
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    conn.putrequest(
                        self.command, self.path, skip_host=True, skip_accept_encoding=True
                    )
                    for name, value in self.headers.items():
                        conn.putheader(name, value)
                    conn.endheaders(body or None)
                    response = conn.getresponse()
                    data = response.read()
                    if proxy.lose_reply(self.command, self.path):
                        self.send_response(503)
                        self.send_header("content-length", "0")
                        self.end_headers()
                        return
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        # The body is re-sent whole with a Content-Length: drop upstream's
                        # framing (rclone answers some calls chunked).
                        dropped = (
                            "content-length",
                            "transfer-encoding",
                            "connection",
                            "date",
                            "server",
                        )
                        if name.lower() not in dropped:
                            self.send_header(name, value)
                    upstream_length = response.getheader("content-length") or "0"
                    self.send_header(
                        "content-length",
                        upstream_length if self.command == "HEAD" else str(len(data)),
                    )
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client killed mid-request (the kill tests) resets its connection;
                # that is the point of those tests, not an error of the proxy.
                pass

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


__all__ = [
    "ODD_NAMES",
    "FlakyProxy",
    "incomplete_uploads",
    "make_wire",
    "migrate_env",
    "objects",
    "odd_tree",
    "run_cli",
    "s3",
    "wire",
    "write_tree",
]
