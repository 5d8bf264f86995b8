"""A real Django project behind the gateway, under uvicorn, as ASGI and as WSGI (a2wsgi).

Everything outside MEDIA_URL must reach Django untouched; everything inside it must be
answered by the gateway without Django ever seeing it. The test project marks each
response it produces with ``X-Served-By: django`` to tell the two apart.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import httpx
import pytest
from a2wsgi import WSGIMiddleware
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connections

from gateway import MediaGateway, Settings
from tests.djangoproject.views import COOKIES, MEDIA_FILE, STREAM_CHUNKS
from tests.helpers import raw_request

# Bytes that are not valid UTF-8 and contain CR/LF, so any re-encoding shows.
REPORT = b"Quarterly report\r\n\x00\xff\xfe private bytes\n"
SECRET_BYTES = b"TOP-SECRET next to the media root"


@pytest.fixture(scope="session")
def django_apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Set up the test project once on a fresh migrated database; return both apps."""
    with pytest.MonkeyPatch.context() as mp:
        # Set only while Django reads its settings, which it then keeps for the session;
        # the entry modules' os.environ.setdefault finds the variable set and leaves it.
        mp.setenv("DJANGO_SETTINGS_MODULE", "tests.djangoproject.settings")
        mp.setenv("DJANGO_TEST_DB", str(tmp_path_factory.mktemp("django") / "db.sqlite3"))
        django.setup()
        from tests.djangoproject.asgi import application as asgi_application
        from tests.djangoproject.wsgi import application as wsgi_application

        call_command("migrate", run_syncdb=True, verbosity=0)
        connections.close_all()
    return {"asgi": asgi_application, "wsgi": WSGIMiddleware(wsgi_application)}


@pytest.fixture(params=["asgi", "wsgi"])
def gateway(
    request: pytest.FixtureRequest,
    django_apps: dict[str, Any],
    make_settings: Callable[..., Settings],
) -> MediaGateway:
    """The gateway in front of the Django app, verifying the key Django signs with."""
    settings = make_settings(
        secret_keys=(django_settings.GATEWAY_SECRET_KEY,), public_prefixes=("public",)
    )
    return MediaGateway(django_apps[request.param], settings=settings)


@pytest.fixture
def base_url(gateway: MediaGateway, serve: Callable[..., str]) -> str:
    return serve(gateway)


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client


def assert_from_django(response: httpx.Response) -> None:
    assert response.headers.get("x-served-by") == "django"


def assert_from_gateway(response: httpx.Response) -> None:
    assert "x-served-by" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


# Passthrough: what Django answers arrives as Django sent it.


def test_page(client: httpx.Client) -> None:
    """An HTML page rendered from templates reaches the client."""
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Hello from Django</h1>" in response.text
    assert_from_django(response)


def test_redirect(client: httpx.Client) -> None:
    """A 302 keeps its status and Location, and following it lands on the page."""
    response = client.get("/go/", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/"
    assert_from_django(response)
    followed = client.get("/go/", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.url.path == "/"
    assert "<h1>Hello from Django</h1>" in followed.text


def test_cookies(client: httpx.Client) -> None:
    """Each Set-Cookie header arrives separately and byte for byte."""
    response = client.get("/cookie/")
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == [
        f"{name}={value}; HttpOnly; Path=/; SameSite=Lax" for name, value in COOKIES.items()
    ]
    assert dict(client.cookies) == COOKIES


def test_csrf_post(client: httpx.Client) -> None:
    """A POST with the token from the form and the csrftoken cookie is accepted and echoed."""
    page = client.get("/form/")
    assert page.status_code == 200
    assert "csrftoken" in client.cookies
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match is not None
    response = client.post(
        "/form/", data={"csrfmiddlewaretoken": match.group(1), "message": "hello, gateway"}
    )
    assert response.status_code == 200
    assert response.text == "message: hello, gateway"
    assert_from_django(response)


def test_csrf_header(client: httpx.Client) -> None:
    """A POST with the cookie's token in X-CSRFToken is accepted."""
    client.get("/form/")
    response = client.post(
        "/form/",
        data={"message": "via header"},
        headers={"x-csrftoken": client.cookies["csrftoken"]},
    )
    assert response.status_code == 200
    assert response.text == "message: via header"


def test_csrf_rejected(client: httpx.Client, base_url: str) -> None:
    """A POST without a token, or without the cookie, gets Django's own 403."""
    client.get("/form/")
    without_token = client.post("/form/", data={"message": "no token"})
    assert without_token.status_code == 403
    assert "CSRF" in without_token.text
    assert_from_django(without_token)
    with httpx.Client(base_url=base_url, timeout=10) as fresh:
        without_cookie = fresh.post("/form/", data={"message": "no cookie"})
    assert without_cookie.status_code == 403
    assert "CSRF" in without_cookie.text
    assert_from_django(without_cookie)


def test_streaming(client: httpx.Client) -> None:
    """A streaming response arrives chunked and complete."""
    with client.stream("GET", "/stream/") as response:
        body = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert body == b"".join(STREAM_CHUNKS)
    assert "content-length" not in response.headers
    assert response.headers["transfer-encoding"] == "chunked"
    assert_from_django(response)


def test_custom_status_and_headers(client: httpx.Client) -> None:
    """A 418 with a custom header passes through unchanged."""
    response = client.get("/teapot/")
    assert response.status_code == 418
    assert response.headers["x-custom"] == "yes"
    assert response.headers["content-type"] == "text/plain"
    assert response.text == "I'm a teapot\n"
    assert_from_django(response)


@pytest.mark.parametrize("path", ["/media_private/x", "/mediax", "/media", "/static/media/x"])
def test_lookalike_paths_reach_django(client: httpx.Client, path: str) -> None:
    """Paths that only resemble the media prefix get Django's 404 page."""
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Not Found</h1>" in response.text
    assert_from_django(response)


# Media: answered by the gateway, never seen by Django.


def test_unsigned_media_is_refused_by_gateway(client: httpx.Client) -> None:
    """An unsigned media URL gets the gateway's plain-text 403, not Django's 404."""
    response = client.get("/media/x")
    assert response.status_code == 403
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "signature" in response.text.lower()
    assert "<" not in response.text
    assert_from_gateway(response)


def test_media_post_is_answered_by_gateway(client: httpx.Client) -> None:
    """A POST under the media prefix gets the gateway's 405; Django's CSRF check never runs."""
    response = client.post("/media/x", data={"a": "b"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert_from_gateway(response)


def test_signed_media(client: httpx.Client, gateway: MediaGateway, media_root: Path) -> None:
    """A file under the media root is served at its signed URL with the exact bytes."""
    (media_root / "documents").mkdir()
    (media_root / "documents" / "report.txt").write_bytes(REPORT)
    response = client.get(gateway.signer.sign_url("documents/report.txt"))
    assert response.status_code == 200
    assert response.content == REPORT
    assert response.headers["content-length"] == str(len(REPORT))
    assert response.headers["cache-control"].startswith("private, max-age=")
    assert_from_gateway(response)


def test_link_rendered_by_django(client: httpx.Client, media_root: Path) -> None:
    """The signed link a Django page renders serves the file when followed."""
    path = media_root / MEDIA_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(REPORT)
    page = client.get("/page-with-media/")
    assert page.status_code == 200
    match = re.search(r'<a id="report" href="([^"]+)"', page.text)
    assert match is not None
    link = html.unescape(match.group(1))
    assert link.startswith(f"/media/{MEDIA_FILE}?exp=")
    response = client.get(link)
    assert response.status_code == 200
    assert response.content == REPORT
    assert_from_gateway(response)


def test_public_prefix(client: httpx.Client, media_root: Path) -> None:
    """A file under a public prefix is served without a signature."""
    (media_root / "public").mkdir()
    (media_root / "public" / "logo.svg").write_bytes(b"<svg></svg>\n")
    response = client.get("/media/public/logo.svg")
    assert response.status_code == 200
    assert response.content == b"<svg></svg>\n"
    assert response.headers["cache-control"].startswith("public, max-age=")
    assert_from_gateway(response)


@pytest.mark.parametrize("target", [b"/media/../media_private/x", b"/media/%2e%2e/media_private/x"])
def test_dot_segments_stay_in_gateway(base_url: str, media_root: Path, target: bytes) -> None:
    """A media path climbing out with .. gets the gateway's 404 and no file outside the root."""
    (media_root.parent / "media_private").mkdir()
    (media_root.parent / "media_private" / "x").write_bytes(SECRET_BYTES)
    # A raw socket: httpx would normalise the .. away before sending.
    reply = raw_request(base_url, target)
    assert reply.status == 404
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert "x-served-by" not in reply.headers
    assert SECRET_BYTES not in reply.body
