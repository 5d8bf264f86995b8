"""Direct uploads through the gateway's endpoint, as a browser makes them (httpx), against
a real uvicorn and the real S3 server (rclone), in local, S3 and migrating mode; and the
attacks on the endpoint as regression tests (issue 16)."""

from __future__ import annotations

import contextlib
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway import BadSignature, NotFound, Settings, SignatureExpired
from gateway.paths import validate_relpath
from gateway.receipts import ReceiptChecker
from gateway.uploads import UploadSigner
from tests.conftest import SECRET
from tests.serving.uploads_support import (
    DATA,
    UPLOAD,
    Browser,
    MiB,
    browser_for,
    leftovers,
    mode,
    s3_client,
    settings_for,
)

__all__ = ["browser_for", "mode", "settings_for"]  # fixtures


def test_upload_then_download(
    mode: str, settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """A file goes up by the plan's PUT and comes back through a signed link, byte for
    byte; its receipt verifies; in S3 mode no byte passed through the gateway, in the
    migrating phase it is on disk and in the bucket."""
    settings = settings_for(mode)
    browser = browser_for(settings)
    plan = browser.upload(DATA, name="café photo #1.png")
    assert plan["method"] == "PUT"
    key = plan["key"]
    assert key.startswith("uploads/") and key.endswith("-café photo _1.png")
    if mode == "s3":
        assert plan["url"].startswith(str(settings.aws_s3_endpoint_url))
        assert "content-length" in plan["url"].lower()  # signed, so S3 checks the size
        assert not (settings.media_root / key).exists()
    else:
        assert plan["url"].startswith(UPLOAD + "?sig=")
        assert (settings.media_root / key).read_bytes() == DATA
    r = browser.download(key)
    assert r.status_code == 200
    assert r.content == DATA
    if mode == "migrating":
        with s3_client(settings) as client:
            body = client.get_object(Bucket=settings.aws_storage_bucket_name, Key=f"media/{key}")
            assert body["Body"].read() == DATA
            assert body["ContentType"] == "image/png"
    found = ReceiptChecker(settings).verify(plan["receipt"], prefix="uploads/")
    assert found == (key, len(DATA), "image/png")


def test_two_uploads_of_one_name_get_two_keys(
    settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """The server chooses the key: the same name twice is two files."""
    browser = browser_for(settings_for("local"))
    first = browser.upload(b"first")
    second = browser.upload(b"second")
    assert first["key"] != second["key"]
    assert browser.download(first["key"]).content == b"first"
    assert browser.download(second["key"]).content == b"second"


@pytest.mark.parametrize(
    "filename",
    [
        "../../etc/passwd",
        "..",
        "a/../../b.png",
        "..\\..\\win.ini",
        "C:\\Users\\x\\evil.exe",
        "\\\\host\\share\\x",
        "a\x00b.png",
        "line\r\nbreak.png",
        "\u202egnp.exe",  # right-to-left override
        ".htaccess",
        "%2e%2e%2fx",
        "é" * 300 + ".png",
        "漢" * 150 + ".png",  # 3 bytes each: once past NAME_MAX in the key, a 404
        "\x7f\x1b[31m.png",
    ],
)
def test_hostile_file_names_make_safe_keys(
    filename: str, settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """Key traversal: whatever the browser calls its file, the key lies under the
    ticket's prefix, in one segment, with no control character, and the file lands
    there (RELIABILITY items 1, 3, 4, 47)."""
    settings = settings_for("local")
    browser = browser_for(settings)
    plan = browser.upload(b"x", name=filename, ctype="image/png")
    key = plan["key"]
    assert validate_relpath(key) == key
    assert key.startswith("uploads/") and key.count("/") == 1
    stored = key.split("/")[1]
    assert not stored.startswith(".") and len(stored) <= 121
    assert all(c.isprintable() for c in key) and "\\" not in key and "%" not in key
    assert leftovers(settings.media_root) == [key]


def test_prefix_cannot_climb() -> None:
    """A ticket for a prefix outside the media root cannot be made."""
    signer = UploadSigner(secret_keys=(SECRET,))
    for prefix in ("../x/", "/etc/", "a/../../b", "", "a\x00/"):
        with pytest.raises(ValueError, match="prefix"):
            signer.sign_ticket(prefix, max_bytes=1)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[1, 2]", 400),
        (b'{"token": 1}', 403),
        ({"no token": 1, "filename": "a.png", "size": 1, "content_type": "image/png"}, 403),
        ({"filename": "", "size": 1, "content_type": "image/png"}, 400),
        ({"filename": "a.png", "size": -1, "content_type": "image/png"}, 400),
        ({"filename": "a.png", "size": "1", "content_type": "image/png"}, 400),
        ({"filename": "a.png", "size": True, "content_type": "image/png"}, 400),
        ({"filename": "a.png", "size": 1, "content_type": "image/png\r\nx: y"}, 400),
        ({"filename": "a.png", "size": 1, "content_type": "image"}, 400),
        ({"filename": "a.png", "size": 1001, "content_type": "image/png"}, 413),
        ({"filename": "a.html", "size": 1, "content_type": "text/html"}, 415),
        ({"filename": "a.svg", "size": 1, "content_type": "application/pdf"}, 415),
        # Nested deeper than the JSON parser recurses, within the size cap: once a 500.
        (b"[" * 100_000, 400),
        (b'{"complete": ' + b"[" * 100_000 + b"}", 400),
    ],
)
def test_plan_refusals(
    body: dict[str, Any] | bytes,
    status: int,
    settings_for: Callable[..., Settings],
    browser_for: Callable[..., Browser],
) -> None:
    """400 for anything malformed, 403 without a valid token, 413 over the cap, 415 for
    a type the ticket does not allow; always JSON, never a 500."""
    browser = browser_for(settings_for("local"))
    if isinstance(body, dict) and "no token" not in body:
        body = {**body, "token": browser.ticket(max_bytes=1000, content_types=["image/*"])}
    r = browser.plan(body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert "error" in r.json()
    assert leftovers(browser.gateway.settings.media_root) == []


def test_bad_tokens_are_refused(
    settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """A tampered, expired, foreign-key or other-kind token is a 403 (RELIABILITY 15-17)."""
    browser = browser_for(settings_for("local"))
    good = browser.ticket()
    past = UploadSigner(secret_keys=(SECRET,), clock=lambda: time.time() - 3600)
    stranger = UploadSigner(secret_keys=("another-secret-key-0123456789",))
    plan = browser.ask(b"x")
    tokens = {
        "tampered": good[:5] + ("A" if good[5] != "A" else "B") + good[6:],
        "truncated": good[:-5],
        "expired": past.sign_ticket("uploads/", max_bytes=10, expires_in=60),
        "foreign": stranger.sign_ticket("uploads/", max_bytes=10),
        "receipt as ticket": plan["receipt"],
        "put grant as ticket": plan["url"].partition("sig=")[2],
        "media link": browser.gateway.signer.sign_url("a.png").partition("sig=")[2],
    }
    for name, token in tokens.items():
        r = browser.plan({"token": token, "filename": "a", "size": 1, "content_type": "a/b"})
        assert r.status_code == 403, name
    expired = past.sign_ticket("uploads/", max_bytes=10, expires_in=60)
    r = browser.plan({"token": expired, "filename": "a", "size": 1, "content_type": "a/b"})
    assert r.json()["error"] == "Upload ticket expired"


def test_a_token_replayed_for_another_prefix_is_refused(
    settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """A ticket names its prefix inside the signature: rewriting it to someone else's
    prefix breaks the signature, and the receipt of one prefix is refused for another."""
    import base64
    import json

    settings = settings_for("local")
    browser = browser_for(settings)
    token = browser.ticket("users/1/")
    payload, _, signature = token.partition(".")
    value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    value[0] = "users/2/"
    forged = base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    r = browser.plan(
        {"token": f"{forged}.{signature}", "filename": "a", "size": 1, "content_type": "a/b"}
    )
    assert r.status_code == 403
    plan = browser.upload(b"mine", prefix="users/1/")
    checker = ReceiptChecker(settings)
    assert checker.verify(plan["receipt"], prefix="users/1/").name.startswith("users/1/")
    with pytest.raises(BadSignature, match="another upload prefix"):
        checker.verify(plan["receipt"], prefix="users/2/")


def test_receipt_forgery_and_missing_files(
    mode: str, settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """A browser cannot claim a file it did not upload: an altered or foreign receipt,
    a ticket passed off as one, an expired one, or one for a file never sent is refused
    with a clear error."""
    settings = settings_for(mode)
    browser = browser_for(settings)
    checker = ReceiptChecker(settings)
    never_sent = browser.ask(b"nothing")
    with pytest.raises(NotFound, match="not found"):
        checker.verify(never_sent["receipt"])
    sent = browser.upload(DATA)
    receipt = sent["receipt"]
    # A changed character of the payload (the signature's last character has spare
    # bits that some decoders ignore: not a change of what is signed).
    altered = receipt[:5] + ("A" if receipt[5] != "A" else "B") + receipt[6:]
    for forged in (altered, "", "x" * 5000, 42):
        with pytest.raises(BadSignature, match="not valid"):
            checker.verify(forged)
    with pytest.raises(BadSignature):
        checker.verify(browser.ticket())
    stranger = ReceiptChecker(Settings(secret_keys=("another-secret-key-0123456789",)))
    with pytest.raises(BadSignature):
        stranger.verify(receipt)
    later = ReceiptChecker(settings, clock=lambda: time.time() + 2 * 24 * 3600)
    with pytest.raises(SignatureExpired, match="receipt expired"):
        later.verify(receipt)
    if mode != "s3":
        (settings.media_root / sent["key"]).write_bytes(DATA + b"more")
        with pytest.raises(NotFound, match="size"):
            checker.verify(receipt)


def test_s3_refuses_another_size_or_type(
    settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """The presigned PUT signs Content-Type, Content-Length and the object parameters:
    rclone's S3 server (like AWS) refuses a body of another size, another type or other
    parameters with 403, and no object is left behind."""
    settings = settings_for("s3", aws_s3_object_parameters={"CacheControl": "max-age=60"})
    browser = browser_for(settings)
    plan = browser.ask(DATA)
    assert plan["headers"] == {"Content-Type": "image/png", "cache-control": "max-age=60"}
    assert browser.put(plan, DATA + b"!").status_code == 403
    assert browser.put(plan, DATA[:-1]).status_code == 403
    assert browser.put(plan, DATA, **{"Content-Type": "text/html"}).status_code == 403
    assert browser.put(plan, DATA, **{"cache-control": "no-cache"}).status_code == 403
    with s3_client(settings) as client:
        listing = client.list_objects_v2(Bucket=str(settings.aws_storage_bucket_name))
        assert listing.get("KeyCount", 0) == 0
        assert browser.put(plan, DATA).status_code == 200
        head = client.head_object(
            Bucket=str(settings.aws_storage_bucket_name), Key="media/" + plan["key"]
        )
        assert head["CacheControl"] == "max-age=60"


@pytest.mark.parametrize("mode_", ["local", "migrating"])
def test_gateway_refuses_a_body_unlike_the_declared_one(
    mode_: str, settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """A PUT to the gateway stops at the declared size: a larger body (by
    Content-Length or chunked), a shorter one, or another type is refused, and nothing
    is left under the root (no temporary file, no partial file) nor in the bucket."""
    settings = settings_for(mode_)
    browser = browser_for(settings)
    plan = browser.ask(DATA)

    def chunks(data: bytes) -> Iterator[bytes]:
        yield data[:1000]
        yield data[1000:]

    assert browser.put(plan, DATA + b"!").status_code == 413
    assert browser.put(plan, chunks(DATA + b"!")).status_code == 413
    assert browser.put(plan, DATA[:-1]).status_code == 400
    assert browser.put(plan, chunks(DATA[:-1])).status_code == 400
    assert browser.put(plan, DATA, **{"Content-Type": "text/html"}).status_code == 415
    assert leftovers(settings.media_root) == []
    if mode_ == "migrating":
        with s3_client(settings) as client:
            listing = client.list_objects_v2(Bucket=str(settings.aws_storage_bucket_name))
            assert listing.get("KeyCount", 0) == 0
    ok = browser.put(plan, chunks(DATA))
    assert ok.status_code == 201
    assert leftovers(settings.media_root) == [plan["key"]]


@pytest.mark.parametrize("mode_", ["local", "migrating"])
def test_a_replayed_put_does_not_overwrite(
    mode_: str, settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """The same upload URL used twice: the second is refused, the first file stays, on
    disk and (migrating) in the bucket."""
    settings = settings_for(mode_)
    browser = browser_for(settings)
    plan = browser.upload(b"AAAA", name="a.bin")
    again = browser.put(plan, b"BBBB")
    assert again.status_code == 403
    assert (settings.media_root / plan["key"]).read_bytes() == b"AAAA"
    assert leftovers(settings.media_root) == [plan["key"]]
    if mode_ == "migrating":
        with s3_client(settings) as client:
            stored = client.get_object(
                Bucket=str(settings.aws_storage_bucket_name), Key="media/" + plan["key"]
            )
            assert stored["Body"].read() == b"AAAA"


def test_migrating_upload_that_s3_refuses_leaves_nothing(
    settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """Migrating: when the bucket refuses the gateway's copy, the disk copy goes too
    (502), so the two places the app reads stay equal."""
    settings = settings_for("migrating", aws_secret_access_key="wrong-secret-0123456789")
    browser = browser_for(settings)
    plan = browser.ask(DATA)
    assert browser.put(plan, DATA).status_code == 502
    assert leftovers(settings.media_root) == []


def test_nothing_is_written_outside_the_root(
    tmp_path: Path, settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """A symlinked directory under the root pointing out is refused, not written
    through (RELIABILITY item 6)."""
    settings = settings_for("local")
    outside = tmp_path / "outside"
    outside.mkdir()
    (settings.media_root / "uploads").symlink_to(outside)
    browser = browser_for(settings)
    plan = browser.ask(b"x")
    assert browser.put(plan, b"x").status_code == 403
    assert list(outside.iterdir()) == []


def test_a_stalled_body_is_dropped(
    settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """Slowloris: a client that declares 100 bytes, sends 10 and stalls gets 408 once
    GATEWAY_SEND_TIMEOUT passes with no byte, and its temporary file is removed
    (RELIABILITY item 54)."""
    settings = settings_for("local", send_timeout=1.0)
    browser = browser_for(settings)
    plan = browser.ask(b"x" * 100, name="slow.bin", ctype="application/octet-stream")
    parts = urlsplit(browser.base)
    assert parts.hostname is not None and parts.port is not None
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            f"PUT {plan['url']} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: 100\r\n\r\n".encode()
            + b"0123456789"
        )
        reply = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert time.monotonic() - started < 8
    assert leftovers(settings.media_root) == []


def test_upload_memory_stays_flat(
    settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """A 64 MiB body streams to disk in chunks: Python's allocations in this process
    (server and client) peak far below the file's size."""
    size = 64 * MiB
    browser = browser_for(settings_for("local"))
    plan = browser.plan(
        {
            "token": browser.ticket(max_bytes=size),
            "filename": "big.bin",
            "size": size,
            "content_type": "application/octet-stream",
        }
    ).json()
    block = b"z" * (256 * 1024)

    def body() -> Iterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    tracemalloc.start()
    try:
        r = browser.put(plan, body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 201
    assert (browser.gateway.settings.media_root / plan["key"]).stat().st_size == size
    assert peak < 8 * MiB, peak


def test_upload_urls_stay_out_of_the_access_log(
    mode: str,
    settings_for: Callable[..., Settings],
    browser_for: Callable[..., Browser],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 58: a PUT to the gateway logs its path with ``sig`` redacted; the ticket,
    the grant and the receipt (request and response bodies) never reach a log line."""
    import logging

    browser = browser_for(settings_for(mode))
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        plan = browser.upload(DATA)
        # The access line is written after the response: wait for it, boundedly.
        deadline = time.monotonic() + 5
        wanted = 1 if mode == "s3" else 2
        while time.monotonic() < deadline:
            lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
            if len(lines) >= wanted:
                break
            time.sleep(0.01)
    assert any(f"POST {UPLOAD}" in line for line in lines), lines
    if mode != "s3":
        assert any(f"PUT {UPLOAD}?sig=[REDACTED]" in line for line in lines), lines
        assert plan["url"].partition("sig=")[2] not in caplog.text
    assert plan["receipt"] not in caplog.text


def test_sse_c_keys_never_go_to_the_browser(
    settings_for: Callable[..., Settings], browser_for: Callable[..., Browser]
) -> None:
    """With SSE-C in AWS_S3_OBJECT_PARAMETERS a direct PUT would need the customer key
    in the browser: the endpoint refuses instead (502, said in the error), and the key
    is in no answer."""
    key = "k" * 32
    params = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    browser = browser_for(settings_for("s3", aws_s3_object_parameters=params))
    body = {"token": browser.ticket(), "filename": "a", "size": 1, "content_type": "a/b"}
    r = browser.plan(body)
    assert r.status_code == 502
    assert "SSE-C" in r.json()["error"]
    assert key not in r.text
