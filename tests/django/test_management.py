"""``manage.py media_gateway``: the CLI's commands on the Django project's settings.

The real ``manage.py`` of the test project runs in a subprocess with a settings module
written per test (``USE_S3``, the bucket on the rclone server, public prefixes and object
parameters in ``settings.py``, none in the environment), as a site would run it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import override_settings

from gateway.cli import _parser as cli_parser, main
from gateway.django.management.commands.media_gateway import Command
from gateway.django.storage import MediaStorage
from gateway.http import content_type
from tests.conftest import SECRET
from tests.django import test_django
from tests.s3server import S3Server

django_apps = test_django.django_apps

MANAGE = Path(__file__).resolve().parent.parent / "djangoproject" / "manage.py"
CACHE_CONTROL = "max-age=86400, public"
# The names whose Content-Type the storage and upload must agree on: what Python's
# mimetypes knows or not, compressed archives, no suffix, upper case.
NAMES = [
    "logo.svg",
    "photo.webp",
    "photo.avif",
    "notes.txt",
    "dump.gz",
    "backup.tar.gz",
    "README",
    "SCAN.PNG",
    "page.html",
]


def s3_settings(
    server: S3Server, bucket: str, media_root: Path, *, object_parameters: bool = True
) -> dict[str, Any]:
    """What a site's settings.py sets for the migration to S3."""
    values = {
        "USE_S3": True,
        "MEDIA_ROOT": str(media_root),
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": server.endpoint_url,
        "AWS_S3_REGION_NAME": server.region,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "GATEWAY_PUBLIC_PREFIXES": ["public", "images"],
    }
    if object_parameters:
        values["AWS_S3_OBJECT_PARAMETERS"] = {"CacheControl": CACHE_CONTROL}
    return values


@pytest.fixture
def manage(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``manage(*args, settings={...})``: run the test project's ``manage.py media_gateway``
    (or another ``command``) with a settings module that is the project's plus
    ``settings``, and its own database file; nothing in the environment."""

    def run(
        *args: str, settings: dict[str, Any], command: str = "media_gateway"
    ) -> subprocess.CompletedProcess[str]:
        module = tmp_path / "site_settings.py"
        lines = ["from tests.djangoproject.settings import *  # noqa: F403"]
        lines += [f"{name} = {value!r}" for name, value in settings.items()]
        module.write_text("\n".join(lines) + "\n")
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "site_settings",
            "DJANGO_TEST_DB": str(tmp_path / "db.sqlite3"),
        }
        return subprocess.run(
            [sys.executable, str(MANAGE), command, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_same_commands_and_flags_as_the_cli(django_apps: dict[str, Any]) -> None:
    """One parser for both: every sub-command of media-gateway but serve, with the same
    flags, plus audit."""

    def commands(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return {
            name: {flag for a in sub._actions for flag in a.option_strings}
            for name, sub in action.choices.items()
        }

    cli = commands(cli_parser())
    django = commands(Command().create_parser("manage.py", "media_gateway"))
    assert set(django) == (set(cli) - {"serve"}) | {"audit"}
    djangos = {"--settings", "--pythonpath", "-v", "--verbosity", "--traceback"}
    djangos |= {"--no-color", "--force-color"}
    for name, flags in cli.items():
        if name != "serve":
            assert django[name] == flags | djangos, name
    assert {"--json", "--dry-run", "--shard", "--cleanup", "--state"} <= django["upload"]


def test_check_reads_the_django_settings(
    manage: Callable[..., subprocess.CompletedProcess[str]],
    s3_server: S3Server,
    s3_bucket: str,
    media_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """USE_S3 and the public prefixes in settings.py, none in the environment: manage.py's
    check says s3 mode with the site's prefixes, where media-gateway check, which reads
    only the environment, says local. And .env's USE_S3=true loses to settings.py's False."""
    settings = s3_settings(s3_server, s3_bucket, media_root)
    done = manage("check", "--json", settings=settings)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["settings"] == "Django (site_settings)"
    assert report["mode"] == "s3"
    assert report["public_prefixes"] == ["public/", "images/"]
    assert report["bucket"] == s3_bucket
    assert report["bucket_reachable"] is True
    assert report["ok"] is True

    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)  # the environment alone: local mode
    assert main(["check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "local"

    (tmp_path / ".env").write_text("USE_S3=true\n")
    done = manage("check", "--json", settings={**settings, "USE_S3": False})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mode"] == "local"


def test_upload_verify_pull_round_trip(
    manage: Callable[..., subprocess.CompletedProcess[str]],
    s3_server: S3Server,
    s3_bucket: str,
    media_root: Path,
    tmp_path: Path,
) -> None:
    """upload, verify and pull through manage.py, on the bucket and MEDIA_ROOT of
    settings.py: a round trip that loses nothing, and verify's exit 1 on a difference."""
    files = {"documents/a.pdf": b"%PDF-1.4 a", "images/logo.svg": b"<svg/>", "README": b"r"}
    for relpath, body in files.items():
        (media_root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (media_root / relpath).write_bytes(body)
    settings = s3_settings(s3_server, s3_bucket, media_root)

    done = manage("upload", "--json", settings=settings)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["uploaded"] == len(files)
    with contextlib.closing(s3_server.client()) as s3:
        listed = s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
        assert {item["Key"] for item in listed} == {f"media/{name}" for name in files}
        head = s3.head_object(Bucket=s3_bucket, Key="media/images/logo.svg")
        assert head["CacheControl"] == CACHE_CONTROL  # settings.py's object parameters

        done = manage("verify", "--json", settings=settings)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["matched"] == len(files)

        s3.delete_object(Bucket=s3_bucket, Key="media/README")
        done = manage("verify", settings=settings)
        assert done.returncode == 1
        assert "missing: README" in done.stdout

    rollback = tmp_path / "rollback"
    done = manage("pull", "--json", "--dest", str(rollback), settings=settings)
    assert done.returncode == 0, done.stderr
    pulled = {str(p.relative_to(rollback)): p.read_bytes() for p in rollback.rglob("*.*")}
    assert pulled == {k: v for k, v in files.items() if k != "README"}


def test_errors_are_one_line_with_exit_code_2(
    manage: Callable[..., subprocess.CompletedProcess[str]],
    s3_server: S3Server,
    s3_bucket: str,
    media_root: Path,
) -> None:
    """A missing bucket or media directory, object parameters S3 has no header for, bad
    usage: exit 2 and one line naming the setting, as media-gateway's."""
    settings = s3_settings(s3_server, s3_bucket, media_root)
    cases = [
        (
            ("upload",),
            {**settings, "AWS_STORAGE_BUCKET_NAME": "no-such-bucket"},
            "CommandError: media-gateway: AWS_STORAGE_BUCKET_NAME: bucket 'no-such-bucket'",
        ),
        (
            ("verify",),
            {**settings, "MEDIA_ROOT": str(media_root / "nowhere")},
            "CommandError: media-gateway: MEDIA_ROOT: directory ",
        ),
        (
            ("upload", "--dry-run"),
            {**settings, "AWS_S3_OBJECT_PARAMETERS": {"Bogus": "1"}},
            "CommandError: media-gateway: AWS_S3_OBJECT_PARAMETERS: unsupported parameter",
        ),
        (("upload", "--shard", "0/4"), settings, "shards count from 1"),
        (("sign", "../etc/passwd"), settings, "media-gateway: "),
    ]
    for args, values, message in cases:
        done = manage(*args, settings=values)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, args
        assert len(done.stderr.strip().splitlines()) == 1 or "usage:" in done.stderr
        assert "Traceback" not in done.stderr


def heads(server: S3Server, bucket: str, keys: list[str]) -> list[tuple[Any, ...]]:
    """Content-Type, Cache-Control and Content-Encoding of each object, by HEAD."""
    with contextlib.closing(server.client()) as s3:
        found = [s3.head_object(Bucket=bucket, Key=key) for key in keys]
    return [
        (head["ContentType"], head.get("CacheControl"), head.get("ContentEncoding"))
        for head in found
    ]


@pytest.mark.parametrize("where", ["django", "environment"])
def test_storage_and_upload_write_the_same_headers(
    django_apps: dict[str, Any],
    s3_server: S3Server,
    s3_bucket: str,
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    """An object the app wrote through MediaStorage and one `upload` copied carry the
    same Cache-Control (AWS_S3_OBJECT_PARAMETERS from Django's settings or from the
    environment) and the same Content-Type, name by name."""
    if where == "environment":
        monkeypatch.setenv("AWS_S3_OBJECT_PARAMETERS", json.dumps({"CacheControl": CACHE_CONTROL}))
    for name in NAMES:
        (media_root / "copied").mkdir(exist_ok=True)
        (media_root / "copied" / name).write_bytes(b"bytes of " + name.encode())
    values = s3_settings(s3_server, s3_bucket, media_root, object_parameters=where == "django")
    with override_settings(**values):
        storage = MediaStorage()
        for name in NAMES:
            assert storage.save(f"written/{name}", ContentFile(b"x")) == f"written/{name}"
        call_command("media_gateway", "upload", "--json")
    assert json.loads(capsys.readouterr().out)["uploaded"] == len(NAMES)
    written = heads(s3_server, s3_bucket, [f"media/written/{name}" for name in NAMES])
    copied = heads(s3_server, s3_bucket, [f"media/copied/{name}" for name in NAMES])
    assert written == copied
    assert written == [(content_type(name), CACHE_CONTROL, None) for name in NAMES]
    # django-storages alone sends application/x-tar with Content-Encoding gzip, which
    # browsers undo on download: the user saves a plain tar named .tar.gz.
    assert dict(zip(NAMES, written, strict=True))["backup.tar.gz"][0] == (
        "application/octet-stream"
    )


def test_output_goes_to_the_streams_django_gives(django_apps: dict[str, Any]) -> None:
    """call_command(stdout=..., stderr=...) receives what the command prints."""
    out, err = io.StringIO(), io.StringIO()
    call_command("media_gateway", "sign", "documents/a.pdf", stdout=out, stderr=err)
    assert out.getvalue().startswith("/media/documents/a.pdf?exp=")
    with pytest.raises(SystemExit) as raised:
        call_command("media_gateway", "sign", "../a.pdf", stdout=out, stderr=err)
    assert raised.value.code == 2
    assert err.getvalue().startswith("media-gateway: ")


def test_django_options_after_the_subcommand(
    manage: Callable[..., subprocess.CompletedProcess[str]], media_root: Path
) -> None:
    """-v, --traceback, --no-color and --force-color parse after the sub-command, as
    --settings does and as every other manage.py command takes them."""
    settings = {"MEDIA_ROOT": str(media_root)}
    for flags in (
        ["-v", "0", "--traceback"],
        ["--no-color"],
        ["--verbosity", "2", "--force-color"],
    ):
        done = manage("sign", "documents/a.pdf", *flags, settings=settings)
        assert done.returncode == 0, (flags, done.stderr)
        assert done.stdout.startswith("/media/documents/a.pdf?exp="), flags
    assert manage("sign", "documents/a.pdf", "-v", "7", settings=settings).returncode == 2
