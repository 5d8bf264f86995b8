"""`media-gateway check` against real S3 servers, rclone and SeaweedFS (items 38, 67)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from tests.conftest import SECRET
from tests.s3server import S3Server, on_every_s3

pytestmark = on_every_s3


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, s3_bucket: str) -> str:
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    for name, value in s3_server.env(s3_bucket).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GATEWAY_S3_TIMEOUT", "2")
    return s3_bucket


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["check", "--json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_check_ok(s3_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A reachable bucket with working credentials: exit 0, clock skew reported."""
    code, report, _ = run_check(capsys)
    assert code == 0
    assert report["bucket_reachable"] is True
    assert abs(report["clock_skew_seconds"]) < 60
    assert report["bucket"] == s3_env


def test_check_missing_bucket(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing bucket is named."""
    monkeypatch.setenv("AWS_STORAGE_BUCKET_NAME", "no-such-bucket-here")
    code, report, _ = run_check(capsys)
    assert code == 1
    assert report["problems"] == [
        "AWS_STORAGE_BUCKET_NAME: bucket 'no-such-bucket-here' does not exist"
    ]


def test_check_wrong_credentials(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wrong credentials fail the check and name the variables to fix."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    code, report, _ = run_check(capsys)
    assert code == 1
    assert report["problems"][0].startswith("AWS_ACCESS_KEY_ID: S3 refused the credentials")


def test_check_unreachable(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A closed port names AWS_S3_ENDPOINT_URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    code, report, _ = run_check(capsys)
    assert code == 1
    assert report["problems"][0].startswith("AWS_S3_ENDPOINT_URL: cannot reach")


def test_check_inventory(
    s3_env: str, s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """check reports versioning, encryption, and objects and bytes under the prefix."""
    client = s3_server.client()
    try:
        client.put_object(Bucket=s3_env, Key="media/a.bin", Body=b"12345")
        client.put_object(Bucket=s3_env, Key="media/d/b.bin", Body=b"123")
        client.put_object(Bucket=s3_env, Key="other/c.bin", Body=b"1")
    finally:
        client.close()
    code, report, _ = run_check(capsys)
    assert code == 0
    assert (report["objects"], report["bytes"]) == (2, 8)
    assert report["versioning"] in ("Enabled", "Suspended", "Disabled", "unknown")
    assert report["default_encryption"] in ("none", "unknown") or report[
        "default_encryption"
    ].startswith(("AES", "aws"))


@pytest.mark.parametrize(("offset", "alert"), [(16 * 60, True), (-16 * 60, True), (14 * 60, False)])
def test_clock_skew(s3_env: str, offset: int, alert: bool) -> None:
    """Item 40: 16 minutes of skew against S3 raise an alert; 14 minutes are fine."""
    import time

    from gateway import Settings
    from gateway.bucket import check_bucket

    report, problems = check_bucket(Settings.from_env(), clock=lambda: time.time() + offset)
    assert abs(report["clock_skew_seconds"] - offset) < 60
    assert bool(problems) is alert
    if alert:
        assert problems[0].startswith("clock: this machine is")


def put_objects(s3_server: S3Server, bucket: str, *keys: str) -> None:
    client = s3_server.client()
    try:
        for key in keys:
            client.put_object(Bucket=bucket, Key=key, Body=b"1")
    finally:
        client.close()


def test_check_finds_objects_outside_aws_location(
    s3_env: str,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A django-storages bucket (keys at the root) checked with AWS_LOCATION=media: the
    gateway would find none of its files. check lists where they are and fails naming
    AWS_LOCATION; during a migration (local fallback), where an empty prefix is where the
    upload starts, it only warns."""
    put_objects(s3_server, s3_env, "logo.png", "documents/a.pdf", "avatars/u1.jpg")
    code, report, err = run_check(capsys)
    assert code == 1
    assert report["objects"] == 0
    assert report["layout"] == {
        "root_objects": 1,
        "prefixes": ["avatars/", "documents/"],
        "complete": True,
    }
    assert report["problems"] == [
        "AWS_LOCATION: no object under 'media/', but the bucket holds objects elsewhere"
        " (1 at the bucket root, under avatars/, under documents/). If your files are"
        " there, set AWS_LOCATION to their prefix ('' for the root, django-storages'"
        " default), for Django and the gateway alike"
    ]
    monkeypatch.setenv("GATEWAY_LOCAL_FALLBACK", "true")
    monkeypatch.setenv("MEDIA_ROOT", str(tmp_path))  # the fallback's disk
    code, report, err = run_check(capsys)
    assert code == 0
    assert report["warnings"][0].startswith("AWS_LOCATION: no object under 'media/'")

    monkeypatch.setenv("AWS_LOCATION", "")  # the right choice: silent
    code, report, err = run_check(capsys)
    assert (code, report["objects"], report["warnings"], err) == (0, 3, [], "")


def test_check_warns_when_everything_lies_under_one_prefix(
    s3_env: str,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """AWS_LOCATION unset (the root) over keys the gateway wrote under media/ while that
    was its default: a warning that names the fix, on stderr, without failing (one
    prefix for everything is also a layout of its own)."""
    monkeypatch.delenv("AWS_LOCATION")
    put_objects(s3_server, s3_env, "media/a.pdf", "media/public/logo.png")
    code = main(["check"])
    captured = capsys.readouterr()
    assert code == 0
    assert "location           \n" in captured.out  # the root, shown as ''
    assert captured.err == (
        "media-gateway: warning: AWS_LOCATION: the bucket root (unset or empty), and every"
        " object lies under 'media/'. If they were written with AWS_LOCATION=media (the"
        " gateway's default before it took django-storages' root), set AWS_LOCATION=media;"
        " if your names begin with 'media/', all is well\n"
    )


def test_check_warns_about_the_old_default_in_a_shared_bucket(
    s3_env: str,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same upgrade as above in a bucket that also holds collectstatic's ``static/``:
    ``media/`` is no longer the only prefix, and check once said nothing while every
    link of the gateway looked for its key at the root."""
    monkeypatch.delenv("AWS_LOCATION")
    put_objects(s3_server, s3_env, "media/a.pdf", "static/admin/base.css")
    code = main(["check"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err == (
        "media-gateway: warning: AWS_LOCATION: the bucket root (unset or empty), and objects"
        " lie under 'media/', the gateway's default before it took django-storages' root"
        " (and objects under static/). If the gateway wrote them, set AWS_LOCATION=media; if"
        " your names begin with 'media/', all is well\n"
    )
    monkeypatch.setenv("AWS_LOCATION", "media")  # the fix it names: silent
    assert main(["check"]) == 0
    assert capsys.readouterr().err == ""
