"""One content policy in every delivery: no uploaded file runs script on the site's origin.

Attacks of issue 17 (items 2 and 3): proxy mode once served an uploaded SVG or HTML file
without the sandbox that local mode adds, and dropped a stored Content-Disposition; a
signed content-type override (text/html on a .txt) removed the sandbox, because it was
chosen from the file name. The policy now follows the type actually sent: local and
proxy delivery add ``Content-Security-Policy: sandbox``, redirects ask S3 for an
attachment. Each case runs through a real uvicorn, and S3 cases against rclone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from gateway import MediaGateway, Settings
from gateway.http import SANDBOX_CSP, is_active
from tests.serving.test_s3 import put, s3_settings  # noqa: F401 (fixtures)

PAGE = b"<html><body><script>document.title='pwned'</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.mark.parametrize(
    ("content_type", "active"),
    [
        ("text/html; charset=utf-8", True),
        ("TEXT/HTML", True),
        ("image/svg+xml", True),
        ("application/xhtml+xml", True),
        ("text/xml", True),
        ("application/rss+xml", True),
        ("application/vnd.foo+xml; charset=utf-8", True),
        ("text/xsl", True),
        ("multipart/x-mixed-replace; boundary=x", True),
        ("message/rfc822", True),
        ("", True),
        ("nonsense", True),
        ("text/plain; charset=utf-8", False),
        ("image/png", False),
        ("application/pdf", False),
        ("video/mp4", False),
        ("application/json", False),
        ("application/octet-stream", False),
    ],
)
def test_active_types(content_type: str, active: bool) -> None:
    """Types that a browser may run script in, and unreadable ones (fail closed)."""
    assert is_active(content_type) is active


def sandboxed(response: httpx.Response) -> bool:
    return bool(response.headers.get("content-security-policy") == SANDBOX_CSP)


@pytest.fixture
def uploads(media_root: Path) -> Path:
    (media_root / "up").mkdir()
    for name, data in {
        "p.svg": SVG,
        "p.html": PAGE,
        "p.xml": b"<?xml version='1.0'?><a/>",
        "a.txt": PAGE,
        "b.html": PAGE,
        "c.png": b"\x89PNG\r\n",
    }.items():
        (media_root / "up" / name).write_bytes(data)
    return media_root


@pytest.mark.parametrize(
    ("name", "override", "expected_type", "expect_sandbox"),
    [
        ("p.svg", None, "image/svg+xml", True),
        ("p.html", None, "text/html; charset=utf-8", True),
        ("p.xml", None, None, True),
        ("c.png", None, "image/png", False),
        ("a.txt", None, "text/plain; charset=utf-8", False),
        # Item 3: the sandbox follows the type sent, not the name.
        ("a.txt", "text/html", "text/html", True),
        ("c.png", "image/svg+xml", "image/svg+xml", True),
        ("b.html", "text/plain", "text/plain", False),
    ],
)
def test_local_policy_follows_the_type_sent(
    uploads: Path,
    make_settings: Callable[..., Settings],
    serve: Callable[..., str],
    name: str,
    override: str | None,
    expected_type: str | None,
    expect_sandbox: bool,
) -> None:
    """Local mode, under uvicorn: an active type is sandboxed, whatever names it."""
    gateway = MediaGateway(settings=make_settings())
    base = serve(gateway)
    response = httpx.get(base + gateway.signer.sign_url(f"up/{name}", content_type=override))
    assert response.status_code == 200
    if expected_type is not None:
        assert response.headers["content-type"] == expected_type
    assert len(response.headers.get_list("content-type")) == 1
    assert sandboxed(response) is expect_sandbox
    assert len(response.headers.get_list("content-security-policy")) == int(expect_sandbox)
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("key", "stored", "override", "expect_sandbox"),
    [
        ("p.svg", {"ContentType": "image/svg+xml"}, None, True),
        ("p.html", {"ContentType": "text/html"}, None, True),
        # Stored as HTML under an innocent name: S3's type decides.
        ("c.png", {"ContentType": "text/html; charset=utf-8"}, None, True),
        ("d.png", {"ContentType": "image/png"}, None, False),
        ("a.txt", {"ContentType": "text/plain"}, "text/html", True),
        ("b.html", {"ContentType": "text/html"}, "text/plain", False),
    ],
)
def test_proxy_policy_follows_the_type_sent(
    s3_settings: Callable[..., Settings],  # noqa: F811
    put: Callable[..., None],  # noqa: F811
    serve: Callable[..., str],
    key: str,
    stored: dict[str, str],
    override: str | None,
    expect_sandbox: bool,
) -> None:
    """Proxy mode against rclone: the site's origin adds the same sandbox as local mode,
    from S3's stored type or the signed override."""
    put(f"media/up/{key}", PAGE, **stored)
    gateway = MediaGateway(settings=s3_settings(s3_delivery="proxy"))
    base = serve(gateway)
    response = httpx.get(base + gateway.signer.sign_url(f"up/{key}", content_type=override))
    assert response.status_code == 200
    assert response.content == PAGE
    assert sandboxed(response) is expect_sandbox
    assert len(response.headers.get_list("content-type")) == 1
    if override is not None:
        assert response.headers["content-type"] == override


def test_proxy_keeps_a_stored_attachment(
    s3_settings: Callable[..., Settings],  # noqa: F811
    put: Callable[..., None],  # noqa: F811
    serve: Callable[..., str],
) -> None:
    """A Content-Disposition stored with the object reaches the client; a signed
    download replaces it with ours (one header, never two)."""
    stored = 'attachment; filename="report.html"'
    put("media/up/r.html", PAGE, ContentType="text/html", ContentDisposition=stored)
    gateway = MediaGateway(settings=s3_settings(s3_delivery="proxy"))
    base = serve(gateway)
    response = httpx.get(base + gateway.signer.sign_url("up/r.html"))
    assert response.headers["content-disposition"] == stored
    assert sandboxed(response)
    download = httpx.get(base + gateway.signer.sign_url("up/r.html", download=True))
    assert download.headers.get_list("content-disposition") == ['attachment; filename="r.html"']


def test_hybrid_local_copy_is_sandboxed(
    s3_settings: Callable[..., Settings],  # noqa: F811
    put: Callable[..., None],  # noqa: F811
    uploads: Path,
    serve: Callable[..., str],
) -> None:
    """During a migration the disk copy is served with the sandbox, and what only S3
    has is redirected as an attachment."""
    put("media/up/only-in-s3.svg", SVG, ContentType="image/svg+xml")
    gateway = MediaGateway(settings=s3_settings(local_fallback=True))
    base = serve(gateway)
    local = httpx.get(base + gateway.signer.sign_url("up/p.svg"))
    assert local.status_code == 200 and sandboxed(local)
    remote = httpx.get(base + gateway.signer.sign_url("up/only-in-s3.svg"))
    assert remote.status_code == 302
    query = dict(parse_qsl(urlsplit(remote.headers["location"]).query))
    assert query["response-content-disposition"].startswith("attachment;")


@pytest.mark.parametrize(
    ("key", "override", "attachment"),
    [
        ("p.svg", None, True),
        ("p.html", None, True),
        ("a.txt", "text/html", True),
        ("a.txt", None, False),
        ("c.png", None, False),
        ("b.html", "text/plain", False),
    ],
)
def test_redirect_downloads_active_types(
    s3_settings: Callable[..., Settings],  # noqa: F811
    put: Callable[..., None],  # noqa: F811
    serve: Callable[..., str],
    key: str,
    override: str | None,
    attachment: bool,
) -> None:
    """Redirect mode: S3 adds no header of ours, so an active type is presigned with
    response-content-disposition=attachment (and the override as response-content-type);
    the URL is valid at S3. rclone ignores response-content-disposition (a difference of
    that server; AWS and SeaweedFS honour it), so the test reads the signed URL."""
    put(f"media/up/{key}", PAGE)
    gateway = MediaGateway(settings=s3_settings())
    base = serve(gateway)
    response = httpx.get(base + gateway.signer.sign_url(f"up/{key}", content_type=override))
    assert response.status_code == 302
    location = response.headers["location"]
    query = dict(parse_qsl(urlsplit(location).query))
    if attachment:
        assert query["response-content-disposition"] == (f'attachment; filename="{key}"')
    else:
        assert "response-content-disposition" not in query
    if override is not None:
        assert query["response-content-type"] == override
    followed = httpx.get(location)
    assert followed.status_code == 200
    assert followed.content == PAGE


@pytest.mark.parametrize(
    "stored",
    [
        # Fetch's "extract a MIME type" (Chrome, Firefox, Safari): the last valid type of
        # a comma-separated list wins, so each of these is rendered as text/html.
        "text/plain,text/html",
        "image/png, text/html",
        "text/html,",
        "text/html, */*",
    ],
)
def test_proxy_sandboxes_a_type_list(
    s3_settings: Callable[..., Settings],  # noqa: F811
    put: Callable[..., None],  # noqa: F811
    serve: Callable[..., str],
    stored: str,
) -> None:
    """Proxy mode once served an object whose stored Content-Type is a list (an
    uploader's declared type reaches S3 through django-storages' content.content_type)
    from the site's origin without the sandbox (second review)."""
    put("media/up/x.png", PAGE, ContentType=stored)
    gateway = MediaGateway(settings=s3_settings(s3_delivery="proxy"))
    base = serve(gateway)
    response = httpx.get(base + gateway.signer.sign_url("up/x.png"))
    assert response.status_code == 200
    assert response.headers["content-type"] == stored
    assert sandboxed(response), response.headers


def test_redirect_pins_the_type_of_an_innocent_name(
    s3_settings: Callable[..., Settings],  # noqa: F811
    put: Callable[..., None],  # noqa: F811
    serve: Callable[..., str],
) -> None:
    """Redirect mode once decided from the name only: an upload named y.png stored as
    text/html was presigned inline with no response-content-type, so S3 (or a CDN on
    a subdomain of the site) rendered it as a page. The type is now pinned to the
    name's (second review)."""
    put("media/up/y.png", PAGE, ContentType="text/html")
    gateway = MediaGateway(settings=s3_settings())
    base = serve(gateway)
    response = httpx.get(base + gateway.signer.sign_url("up/y.png"))
    assert response.status_code == 302
    location = response.headers["location"]
    followed = httpx.get(location)
    assert followed.content == PAGE
    query = dict(parse_qsl(urlsplit(location).query))
    pinned = query.get("response-content-type", "")
    attached = query.get("response-content-disposition", "").startswith("attachment")
    assert pinned == "image/png" and not attached, query


@pytest.mark.parametrize(
    "stored",
    [
        {"ContentDisposition": 'attachment; filename="\u20ac-invoice.pdf"'},
        {"ContentDisposition": 'inline; filename="\u0444\u0430\u0439\u043b.pdf"'},
        {"ContentType": "application/pdf; name=\u20ac"},
    ],
)
def test_proxy_survives_utf8_stored_headers(
    s3_settings: Callable[..., Settings],  # noqa: F811
    put: Callable[..., None],  # noqa: F811
    serve: Callable[..., str],
    stored: dict[str, str],
) -> None:
    """Proxy mode once re-encoded S3's header values as latin-1: a stored
    Content-Disposition with a UTF-8 filename (set per object by django-storages users)
    made every request for the object a 500 with a traceback. S3's bytes go through
    unchanged (second review)."""
    put("media/up/f.pdf", b"%PDF-1.4", **stored)
    gateway = MediaGateway(settings=s3_settings(s3_delivery="proxy"))
    base = serve(gateway)
    response = httpx.get(base + gateway.signer.sign_url("up/f.pdf"))
    assert response.status_code == 200
    for name, value in stored.items():
        header = {"ContentDisposition": "content-disposition", "ContentType": "content-type"}
        assert response.headers.raw and (
            header[name].encode(),
            value.encode("utf-8"),
        ) in [(k.lower(), v) for k, v in response.headers.raw]
