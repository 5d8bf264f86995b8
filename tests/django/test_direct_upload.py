"""gateway.django.forms: DirectUploadField and its widget, with the real gateway's upload
endpoint under uvicorn and the ticket the widget renders (issue 16, 4)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from django import forms
from django.conf import settings as django_settings
from django.test import override_settings

from gateway import MediaGateway, Settings
from gateway.django.forms import DirectUploadField, DirectUploadWidget
from gateway.uploads import UploadSigner
from tests.django.test_django import django_apps

__all__ = ["django_apps"]  # a fixture

SCRIPT = Path(__file__).parents[2] / "gateway/django/static/media_gateway/direct-upload.js"


class AvatarForm(forms.Form):
    avatar = DirectUploadField(prefix="avatars/", max_bytes=1000, content_types=["image/*"])


@pytest.fixture
def django_media(django_apps: dict[str, Any], media_root: Path) -> Iterator[Path]:
    with override_settings(MEDIA_ROOT=str(media_root)):
        yield media_root


@pytest.fixture
def endpoint(
    django_media: Path, make_settings: Callable[..., Settings], serve: Callable[..., str]
) -> str:
    """The upload endpoint of a gateway verifying with the Django project's key."""
    settings = make_settings(secret_keys=(django_settings.GATEWAY_SECRET_KEY,))
    return serve(MediaGateway(settings=settings)) + settings.upload_path


def rendered(form: forms.Form) -> dict[str, str]:
    markup = str(form["avatar"])
    found = re.search(r'data-endpoint="([^"]*)" data-token="([^"]*)"', markup)
    assert found is not None, markup
    return {"markup": markup, "endpoint": found[1], "token": html.unescape(found[2])}


def browser_upload(
    endpoint: str, token: str, data: bytes, name: str = "me.png", ctype: str = "image/png"
) -> str:
    """What direct-upload.js does: ask, PUT, keep the receipt."""
    plan = httpx.post(
        endpoint,
        json={"token": token, "filename": name, "size": len(data), "content_type": ctype},
    )
    assert plan.status_code == 200, plan.text
    answer = plan.json()
    put = httpx.put(urljoin(endpoint, answer["url"]), content=data, headers=answer["headers"])
    assert put.status_code == 201, put.text
    receipt: str = answer["receipt"]
    return receipt


def test_widget_renders_a_ticket_and_no_file_field(django_media: Path) -> None:
    """The file input has no name (the bytes never reach the app), the hidden input
    carries the field's name, the script comes with form.media, and the ticket is one
    of the gateway's for the field's prefix, size and types."""
    form = AvatarForm()
    page = rendered(form)
    assert page["endpoint"] == "/media-uploads/"
    assert '<input type="file" id="id_avatar" accept="image/*">' in page["markup"]
    assert '<input type="hidden" name="avatar" value="">' in page["markup"]
    assert "media_gateway/direct-upload.js" in str(form.media)
    assert SCRIPT.is_file() and "XMLHttpRequest" in SCRIPT.read_text()
    ticket = UploadSigner(secret_keys=(django_settings.GATEWAY_SECRET_KEY,)).open_ticket(
        page["token"]
    )
    assert (ticket.prefix, ticket.max_bytes, ticket.content_types) == (
        "avatars/",
        1000,
        ("image/*",),
    )


def test_a_form_instance_renders_its_own_prefix(django_media: Path) -> None:
    """A per-user prefix set on one form instance is the one its ticket names; the
    class's field and other instances keep theirs."""
    signer = UploadSigner(secret_keys=(django_settings.GATEWAY_SECRET_KEY,))
    mine = AvatarForm()
    mine.fields["avatar"].prefix = "users/7/"
    other = AvatarForm()
    assert signer.open_ticket(rendered(mine)["token"]).prefix == "users/7/"
    assert signer.open_ticket(rendered(other)["token"]).prefix == "avatars/"


def test_upload_then_submit_the_form(endpoint: str, django_media: Path) -> None:
    """The receipt the browser got cleans to the storage name of the uploaded file."""
    receipt = browser_upload(endpoint, rendered(AvatarForm())["token"], b"\x89PNG data")
    form = AvatarForm({"avatar": receipt})
    assert form.is_valid(), form.errors
    name = form.cleaned_data["avatar"]
    assert name.startswith("avatars/") and name.endswith("-me.png")
    assert (django_media / name).read_bytes() == b"\x89PNG data"


def test_forged_foreign_and_missing_receipts_are_form_errors(
    endpoint: str, django_media: Path
) -> None:
    """A tampered receipt, one for another prefix, one whose file is gone, and none at
    all: a validation error each, never an exception."""
    receipt = browser_upload(endpoint, rendered(AvatarForm())["token"], b"data")

    class DocumentForm(forms.Form):
        avatar = DirectUploadField(prefix="documents/", max_bytes=1000)

    tampered = receipt[:5] + ("A" if receipt[5] != "A" else "B") + receipt[6:]
    cases: list[tuple[type[forms.Form], str, str]] = [
        (AvatarForm, tampered, "not valid"),
        (DocumentForm, receipt, "not valid"),
        (AvatarForm, "", "required"),
    ]
    for form_class, value, message in cases:
        form = form_class({"avatar": value})
        assert not form.is_valid()
        assert message in str(form.errors["avatar"]), form.errors
    for stored in django_media.rglob("*-me.png"):
        stored.unlink()
    form = AvatarForm({"avatar": receipt})
    assert not form.is_valid()
    assert "not found" in str(form.errors["avatar"])


def test_a_receipt_from_a_wider_field_of_the_same_prefix_is_refused(
    endpoint: str, django_media: Path
) -> None:
    """A receipt names its prefix, not the ticket's types or cap: one from a field that
    takes any file under ``avatars/`` (an HTML page, 5,000 bytes) once cleaned in the
    image field of 1,000 bytes under the same prefix. The field checks its own rules."""

    class AttachmentForm(forms.Form):
        avatar = DirectUploadField(prefix="avatars/", max_bytes=10_000)

    token = rendered(AttachmentForm())["token"]
    page = browser_upload(endpoint, token, b"<script>1</script>", "x.html", "text/html")
    big = browser_upload(endpoint, token, b"\x89PNG" + b"." * 4995, "big.png")
    for receipt in (page, big):
        assert AttachmentForm({"avatar": receipt}).is_valid()
        form = AvatarForm({"avatar": receipt})
        assert not form.is_valid()
        assert "not valid" in str(form.errors["avatar"]), form.errors


def test_a_bad_prefix_fails_where_the_form_is_declared() -> None:
    with pytest.raises(ValueError, match="prefix"):
        DirectUploadField(prefix="../up/", max_bytes=10)
    assert isinstance(DirectUploadField(prefix="a/", max_bytes=1).widget, DirectUploadWidget)
