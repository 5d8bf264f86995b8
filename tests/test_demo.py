"""`make run`: the demo starts, prints URLs, and a signed one serves its sample."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.dev.demo import SAMPLES
from tests.conftest import free_port
from tests.helpers import stop


def start_demo(tmp_path: Path) -> tuple[subprocess.Popen[str], int, str]:
    """``python -m gateway.dev.demo`` on a free port; the process, the port and what it
    printed until uvicorn listens."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "GATEWAY_", "USE_S3", "MEDIA_"))
    }
    env["MEDIA_GATEWAY_DEMO_PORT"] = str(port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.dev.demo"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ""
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while "Uvicorn running" not in output and time.monotonic() < deadline and proc.poll() is None:
        output += proc.stdout.readline()
    return proc, port, output


def found(pattern: str, output: str) -> str:
    """The first group of ``pattern`` in the demo's output."""
    match = re.search(pattern, output)
    assert match is not None, output
    return match[1]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has yet to reap it.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_demo_serves_signed_sample_from_embedded_s3(tmp_path: Path) -> None:
    """The demo runs on an embedded S3 server; its printed URLs work end to end, and its
    Range example, run as printed (``curl -iL``, following any redirect), answers 206
    with the first 100 bytes: the video is on disk in hybrid mode, where the gateway
    answers ranges itself (rclone would answer a ranged presigned GET with 200)."""
    proc, port, output = start_demo(tmp_path)
    try:
        assert "served from S3 bucket 'media-demo'" in output, output
        assert "(hybrid mode)" in output, output
        curl = found(r"try: (curl .+)", output)
        assert shlex.split(curl)[:4] == ["curl", "-iL", "-H", "Range: bytes=0-99"], curl
        video = httpx.get(
            shlex.split(curl)[4], headers={"range": "bytes=0-99"}, follow_redirects=True
        )
        assert video.status_code == 206
        assert video.headers["content-range"] == "bytes 0-99/1048576"
        assert video.content == SAMPLES["videos/sample.bin"][:100]
        assert "(206:" in output
        signed = found(r"signed\s+(http://\S+report\.txt\S*)", output)
        r = httpx.get(signed, follow_redirects=True)
        assert r.status_code == 200
        assert r.content == SAMPLES["documents/report.txt"]
        assert r.history[0].status_code == 302
        unsigned = found(r"unsigned \(403\)\s+(\S+)", output)
        assert httpx.get(unsigned).status_code == 403
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200
        assert "/media/documents/report.txt?exp=" in page.text
    finally:
        stop(proc, seconds=15)


def test_demo_sigterm_stops_embedded_s3(tmp_path: Path) -> None:
    """SIGTERM ends ``make run`` as Ctrl+C does: the embedded rclone stops with it. And
    its log (item 58) shows the signed request without its signature."""
    proc, port, output = start_demo(tmp_path)
    try:
        assert "Uvicorn running" in output, output
        rclones = [
            pid
            for pid in children(proc.pid)
            if "rclone" in Path(f"/proc/{pid}/cmdline").read_text()
        ]
        assert len(rclones) == 1
        signed = found(r"signed\s+http://\S+?(/media/\S+report\.txt\S*)", output)
        assert httpx.get(f"http://127.0.0.1:{port}{signed}").status_code == 302
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    deadline = time.monotonic() + 10
    while alive(rclones[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(rclones[0]), "rclone serve s3 outlived the demo"
    assert proc.returncode == 128 + signal.SIGTERM
    signature = signed.rsplit("sig=", 1)[1]
    assert signed.split("?")[0] in rest  # the access line
    assert signature not in rest


def test_demo_direct_upload_goes_to_s3_and_back(tmp_path: Path) -> None:
    """The demo page's upload form: the browser's calls (ask, PUT, submit the receipt)
    give a signed link that serves the same bytes, and no byte of the file went through
    the app. The demo runs as during a migration (hybrid), so the PUT goes to the
    gateway, which writes the file to disk and to the embedded S3, as GatewayStorage
    does in that phase (issue 16, done when)."""
    import html
    from urllib.parse import urljoin

    proc, port, _ = start_demo(tmp_path)
    base = f"http://127.0.0.1:{port}"
    data = bytes(range(256)) * 100
    try:
        page = httpx.get(base + "/").text
        box = re.search(r'data-endpoint="([^"]+)" data-token="([^"]+)"', page)
        assert box is not None, page
        script = httpx.get(base + "/static/media_gateway/direct-upload.js")
        assert script.status_code == 200 and "data-direct-upload" in script.text
        plan = httpx.post(
            urljoin(base, box[1]),
            json={
                "token": html.unescape(box[2]),
                "filename": "holiday photo.png",
                "size": len(data),
                "content_type": "image/png",
            },
        ).json()
        assert plan["url"].startswith("/media-uploads/?sig=")  # the gateway, not the app
        put = httpx.put(urljoin(base, plan["url"]), content=data, headers=plan["headers"])
        assert put.status_code == 201, put.text
        for side in ("hybrid", "s3"):
            (copy,) = (tmp_path / "var" / "demo" / side).rglob(plan["key"].rsplit("/", 1)[1])
            assert copy.read_bytes() == data, side
        saved = httpx.post(base + "/uploaded", data={"file": plan["receipt"]})
        assert saved.status_code == 200, saved.text
        link = re.search(r'href="([^"]+)"', saved.text)
        assert link is not None
        back = httpx.get(base + html.unescape(link[1]), follow_redirects=True)
        assert back.content == data
        forged = httpx.post(base + "/uploaded", data={"file": plan["receipt"][:-3]})
        assert forged.status_code == 400
    finally:
        stop(proc, seconds=15)
