"""Check an upload receipt against the storage: the file must be there, with its size.

A receipt's signature proves the gateway chose its key for this upload; it does not
prove the browser sent the bytes. So the file is looked for where the upload went: a
stat under ``MEDIA_ROOT`` (local mode and the migrating phase, where the gateway wrote
it to disk) and a HEAD in the bucket (S3 mode and the migrating phase). A receipt for a
file that never arrived, or arrived with another size, is refused.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .exceptions import NotFound
from .settings import Settings
from .uploads import UploadedFile, UploadSigner

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["ReceiptChecker"]


class ReceiptChecker:
    """Verify receipts for one gateway's settings.

    :param head: returns ``(size, content_type)`` of an S3 key, or None when there is
        none; defaults to a HEAD with a boto3 client made on first use. Injected for tests.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        head: Callable[[str], tuple[int, str] | None] | None = None,
    ) -> None:
        self.settings = settings
        self.signer = UploadSigner(secret_keys=settings.secret_keys, clock=clock)
        self._head = head
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    def verify(self, receipt: object, *, prefix: str | None = None) -> UploadedFile:
        """The file ``receipt`` names. Raises :class:`~gateway.BadSignature` for an altered
        or foreign receipt (or one for another ``prefix``), :class:`~gateway.SignatureExpired`
        for an old one, and :class:`~gateway.NotFound` when the file is not there with
        the size the receipt promised."""
        found = self.signer.open_receipt(receipt, prefix=prefix)
        settings = self.settings
        if not settings.use_s3 or settings.local_fallback:
            root = os.path.realpath(settings.media_root)
            try:
                st = os.stat(f"{root}/{found.relpath}", follow_symlinks=False)
            except OSError:
                raise NotFound("Uploaded file not found") from None
            if not stat.S_ISREG(st.st_mode) or st.st_size != found.size:
                raise NotFound("Uploaded file not found with the size of its receipt")
        if settings.use_s3:
            head = self._head or self._head_object
            answer = head(settings.key_for(found.relpath))
            if answer is None:
                raise NotFound("Uploaded file not found in the bucket")
            if answer[0] != found.size:
                raise NotFound("Uploaded file has another size than its receipt")
        return UploadedFile(found.relpath, found.size, found.content_type)

    def _head_object(self, key: str) -> tuple[int, str] | None:
        from botocore.exceptions import ClientError

        with self._lock:
            if self._client is None:
                from .s3 import make_s3_client

                self._client = make_s3_client(self.settings)
            client = self._client
        try:
            reply: Any = client.head_object(
                Bucket=str(self.settings.aws_storage_bucket_name), Key=key
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (403, 404):
                return None
            raise
        return int(reply["ContentLength"]), str(reply.get("ContentType", ""))
