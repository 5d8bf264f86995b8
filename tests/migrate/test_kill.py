"""Kill tests (hardening): SIGKILL the uploader at 20 random moments of one migration,
resuming each time; at the end verify passes, every object is byte-identical to its
file and no multipart upload is left open (RELIABILITY items 43 and 52)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.migrate import support
from tests.migrate.support import FlakyProxy, incomplete_uploads, objects, run_cli, write_tree
from tests.s3server import S3Server

migrate_env = support.migrate_env
s3 = support.s3

MiB = 1 << 20
KILLS = 20


def test_twenty_sigkills_then_resume(
    migrate_env: str,
    media_root: Path,
    s3_server: S3Server,
    s3: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """20 SIGKILLs at random moments, each followed by a resume; then one clean run with
    --cleanup: verify passes, objects equal files, no open multipart upload."""
    rng = random.Random(20)
    tree = {
        f"small/{i // 100}/{i:04}.bin": rng.randbytes(rng.randrange(0, 16 * 1024))
        for i in range(2000)
    }
    tree |= {f"big/{i}.bin": rng.randbytes(24 * MiB + i) for i in range(4)}
    write_tree(media_root, tree)
    state = str(tmp_path / "state.sqlite3")
    argv = [
        sys.executable,
        "-m",
        "gateway.cli",
        "upload",
        "--json",
        "--state",
        state,
        "--workers",
        "8",
    ]
    interrupted = 0
    deadline = time.monotonic() + 150
    # Each UploadPart waits 2 s in the proxy, so no run can finish the big files and every
    # kill lands mid-work: in start-up, listing, hashing, small files or parts in flight.
    with FlakyProxy(s3_server.endpoint_url, part_delay=2.0) as proxy:
        env = {**os.environ, "AWS_S3_ENDPOINT_URL": proxy.url}
        for _ in range(KILLS):
            assert time.monotonic() < deadline, "kill loop took too long"
            process = subprocess.Popen(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.3, 1.0))  # start-up alone takes about 0.4 s
            if process.poll() is None:
                process.kill()
                interrupted += 1
            process.wait(30)

    code, report = run_cli(capsys, "upload", "--cleanup", "--state", state)
    assert code == 0, report
    assert report["failed"] == 0
    code, verified = run_cli(capsys, "verify")
    assert code == 0, verified
    assert incomplete_uploads(s3, migrate_env) == []
    stored = objects(s3, migrate_env)
    assert {key.removeprefix("media/"): item["body"] for key, item in stored.items()} == tree
    assert interrupted == KILLS, f"only {interrupted} runs were interrupted"
