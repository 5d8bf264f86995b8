"""Settings of the test Django project: production-like (DEBUG off), nothing external."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "django-insecure-test-only-0123456789abcdefghijklmnopqrstuvwxyz"
# Off, as in production: errors render Django's terse pages and the 404 page is the
# one a real deployment would show for a path the gateway passed through.
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    # {% load media_gateway %} and the check of the gateway's settings.
    "gateway.django",
    "tests.djangoproject.docs",
]

MIDDLEWARE = [
    # Outermost, so even Django's own error responses (CSRF 403, 404) carry the marker.
    "tests.djangoproject.middleware.served_by_django",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "tests.djangoproject.urls"
WSGI_APPLICATION = "tests.djangoproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

# A file, not ":memory:": requests run in server threads, and every thread would get
# its own empty in-memory database. The tests point this at a per-session temp file.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "DJANGO_TEST_DB",
            os.path.join(tempfile.gettempdir(), f"media-gateway-django-{os.getpid()}.sqlite3"),
        ),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sessions in signed cookies need no table; the auth tables still come from migrate.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

USE_TZ = True
TIME_ZONE = "UTC"

# The gateway answers this prefix in front of Django; Django only builds links to it.
MEDIA_URL = "/media/"
# Signs the media links Django renders; the gateway in front must verify with it.
GATEWAY_SECRET_KEY = "django-project-gateway-key-0123456789"
# As in the gateway in front: PublicMediaStorage's files are linked without a signature.
GATEWAY_PUBLIC_PREFIXES = ["public"]
# The seed guide's layout, keys under media/ (unset would be the bucket's root).
AWS_LOCATION = "media"
