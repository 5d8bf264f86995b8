"""``make run``: the gateway in front of a small demo app, on an embedded S3 server.

Starts ``rclone serve s3`` on loopback with its data in ``var/demo/s3``, uploads the
samples, prints URLs to try and serves on http://127.0.0.1:8000, in hybrid mode, as
during a migration: the video is also kept on disk (``var/demo/hybrid``), so the gateway
serves it itself, ranges answered with 206, and redirects the rest to S3. A signing key
is kept in ``var/demo/secret-key`` so URLs survive a restart. Real settings in the
environment or ``.env`` win: with your own ``AWS_STORAGE_BUCKET_NAME`` no embedded server
starts; ``USE_S3=false`` serves every sample from disk (``var/demo/media``).
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import anyio
from dotenv import dotenv_values
from starlette.types import Receive, Scope, Send

from ..exceptions import MediaGatewayError
from ..http import content_type
from ..receipts import ReceiptChecker
from ..settings import Settings
from ..signing import URLSigner
from ..uploads import UploadSigner
from .embedded_s3 import serve_s3

__all__ = ["DemoApp", "main", "write_samples"]

HOST = "127.0.0.1"
# Overridable so the test suite can run the demo next to a developer's own.
PORT = int(os.environ.get("MEDIA_GATEWAY_DEMO_PORT", "8000"))
DEMO_DIR = Path("var/demo")
DEMO_BUCKET = "media-demo"
SAMPLES = {
    "public/logo.svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
        b'<rect width="120" height="40" fill="#246"/><text x="10" y="26" fill="#fff">'
        b"media-gateway</text></svg>\n"
    ),
    "documents/report.txt": b"Quarterly report: private, served only with a valid signature.\n",
    "documents/caf\u00e9 menu #1.txt": "Odd names work too: caf\u00e9, spaces and #.\n".encode(),
    "videos/sample.bin": bytes(range(256)) * 4096,  # 1 MiB, to try Range requests
}
# Kept on disk next to the embedded S3, "not migrated yet": the Range example's file.
# A presigned GET with a Range gets 200 plus a Content-Range from rclone, not the
# 206 that AWS sends (tests/serving/test_s3.py); the gateway's own answer is a 206.
ON_DISK_IN_HYBRID = ("videos/sample.bin",)


def write_samples(root: Path, names: Iterable[str] = SAMPLES) -> None:
    for name in names:
        data = SAMPLES[name]
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(data)


# The script gateway.django's DirectUploadWidget ships, served here as it is: the demo
# uses the same markup and code as a Django form (read as a file, so that the demo
# imports no Django).
UPLOAD_SCRIPT = Path(__file__).parent.parent / "django/static/media_gateway/direct-upload.js"
UPLOAD_PREFIX = "uploads/"


class DemoApp:
    """A tiny ASGI app standing in for the user's Django project: signed links, and a
    direct upload form (the file goes to S3, or to the gateway in local mode, never
    through this app, which only checks the receipt)."""

    def __init__(self, signer: URLSigner, settings: Settings | None = None) -> None:
        self.signer = signer
        self.settings = settings
        self.receipts = ReceiptChecker(settings) if settings is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/static/media_gateway/direct-upload.js":
            await _reply(send, 200, "text/javascript", UPLOAD_SCRIPT.read_bytes())
        elif path == "/uploaded" and method == "POST" and self.receipts is not None:
            form = parse_qs((await _body(receive)).decode("latin-1"))
            receipt = form.get("file", [""])[0]
            try:
                # A HEAD in S3 (boto3) or a stat: off the event loop.
                found = await anyio.to_thread.run_sync(self.receipts.verify, receipt)
            except MediaGatewayError as exc:
                await _reply(
                    send, 400, "text/html", _page(f"<p>Refused: {html.escape(str(exc))}</p>")
                )
                return
            link = html.escape(self.signer.sign_url(found.name))
            text = (
                f"{html.escape(found.name)} ({found.size} bytes, {html.escape(found.content_type)})"
            )
            await _reply(
                send, 200, "text/html", _page(f'<p>Uploaded: <a href="{link}">{text}</a></p>')
            )
        else:
            await _reply(send, 200 if path == "/" else 404, "text/html", self._index())

    def _index(self) -> bytes:
        links = "".join(
            f'<li><a href="{html.escape(self.signer.sign_url(name))}">{html.escape(name)}</a></li>'
            for name in SAMPLES
            if not name.startswith("public/")
        )
        body = (
            "<h1>Demo app</h1><p>This page comes from the app; media links are signed by it.</p>"
            f'<p><img src="/media/public/logo.svg" alt="public logo"></p><ul>{links}</ul>'
        )
        if self.settings is not None:
            ticket = UploadSigner(secret_keys=self.settings.secret_keys).sign_ticket(
                UPLOAD_PREFIX, max_bytes=1 << 30
            )
            body += (
                "<h2>Direct upload</h2>"
                '<form method="post" action="/uploaded">'
                f'<div data-direct-upload data-endpoint="{html.escape(self.settings.upload_path)}"'
                f' data-token="{html.escape(ticket)}"><input type="file" id="file">'
                '<progress value="0" max="1" hidden></progress> <span data-status></span>'
                '<input type="hidden" name="file" value=""></div>'
                '<button type="submit">Save</button></form>'
                '<script src="/static/media_gateway/direct-upload.js" defer></script>'
            )
        return _page(body)


def _page(body: str) -> bytes:
    return f"<!doctype html><title>media-gateway demo</title>{body}".encode()


async def _reply(send: Send, status: int, content_type: str, body: bytes) -> None:
    kind = f"{content_type}; charset=utf-8".encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]}
    )
    await send({"type": "http.response.body", "body": body})


async def _body(receive: Receive) -> bytes:
    data = b""
    more = True
    while more and len(data) < 65536:  # a receipt is a few hundred bytes
        message = await receive()
        data += message.get("body", b"")
        more = message.get("more_body", False)
    return data


def _demo_environment(*, hybrid: bool) -> None:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    key_file = DEMO_DIR / "secret-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(32))
        key_file.chmod(0o600)
    os.environ.setdefault("GATEWAY_SECRET_KEY", key_file.read_text().strip())
    # A folder of its own in hybrid mode: the local demo's copies would shadow S3.
    os.environ.setdefault("MEDIA_ROOT", str(DEMO_DIR / ("hybrid" if hybrid else "media")))
    os.environ.setdefault("GATEWAY_PUBLIC_PREFIXES", "public/")
    if hybrid:
        os.environ.setdefault("GATEWAY_LOCAL_FALLBACK", "true")


def _wants_embedded_s3() -> bool:
    # The embedded server stands in for S3 unless the user configured their own
    # bucket, or asked for local mode with USE_S3=false.
    env = {**{k: v or "" for k, v in dotenv_values(".env").items()}, **os.environ}
    if env.get("AWS_STORAGE_BUCKET_NAME"):
        return False
    return env.get("USE_S3", "true").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def _embedded_s3() -> Iterator[str]:
    import boto3
    from botocore.config import Config

    access_key, secret_key = "demo-access-key", secrets.token_hex(20)
    data = DEMO_DIR / "s3"
    data.mkdir(parents=True, exist_ok=True)
    with serve_s3(
        data, access_key=access_key, secret_key=secret_key, log_path=DEMO_DIR / "rclone.log"
    ) as endpoint:
        os.environ.update(
            USE_S3="true",
            AWS_ACCESS_KEY_ID=access_key,
            AWS_SECRET_ACCESS_KEY=secret_key,
            AWS_STORAGE_BUCKET_NAME=DEMO_BUCKET,
            AWS_S3_ENDPOINT_URL=endpoint,
        )
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=Config(request_checksum_calculation="when_required"),
        )
        if DEMO_BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
            client.create_bucket(Bucket=DEMO_BUCKET)
        yield endpoint


def _upload_samples(settings: Settings) -> None:
    from ..s3 import make_s3_client

    client = make_s3_client(settings)
    for name, data in SAMPLES.items():
        mime = content_type(name)
        key = settings.key_for(name)
        client.put_object(Bucket=DEMO_BUCKET, Key=key, Body=data, ContentType=mime)


def main() -> int:
    import uvicorn

    from ..cli import log_config
    from ..exceptions import ConfigError
    from ..serving.middleware import MediaGateway

    # uvicorn ends a graceful shutdown on SIGTERM by raising it again under the handler
    # it found; the default one would end Python on the spot and leave the embedded
    # rclone running. As an exception it unwinds the ExitStack, as Ctrl+C does.
    signal.signal(signal.SIGTERM, _terminate)
    embedded = _wants_embedded_s3()
    _demo_environment(hybrid=embedded)
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(_embedded_s3()) if embedded else None
        try:
            settings = Settings.from_env()
            if endpoint is not None:
                _upload_samples(settings)
                write_samples(settings.media_root, ON_DISK_IN_HYBRID)
            else:
                write_samples(settings.media_root)
            signer = URLSigner.from_settings(settings)
            app = MediaGateway(DemoApp(signer, settings), settings=settings)
        except ConfigError as exc:
            print(f"media-gateway: {exc}", file=sys.stderr)
            return 2
        base = f"http://{HOST}:{PORT}"
        where = (
            f"S3 bucket {settings.aws_storage_bucket_name!r} at {settings.s3_endpoint_url}"
            if settings.use_s3
            else f"local disk {settings.media_root}"
        )
        if settings.use_s3 and settings.local_fallback:
            where += f",\n  and from local disk {settings.media_root} first (hybrid mode)"
        print(f"\nmedia-gateway demo: media served from {where}\n")
        print(f"  demo app page       {base}/")
        print(f"  public file         {base}{settings.media_url}public/logo.svg")
        for name in SAMPLES:
            if not name.startswith("public/"):
                print(f"  signed              {base}{signer.sign_url(name)}")
        report = signer.sign_url("documents/report.txt", download=True)
        print(f"  download            {base}{report}")
        print(f"  unsigned (403)      {base}{settings.media_url}documents/report.txt")
        if settings.use_s3 and settings.local_fallback:
            into = "the gateway, which writes it to disk and to S3, as during a migration"
        else:
            into = where
        print(f"  direct upload form  {base}/ (the file goes to {into}, not through the app)")
        video = signer.sign_url("videos/sample.bin")
        # -L follows a redirect to S3 where the video is not on disk (your own bucket).
        print(f"\n  try: curl -iL -H 'Range: bytes=0-99' '{base}{video}'")
        if settings.use_s3 and settings.local_fallback:
            print("       (206: the video is still on disk, so the gateway answers it)")
        print("  local mode instead: USE_S3=false make run\n")
        # The gateway's access line (signatures redacted) instead of uvicorn's.
        uvicorn.run(app, host=HOST, port=PORT, access_log=False, log_config=log_config())
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
