"""A Wagtail site through the whole migration, as the README's runbook tells (RELIABILITY 66).

The site (tests/wagtailsite, laid out like ``wagtail start``'s template) runs as its own
processes: ``manage.py`` commands, and ``media-gateway serve`` in front of its WSGI app,
restarted with each phase's settings as a deployment would be. In every phase an editor
adds an image and a visitor opens a page that asks for a new rendition size, so Wagtail
opens every original then; each link on the page is followed through the gateway (and
S3's redirect) and must answer the image.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.helpers import stop, wait_until_serving
from tests.s3server import S3Server

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PNG = b"\x89PNG\r\n\x1a\n"
KEY = "wagtail-site-gateway-key-0123456789abcdef"

PHASES = {
    "local": {"USE_S3": "false"},
    "migrating": {"USE_S3": "true", "GATEWAY_LOCAL_FALLBACK": "true"},
    "s3": {"USE_S3": "true", "GATEWAY_LOCAL_FALLBACK": "false"},
}


class Site:
    """The Wagtail site's database, media root and bucket, and the phase it is in."""

    def __init__(self, tmp_path: Path, server: S3Server, bucket: str) -> None:
        self.media_root = tmp_path / "media"
        self.server, self.bucket = server, bucket
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("GATEWAY_", "AWS_", "DJANGO_")) and name != "USE_S3"
        }
        self.base_env = {
            **inherited,
            **server.env(bucket),
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "tests.wagtailsite.settings.dev",
            "WAGTAIL_TEST_DB": str(tmp_path / "site.sqlite3"),
            "MEDIA_ROOT": str(self.media_root),
            "GATEWAY_SECRET_KEY": KEY,
        }
        self.phase = "local"

    @property
    def env(self) -> dict[str, str]:
        return {**self.base_env, **PHASES[self.phase]}

    def manage(self, *args: str) -> str:
        """``manage.py ARGS`` in this phase; its output, or the test fails with it."""
        done = subprocess.run(
            [sys.executable, "-m", "django", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    @contextlib.contextmanager
    def gateway(self) -> Iterator[httpx.Client]:
        """``media-gateway serve`` in front of the site's WSGI app, as the README says."""
        port = free_port()
        command = [str(BIN / "media-gateway"), "serve", "--interface", "wsgi"]
        command += ["--app", "tests.wagtailsite.wsgi:application", "--port", str(port)]
        proc = subprocess.Popen(
            command, env=self.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(base + "/-/live", proc)
            with httpx.Client(base_url=base, timeout=30) as client:
                yield client
        finally:
            stop(proc)

    def visit(self, spec: str) -> dict[str, int]:
        """Open the gallery asking for ``spec`` and the sizes of earlier phases; follow
        every link. Returns each link's path and the status the gateway answered."""
        specs = ["fill-8x8", spec]
        answered = {}
        with self.gateway() as client:
            page = client.get("/", params=[("spec", s) for s in specs])
            assert page.status_code == 200, page.text[-2000:]
            links = [
                html.unescape(link) for link in re.findall(r'(?:src|href)="([^"]+)"', page.text)
            ]
            assert links and all(link.startswith("/media/") for link in links), links
            for link in links:
                first = client.get(link)
                final = client.get(link, follow_redirects=True)
                assert final.status_code == 200, (self.phase, link, final.text)
                assert final.content.startswith(PNG), (self.phase, link)
                answered[link.split("?")[0]] = first.status_code
        return answered

    def objects(self) -> set[str]:
        with contextlib.closing(self.server.client()) as s3:
            listing = s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {item["Key"] for item in listing}

    def head(self, key: str) -> dict[str, str]:
        with contextlib.closing(self.server.client()) as s3:
            found = s3.head_object(Bucket=self.bucket, Key=key)
        return {"CacheControl": found.get("CacheControl", ""), "ContentType": found["ContentType"]}


@pytest.fixture
def site(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> Site:
    made = Site(tmp_path, s3_server, s3_bucket)
    made.media_root.mkdir()
    made.manage("migrate", "--verbosity", "0")
    return made


def test_wagtail_site_through_every_phase(site: Site) -> None:
    """local -> migrating -> upload + verify -> S3 (MEDIA_ROOT gone) -> migrating ->
    pull -> local: no failed read, write or request at any step."""
    # Local: files on disk, served by the gateway itself.
    red = site.manage("add_image", "red", "ff0000").strip()
    assert red == "original_images/red.png"
    assert set(site.visit("width-10").values()) == {200}
    assert site.objects() == set()

    # Migrating, before any upload: the originals are on disk only, and Wagtail still
    # makes renditions of them; new files reach S3 as they are written.
    site.phase = "migrating"
    green = site.manage("add_image", "green", "00ff00").strip()
    answered = site.visit("width-11")
    assert answered[f"/media/{red}"] == 200  # from disk, not uploaded yet
    assert f"media/{red}" not in site.objects()
    assert f"media/{green}" in site.objects()
    assert (site.media_root / green).is_file()

    # The backfill, with the site's own settings, then its proof.
    site.manage("media_gateway", "upload")
    site.manage("media_gateway", "verify")
    on_disk = {
        path.relative_to(site.media_root).as_posix() for path in site.media_root.rglob("*.png")
    }
    assert site.objects() == {f"media/{name}" for name in on_disk}

    # S3 only, with MEDIA_ROOT moved away: renditions are made from S3's originals.
    site.phase = "s3"
    moved = site.media_root.with_name("media-moved-away")
    site.media_root.rename(moved)
    blue = site.manage("add_image", "blue", "0000ff").strip()
    answered = site.visit("width-12")
    assert set(answered.values()) == {302}, answered  # every link is a redirect to S3
    assert not site.media_root.exists()

    # Objects written by the storage and copied by upload carry the same headers.
    assert site.head(f"media/{red}") == site.head(f"media/{green}") == site.head(f"media/{blue}")
    assert site.head(f"media/{red}") == {
        "CacheControl": "max-age=86400",
        "ContentType": "image/png",
    }

    # Rollback as the README says: MEDIA_ROOT back and phase 2 first, so that what the
    # app writes and reads until the pull is done needs no second copy; then local again.
    # Nothing made in S3 is lost.
    site.media_root.mkdir()
    site.phase = "migrating"
    black = site.manage("add_image", "black", "000000").strip()
    assert (site.media_root / black).is_file() and f"media/{black}" in site.objects()
    answered = site.visit("width-14")  # originals from S3, not pulled yet
    assert answered[f"/media/{blue}"] == 302 and answered[f"/media/{black}"] == 200
    site.manage("media_gateway", "pull")
    site.phase = "local"
    site.manage("add_image", "white", "ffffff")
    answered = site.visit("width-13")
    assert set(answered.values()) == {200}
    assert f"/media/{blue}" in answered
    shutil.rmtree(moved)
