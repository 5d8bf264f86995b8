"""`make run`: the demo starts, prints URLs, and a signed one serves its sample."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx

from gateway.dev.demo import SAMPLES
from tests.conftest import free_port
from tests.helpers import stop


def test_demo_serves_signed_sample_from_embedded_s3(tmp_path):
    """The demo runs on an embedded S3 server; its printed URLs work end to end."""
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
    try:
        deadline = time.monotonic() + 30
        while (
            "Uvicorn running" not in output and time.monotonic() < deadline and proc.poll() is None
        ):
            output += proc.stdout.readline()
        assert "served from S3 bucket 'media-demo'" in output, output
        signed = re.search(r"signed\s+(http://\S+report\.txt\S*)", output)[1]
        r = httpx.get(signed, follow_redirects=True)
        assert r.status_code == 200
        assert r.content == SAMPLES["documents/report.txt"]
        assert r.history[0].status_code == 302
        unsigned = re.search(r"unsigned \(403\)\s+(\S+)", output)[1]
        assert httpx.get(unsigned).status_code == 403
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200
        assert "/media/documents/report.txt?exp=" in page.text
    finally:
        stop(proc, seconds=15)
