from __future__ import annotations

from django.conf import settings
from django.db import models

from gateway.django.storage import media_storage, public_media_storage


class Document(models.Model):
    """A private file with an owner, and an optional public thumbnail."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents"
    )
    # Callables: the storage follows USE_S3, and migrations record the function.
    file = models.FileField(upload_to="documents/", storage=media_storage)
    thumbnail = models.FileField(upload_to="thumbnails/", storage=public_media_storage, blank=True)
