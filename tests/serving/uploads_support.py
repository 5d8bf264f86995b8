"""What the direct upload tests share: settings per mode, and a browser's calls."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from gateway import MediaGateway, Settings
from gateway.uploads import UploadSigner
from tests.conftest import SECRET
from tests.s3server import S3Server

__all__ = [
    "DATA",
    "UPLOAD",
    "Browser",
    "MiB",
    "Plan",
    "browser_for",
    "leftovers",
    "mode",
    "s3_client",
    "settings_for",
]

UPLOAD = "/media-uploads/"
DATA = bytes(range(256)) * 64  # 16 KiB
MiB = 1 << 20

Plan = dict[str, Any]


@pytest.fixture(params=["local", "s3", "migrating"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_for(request: pytest.FixtureRequest, media_root: Path) -> Callable[..., Settings]:
    """``settings_for(mode, **overrides)``; S3 modes start the real S3 server."""

    def make(mode: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"secret_keys": (SECRET,), "media_root": media_root}
        if mode != "local":
            server: S3Server = request.getfixturevalue("s3_server")
            values.update(
                use_s3=True,
                local_fallback=mode == "migrating",
                aws_access_key_id=server.access_key,
                aws_secret_access_key=server.secret_key,
                aws_storage_bucket_name=request.getfixturevalue("s3_bucket"),
                aws_s3_endpoint_url=server.endpoint_url,
                aws_location="media",  # as the shared fixtures set it
            )
        values.update(overrides)
        return Settings(**values)

    return make


class Browser:
    """What the upload script does, over real HTTP."""

    def __init__(self, base: str, gateway: MediaGateway) -> None:
        self.base = base
        self.gateway = gateway
        self.signer = UploadSigner(secret_keys=gateway.settings.secret_keys)
        self.http = httpx.Client(base_url=base, timeout=30)

    def ticket(self, prefix: str = "uploads/", **options: Any) -> str:
        options.setdefault("max_bytes", 64 * MiB)
        return self.signer.sign_ticket(prefix, **options)

    def plan(self, body: dict[str, Any] | bytes) -> httpx.Response:
        if isinstance(body, bytes):
            return self.http.post(UPLOAD, content=body)
        return self.http.post(UPLOAD, json=body)

    def ask(
        self, data: bytes, *, name: str = "photo.png", ctype: str = "image/png", **ticket: Any
    ) -> Plan:
        body = {"token": self.ticket(**ticket), "filename": name, "size": len(data)}
        r = self.plan({**body, "content_type": ctype})
        assert r.status_code == 200, r.text
        plan: Plan = r.json()
        return plan

    def put(self, plan: Plan, data: Any, **headers: str) -> httpx.Response:
        return httpx.put(
            urljoin(self.base, plan["url"]),
            content=data,
            headers={**plan["headers"], **headers},
            timeout=30,
        )

    def upload(self, data: bytes, **options: Any) -> Plan:
        plan = self.ask(data, **options)
        r = self.put(plan, data)
        assert r.status_code in (200, 201), r.text
        return plan

    def download(self, key: str) -> httpx.Response:
        url = self.gateway.signer.sign_url(key)
        return self.http.get(url, follow_redirects=True)


@pytest.fixture
def browser_for(serve: Callable[..., str]) -> Iterator[Callable[[Settings], Browser]]:
    made: list[Browser] = []

    def make(settings: Settings) -> Browser:
        gateway = MediaGateway(settings=settings)
        browser = Browser(serve(gateway), gateway)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        browser.http.close()


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@contextlib.contextmanager
def s3_client(settings: Settings) -> Iterator[Any]:
    from gateway.s3 import make_s3_client

    with contextlib.closing(make_s3_client(settings)) as client:
        yield client
