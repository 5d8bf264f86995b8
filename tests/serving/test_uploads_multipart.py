"""Direct uploads in parts (S3 mode, above GATEWAY_UPLOAD_MULTIPART_MB), against the
real S3 server, with the smallest threshold S3 allows (5 MiB) so the files stay small;
and the abandoned ones aborted by ``upload --cleanup`` (issue 16)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli import main
from gateway.receipts import ReceiptChecker
from tests.s3server import S3Server
from tests.serving.uploads_support import (
    Browser,
    MiB,
    Plan,
    browser_for,
    s3_client,
    settings_for,
)

__all__ = ["browser_for", "settings_for"]  # fixtures

SIZE = 11 * MiB + 7  # three parts of 5, 5 and 1 MiB + 7 bytes
DATA = random.Random(16).randbytes(SIZE)


@pytest.fixture
def browser(settings_for: Callable[..., Any], browser_for: Callable[..., Browser]) -> Browser:
    return browser_for(settings_for("s3", upload_multipart_mb=5))


def plan_parts(browser: Browser, data: bytes = DATA) -> Plan:
    plan = browser.ask(data, name="video.mp4", ctype="video/mp4")
    assert "url" not in plan and "receipt" not in plan
    return plan


def send_parts(plan: Plan, data: bytes = DATA) -> list[dict[str, Any]]:
    done = []
    for part in plan["parts"]:
        start = (part["number"] - 1) * plan["part_size"]
        r = httpx.put(part["url"], content=data[start : start + part["size"]], timeout=30)
        assert r.status_code == 200, r.text
        done.append({"number": part["number"], "etag": r.headers["etag"]})
    return done


def test_multipart_upload_round_trip(browser: Browser) -> None:
    """Over the threshold: presigned part URLs, a completion through the same endpoint
    that answers the receipt, then the same bytes back through a signed link
    (RELIABILITY item 48)."""
    plan = plan_parts(browser)
    assert plan["part_size"] == 5 * MiB
    assert [p["size"] for p in plan["parts"]] == [5 * MiB, 5 * MiB, MiB + 7]
    done = send_parts(plan)
    r = browser.plan({"complete": plan["complete"], "parts": done})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["key"] == plan["key"]
    settings = browser.gateway.settings
    found = ReceiptChecker(settings).verify(answer["receipt"])
    assert (found.name, found.size, found.content_type) == (plan["key"], SIZE, "video/mp4")
    download = browser.download(plan["key"])
    assert download.status_code == 200
    assert download.content == DATA
    assert download.headers["content-type"] == "video/mp4"


def test_multipart_refusals(browser: Browser) -> None:
    """S3 refuses a part of another size (its length is signed); the gateway refuses a
    completion with parts missing, out of order or made up, and a completion token that
    is not one; nothing is completed."""
    plan = plan_parts(browser)
    first = plan["parts"][0]
    assert httpx.put(first["url"], content=DATA[: 5 * MiB - 1], timeout=30).status_code == 403
    done = send_parts(plan)
    bad: list[Any] = [
        done[:2],
        [done[1], done[0], done[2]],
        [*done, {"number": 4, "etag": '"x"'}],
        [{**done[0], "etag": 5}, *done[1:]],
        "parts",
    ]
    for parts in bad:
        r = browser.plan({"complete": plan["complete"], "parts": parts})
        assert r.status_code == 400, parts
    wrong_etag = [{**done[0], "etag": '"0000"'}, *done[1:]]
    assert browser.plan({"complete": plan["complete"], "parts": wrong_etag}).status_code in (
        400,
        502,
    )
    other = browser.ask(b"small")
    for token in (other["receipt"], browser.ticket(), plan["complete"][:-2]):
        assert browser.plan({"complete": token, "parts": done}).status_code == 403
    with s3_client(browser.gateway.settings) as client:
        listing = client.list_objects_v2(
            Bucket=str(browser.gateway.settings.aws_storage_bucket_name)
        )
        assert listing.get("KeyCount", 0) == 0


def test_cleanup_aborts_abandoned_direct_uploads(
    browser: Browser,
    s3_server: S3Server,
    s3_bucket: str,
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A browser that starts a multipart upload and leaves: ``upload --cleanup
    --older-than N`` spares it while it may still finish, ``upload --cleanup`` aborts it
    (RELIABILITY item 43)."""
    plan_parts(browser)
    for name, value in {**s3_server.env(s3_bucket), "MEDIA_ROOT": str(media_root)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GATEWAY_SECRET_KEY", browser.gateway.settings.secret_keys[0])

    def uploads() -> list[str]:
        with s3_client(browser.gateway.settings) as client:
            found = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
            return [u["Key"] for u in found]

    assert len(uploads()) == 1
    assert main(["upload", "--cleanup", "--older-than", "86400", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["aborted_uploads"] == 0
    assert len(uploads()) == 1
    assert main(["upload", "--cleanup", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["aborted_uploads"] == 1
    assert uploads() == []
