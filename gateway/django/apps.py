"""``INSTALLED_APPS += ["gateway.django"]``: the template tags and a start-up check."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import gateway_settings


class MediaGatewayConfig(AppConfig):
    """Makes ``{% load media_gateway %}`` available and checks the gateway's settings."""

    name = "gateway.django"
    # The default label is the last part of the name, "django": it would read as Django
    # itself in check ids and migrations.
    label = "media_gateway"
    verbose_name = "Media gateway"

    def ready(self) -> None:
        checks.register(check_settings)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A system check: a missing or short GATEWAY_SECRET_KEY or an absolute MEDIA_URL
    stops ``runserver``, ``migrate`` and ``check`` rather than the first page with a link."""
    try:
        gateway_settings()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="media_gateway.E001")]
    return []
