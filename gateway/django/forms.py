"""A form field for direct uploads: the browser sends the file to S3 (or to the gateway
in local mode), and the form gets only a signed receipt.

::

    class AvatarForm(forms.Form):
        avatar = DirectUploadField(prefix="avatars/", max_bytes=5_000_000,
                                   content_types=["image/*"])

    form = AvatarForm(request.POST)
    if form.is_valid():
        profile.avatar.name = form.cleaned_data["avatar"]  # a storage name

The widget renders a file input without a name (the bytes never reach the app), a
progress bar and a hidden input for the receipt; its script
(``media_gateway/direct-upload.js``, in ``form.media``) asks the gateway's upload
endpoint for a URL, PUTs the file and fills the hidden input. Cleaning checks the
receipt: signed by the gateway for this field's prefix, and the file in storage.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from ..exceptions import NotFound, RequestError, SignatureExpired
from ..receipts import ReceiptChecker
from ..settings import Settings
from ..uploads import UploadSigner, content_type_allowed
from . import gateway_settings

__all__ = ["DirectUploadField", "DirectUploadWidget"]


class DirectUploadWidget(forms.Widget):
    """A file input, a progress bar and the hidden receipt; see the module."""

    class Media:
        js = ("media_gateway/direct-upload.js",)

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        #: The field whose ticket the widget renders; set by :class:`DirectUploadField`.
        self.field: DirectUploadField | None = None

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> str:
        settings = gateway_settings()
        token = self.field.ticket(settings) if self.field is not None else ""
        final = self.build_attrs(self.attrs, attrs)
        accept = ",".join(self.field.content_types) if self.field is not None else "*/*"
        html: str = format_html(
            '<div data-direct-upload data-endpoint="{}" data-token="{}">'
            '<input type="file" id="{}" accept="{}">'
            '<progress value="0" max="1" hidden></progress> <span data-status></span>'
            '<input type="hidden" name="{}" value="{}"></div>',
            settings.upload_path,
            token,
            final.get("id", ""),
            accept,
            name,
            value or "",
        )
        return html

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        return data.get(name)


class DirectUploadField(forms.Field):
    """A file uploaded straight to storage; the cleaned value is its storage name.

    :param prefix: where the server puts the file (``avatars/``); may be changed per
        form instance (``form.fields["avatar"].prefix = f"users/{user.pk}/"``).
    :param max_bytes: the size cap, enforced by the gateway and by S3's signature.
    :param content_types: allowed types, ``image/*`` patterns included.
    :param expires_in: seconds the rendered form may wait before the upload starts.
    """

    widget = DirectUploadWidget
    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "The upload receipt is not valid; upload the file again.",
        "expired": "The upload expired; upload the file again.",
        "missing": "The uploaded file was not found; upload it again.",
    }

    def __init__(
        self,
        *,
        prefix: str,
        max_bytes: int,
        content_types: Sequence[str] = ("*/*",),
        expires_in: int = 600,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.content_types = tuple(content_types)
        self.expires_in = expires_in
        # Checked now, so a bad prefix fails where the form is declared.
        UploadSigner(secret_keys=("x" * 16,)).sign_ticket(
            prefix, max_bytes=max_bytes, content_types=self.content_types, expires_in=expires_in
        )
        assert isinstance(self.widget, DirectUploadWidget)
        self.widget.field = self

    def __deepcopy__(self, memo: dict[int, Any]) -> DirectUploadField:
        # Each form instance gets its own copy of the field; its widget must render that
        # copy's prefix, not the class-level field's.
        result: DirectUploadField = super().__deepcopy__(memo)
        result.widget = copy.deepcopy(self.widget, memo)
        assert isinstance(result.widget, DirectUploadWidget)
        result.widget.field = result
        return result

    def ticket(self, settings: Settings) -> str:
        """A fresh upload ticket for this field, signed with the gateway's keys."""
        return UploadSigner(secret_keys=settings.secret_keys).sign_ticket(
            self.prefix,
            max_bytes=self.max_bytes,
            content_types=self.content_types,
            expires_in=self.expires_in,
        )

    def to_python(self, value: Any) -> str | None:
        return value or None

    def clean(self, value: Any) -> str | None:
        receipt = self.to_python(value)
        self.validate(receipt)  # required
        if receipt is None:
            return None
        try:
            found = _checker(gateway_settings()).verify(receipt, prefix=self.prefix)
        except SignatureExpired:
            raise ValidationError(self.error_messages["expired"], code="expired") from None
        except NotFound:
            raise ValidationError(self.error_messages["missing"], code="missing") from None
        except RequestError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        # The receipt proves its prefix, not this field's rules: another field (or a
        # wider ticket) under the same prefix may have allowed any type or size.
        patterns = [t.strip().lower() for t in self.content_types]  # as the ticket has them
        if found.size > self.max_bytes or not content_type_allowed(found.content_type, patterns):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        self.run_validators(found.name)
        return found.name


_checkers: list[tuple[Settings, ReceiptChecker]] = []


def _checker(settings: Settings) -> ReceiptChecker:
    # One per settings object (Django's override_settings makes new ones), so its S3
    # client is made once; Settings hold a dict and cannot be a dictionary key.
    for known, checker in _checkers:
        if known is settings:
            return checker
    checker = ReceiptChecker(settings)
    _checkers[:] = [(settings, checker)]
    return checker
