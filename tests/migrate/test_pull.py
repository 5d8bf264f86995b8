"""``media-gateway pull``, the rollback, against a real S3 server: objects missing or
different on disk come back, atomically; nothing uploaded in between is lost."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from gateway import MediaGateway, Settings
from tests.conftest import SECRET
from tests.helpers import call
from tests.migrate import support
from tests.migrate.support import odd_tree, run_cli, write_tree
from tests.s3server import on_every_s3

# Fixtures shared with the other migration tests.
migrate_env = support.migrate_env
s3 = support.s3


@on_every_s3
def test_rollback_loses_nothing(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files the app wrote to S3 after the switch, an object changed in S3 (same size)
    and a file deleted on disk come back; local-only files stay; a second pull does
    nothing; verify then finds zero missing and zero extra (item 52)."""
    tree = odd_tree()
    write_tree(media_root, tree)
    assert run_cli(capsys, "upload")[0] == 0
    bucket = migrate_env
    s3.put_object(Bucket=bucket, Key="media/uploads/new.jpg", Body=b"jpeg bytes")
    s3.put_object(
        Bucket=bucket,
        Key="media/uploads/with-mtime.txt",
        Body=b"kept mtime",
        Metadata={"mtime": "1700000000.5", "sha256": hashlib.sha256(b"kept mtime").hexdigest()},
    )
    changed = b"Z" * len(tree["a b.txt"])
    s3.put_object(Bucket=bucket, Key="media/a b.txt", Body=changed)
    (media_root / "c++.txt").unlink()
    (media_root / "local-only.txt").write_bytes(b"stays")

    code, report = run_cli(capsys, "pull")
    assert code == 0, report
    assert (report["pulled"], report["failed"]) == (4, 0)
    assert (media_root / "uploads/new.jpg").read_bytes() == b"jpeg bytes"
    assert (media_root / "a b.txt").read_bytes() == changed
    assert (media_root / "c++.txt").read_bytes() == tree["c++.txt"]
    assert (media_root / "local-only.txt").read_bytes() == b"stays"
    assert (media_root / "uploads/with-mtime.txt").stat().st_mtime_ns == 1_700_000_000_500_000_000
    leftovers = [p for p in media_root.rglob("*") if p.name.startswith(".pull-")]
    assert leftovers == []

    code, report = run_cli(capsys, "pull")
    assert (code, report["pulled"], report["skipped"]) == (0, 0, len(tree) + 2)
    code, verified = run_cli(capsys, "verify", "--exclude", "local-only.txt")
    assert code == 0
    assert verified["missing"] == verified["extra"] == []


@on_every_s3
def test_same_size_local_change_is_detected_by_hash(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no state to go on, a local file of the object's size but other bytes is
    replaced (stored hash, else a download compared), an identical one is kept."""
    write_tree(media_root, {"a.txt": b"AAAA", "b.txt": b"BBBB"})
    assert run_cli(capsys, "upload")[0] == 0
    s3.put_object(Bucket=migrate_env, Key="media/c.txt", Body=b"CCCC")  # no hash stored
    write_tree(media_root, {"a.txt": b"aaaa", "c.txt": b"CCCC"})
    code, report = run_cli(capsys, "pull", "--state", str(media_root.parent / "fresh.sqlite3"))
    assert (code, report["pulled"], report["skipped"]) == (0, 1, 2)
    assert (media_root / "a.txt").read_bytes() == b"AAAA"


def test_pull_into_another_directory(
    migrate_env: str, media_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dest copies the whole prefix into a new directory, odd names byte-exact."""
    tree = odd_tree()
    write_tree(media_root, tree)
    assert run_cli(capsys, "upload")[0] == 0
    dest = tmp_path / "restored"
    code, report = run_cli(capsys, "pull", "--dest", str(dest))
    assert (code, report["pulled"]) == (0, len(tree))
    for name, data in tree.items():
        assert (dest / name).read_bytes() == data


def test_unsafe_keys_are_refused(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key that cannot be a safe path under MEDIA_ROOT is reported, not written."""
    s3.put_object(Bucket=migrate_env, Key="media/ok.txt", Body=b"ok")
    s3.put_object(Bucket=migrate_env, Key="media/back\\slash.txt", Body=b"x")
    code, report = run_cli(capsys, "pull")
    assert code == 1
    assert report["pulled"] == 1
    assert [f["path"] for f in report["failures"]] == ["back\\slash.txt"]
    assert sorted(os.listdir(media_root)) == ["ok.txt"]


def test_local_mode_serves_what_was_pulled(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the rollback the gateway in local mode serves a file that only ever
    existed in S3."""
    s3.put_object(Bucket=migrate_env, Key="media/docs/after switch.pdf", Body=b"%PDF-1.7")
    assert run_cli(capsys, "pull")[0] == 0
    gateway = MediaGateway(settings=Settings(secret_keys=(SECRET,), media_root=media_root))
    reply = call(gateway, gateway.signer.sign_url("docs/after switch.pdf"))
    assert (reply.status, reply.body) == (200, b"%PDF-1.7")


def test_symlinked_directory_cannot_lead_out(
    migrate_env: str, media_root: Path, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An object under a directory that is a symlink out of MEDIA_ROOT is refused, and
    nothing is created outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (media_root / "link").symlink_to(outside)
    s3.put_object(Bucket=migrate_env, Key="media/link/sub/evil.txt", Body=b"x")
    code, report = run_cli(capsys, "pull")
    assert code == 1
    assert report["failures"] == [
        {"path": "link/sub/evil.txt", "error": "a symlink leads out of the destination"}
    ]
    assert list(outside.iterdir()) == []
