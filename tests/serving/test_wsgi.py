"""gateway.wsgi under a real gunicorn, in front of the Django test project (WSGI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway import URLSigner
from tests.conftest import SECRET, free_port
from tests.helpers import stop, wait_until_serving

WSGI_MODULE = """
from gateway.wsgi import MediaGatewayWSGI
from tests.djangoproject.wsgi import application as django_application

application = MediaGatewayWSGI(django_application)
"""


@pytest.fixture
def gunicorn(tmp_path: Path, media_root: Path) -> Iterator[str]:
    (media_root / "docs").mkdir()
    (media_root / "docs" / "a b%20.txt").write_bytes(b"wsgi media")
    (media_root / "docs" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (tmp_path / "wsgi_entry.py").write_text(WSGI_MODULE)
    port = free_port()
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{repo}",
        "DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
        "DJANGO_TEST_DB": str(tmp_path / "db.sqlite3"),
        "GATEWAY_SECRET_KEY": SECRET,
        "MEDIA_ROOT": str(media_root),
        "GATEWAY_READY_PATH": "/-/ready",
    }
    gunicorn_bin = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(
        [
            gunicorn_bin,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "wsgi_entry:application",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base + "/-/ready", proc)
    yield base
    stop(proc, sig=signal.SIGTERM)


def signer() -> URLSigner:
    return URLSigner(secret_keys=[SECRET])


def test_media_through_gunicorn(gunicorn: str) -> None:
    """Signed media is served under gunicorn, with an odd name decoded exactly once."""
    url = signer().sign_url("docs/a b%20.txt")
    assert "/docs/a%20b%2520.txt?" in url
    r = httpx.get(gunicorn + url)
    assert r.status_code == 200
    assert r.content == b"wsgi media"
    assert httpx.get(gunicorn + "/media/docs/a%20b%2520.txt").status_code == 403


def test_ranges_and_large_files(gunicorn: str, media_root: Path) -> None:
    """Range and multi-megabyte bodies stream through the WSGI bridge."""
    url = gunicorn + signer().sign_url("docs/big.bin")
    data = (media_root / "docs" / "big.bin").read_bytes()
    assert httpx.get(url).content == data
    r = httpx.get(url, headers={"range": "bytes=100-199"})
    assert (r.status_code, r.content) == (206, data[100:200])


def test_django_passes_through(gunicorn: str) -> None:
    """Django's own pages, redirects and cookies reach the client unchanged."""
    page = httpx.get(gunicorn + "/")
    assert page.status_code == 200
    assert page.headers["x-served-by"] == "django"
    redirect = httpx.get(gunicorn + "/go/")
    assert (redirect.status_code, redirect.headers["location"]) == (302, "/")
    assert httpx.get(gunicorn + "/media_private/x").headers["x-served-by"] == "django"


def test_traversal_under_gunicorn(gunicorn: str) -> None:
    """Encoded traversal is refused by the WSGI gateway too."""
    for target in ("/media/%2e%2e/secret", "/media/..%2fsecret"):
        assert httpx.get(gunicorn + target).status_code == 404


def test_direct_upload_through_gunicorn(gunicorn: str, media_root: Path) -> None:
    """The upload endpoint answers under WSGI too: ask, PUT a body larger than a2wsgi's
    reads, then the file comes back through a signed link (issue 16)."""
    from gateway.uploads import UploadSigner

    data = os.urandom(300 * 1024)
    ticket = UploadSigner(secret_keys=[SECRET]).sign_ticket("up/", max_bytes=len(data))
    plan = httpx.post(
        gunicorn + "/media-uploads/",
        json={"token": ticket, "filename": "w.bin", "size": len(data), "content_type": "a/b"},
    )
    assert plan.status_code == 200, plan.text
    answer = plan.json()
    put = httpx.put(gunicorn + answer["url"], content=data, headers=answer["headers"])
    assert put.status_code == 201, put.text
    assert (media_root / answer["key"]).read_bytes() == data
    assert httpx.get(gunicorn + signer().sign_url(answer["key"])).content == data
    too_big = httpx.put(gunicorn + answer["url"], content=data + b"!", headers=answer["headers"])
    assert too_big.status_code == 413
