"""Shared fixtures: a clean environment per test, settings, media roots and a real
uvicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gateway import Settings

pytest_plugins = ["tests.s3server", "tests.seaweed"]

SECRET = "test-secret-key-0123456789"

_GATEWAY_VARIABLES = ("USE_S3", "MEDIA_ROOT", "MEDIA_URL")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts with no gateway settings in the environment and no .env file."""
    for name in list(os.environ):
        if name.startswith(("GATEWAY_", "AWS_", "MEDIA_GATEWAY_")) or name in _GATEWAY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def media_root(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture
def make_settings(media_root: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        # AWS_LOCATION=media, as .env.example sets it (unset is the bucket's root).
        values: dict[str, Any] = {
            "secret_keys": (SECRET,),
            "media_root": media_root,
            "aws_location": "media",
        }
        values.update(overrides)
        return Settings(**values)

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_server(app: Any, *, send_buffer: int | None = None, **options: Any) -> Iterator[str]:
    """Run ``app`` under a real uvicorn on 127.0.0.1 in a thread; yield its base URL.

    ``send_buffer`` fixes the kernel's send buffer of every connection (SO_SNDBUF, no
    autotuning), as on a link with a small bandwidth-delay product: on loopback the
    kernel otherwise buffers megabytes and wakes a writer in steps of a third of that.
    """
    sockets = None
    if send_buffer is None:
        port = free_port()
    else:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        sockets = [listener]  # accepted connections inherit the buffer size
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="auto", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """``serve(app)`` starts ``app`` under uvicorn and returns its base URL."""
    with contextlib.ExitStack() as stack:
        yield lambda app, **options: stack.enter_context(run_server(app, **options))
