"""Direct uploads: the tickets, grants and receipts, and the server-chosen key.

The app signs a *ticket* (:meth:`UploadSigner.sign_ticket`, ``gateway.sign_upload``): a
prefix the browser may upload under, a size cap and the allowed types. The browser
trades it at the gateway's upload endpoint for a URL to PUT the file to, and a
*receipt* naming the key the server chose; the app's form then takes the receipt
(``gateway.verify_receipt``) instead of the bytes.

Every token is an itsdangerous-signed JSON object with its own salt, so a ticket is
never a receipt, nor either of them a media link; the keys rotate as links do (the last
signs, every one verifies). Nothing here talks to S3 or to a disk: :mod:`.receipts`
checks that a receipt's file exists, :mod:`gateway.serving.uploads` answers the browser.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from itsdangerous import BadData, URLSafeSerializer

from .exceptions import (
    BadRequest,
    BadSignature,
    PayloadTooLarge,
    SignatureExpired,
    UnsupportedMediaType,
)
from .paths import validate_relpath

__all__ = [
    "Grant",
    "Receipt",
    "Ticket",
    "UploadSigner",
    "UploadedFile",
    "content_type_allowed",
    "safe_name",
]

# One salt per kind of token: a ticket presented as a receipt (or a PUT grant, or the
# completion of a multipart upload) fails its signature.
SALTS = {
    "ticket": "media-gateway.upload-ticket.v1",
    "put": "media-gateway.upload-put.v1",
    "complete": "media-gateway.upload-complete.v1",
    "receipt": "media-gateway.upload-receipt.v1",
}
# A receipt outlives its ticket by a day: a user may fill in the rest of a form long
# after the file went up, and the receipt only ever names that one file.
RECEIPT_GRACE = 24 * 3600
# The longest a ticket may live: SigV4 presigned URLs live at most seven days.
MAX_TICKET_TTL = 7 * 24 * 3600
# A stored name longer than this is cut (its extension kept): keys stay far below S3's
# 1,024 bytes and NAME_MAX whatever the prefix.
MAX_NAME_CHARS = 100
# ... and its UTF-8 no longer than this: 100 CJK characters are 300 bytes, which with the
# 21 of the random id passed NAME_MAX (255), and the plan answered 404 for a real name.
MAX_NAME_BYTES = 200
# A declared MIME type: type/subtype of token characters, no parameters; what the
# browser sends as Content-Type, and what S3 stores.
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*", re.ASCII)
_PATTERN = re.compile(r"\*/\*|[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)")
# What a stored file name may keep: letters and digits of any script, and . _ - space.
_UNSAFE = re.compile(r"[^\w. -]+")


class UploadedFile(NamedTuple):
    """A file a browser uploaded directly, as its receipt proves: the storage name to
    give a ``FileField``, its size in bytes and its Content-Type."""

    name: str
    size: int
    content_type: str


class Ticket(NamedTuple):
    """What the app allows: files under ``prefix``, at most ``max_bytes``, of a type
    matching one of ``content_types``, until ``expires`` (Unix time)."""

    prefix: str
    max_bytes: int
    content_types: tuple[str, ...]
    expires: int


class Grant(NamedTuple):
    """One upload the gateway agreed to: the relative path, the exact size and type, and
    when the right to send it (a PUT, or the parts and completion) ends."""

    relpath: str
    size: int
    content_type: str
    expires: int
    #: The ticket's prefix, carried into the receipt so a form can insist on it.
    prefix: str
    #: The S3 multipart upload this grant completes; None for a single PUT.
    upload_id: str | None = None


class Receipt(NamedTuple):
    relpath: str
    size: int
    content_type: str
    prefix: str
    expires: int


class UploadSigner:
    """Sign and open the tokens of direct uploads.

    :param secret_keys: the gateway's keys; the last one signs, every one verifies.
    :param clock: returns the current Unix time; injected for tests.
    """

    def __init__(
        self, *, secret_keys: Sequence[str], clock: Callable[[], float] = time.time
    ) -> None:
        signer = {"digest_method": hashlib.sha256, "key_derivation": "hmac"}
        self._serializers = {
            kind: URLSafeSerializer(list(secret_keys), salt=salt, signer_kwargs=signer)
            for kind, salt in SALTS.items()
        }
        self.clock = clock

    def sign_ticket(
        self,
        prefix: str,
        *,
        max_bytes: int,
        content_types: Sequence[str] = ("*/*",),
        expires_in: int = 600,
    ) -> str:
        """A ticket for uploads under ``prefix`` (``avatars/42/``); see the module."""
        cleaned = prefix.rstrip("/")
        try:
            validate_relpath(cleaned)
        except Exception:
            raise ValueError(f"prefix must be a relative directory, not {prefix!r}") from None
        if not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer, not {max_bytes!r}")
        if isinstance(content_types, str):
            content_types = (content_types,)
        types = tuple(t.strip().lower() for t in content_types)
        if not types or not all(_PATTERN.fullmatch(t) for t in types):
            raise ValueError(
                f"content_types must be MIME types or patterns like image/*, not {content_types!r}"
            )
        if not isinstance(expires_in, int) or not 0 < expires_in <= MAX_TICKET_TTL:
            raise ValueError(f"expires_in must be 1 to {MAX_TICKET_TTL} seconds")
        expires = int(self.clock()) + expires_in
        return self._dump("ticket", [cleaned + "/", max_bytes, list(types), expires])

    def open_ticket(self, token: object) -> Ticket:
        """The ticket in ``token``; :class:`BadSignature` or :class:`SignatureExpired`."""
        prefix, max_bytes, types, expires = self._load("ticket", token, 4)
        ticket = Ticket(str(prefix), int(max_bytes), tuple(map(str, types)), int(expires))
        self._check_expiry(ticket.expires, "Upload ticket expired")
        return ticket

    def grant(self, ticket: Ticket, filename: object, size: object, content_type: object) -> Grant:
        """Check what the browser declares against ``ticket`` and choose the key: the
        ticket's prefix, a random id, and the file name made safe. Raises
        :class:`BadRequest` (400), :class:`PayloadTooLarge` (413) or
        :class:`UnsupportedMediaType` (415)."""
        if not isinstance(filename, str) or not filename or len(filename) > 1024:
            raise BadRequest("filename: expected a non-empty string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest("size: expected a number of bytes")
        if not isinstance(content_type, str) or not _MIME.fullmatch(content_type.lower()):
            raise BadRequest("content_type: expected a MIME type like image/png")
        if size > ticket.max_bytes:
            raise PayloadTooLarge(f"Upload too large: at most {ticket.max_bytes} bytes")
        content_type = content_type.lower()
        if not content_type_allowed(content_type, ticket.content_types):
            raise UnsupportedMediaType(f"Upload type not allowed: {content_type}")
        # 80 random bits: two uploads of one name never meet, and nobody guesses a key.
        relpath = f"{ticket.prefix}{secrets.token_hex(10)}-{safe_name(filename)}"
        validate_relpath(relpath)
        return Grant(relpath, size, content_type, ticket.expires, ticket.prefix)

    def sign_grant(self, kind: str, grant: Grant) -> str:
        """A PUT grant (``put``) or the completion of a multipart upload (``complete``)."""
        return self._dump(kind, list(grant))

    def open_grant(self, kind: str, token: object) -> Grant:
        relpath, size, content_type, expires, prefix, upload_id = self._load(kind, token, 6)
        grant = Grant(str(relpath), int(size), str(content_type), int(expires), str(prefix))
        grant = grant._replace(upload_id=None if upload_id is None else str(upload_id))
        self._check_expiry(grant.expires, "Upload URL expired")
        return grant

    def sign_receipt(self, grant: Grant) -> str:
        expires = grant.expires + RECEIPT_GRACE
        return self._dump(
            "receipt", [grant.relpath, grant.size, grant.content_type, grant.prefix, expires]
        )

    def open_receipt(self, token: object, *, prefix: str | None = None) -> Receipt:
        """The receipt in ``token``, which must name a file under ``prefix`` when given
        (a receipt for someone else's prefix is refused as foreign)."""
        try:
            relpath, size, content_type, signed_prefix, expires = self._load("receipt", token, 5)
        except BadSignature:
            raise BadSignature("Upload receipt is not valid: altered, or not one of ours") from None
        receipt = Receipt(str(relpath), int(size), str(content_type), str(signed_prefix), expires)
        if prefix is not None and receipt.prefix != prefix.strip("/") + "/":
            raise BadSignature("Upload receipt is for another upload prefix")
        self._check_expiry(int(receipt.expires), "Upload receipt expired")
        return receipt

    def _dump(self, kind: str, value: list[Any]) -> str:
        return str(self._serializers[kind].dumps(value))

    def _load(self, kind: str, token: object, fields: int) -> list[Any]:
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise BadSignature("Invalid upload token")
        try:
            value = self._serializers[kind].loads(token)
        except BadData:
            raise BadSignature("Invalid upload token") from None
        if not isinstance(value, list) or len(value) != fields:
            raise BadSignature("Invalid upload token")  # signed by us, but not this kind
        return value

    def _check_expiry(self, expires: int, message: str) -> None:
        if expires < self.clock():
            raise SignatureExpired(message)


def content_type_allowed(content_type: str, patterns: Sequence[str]) -> bool:
    """True when ``content_type`` matches a pattern: ``*/*``, ``image/*`` or exact."""
    major = content_type.partition("/")[0]
    return any(
        p == "*/*" or p == content_type or (p.endswith("/*") and p[:-2] == major) for p in patterns
    )


def safe_name(filename: str) -> str:
    """The last segment of a browser's ``filename``, made safe to store: NFC, no
    directory, no control or format characters, nothing but letters, digits and
    ``. _ -`` and spaces, no leading dot, at most :data:`MAX_NAME_CHARS` characters
    and :data:`MAX_NAME_BYTES` bytes of UTF-8."""
    name = unicodedata.normalize("NFC", filename)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] not in "CZ" or c == " ")
    name = _UNSAFE.sub("_", name).strip(" .")
    if len(name) > MAX_NAME_CHARS or len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, extension = name.rpartition(".")
        if not (dot and 0 < len(extension) <= 16):
            stem, extension = name, ""
        suffix = "." + extension if extension else ""
        stem = stem[: MAX_NAME_CHARS - len(suffix)]
        while len((stem + suffix).encode()) > MAX_NAME_BYTES:
            stem = stem[:-1]
        name = (stem.rstrip(" .") or "file") + suffix
    return name or "file"
