"""gateway/django/storage.py as a drop-in for django-storages' S3Storage (issue 19).

Locations under AWS_LOCATION, the url() rules (which links go through the gateway and
which stay django-storages' own), directory URLs, the bounded free-name search, and an
existing django-storages bucket served by the gateway without moving a key.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.signers
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.core.files.base import ContentFile
from django.core.signals import setting_changed
from django.test import override_settings
from storages.backends.s3 import S3Storage

from gateway import MediaGateway, Settings
from gateway.django import gateway_settings
from gateway.django.storage import (
    MAX_NAME_PROBES,
    GatewayS3Storage,
    GatewayStorage,
    MediaStorage,
    PublicMediaStorage,
)
from tests.django import test_django, test_django_integration
from tests.django.test_django import REPORT
from tests.django.test_django_integration import CLOSED_PORT_ENDPOINT, DJANGO_KEY, s3_storage
from tests.s3server import S3Server

django_apps = test_django.django_apps
verify = test_django_integration.verify


@contextlib.contextmanager
def never_set(name: str) -> Iterator[None]:
    """Django settings without ``name`` at all, as in a project that never set it."""
    with override_settings():
        delattr(django_settings, name)
        setting_changed.send(sender=None, setting=name, value=None, enter=True)
        try:
            yield
        finally:
            setting_changed.send(sender=None, setting=name, value=None, enter=False)


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def presigned_by_s3(url: str) -> bool:
    # botocore presigns with SigV2 for a custom endpoint unless told otherwise.
    return url.startswith(f"{CLOSED_PORT_ENDPOINT}/bucket/") and bool(
        {"Signature", "X-Amz-Signature"} & set(query(url))
    )


# Locations


def test_locations_under_aws_location_are_served(django_apps: dict[str, Any]) -> None:
    """Several storages with their own locations under AWS_LOCATION (avatars, documents):
    each keeps django-storages' keys, and its URLs carry the path below AWS_LOCATION, so
    one gateway serves them all. media_prefix is the same setting seen from the gateway."""

    class Avatars(GatewayS3Storage):
        location = "media/avatars"

    for storage in (
        s3_storage(location="media/avatars"),
        s3_storage(Avatars),
        s3_storage(media_prefix="avatars"),
        s3_storage(location="media/avatars/", media_prefix="avatars/"),
    ):
        assert storage.location.rstrip("/") == "media/avatars"
        assert storage.media_prefix == "avatars/"
        assert storage._normalize_name("u1.jpg") == "media/avatars/u1.jpg"
        assert verify(storage.url("u1.jpg")) == ("avatars/u1.jpg", False)
    with override_settings(AWS_LOCATION=""):
        storage = s3_storage(location="foo1")  # django-storages' own test, at the root
        assert (storage.location, storage.media_prefix) == ("foo1", "foo1/")
        assert verify(storage.url("a.txt"))[0] == "foo1/a.txt"


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("uploads", "lies outside AWS_LOCATION 'media'"),
        ("media-private", "lies outside AWS_LOCATION 'media'"),  # a sibling, not under it
        ("media/../secret", "cannot serve a path with empty, '.' or '..' segments"),
        ("media//a", "cannot serve a path with empty, '.' or '..' segments"),
    ],
)
def test_locations_the_gateway_cannot_serve_are_refused(
    django_apps: dict[str, Any], location: str, reason: str
) -> None:
    """Only a location the gateway could never serve is refused, and the message says why;
    a sibling of AWS_LOCATION (media-private beside media) is outside it (item 2)."""
    with pytest.raises(ImproperlyConfigured, match=reason.replace(".", r"\.")):
        s3_storage(location=location)


def test_location_and_media_prefix_must_agree(django_apps: dict[str, Any]) -> None:
    with pytest.raises(ImproperlyConfigured, match="disagree"):
        s3_storage(location="media/avatars", media_prefix="documents")


def test_default_location_is_the_bucket_root(django_apps: dict[str, Any]) -> None:
    """AWS_LOCATION never set: keys at the bucket root, as django-storages puts them."""
    with never_set("AWS_LOCATION"):
        assert gateway_settings().aws_location == ""
        ours, theirs = s3_storage(), s3_storage(S3Storage)
        assert ours.location == theirs.location == ""
        assert ours._normalize_name("doc/a.txt") == theirs._normalize_name("doc/a.txt")
        assert verify(ours.url("doc/a.txt"))[0] == "doc/a.txt"
        assert s3_storage(PublicMediaStorage)._normalize_name("x.png") == "public/x.png"


# url(): which links go through the gateway


def cloudfront_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def test_url_is_the_gateways_where_django_storages_presigns_a_read(
    django_apps: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET and HEAD links of a signed storage go through the gateway, without boto3; the
    parameters the gateway carries become its options."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("boto3 presigned")

    monkeypatch.setattr(botocore.signers.RequestSigner, "generate_presigned_url", boom)
    storage = s3_storage()
    for method in (None, "GET", "HEAD"):
        assert verify(storage.url("a.pdf", http_method=method)) == ("a.pdf", False)
    typed = storage.url("a.txt", parameters={"ResponseContentType": "text/plain"})
    assert query(typed)["ct"] == ["text/plain"]
    attachment = storage.url("a.pdf", parameters={"ResponseContentDisposition": "attachment"})
    assert verify(attachment) == ("a.pdf", True)


def test_link_lifetime_follows_the_project(django_apps: dict[str, Any]) -> None:
    """AWS_QUERYSTRING_EXPIRE (or querystring_expire) set: gateway links last that long,
    as django-storages' did; unset: GATEWAY_URL_TTL. expire= wins over both."""

    def lifetime(storage: Any, **kwargs: Any) -> int:
        return int(query(storage.url("a.txt", **kwargs))["exp"][0]) - int(time.time())

    assert 3000 < lifetime(s3_storage()) <= 3600 + 300  # GATEWAY_URL_TTL's default
    with override_settings(GATEWAY_URL_TTL=7200):
        assert 6900 < lifetime(s3_storage()) <= 7200 + 300
        assert 500 < lifetime(s3_storage(querystring_expire=600)) <= 600 + 60
        with override_settings(AWS_QUERYSTRING_EXPIRE=900):
            assert 800 < lifetime(s3_storage()) <= 900 + 90
            assert 50 < lifetime(s3_storage(), expire=60) <= 60 + 6


def test_url_stays_django_storages_elsewhere(django_apps: dict[str, Any]) -> None:
    """Public storages, custom domains, CloudFront keys, writes and parameters only S3
    carries keep django-storages' own URL, unchanged."""
    storage = s3_storage(querystring_auth=False)  # a public bucket: its plain S3 URL
    assert storage.url("a b.txt") == f"{CLOSED_PORT_ENDPOINT}/bucket/media/a%20b.txt"

    cdn = s3_storage(custom_domain="cdn.example.com")  # a CDN's URLs stay the CDN's
    assert cdn.url("a.txt") == "https://cdn.example.com/media/a.txt"
    assert s3_storage(custom_domain="cdn.example.com", querystring_auth=False).url("a.txt") == (
        "https://cdn.example.com/media/a.txt"
    )
    signed = s3_storage(
        custom_domain="cdn.example.com", cloudfront_key_id="K2ID", cloudfront_key=cloudfront_key()
    ).url("a.txt")
    assert signed.startswith("https://cdn.example.com/media/a.txt?Expires=")
    assert query(signed)["Key-Pair-Id"] == ["K2ID"]

    put = s3_storage().url("a.txt", http_method="PUT")  # a browser upload goes to S3
    assert put.startswith(f"{CLOSED_PORT_ENDPOINT}/bucket/media/a.txt?")
    assert presigned_by_s3(put)
    versioned = s3_storage().url("a.txt", parameters={"VersionId": "v1"})
    assert presigned_by_s3(versioned) and query(versioned)["versionId"] == ["v1"]
    named = {"ResponseContentDisposition": 'attachment; filename="report.pdf"'}
    assert presigned_by_s3(s3_storage().url("a.pdf", parameters=named))
    # A type a gateway link cannot carry (a parameter besides charset): once ValueError.
    typed = {"ResponseContentType": 'application/octet-stream; name="x.bin"'}
    assert presigned_by_s3(s3_storage().url("x.bin", parameters=typed))


def test_seed_storages_always_link_through_the_gateway(django_apps: dict[str, Any]) -> None:
    """MediaStorage and PublicMediaStorage ignore AWS_QUERYSTRING_AUTH and
    AWS_S3_CUSTOM_DOMAIN (the gateway uses the latter for public prefixes)."""
    with override_settings(AWS_QUERYSTRING_AUTH=False, AWS_S3_CUSTOM_DOMAIN="cdn.example.com"):
        assert s3_storage().url("a.txt") == "https://cdn.example.com/media/a.txt"
        assert verify(s3_storage(MediaStorage).url("a.txt")) == ("a.txt", False)
        assert s3_storage(PublicMediaStorage).url("x.png") == "/media/public/x.png"


def test_directory_urls(django_apps: dict[str, Any]) -> None:
    """url("") and url("dir/") give the plain gateway path of the directory, a base to
    build on as django-storages gives one; names outside the location are refused as
    django-storages refuses them."""
    assert s3_storage().url("") == "/media/"
    assert s3_storage().url("path/") == "/media/path/"
    assert s3_storage().url("path/1/") == "/media/path/1/"
    assert s3_storage(location="media/avatars").url("") == "/media/avatars/"
    assert s3_storage(PublicMediaStorage).url("") == "/media/public/"
    with pytest.raises(SuspiciousOperation):
        s3_storage().url("../secret.txt")
    # The key django-storages writes (clean_name): a//b.txt is saved as a/b.txt.
    assert verify(s3_storage().url("a//b.txt"))[0] == "a/b.txt"


# The free-name search of file_overwrite = False


class _AlwaysThere(BaseHTTPRequestHandler):
    """An endpoint that answers every HEAD with 200: a web server or CDN in S3's place."""

    server: Any

    def do_HEAD(self) -> None:
        self.server.heads += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.send_header("ETag", '"0"')
        self.end_headers()

    def do_PUT(self) -> None:
        self.server.puts += 1
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def always_there() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysThere)
    server.heads = server.puts = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_free_name_search_is_bounded(
    django_apps: dict[str, Any], always_there: ThreadingHTTPServer
) -> None:
    """MediaStorage (file_overwrite=False) asks exists() until a name is free; against an
    endpoint where everything exists, that once never ended (django-storages'
    test_content_type hung). Now MAX_NAME_PROBES HEADs, then FileExistsError, no upload."""
    endpoint = f"http://127.0.0.1:{always_there.server_address[1]}"
    storage = s3_storage(MediaStorage, endpoint_url=endpoint)
    with pytest.raises(FileExistsError, match=f"{MAX_NAME_PROBES} names in a row"):
        storage.save("documents/a.jpg", ContentFile(b"data"))
    assert always_there.heads == MAX_NAME_PROBES  # type: ignore[attr-defined]
    assert always_there.puts == 0  # type: ignore[attr-defined]


def test_free_names_on_a_real_server(s3_server: S3Server, s3_bucket: str) -> None:
    """The bound leaves the real search alone: a taken name gets an alternative."""
    storage = MediaStorage(
        bucket_name=s3_bucket,
        endpoint_url=s3_server.endpoint_url,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    first = storage.save("a.txt", ContentFile(b"1"))
    second = storage.save("a.txt", ContentFile(b"2"))
    assert first == "a.txt" and second.startswith("a_") and second.endswith(".txt")
    with storage.open(second) as opened:
        assert opened.read() == b"2"


# An existing django-storages bucket, switched over


def test_django_storages_bucket_is_served_as_it_is(
    django_apps: dict[str, Any],
    s3_server: S3Server,
    s3_bucket: str,
    make_settings: Callable[..., Settings],
    serve: Callable[..., str],
) -> None:
    """Files saved by django-storages itself (AWS_LOCATION never set, one storage with
    location='avatars'), then the class switched to GatewayS3Storage: the same keys are
    read, linked through the gateway and served; switching back finds them all."""
    server = {
        "bucket_name": s3_bucket,
        "endpoint_url": s3_server.endpoint_url,
        "access_key": s3_server.access_key,
        "secret_key": s3_server.secret_key,
    }
    with never_set("AWS_LOCATION"):
        name = S3Storage(**server).save("documents/caf\u00e9.txt", ContentFile(REPORT))
        avatar = S3Storage(location="avatars", **server).save("u1.jpg", ContentFile(b"jpg"))
        with contextlib.closing(s3_server.client()) as s3:
            listed = s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
        keys = {item["Key"] for item in listed}
        assert keys == {name, f"avatars/{avatar}"}

        documents = GatewayS3Storage(**server)
        avatars = GatewayS3Storage(location="avatars", **server)
        with documents.open(name) as opened:
            assert opened.read() == REPORT
        settings = make_settings(
            secret_keys=(DJANGO_KEY,),
            use_s3=True,
            aws_location=gateway_settings().aws_location,  # the default: the root
            aws_storage_bucket_name=s3_bucket,
            aws_s3_endpoint_url=s3_server.endpoint_url,
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
        )
        assert settings.aws_location == ""
        with httpx.Client(
            base_url=serve(MediaGateway(django_apps["asgi"], settings=settings))
        ) as c:
            for url, body in ((documents.url(name), REPORT), (avatars.url(avatar), b"jpg")):
                assert url.startswith("/media/")
                redirect = c.get(url)
                assert redirect.status_code == 302, redirect.text
                assert httpx.get(redirect.headers["location"]).content == body
        # Rollback: the class switched back reads the same keys; nothing moved.
        with S3Storage(**server).open(f"{name}") as opened:
            assert opened.read() == REPORT
        with contextlib.closing(s3_server.client()) as s3:
            after = {item["Key"] for item in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
        assert after == keys


@pytest.mark.parametrize("phase", ["migrating", "s3"])
def test_phase_storage_name_search_is_bounded(
    django_apps: dict[str, Any],
    always_there: ThreadingHTTPServer,
    media_root: Path,
    phase: str,
) -> None:
    """GatewayStorage asks both sides in its own search: bounded the same way, nothing
    written to either side."""
    endpoint = f"http://127.0.0.1:{always_there.server_address[1]}"
    switches = {"USE_S3": True, "GATEWAY_LOCAL_FALLBACK": phase == "migrating"}
    place = {"AWS_STORAGE_BUCKET_NAME": "bucket", "AWS_S3_ENDPOINT_URL": endpoint}
    with override_settings(MEDIA_ROOT=str(media_root), **switches, **place):
        storage = GatewayStorage(access_key="AKIAFAKE", secret_key="x")
        with pytest.raises(FileExistsError, match=f"{MAX_NAME_PROBES} names in a row"):
            storage.save("documents/a.jpg", ContentFile(b"data"))
    assert always_there.heads == MAX_NAME_PROBES  # type: ignore[attr-defined]
    assert always_there.puts == 0  # type: ignore[attr-defined]
    assert list(media_root.rglob("*")) == []
