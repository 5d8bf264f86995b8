"""uvicorn factories for the pass-through benchmark: the test suite's Django project,
bare and wrapped by the gateway."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.types import ASGIApp

from gateway import MediaGateway, Settings


def _django() -> ASGIApp:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproject.settings")
    from tests.djangoproject.asgi import application

    return application  # type: ignore[no-any-return]


def django_bare() -> ASGIApp:
    """The Django project alone."""
    return _django()


def django_gateway() -> ASGIApp:
    """The same project behind the gateway, as deployed: every non-media request
    passes through the middleware first."""
    settings = Settings(
        secret_keys=(os.environ["BENCH_SECRET"],), media_root=Path(os.environ["BENCH_MEDIA"])
    )
    return MediaGateway(_django(), settings=settings)
