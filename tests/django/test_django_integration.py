"""gateway.django: settings, media_url, the template tag, the storages and the delegate view.

End to end, the test project's pages are rendered by Django behind the gateway under a
real uvicorn (ASGI and WSGI), and every link they carry is followed through it: local
files, S3 objects on the rclone server, and unsigned requests decided by the delegate.
"""

from __future__ import annotations

import contextlib
import html
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.signers
import httpx
import pytest
from botocore.config import Config
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.db import connections
from django.http import Http404
from django.template import Context, Template
from django.test import Client as DjangoClient, override_settings
from storages.backends.s3 import S3Storage

from gateway import MediaGateway, Settings, URLSigner
from gateway.django import gateway_settings, media_url
from gateway.django.apps import check_settings
from gateway.django.storage import (
    GatewayFileSystemStorage,
    GatewayS3Storage,
    MediaStorage,
    PublicMediaStorage,
)
from gateway.django.views import authorize_media, authorize_media_view
from gateway.paths import relative_path
from tests.django import test_django
from tests.django.test_django import REPORT, assert_from_gateway
from tests.s3server import S3Server

# The session fixture that sets the test project up, shared with tests/django/test_django.py.
django_apps = test_django.django_apps

DJANGO_KEY = "django-project-gateway-key-0123456789"
OTHER_KEY = "another-gateway-key-0123456789"
CLOSED_PORT_ENDPOINT = "http://127.0.0.1:9"  # discard: nothing listens there


def django_signer(key: str = DJANGO_KEY) -> URLSigner:
    return URLSigner(secret_keys=[key])


def verify(url: str, key: str = DJANGO_KEY) -> tuple[str, bool]:
    """Check a signed URL as the gateway would; return its path and download flag."""
    parts = urlsplit(url)
    relpath = relative_path(parts.path.encode("ascii"), "/media/")
    grant = django_signer(key).verify(relpath, parts.query)
    return relpath, grant.download


# Importing


def test_import_gateway_does_not_import_django() -> None:
    """Django stays optional: the core package never imports it."""
    code = "import gateway, sys; assert 'django' not in sys.modules, 'django imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gateway_django_imports_before_settings() -> None:
    """Importing the integration reads no Django setting, so settings modules may import it."""
    code = (
        "import gateway.django, gateway.django.storage, gateway.django.views,"
        " gateway.django.apps, gateway.django.templatetags.media_gateway"
    )
    env = {"PATH": "/usr/bin:/bin"}  # no DJANGO_SETTINGS_MODULE
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_public_api() -> None:
    """Each module's __all__ lists exactly its public names, and each exists."""
    import gateway.django
    import gateway.django.storage
    import gateway.django.views

    expected = {
        gateway.django: ["gateway_settings", "media_url"],
        gateway.django.storage: [
            "PUBLIC_PREFIX",
            "GatewayFileSystemStorage",
            "GatewayS3Storage",
            "GatewayStorage",
            "GatewayURLs",
            "MediaStorage",
            "PublicGatewayStorage",
            "PublicMediaStorage",
            "media_storage",
            "public_media_storage",
        ],
        gateway.django.views: ["MEDIA_PATH_HEADER", "authorize_media", "authorize_media_view"],
    }
    for module, names in expected.items():
        assert sorted(module.__all__) == sorted(names)
        for name in names:
            assert hasattr(module, name)


# Settings


def test_settings_from_django(django_apps: dict[str, Any]) -> None:
    """Django settings configure the gateway: key, MEDIA_URL, a list of public prefixes."""
    settings = gateway_settings()
    assert settings.secret_keys == (DJANGO_KEY,)
    assert settings.media_url == "/media/"
    assert settings.public_prefixes == ("public/",)


def test_settings_follow_override_settings(django_apps: dict[str, Any], tmp_path: Path) -> None:
    """setting_changed drops the cache: overrides apply inside the block and not after."""
    with override_settings(
        GATEWAY_SECRET_KEY=[DJANGO_KEY, OTHER_KEY],
        GATEWAY_PUBLIC_PREFIXES="avatars, public",
        GATEWAY_URL_TTL=600,
        GATEWAY_URL_WINDOW=60,
        MEDIA_ROOT=tmp_path,
        AWS_LOCATION="",
    ):
        settings = gateway_settings()
        assert settings.secret_keys == (DJANGO_KEY, OTHER_KEY)
        assert settings.public_prefixes == ("avatars/", "public/")
        assert (settings.url_ttl, settings.url_window) == (600, 60)
        assert settings.media_root == tmp_path
        assert settings.aws_location == ""
        assert verify(media_url("a.txt"), OTHER_KEY)[0] == "a.txt"  # the last key signs
    assert gateway_settings().secret_keys == (DJANGO_KEY,)
    assert gateway_settings().aws_location == "media"


def test_settings_fall_back_to_environment(
    django_apps: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A setting that is None or absent in Django comes from the environment."""
    monkeypatch.setenv("GATEWAY_SECRET_KEY", OTHER_KEY)
    monkeypatch.setenv("GATEWAY_URL_TTL", "120")
    with override_settings(GATEWAY_SECRET_KEY=None):
        settings = gateway_settings()
        assert settings.secret_keys == (OTHER_KEY,)
        assert settings.url_ttl == 120
        verify(media_url("a.txt"), OTHER_KEY)


def test_media_url_unset_in_django_falls_back(
    django_apps: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Django's default MEDIA_URL ("", which its settings object reads as "/") is no
    setting of the user's: the environment's, else /media/, applies (issue 13). It once
    failed with "expected a path that starts and ends with '/' (got '/')"."""
    with override_settings(MEDIA_URL=""):
        assert gateway_settings().media_url == "/media/"
        monkeypatch.setenv("MEDIA_URL", "/files/")
        with override_settings(MEDIA_ROOT=""):  # any change of a setting re-reads them
            assert gateway_settings().media_url == "/files/"


@pytest.mark.parametrize(
    "media_url_setting",
    ["https://bucket.s3.us-east-1.amazonaws.com/", "//cdn.example.com/media/"],
)
def test_absolute_media_url_is_refused(django_apps: dict[str, Any], media_url_setting: str) -> None:
    """The seed's S3 MEDIA_URL (the bucket's address) is refused, naming MEDIA_URL."""
    with override_settings(MEDIA_URL=media_url_setting):
        with pytest.raises(ImproperlyConfigured, match="MEDIA_URL must be the path"):
            media_url("a.txt")
        [error] = check_settings()
        assert error.id == "media_gateway.E001"
        assert "MEDIA_URL" in error.msg


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"GATEWAY_SECRET_KEY": "short"}, "GATEWAY_SECRET_KEY"),
        ({"GATEWAY_SECRET_KEY": None}, "GATEWAY_SECRET_KEY"),
        ({"GATEWAY_URL_TTL": "soon"}, "GATEWAY_URL_TTL"),
        ({"GATEWAY_PUBLIC_PREFIXES": ["../up"]}, "GATEWAY_PUBLIC_PREFIXES"),
    ],
)
def test_invalid_settings_name_the_setting(
    django_apps: dict[str, Any], overrides: dict[str, Any], variable: str
) -> None:
    """Bad settings raise ImproperlyConfigured naming the setting; the system check says so."""
    with override_settings(**overrides):
        with pytest.raises(ImproperlyConfigured, match=variable):
            gateway_settings()
        assert [message.id for message in check_settings()] == ["media_gateway.E001"]
    assert check_settings() == []


# media_url


def test_media_url_signed(django_apps: dict[str, Any]) -> None:
    """A private name gets a signed URL the gateway accepts, quoted once."""
    url = media_url("documents/caf\u00e9 #1.pdf")
    assert url.startswith("/media/documents/caf%C3%A9%20%231.pdf?exp=")
    assert verify(url) == ("documents/caf\u00e9 #1.pdf", False)


def test_media_url_download_and_expiry(django_apps: dict[str, Any]) -> None:
    """download=True signs an attachment; expires_in bounds the expiry (rounded to the window)."""
    url = media_url("documents/a.pdf", download=True, expires_in=60)
    assert verify(url) == ("documents/a.pdf", True)
    expires = int(re.search(r"exp=(\d+)", url).group(1))  # type: ignore[union-attr]
    assert time.time() + 60 <= expires <= time.time() + 60 + gateway_settings().url_window


def test_media_url_public(django_apps: dict[str, Any]) -> None:
    """A name under a public prefix gets MEDIA_URL + the quoted name, nothing else."""
    assert media_url("public/logo.png") == "/media/public/logo.png"
    assert media_url("public/a b#.png", download=True) == "/media/public/a%20b%23.png"
    assert media_url("publicity/x.png").startswith("/media/publicity/x.png?exp=")


@pytest.mark.parametrize("name", ["", "../x", "public/../documents/a.pdf", "documents/", "a\x00b"])
def test_media_url_refuses_bad_names(django_apps: dict[str, Any], name: str) -> None:
    """Names the gateway would never serve raise ValueError instead of yielding a dead link."""
    with pytest.raises(ValueError, match="not a valid media path"):
        media_url(name)


# The template tag


def render(source: str, **context: Any) -> str:
    # Django is untyped here (no django-stubs): render() returns a SafeString.
    rendered: str = Template("{% load media_gateway %}" + source).render(Context(context))
    return rendered


def test_template_tag(django_apps: dict[str, Any]) -> None:
    """{% signed_media_url %} takes a name or a FieldFile, download=True and expires=N."""
    url = html.unescape(render("{% signed_media_url name %}", name="documents/a.pdf"))
    assert verify(url) == ("documents/a.pdf", False)
    url = html.unescape(
        render("{% signed_media_url name download=True expires=30 %}", name="documents/a.pdf")
    )
    assert verify(url) == ("documents/a.pdf", True)
    assert render("{% signed_media_url 'public/x.png' %}") == "/media/public/x.png"
    assert render("{% signed_media_url name as url %}[{{ url }}]", name="public/x.png") == (
        "[/media/public/x.png]"
    )
    assert render("[{% signed_media_url name %}]", name="") == "[]"


def test_template_tag_refuses_what_is_not_a_file(django_apps: dict[str, Any]) -> None:
    """An object that holds a file (a Wagtail Image rather than image.file) was once
    signed by its str(), a link to a file named after its title (issue 13)."""

    class Image:
        title = "Red square"
        file = "original_images/red.png"

        def __str__(self) -> str:
            return self.title

    with pytest.raises(TypeError, match=r"not Image \(use its \.file\)"):
        render("{% signed_media_url image %}", image=Image())
    with pytest.raises(TypeError, match="not int"):
        render("{% signed_media_url n %}", n=42)
    assert render("[{% signed_media_url missing %}]") == "[]"


def test_template_tag_escapes(django_apps: dict[str, Any]) -> None:
    """The URL is HTML-escaped like any tag output: & becomes &amp; inside attributes."""
    assert "&amp;sig=" in render("{% signed_media_url 'documents/a.pdf' %}")


def test_template_tag_uses_the_storage_prefix(django_apps: dict[str, Any]) -> None:
    """A FieldFile of a storage with a media_prefix links to that prefix."""
    from tests.djangoproject.docs.models import Document

    doc = Document(file="documents/a.pdf", thumbnail="thumbnails/t.png")
    assert render("{% signed_media_url doc.thumbnail %}", doc=doc) == (
        "/media/public/thumbnails/t.png"
    )
    assert verify(html.unescape(render("{% signed_media_url doc.file %}", doc=doc)))[0] == (
        "documents/a.pdf"
    )


# Local storage


@pytest.fixture
def django_media(django_apps: dict[str, Any], media_root: Path) -> Iterator[Path]:
    """Django saves under the per-test media root, where the gateway serves from."""
    with override_settings(MEDIA_ROOT=str(media_root)):
        yield media_root


def test_filesystem_storage(django_media: Path) -> None:
    """Files land under MEDIA_ROOT/media_prefix; url() is signed, or plain when public."""
    private = GatewayFileSystemStorage()
    name = private.save("documents/r.txt", ContentFile(REPORT))
    assert (django_media / name).read_bytes() == REPORT
    assert verify(private.url(name)) == (name, False)
    assert verify(private.url(name, download=True, expire=60)) == (name, True)

    public = GatewayFileSystemStorage(media_prefix="/public/")
    name = public.save("logo.png", ContentFile(b"png"))
    assert (django_media / "public" / name).read_bytes() == b"png"
    assert public.url(name) == f"/media/public/{name}"


def test_filesystem_storage_refuses_its_own_location(django_apps: dict[str, Any]) -> None:
    """location and base_url would put files where the gateway does not look."""
    with pytest.raises(ImproperlyConfigured, match="takes no location"):
        GatewayFileSystemStorage(location="/elsewhere")
    with pytest.raises(ImproperlyConfigured, match="media_prefix"):
        GatewayFileSystemStorage(media_prefix="../up")


# S3 storage


def s3_storage(cls: type[GatewayS3Storage] = GatewayS3Storage, **options: Any) -> Any:
    values = {
        "bucket_name": "bucket",
        "endpoint_url": CLOSED_PORT_ENDPOINT,
        "access_key": "AKIAFAKEFAKEFAKE",
        "secret_key": "fake-secret",
    }
    values.update(options)
    return cls(**values)


def test_s3_storage_mapping(django_apps: dict[str, Any]) -> None:
    """Storage names map to AWS_LOCATION[/media_prefix]/name, URLs to MEDIA_URL/relpath."""
    assert s3_storage().location == "media"
    assert s3_storage(MediaStorage).location == "media"
    assert s3_storage(MediaStorage).default_acl == "private"
    public = s3_storage(PublicMediaStorage)
    assert public.location == "media/public"
    assert public._normalize_name("logo.png") == "media/public/logo.png"
    assert public.url("logo.png") == "/media/public/logo.png"
    with override_settings(AWS_LOCATION="site/uploads"):
        assert s3_storage(PublicMediaStorage).location == "site/uploads/public"
        assert s3_storage(media_prefix="avatars").location == "site/uploads/avatars"


def test_s3_storage_refuses_a_foreign_location(django_apps: dict[str, Any]) -> None:
    """The seed's PublicMediaStorage location 'public' lies outside AWS_LOCATION 'media',
    where the gateway never looks: refused, saying why. A leading slash is refused as
    django-storages refuses it."""

    class SeedPublic(GatewayS3Storage):
        location = "public"

    with pytest.raises(ImproperlyConfigured, match="'public' lies outside AWS_LOCATION 'media'"):
        s3_storage(SeedPublic)
    with pytest.raises(ImproperlyConfigured, match="'public' lies outside AWS_LOCATION"):
        s3_storage(PublicMediaStorage, location="public")
    with pytest.raises(ImproperlyConfigured, match="leading slash"):
        s3_storage(location="/media/")
    assert s3_storage(location="media/").location == "media/"


def test_s3_url_makes_no_boto3_call(
    django_apps: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """url() neither presigns nor connects: both raise here, and the URLs still come."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("boto3 was used")

    monkeypatch.setattr(botocore.signers.RequestSigner, "generate_presigned_url", boom)
    for name in ("connection", "unsigned_connection", "bucket"):
        monkeypatch.setattr(S3Storage, name, property(boom))
    storage = s3_storage(querystring_auth=True)
    with pytest.raises(AssertionError, match="boto3 was used"):
        S3Storage.url(storage, "documents/a.pdf")  # the parent's url() would
    assert verify(storage.url("documents/a.pdf")) == ("documents/a.pdf", False)
    assert verify(storage.url("documents/a.pdf", expire=60, download=True))[1] is True
    assert s3_storage(PublicMediaStorage).url("x.png") == "/media/public/x.png"


def test_s3_url_for_other_methods_is_presigned_by_s3(django_apps: dict[str, Any]) -> None:
    """A PUT, or a parameter the gateway does not carry, needs S3 itself: django-storages'
    presigned URL, offline. A content type is the gateway's own option (ct)."""
    storage = s3_storage()
    put = storage.url("documents/a.pdf", http_method="PUT")
    assert put.startswith(f"{CLOSED_PORT_ENDPOINT}/bucket/media/documents/a.pdf?")
    assert "Signature=" in put
    versioned = storage.url("documents/a.pdf", parameters={"VersionId": "v1"})
    assert "versionId=v1" in versioned and "Signature=" in versioned
    typed = storage.url("documents/a.pdf", parameters={"ResponseContentType": "text/plain"})
    assert verify(typed)[0] == "documents/a.pdf" and "&ct=text%2Fplain&" in typed


def test_s3_storage_client_config(django_apps: dict[str, Any]) -> None:
    """Checksums only where required (RELIABILITY item 42), unless the project's own
    client config says otherwise."""
    config = s3_storage().client_config
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    own = s3_storage(client_config=Config(request_checksum_calculation="when_supported"))
    assert own.client_config.request_checksum_calculation == "when_supported"


def test_s3_storage_fills_from_environment(
    django_apps: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no AWS_* Django settings, bucket and endpoint come from the gateway's
    environment: a project configured through it alone can upload."""
    monkeypatch.setenv("AWS_STORAGE_BUCKET_NAME", "env-bucket")
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", CLOSED_PORT_ENDPOINT)
    with override_settings(AWS_STORAGE_BUCKET_NAME=None):
        storage = GatewayS3Storage()
        assert (storage.bucket_name, storage.endpoint_url) == ("env-bucket", CLOSED_PORT_ENDPOINT)
        assert storage.region_name == "us-east-1"
        with override_settings(AWS_STORAGE_BUCKET_NAME="from-django"):
            assert GatewayS3Storage().bucket_name == "from-django"


# End to end: Django behind the gateway under uvicorn


@pytest.fixture
def make_user(django_apps: dict[str, Any]) -> Iterator[Callable[[], Any]]:
    """Create users with fresh names; delete them (and their documents) afterwards."""
    from django.contrib.auth.models import User

    created: list[Any] = []

    def make() -> Any:
        user = User.objects.create_user(f"user{len(created)}-{time.monotonic_ns()}")
        created.append(user)
        return user

    yield make
    for user in created:
        user.delete()
    connections.close_all()


@pytest.fixture
def front(
    django_apps: dict[str, Any],
    make_settings: Callable[..., Settings],
    serve: Callable[..., str],
) -> Iterator[Callable[..., httpx.Client]]:
    """``front(kind, **settings)``: the gateway before Django's ``kind`` app, under uvicorn."""
    with contextlib.ExitStack() as stack:

        def start(kind: str, **overrides: Any) -> httpx.Client:
            settings = make_settings(
                secret_keys=(DJANGO_KEY,), public_prefixes=("public",), **overrides
            )
            base_url = serve(MediaGateway(django_apps[kind], settings=settings))
            return stack.enter_context(httpx.Client(base_url=base_url, timeout=10))

        yield start


def links(page: httpx.Response) -> dict[str, str]:
    """The href/src of every element with an id, unescaped."""
    assert page.status_code == 200, page.text
    found = re.findall(r'id="([^"]+)" (?:href|src)="([^"]*)"', page.text)
    return {key: html.unescape(value) for key, value in found}


def saved_document(owner: Any, *, thumbnail: bool = True) -> Any:
    from tests.djangoproject.docs.models import Document

    doc = Document(owner=owner)
    doc.file.save("report.txt", ContentFile(REPORT), save=False)
    if thumbnail:
        doc.thumbnail.save("thumb.svg", ContentFile(b"<svg></svg>\n"), save=False)
    doc.save()
    return doc


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_template_tag_links_served(
    kind: str, front: Callable[..., httpx.Client], django_media: Path, make_user: Callable[[], Any]
) -> None:
    """Every link {% signed_media_url %} renders is served by the gateway."""
    doc = saved_document(make_user())
    client = front(kind)
    found = links(client.get(f"/docs/{doc.pk}/"))
    assert found["view"].startswith(f"/media/{doc.file.name}?exp=")
    assert found["thumbnail"] == f"/media/public/{doc.thumbnail.name}"

    view = client.get(found["view"])
    assert view.status_code == 200
    assert view.content == REPORT
    assert "content-disposition" not in view.headers
    assert_from_gateway(view)

    download = client.get(found["download"])
    assert download.status_code == 200
    assert download.content == REPORT
    assert download.headers["content-disposition"].startswith("attachment")

    thumbnail = client.get(found["thumbnail"])
    assert thumbnail.status_code == 200
    assert thumbnail.content == b"<svg></svg>\n"
    assert thumbnail.headers["cache-control"].startswith("public")


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_file_url_links_served(
    kind: str, front: Callable[..., httpx.Client], django_media: Path, make_user: Callable[[], Any]
) -> None:
    """Templates written for any storage ({{ doc.file.url }}) link through the gateway."""
    doc = saved_document(make_user())
    client = front(kind)
    found = links(client.get(f"/docs/{doc.pk}/url/"))
    assert verify(found["view"])[0] == doc.file.name
    for url in found.values():
        response = client.get(url)
        assert response.status_code == 200
        assert_from_gateway(response)
    tampered = found["view"].replace("report", "rep0rt")
    assert client.get(tampered).status_code == 403


def test_gateway_built_from_django_settings(
    django_apps: dict[str, Any],
    django_media: Path,
    make_user: Callable[[], Any],
    serve: Callable[..., str],
) -> None:
    """MediaGateway(app, settings=gateway_settings()) in asgi.py: one source of settings,
    so the gateway verifies what Django signs and looks where Django saves."""
    doc = saved_document(make_user())
    gateway = MediaGateway(django_apps["asgi"], settings=gateway_settings())
    with httpx.Client(base_url=serve(gateway), timeout=10) as client:
        for url in links(client.get(f"/docs/{doc.pk}/")).values():
            assert client.get(url).status_code == 200


def test_s3_storage_end_to_end(
    front: Callable[..., httpx.Client], s3_server: S3Server, s3_bucket: str
) -> None:
    """Saved through the storages to S3, linked by url(), fetched through the gateway's
    redirect: the storage keys and the gateway's keys agree."""
    server = {
        "bucket_name": s3_bucket,
        "endpoint_url": s3_server.endpoint_url,
        "access_key": s3_server.access_key,
        "secret_key": s3_server.secret_key,
    }
    private, public = MediaStorage(**server), PublicMediaStorage(**server)
    name = private.save("documents/caf\u00e9 report.txt", ContentFile(REPORT))
    logo = public.save("logo.svg", ContentFile(b"<svg></svg>\n"))
    with contextlib.closing(s3_server.client()) as s3:
        keys = {item["Key"] for item in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert keys == {f"media/{name}", f"media/public/{logo}"}

    client = front(
        "asgi",
        use_s3=True,
        aws_storage_bucket_name=s3_bucket,
        aws_s3_endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
    )
    for url, body in ((private.url(name), REPORT), (public.url(logo), b"<svg></svg>\n")):
        redirect = client.get(url)
        assert redirect.status_code == 302, redirect.text
        assert redirect.headers["location"].startswith(s3_server.endpoint_url)
        assert httpx.get(redirect.headers["location"]).content == body
    assert public.url(logo) == f"/media/public/{logo}"
    with private.open(name) as opened:  # reading goes through django-storages
        assert opened.read() == REPORT


# The delegate view


def signed_in(user: Any) -> DjangoClient:
    client = DjangoClient()
    client.force_login(user)
    return client


def ask(client: DjangoClient, path: str | None, method: str = "get") -> Any:
    headers = {} if path is None else {"X-Media-Path": path}
    return getattr(client, method)("/media-auth/", headers=headers)


def test_delegate_view(django_media: Path, make_user: Callable[[], Any]) -> None:
    """The owner gets 204; another user and anonymous 403; never cacheable."""
    owner, other = make_user(), make_user()
    doc = saved_document(owner, thumbnail=False)
    answers = {
        "owner": ask(signed_in(owner), doc.file.name),
        "other": ask(signed_in(other), doc.file.name),
        "anonymous": ask(DjangoClient(), doc.file.name),
        "owner, other file": ask(signed_in(owner), "documents/someone-else.txt"),
    }
    statuses = {who: response.status_code for who, response in answers.items()}
    assert statuses == {"owner": 204, "other": 403, "anonymous": 403, "owner, other file": 403}
    for response in answers.values():
        assert response["Cache-Control"] == "private, max-age=0"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (None, 400),
        ("", 400),
        ("../etc/passwd", 400),
        ("%C3%28", 400),
        ("a%00b", 400),
        ("users/2/x,users/1/a.txt", 400),
    ],
)
def test_delegate_view_bad_header(
    django_apps: dict[str, Any], make_user: Callable[[], Any], path: str | None, status: int
) -> None:
    """A missing or unusable X-Media-Path is a 400, also uncacheable."""
    response = ask(signed_in(make_user()), path)
    assert response.status_code == status
    assert response["Cache-Control"] == "private, max-age=0"


def test_delegate_view_decodes_the_path(django_media: Path, make_user: Callable[[], Any]) -> None:
    """X-Media-Path arrives percent-encoded (as the gateway sends it) and is decoded once."""
    from tests.djangoproject.docs.models import Document

    owner = make_user()
    Document.objects.create(owner=owner, file="documents/caf\u00e9 #1%41.txt")
    assert ask(signed_in(owner), "documents/caf%C3%A9%20%231%2541.txt").status_code == 204
    assert ask(signed_in(owner), "documents/caf%C3%A9%20%231A.txt").status_code == 403


def test_delegate_view_methods(django_media: Path, make_user: Callable[[], Any]) -> None:
    """GET and HEAD only: the gateway's check is a GET."""
    owner = make_user()
    doc = saved_document(owner, thumbnail=False)
    client = signed_in(owner)
    assert ask(client, doc.file.name, "head").status_code == 204
    response = ask(client, doc.file.name, "post")
    assert response.status_code == 405
    assert response["Cache-Control"] == "private, max-age=0"


def test_authorize_media_default(django_apps: dict[str, Any], make_user: Callable[[], Any]) -> None:
    """The ready view allows every signed-in user and refuses anonymous requests."""
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    request = RequestFactory().get("/", headers={"X-Media-Path": "documents/a.pdf"})
    request.user = make_user()
    assert authorize_media(request).status_code == 204
    request.user = AnonymousUser()
    assert authorize_media(request).status_code == 403


def test_authorize_media_view_custom(
    django_apps: dict[str, Any], make_user: Callable[[], Any]
) -> None:
    """permission sees the decoded path; Http404 gives 404; login_required=False lets
    anonymous requests reach it."""
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    seen: list[str] = []

    def share_links(request: Any, path: str) -> bool:
        seen.append(path)
        if path.startswith("gone/"):
            raise Http404
        return path.startswith("shared/")

    view = authorize_media_view(share_links, login_required=False)
    factory = RequestFactory()
    answers = []
    for path in ("shared/a%20b.pdf", "private/a.pdf", "gone/a.pdf"):
        request = factory.get("/", headers={"X-Media-Path": path})
        request.user = AnonymousUser()
        answers.append(view(request).status_code)
    assert answers == [204, 403, 404]
    assert seen == ["shared/a b.pdf", "private/a.pdf", "gone/a.pdf"]

    request = factory.get("/", headers={"X-Media-Path": "shared/a.pdf"})
    with pytest.raises(ImproperlyConfigured, match="AuthenticationMiddleware"):
        view(request)


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_delegate_end_to_end(
    kind: str,
    front: Callable[..., httpx.Client],
    django_media: Path,
    make_user: Callable[[], Any],
) -> None:
    """An unsigned media request is decided by the project's /media-auth/ view, by the
    session cookie the browser sends: the owner gets the file, others 403."""
    owner, other = make_user(), make_user()
    doc = saved_document(owner, thumbnail=False)
    (django_media / "documents" / "caf\u00e9 #1.txt").write_bytes(b"cafe")
    from tests.djangoproject.docs.models import Document

    Document.objects.create(owner=owner, file="documents/caf\u00e9 #1.txt")
    client = front(kind, auth_delegate="/media-auth/")
    cookie = django_settings.SESSION_COOKIE_NAME

    def get(user: Any, path: str) -> httpx.Response:
        client.cookies.clear()
        if user is not None:
            client.cookies.set(cookie, signed_in(user).cookies[cookie].value)
        return client.get(path)

    response = get(owner, f"/media/{doc.file.name}")
    assert response.status_code == 200
    assert response.content == REPORT
    assert response.headers["cache-control"] == "private, no-cache"
    assert get(owner, "/media/documents/caf%C3%A9%20%231.txt").content == b"cafe"
    assert get(other, f"/media/{doc.file.name}").status_code == 403
    assert get(None, f"/media/{doc.file.name}").status_code == 403


# Forged gateway headers (issue 17, 1): a client's X-Media-Path or X-Original-URI, in any
# spelling a server maps to the same name, never reaches the delegate.

FORGED_SPELLINGS = [
    [("X-Media-Path", "{mine}")],
    [("X_Media_Path", "{mine}")],
    [("x_media_path", "{mine}")],
    [("X-MEDIA_PATH", "{mine}")],
    [("X-Media-Path", "{mine}"), ("X-Media-Path", "{mine}")],
    [("X_Media_Path", "{mine}"), ("X-Original-URI", "/media/{mine}")],
]


def forged_request(spelling: list[tuple[str, str]], mine: str) -> list[tuple[str, str]]:
    return [(name, value.format(mine=mine)) for name, value in spelling]


@pytest.fixture
def folders(django_media: Path, make_user: Callable[[], Any]) -> tuple[Any, Any, str]:
    """The owner's users/<id>/a.txt, and an attacker signed in as another user."""
    owner, attacker = make_user(), make_user()
    (django_media / "users" / str(owner.pk)).mkdir(parents=True)
    (django_media / "users" / str(owner.pk) / "a.txt").write_bytes(b"owner's bytes")
    return owner, attacker, f"/media/users/{owner.pk}/a.txt"


def session_cookie(user: Any) -> str:
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={signed_in(user).cookies[name].value}"


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize("spelling", FORGED_SPELLINGS)
def test_forged_media_path_never_reaches_the_delegate(
    kind: str,
    spelling: list[tuple[str, str]],
    front: Callable[..., httpx.Client],
    folders: tuple[Any, Any, str],
) -> None:
    """Item 19: user 2 sends X_Media_Path: users/2/x (and other spellings) for user 1's
    file. Under WSGI (a2wsgi, as `serve --interface wsgi` runs it) the app once saw
    "users/2/x,users/1/a.txt" and a prefix rule let the request through."""
    owner, attacker, target = folders
    client = front(kind, auth_delegate="/media-auth-folder/")
    headers = [("cookie", session_cookie(attacker))]
    headers += forged_request(spelling, f"users/{attacker.pk}/x")
    response = client.get(target, headers=headers)
    assert response.status_code == 403
    assert b"owner's bytes" not in response.content
    owners = client.get(target, headers=[("cookie", session_cookie(owner)), *headers[1:]])
    assert owners.content == b"owner's bytes"


@pytest.mark.parametrize("spelling", FORGED_SPELLINGS)
def test_forged_media_path_over_an_http_delegate(
    spelling: list[tuple[str, str]],
    django_apps: dict[str, Any],
    make_settings: Callable[..., Settings],
    serve: Callable[..., str],
    folders: tuple[Any, Any, str],
) -> None:
    """Item 19: the same attack through a standalone gateway asking Django over HTTP."""
    owner, attacker, target = folders
    app_url = serve(django_apps["wsgi"])
    settings = make_settings(auth_delegate=f"{app_url}/media-auth-folder/")
    with httpx.Client(base_url=serve(MediaGateway(settings=settings)), timeout=10) as client:
        headers = [("cookie", session_cookie(attacker))]
        headers += forged_request(spelling, f"users/{attacker.pk}/x")
        assert client.get(target, headers=headers).status_code == 403
        assert client.get(target, headers=[("cookie", session_cookie(owner))]).status_code == 200
