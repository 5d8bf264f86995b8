"""django-storages' own test suite against GatewayS3Storage (issue 19, point 5).

The sdist of the installed django-storages is downloaded once (``pip download``, kept
under the venv's ``cache/``), unpacked per run, and its ``tests/test_s3.py`` run in a
pytest of its own with ``tests/django/storages_shim.py`` putting our class under the
name their tests build. Nothing of theirs is copied into this repository.

Every test of theirs must pass except those whose assertion is exactly "url() returns
an S3 presigned URL": each is listed in ``URL_DIFFERENCES`` with the reason, and
``test_what_url_returns_instead`` asserts what our url() returns for the same calls.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.signers
import pytest

from tests.django import test_django, test_django_integration
from tests.django.test_django_integration import s3_storage

django_apps = test_django.django_apps
verify = test_django_integration.verify

# The venv's, so that a fresh `make install` starts a fresh cache.
CACHE = Path(sys.prefix) / "cache" / "django-storages"
# Bounds on the download and on a run of their suite (about 10 s here); a hang fails.
DOWNLOAD_TIMEOUT = 300
SUITE_TIMEOUT = 300

#: Their tests that assert exactly "url() returns an S3 presigned URL", and why ours differ.
URL_DIFFERENCES = {
    "S3StorageTests::test_storage_url": (
        "asserts that url(name), url(name, expire=123) and url(name, http_method='HEAD')"
        " return boto3's generate_presigned_url('get_object', ...). These are reads that"
        " django-storages presigns, and reads are what GatewayS3Storage links through the"
        " gateway: a signed gateway URL, made without boto3."
    ),
}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked sdist of the installed django-storages."""
    version = importlib.metadata.version("django-storages")
    found = sorted(CACHE.glob(f"django[-_]storages-{version}.tar.gz"))
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        # Into a temporary folder, then moved: an interrupted download leaves no archive.
        with tempfile.TemporaryDirectory(dir=CACHE) as partial:
            pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:"]
            subprocess.run(
                [*pip, "--no-deps", f"django-storages=={version}", "--dest", partial],
                check=True,
                timeout=DOWNLOAD_TIMEOUT,
            )
            (archive,) = Path(partial).glob("*.tar.gz")
            os.replace(archive, CACHE / archive.name)
        found = [CACHE / archive.name]
    target = tmp_path_factory.mktemp("django-storages")
    with tarfile.open(found[0]) as tar:
        tar.extractall(target, filter="data")
    (root,) = target.iterdir()
    return root


def run_suite(sdist: Path, storage: str, *selection: str) -> dict[str, dict[str, str]]:
    """Run their test_s3.py (or ``selection``) with ``storage`` as s3.S3Storage."""
    report = sdist / "outcomes.json"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent),  # storages_shim, and not our tests/
        "DJANGO_SETTINGS_MODULE": "tests.settings",  # the sdist's own settings
        "GATEWAY_SECRET_KEY": "django-storages-suite-key-0123456789",
        "DROPIN_STORAGE": storage,
        "DROPIN_REPORT": str(report),
    }
    command = [sys.executable, "-m", "pytest", "-p", "storages_shim", "-p", "no:cacheprovider"]
    subprocess.run(
        [*command, "-q", *(selection or ["tests/test_s3.py"])],
        cwd=sdist,
        env=env,
        capture_output=True,
        timeout=SUITE_TIMEOUT,
    )
    outcomes: dict[str, dict[str, str]] = json.loads(report.read_text())
    return outcomes


def test_django_storages_suite_passes(sdist: Path) -> None:
    """Their whole test_s3.py against GatewayS3Storage: every test passes but the
    listed url() differences (a skip would count as a failure)."""
    outcomes = run_suite(sdist, "gateway.django.storage:GatewayS3Storage")
    not_passed = {test: entry for test, entry in outcomes.items() if entry["outcome"] != "passed"}
    assert set(not_passed) == set(URL_DIFFERENCES), not_passed
    assert sum(entry["outcome"] == "passed" for entry in outcomes.values()) >= 60


def test_what_url_returns_instead(
    django_apps: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """For the calls of test_storage_url: signed gateway URLs, for GET and HEAD alike
    (the gateway answers both on one URL), expiring as asked, and no boto3 presign."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("boto3 presigned")

    monkeypatch.setattr(botocore.signers.RequestSigner, "generate_presigned_url", boom)
    storage = s3_storage(bucket_name="test-bucket")
    name = "test_storage_size.txt"
    plain = storage.url(name)
    assert verify(plain) == (name, False)
    assert storage.url(name, http_method="HEAD") == plain
    start = time.time()
    short = storage.url(name, expire=123)
    assert verify(short) == (name, False)
    expires = int(parse_qs(urlsplit(short).query)["exp"][0])
    # Rounded up to a tenth of the lifetime at most (signing.rounding_window).
    assert start + 123 <= expires <= math.ceil(start + 123 + 13)


def test_media_storage_ends_their_test_content_type(sdist: Path) -> None:
    """Their test_content_type against MediaStorage (file_overwrite=False) once hung until
    killed: their mocked S3 says every name exists, and Django asked for a free one
    forever. It now ends with FileExistsError after MAX_NAME_PROBES names."""
    test = "S3StorageTests::test_content_type"
    outcomes = run_suite(sdist, "gateway.django.storage:MediaStorage", f"tests/test_s3.py::{test}")
    assert outcomes[test]["outcome"] == "failed"
    assert "FileExistsError" in outcomes[test]["error"]
