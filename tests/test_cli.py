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
