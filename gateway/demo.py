"""``make run``: the gateway in front of a small demo app, with sample media.

Writes sample files under ``var/demo/media``, keeps a generated signing key in
``var/demo/secret-key`` (so URLs survive a restart), prints URLs to try and serves
on http://127.0.0.1:8000. Real settings in the environment or ``.env`` win.
"""

from __future__ import annotations

import html
import os
import secrets
import sys
from pathlib import Path

from starlette.types import Receive, Scope, Send

from .settings import Settings
from .signing import URLSigner

__all__ = ["DemoApp", "main", "write_samples"]

HOST, PORT = "127.0.0.1", 8000
DEMO_DIR = Path("var/demo")
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


def write_samples(root: Path) -> None:
    for name, data in SAMPLES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(data)


class DemoApp:
    """A tiny ASGI app standing in for the user's Django project."""

    def __init__(self, signer: URLSigner) -> None:
        self.signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        links = "".join(
            f'<li><a href="{html.escape(self.signer.sign_url(name))}">{html.escape(name)}</a></li>'
            for name in SAMPLES
            if not name.startswith("public/")
        )
        body = (
            "<!doctype html><title>media-gateway demo</title>"
            "<h1>Demo app</h1><p>This page comes from the app; media links are signed by it.</p>"
            f'<p><img src="/media/public/logo.svg" alt="public logo"></p><ul>{links}</ul>'
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200 if scope["path"] == "/" else 404,
                "headers": [(b"content-type", b"text/html; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _demo_environment() -> None:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    key_file = DEMO_DIR / "secret-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(32))
        key_file.chmod(0o600)
    os.environ.setdefault("GATEWAY_SECRET_KEY", key_file.read_text().strip())
    os.environ.setdefault("MEDIA_ROOT", str(DEMO_DIR / "media"))
    os.environ.setdefault("GATEWAY_PUBLIC_PREFIXES", "public/")


def main() -> int:
    import uvicorn

    from .exceptions import ConfigError
    from .middleware import MediaGateway

    _demo_environment()
    try:
        settings = Settings.from_env()
        write_samples(settings.media_root)
        signer = URLSigner(
            secret_keys=settings.secret_keys,
            media_url=settings.media_url,
            ttl=settings.url_ttl,
            window=settings.url_window,
        )
        app = MediaGateway(DemoApp(signer), settings=settings)
    except ConfigError as exc:
        print(f"media-gateway: {exc}", file=sys.stderr)
        return 2
    base = f"http://{HOST}:{PORT}"
    print(f"\nmedia-gateway demo: media from {settings.media_root}\n")
    print(f"  demo app page       {base}/")
    print(f"  public file         {base}{settings.media_url}public/logo.svg")
    for name in SAMPLES:
        if not name.startswith("public/"):
            print(f"  signed              {base}{signer.sign_url(name)}")
    print(f"  download            {base}{signer.sign_url('documents/report.txt', download=True)}")
    print(f"  unsigned (403)      {base}{settings.media_url}documents/report.txt")
    print(
        f"\n  try: curl -i -H 'Range: bytes=0-99' '{base}{signer.sign_url('videos/sample.bin')}'\n"
    )
    uvicorn.run(app, host=HOST, port=PORT, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
