"""A Wagtail site laid out as ``wagtail start`` makes one: settings/base.py + dev.py,
wsgi.py and no asgi.py. Only the lines the README tells a Wagtail user to add differ
from the template; they are marked "media-gateway"."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

INSTALLED_APPS = [
    "tests.wagtailsite.home",
    "wagtail.images",
    "wagtail.documents",
    "wagtail.users",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django_filters",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # media-gateway: {% load media_gateway %} and the start-up check of its settings.
    "gateway.django",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.wagtailsite.urls"
WSGI_APPLICATION = "tests.wagtailsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("WAGTAIL_TEST_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "/static/"
WAGTAIL_SITE_NAME = "media-gateway test site"
WAGTAILADMIN_BASE_URL = "http://127.0.0.1"

# media-gateway: the gateway in front answers /media/; the storage follows USE_S3 and
# GATEWAY_LOCAL_FALLBACK (from the environment, as the gateway reads them) through the
# three phases of the migration. MEDIA_ROOT is where the files are in the local phase.
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("MEDIA_ROOT", str(BASE_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "gateway.django.storage.GatewayStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# media-gateway: what both the storage's writes and `manage.py media_gateway upload` set.
AWS_S3_OBJECT_PARAMETERS = {"CacheControl": "max-age=86400"}
