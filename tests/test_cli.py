"""The media-gateway command: sign, check, serve and their errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from tests.conftest import SECRET, free_port
from tests.helpers import stop


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"hello")
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    monkeypatch.setenv("MEDIA_ROOT", str(root))
    return root


def test_sign(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """sign prints one relative signed URL."""
    assert main(["sign", "docs/a.txt", "--expires", "60", "--download"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("/media/docs/a.txt?exp=")
    assert "&dl=1&sig=" in out[0]


def test_sign_bad_path(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unsafe path is a usage error: one line on stderr, exit 2."""
    assert main(["sign", "../etc/passwd"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("media-gateway: not a valid media path")


def test_missing_secret_exits_2(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A settings error names the variable on one line and exits 2."""
    monkeypatch.delenv("GATEWAY_SECRET_KEY")
    assert main(["sign", "docs/a.txt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("media-gateway: GATEWAY_SECRET_KEY: is required")


def test_check(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check reports the settings as JSON and exits 0 when they work."""
    assert main(["check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["mode"] == "local"
    assert report["media_root"] == str(env.resolve())
    assert report["signing_keys"] == 1


def test_check_missing_root(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """check exits 1 and says which directory is missing."""
    monkeypatch.setenv("MEDIA_ROOT", str(env / "nope"))
    assert main(["check"]) == 1
    assert "MEDIA_ROOT: directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["serve", "sign", "check"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every command has --help."""
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: media-gateway" in capsys.readouterr().out


def test_serve_bad_app(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--app that cannot be imported exits 2 with a one-line reason."""
    assert main(["serve", "--app", "no_such_module:app"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err


def test_installed_command_serves(env: Path, tmp_path: Path) -> None:
    """The installed console script serves a signed URL with two workers."""
    port = free_port()
    script = Path(sys.executable).with_name("media-gateway")
    url = subprocess.run(
        [script, "sign", "docs/a.txt"], capture_output=True, text=True, check=True
    ).stdout.strip()
    proc = subprocess.Popen(
        [script, "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}{url}")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert r.status_code == 200
        assert r.content == b"hello"
        assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
    finally:
        stop(proc)


WRAPPED_APP = """
from pathlib import Path

from gateway import MediaGateway, Settings


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"from the app"})


# As the README's asgi.py does: the project's own settings, not the environment's.
application = MediaGateway(
    app,
    settings=Settings(
        secret_keys=("a-project-key-0123456789",),
        media_root=Path(%r),
        public_prefixes=("public",),
    ),
)
"""


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_serve_an_app_that_is_already_a_gateway(tmp_path: Path, interface: str) -> None:
    """`serve --app mysite.asgi:application` where asgi.py already wraps the app in a
    gateway (issue 13) serves that gateway with its own settings: once a second gateway
    around it read only the environment (no key here: it would not even start) and
    refused the public files the first one serves."""
    root = tmp_path / "media"
    (root / "public").mkdir(parents=True)
    (root / "public" / "logo.txt").write_bytes(b"public logo")
    module = WRAPPED_APP % str(root)
    if interface == "wsgi":
        module = (
            module.replace(
                "from gateway import MediaGateway, Settings",
                "from gateway import Settings\nfrom gateway.wsgi import MediaGatewayWSGI",
            )
            .replace(
                'async def app(scope, receive, send):\n    if scope["type"] != "http":\n'
                '        return\n    await send({"type": "http.response.start", "status": 200,'
                ' "headers": []})\n    await send({"type": "http.response.body", "body":'
                ' b"from the app"})',
                'def app(environ, start_response):\n    start_response("200 OK", [])\n'
                '    return [b"from the app"]',
            )
            .replace("application = MediaGateway(", "application = MediaGatewayWSGI(")
        )
    (tmp_path / "wrapped.py").write_text(module)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "MEDIA_"))}
    proc = subprocess.Popen(
        [
            Path(sys.executable).with_name("media-gateway"),
            "serve",
            "--app",
            "wrapped:application",
            "--interface",
            interface,
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/media/public/logo.txt")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(proc.stderr.read() if proc.stderr else "") from None
                time.sleep(0.1)
        assert r.status_code == 200
        assert r.content == b"public logo"
        assert httpx.get(f"http://127.0.0.1:{port}/other").content == b"from the app"
        assert httpx.get(f"http://127.0.0.1:{port}/media/private.txt").status_code == 403
    finally:
        stop(proc)
