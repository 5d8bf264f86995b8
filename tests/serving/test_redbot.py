"""REDbot, the HTTP linter, judges what ``media-gateway serve`` sends: a signed local file,
a public-prefix file, a redirect to S3 and an object proxied from S3.

REDbot fetches each URL itself and then probes it (Range, If-None-Match,
If-Modified-Since, gzip negotiation), so it checks the answers to those requests too. No
note may be BAD, and every WARN is either fixed in the gateway or listed in ``ACCEPTED``
with the reason it stays.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import Settings, URLSigner
from tests.conftest import SECRET, free_port
from tests.helpers import stop, wait_until_serving
from tests.s3server import S3Server, on_every_s3

# Longer than REDbot's ranged probe (up to 97 bytes from the start of the body): on a
# shorter body its range covers the whole file, and it warns that the 206 is full length.
DATA = bytes(range(256)) * 16
REDBOT_TIMEOUT = 60  # seconds for one URL with its probes; it takes about one

#: WARN notes that stay, by REDbot's note id, each with the reason.
ACCEPTED = {
    "STORE_PUBLIC_UNNECESSARY": (
        "public-prefix answers say `Cache-Control: public` on purpose: it lets shared caches "
        "store them even for requests that carry Authorization (a site behind HTTP basic "
        "auth), which REDbot's requests do not"
    ),
}


def redbot(url: str) -> tuple[int, list[dict[str, Any]]]:
    """Run the ``redbot`` command on ``url``; the status it got and its notes, flattened."""
    command = [str(Path(sys.executable).parent / "redbot"), "-o", "har", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=REDBOT_TIMEOUT)
    assert done.returncode == 0, done.stderr
    har = json.loads(done.stdout)
    assert "_red_error" not in har["log"], har["log"]["_red_error"]
    (entry,) = har["log"]["entries"]
    notes: list[dict[str, Any]] = []
    pending = list(entry["_red_messages"])
    while pending:
        note = pending.pop()
        notes.append(note)
        pending += note.get("subnotes", [])
    return entry["response"]["status"], notes


def judged(url: str) -> tuple[int, set[str]]:
    """REDbot's verdict on ``url``: no BAD note, no WARN but the accepted ones. Returns the
    status and the ids of every note, for the caller to check what was probed."""
    status, notes = redbot(url)
    bad = [(n["note_id"], n["summary"]) for n in notes if n["level"] == "BAD"]
    assert bad == [], url
    warned = [(n["note_id"], n["summary"]) for n in notes if n["level"] == "WARN"]
    assert [w for w in warned if w[0] not in ACCEPTED] == [], (url, notes)
    return status, {n["note_id"] for n in notes}


@pytest.fixture
def gateway(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> Iterator[Callable[..., tuple[str, URLSigner]]]:
    """``gateway(**env)`` runs ``media-gateway serve`` on the test bucket with a media root
    holding ``docs/local.bin`` and ``public/logo.bin``, S3 holding ``docs/remote.bin``;
    returns its base URL and a signer for its URLs."""
    root = tmp_path / "media"
    for name in ("docs/local.bin", "public/logo.bin"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(DATA)
    with contextlib.closing(s3_server.client()) as client:
        client.put_object(
            Bucket=s3_bucket,
            Key="media/docs/remote.bin",
            Body=DATA,
            ContentType="application/octet-stream",
        )
    with contextlib.ExitStack() as stack:

        def start(**extra: str) -> tuple[str, URLSigner]:
            env = {**os.environ, **s3_server.env(s3_bucket), **extra}
            env.update(
                GATEWAY_SECRET_KEY=SECRET,
                MEDIA_ROOT=str(root),
                GATEWAY_PUBLIC_PREFIXES="public/",
                GATEWAY_LIVE_PATH="/-/live",
            )
            port = free_port()
            command = [str(Path(sys.executable).parent / "media-gateway"), "serve"]
            proc = subprocess.Popen(
                [*command, "--port", str(port)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            stack.callback(stop, proc)
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base + "/-/live", proc)
            names = {k: v for k, v in env.items() if k.startswith(("GATEWAY_", "MEDIA_"))}
            return base, URLSigner.from_settings(Settings.from_env(names, env_file=None))

        yield start


def test_local_public_and_redirect_pass_redbot(
    gateway: Callable[..., tuple[str, URLSigner]],
) -> None:
    """Hybrid mode: a signed file on disk and a public-prefix file are served by the
    gateway (200, with working ranges and conditional requests); a signed file only in S3
    is a 302 to its presigned URL. REDbot finds nothing BAD and no WARN but those accepted."""
    base, signer = gateway(GATEWAY_LOCAL_FALLBACK="true")
    status, notes = judged(base + signer.sign_url("docs/local.bin"))
    assert status == 200
    assert {"RANGE_CORRECT", "INM_304", "IMS_304"} <= notes
    status, notes = judged(base + "/media/public/logo.bin")
    assert status == 200
    assert {"RANGE_CORRECT", "INM_304", "IMS_304", "STORE_PUBLIC_UNNECESSARY"} <= notes
    status, _ = judged(base + signer.sign_url("docs/remote.bin"))
    assert status == 302


@on_every_s3
def test_proxied_object_passes_redbot(gateway: Callable[..., tuple[str, URLSigner]]) -> None:
    """Proxy mode: S3's object through the gateway, ranges and conditionals answered by S3
    and relayed, on both servers (rclone ignores If-Modified-Since: REDbot warned IMS_FULL
    until the gateway judged it itself). Nothing BAD and no WARN but those accepted."""
    base, signer = gateway(GATEWAY_S3_DELIVERY="proxy")
    status, notes = judged(base + signer.sign_url("docs/remote.bin"))
    assert status == 200
    assert {"RANGE_CORRECT", "INM_304", "IMS_304"} <= notes
