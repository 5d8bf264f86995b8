"""A pytest plugin that runs django-storages' own ``tests/test_s3.py`` against our storage.

Loaded by ``tests/django/test_dropin.py`` in a pytest of its own, inside the unpacked sdist
of the installed django-storages (``-p storages_shim``, with this folder on ``PYTHONPATH``;
it is imported as a top-level module because the sdist brings its own ``tests`` package).
Their tests build ``s3.S3Storage()``; the plugin puts ``GatewayS3Storage`` (or the class
named by ``DROPIN_STORAGE``) under that name before their module is imported, so every
test they wrote for django-storages runs against ours. Their S3StaticStorage and
S3ManifestStaticStorage stay theirs: we ship no static storage.

``DROPIN_REPORT`` names the JSON file where each test's outcome is written:
``{test id: {"outcome": "passed" | "failed" | "skipped", "error": "<last line>"}}``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import django
import pytest

_outcomes: dict[str, dict[str, str]] = {}


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")  # the sdist's own
    django.setup()
    import importlib

    from storages.backends import s3

    module, _, name = os.environ.get(
        "DROPIN_STORAGE", "gateway.django.storage:GatewayS3Storage"
    ).partition(":")
    s3.S3Storage = getattr(importlib.import_module(module), name)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # A failure in setup or teardown fails the test as much as one in its body.
    if report.when == "call" or report.outcome != "passed":
        entry: dict[str, Any] = {"outcome": report.outcome}
        if report.failed:
            entry["error"] = str(report.longrepr).strip().splitlines()[-1]
        _outcomes[report.nodeid.split("::", 1)[1]] = entry


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("DROPIN_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump(_outcomes, out, indent=1, sort_keys=True)
