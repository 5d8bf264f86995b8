"""WSGI entry point, as ``wagtail start`` writes it (Wagtail's template has no asgi.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.wagtailsite.settings.dev")

application = get_wsgi_application()
