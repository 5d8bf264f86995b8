"""The core of direct uploads (gateway/uploads.py, and presign_request in sigv4.py): tickets,
key rotation, safe names, type patterns, and presigned writes that never outlive
temporary credentials. The HTTP flow is in tests/serving/test_uploads.py."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

import gateway
from gateway import BadSignature, SignatureExpired
from gateway.exceptions import BadRequest, PayloadTooLarge, UnsupportedMediaType
from gateway.sigv4 import Credentials, Presigner
from gateway.uploads import UploadSigner, content_type_allowed, safe_name
from tests.conftest import SECRET

OLD, NEW = "old-upload-key-0123456789", "new-upload-key-0123456789"


def test_key_rotation() -> None:
    """Item 18 for uploads: a ticket signed with the old key is accepted while
    [old, new] are configured, refused once the old key is gone; new tickets use the
    newest key."""
    old_ticket = UploadSigner(secret_keys=[OLD]).sign_ticket("a/", max_bytes=1)
    both = UploadSigner(secret_keys=[OLD, NEW])
    assert both.open_ticket(old_ticket).prefix == "a/"
    new_ticket = both.sign_ticket("a/", max_bytes=1)
    assert UploadSigner(secret_keys=[NEW]).open_ticket(new_ticket).prefix == "a/"
    with pytest.raises(BadSignature):
        UploadSigner(secret_keys=[NEW]).open_ticket(old_ticket)


def test_expiry_is_checked_against_the_clock() -> None:
    """Item 16: a ticket is refused one second after its lifetime."""
    now = [1_800_000_000.0]
    signer = UploadSigner(secret_keys=[SECRET], clock=lambda: now[0])
    ticket = signer.sign_ticket("a/", max_bytes=1, expires_in=60)
    now[0] += 60
    assert signer.open_ticket(ticket).expires == 1_800_000_060
    now[0] += 1
    with pytest.raises(SignatureExpired):
        signer.open_ticket(ticket)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": 1, "content_types": ["image"]}, "content_types"),
        ({"max_bytes": 1, "content_types": []}, "content_types"),
        ({"max_bytes": 1, "content_types": ["*/png"]}, "content_types"),
        ({"max_bytes": 1, "expires_in": 0}, "expires_in"),
        ({"max_bytes": 1, "expires_in": 8 * 24 * 3600}, "expires_in"),
    ],
)
def test_ticket_options_are_checked(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UploadSigner(secret_keys=[SECRET]).sign_ticket("a/", **options)  # type: ignore[arg-type]


def test_grant_checks_what_the_browser_declares() -> None:
    signer = UploadSigner(secret_keys=[SECRET])
    ticket = signer.open_ticket(
        signer.sign_ticket("a/", max_bytes=10, content_types=["image/*", "application/pdf"])
    )
    assert signer.grant(ticket, "x.pdf", 10, "Application/PDF").content_type == "application/pdf"
    with pytest.raises(PayloadTooLarge):
        signer.grant(ticket, "x.png", 11, "image/png")
    with pytest.raises(UnsupportedMediaType):
        signer.grant(ticket, "x.svg", 1, "text/html")
    with pytest.raises(BadRequest):
        signer.grant(ticket, "x.png", 1.5, "image/png")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cv.pdf", "cv.pdf"),
        ("..", "file"),
        (".env", "env"),
        ("a\x00b\r\nc.txt", "abc.txt"),
        ("caf\u0065\u0301.txt", "caf\u00e9.txt"),  # NFD to NFC
        ("\u202egnp.exe", "gnp.exe"),
        ("a<b>|c?.png", "a_b_c_.png"),
        ("x" * 300 + ".jpeg", "x" * 95 + ".jpeg"),
        # Cut by UTF-8 bytes too: 100 CJK characters passed NAME_MAX in the key.
        ("漢" * 150 + ".png", "漢" * 65 + ".png"),
        ("😀" * 150, "_"),
    ],
)
def test_safe_name(name: str, safe: str) -> None:
    """Items 1, 3, 8 and 47 for the names the server stores."""
    assert safe_name(name) == safe


def test_content_type_patterns() -> None:
    assert content_type_allowed("image/png", ["image/*"])
    assert content_type_allowed("text/html", ["*/*"])
    assert not content_type_allowed("imagex/png", ["image/*"])
    assert not content_type_allowed("image/png", ["image/jpeg"])


def test_presigned_writes_stop_with_temporary_credentials() -> None:
    """Item 61 for uploads: a presigned PUT signed with credentials that end in T lives
    until T at most, carries the session token, and signs the headers it was given."""
    now = 1_800_000_000
    creds = Credentials("AKIAEXAMPLE", "secret", token="TOKEN", expires_at=now + 120)
    presigner = Presigner(
        bucket="bkt",
        region="eu-west-1",
        endpoint_url="https://s3.example.com",
        addressing_style="path",
        credentials=lambda: creds,
        clock=lambda: now,
    )
    url, expires_at, window = presigner.presign_request(
        "PUT",
        "media/a b.png",
        expires_in=600,
        headers={"Content-Length": "5", "Content-Type": "x/y"},
    )
    assert window is None  # not windowed: signed now, for one request
    query = parse_qs(urlsplit(url).query)
    assert expires_at == now + 120 and query["X-Amz-Expires"] == ["120"]
    assert query["X-Amz-Security-Token"] == ["TOKEN"]
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert urlsplit(url).path == "/bkt/media/a%20b.png"


def test_sign_upload_and_verify_receipt_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The module-level helpers use the settings of the environment, as sign_url does."""
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    gateway._default_receipts.cache_clear()
    try:
        ticket = gateway.sign_upload("a/", max_bytes=5)
        assert UploadSigner(secret_keys=[SECRET]).open_ticket(ticket).max_bytes == 5
        with pytest.raises(BadSignature):
            gateway.verify_receipt(ticket)
    finally:
        gateway._default_receipts.cache_clear()
