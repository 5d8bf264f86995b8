"""``media-gateway verify`` against a real S3 server: existence, size and SHA-256 of
every file; ETags never compared with MD5s. RELIABILITY items 49 and 52."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from tests.migrate import support
from tests.migrate.support import odd_tree, run_cli, write_tree
from tests.s3server import on_every_s3

# Fixtures shared with the other migration tests.
migrate_env = support.migrate_env
s3 = support.s3


@on_every_s3
def test_all_match_after_upload(
    migrate_env: str, media_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After an upload every file matches: exit 0, nothing missing or extra (item 52)."""
    tree = odd_tree()
    write_tree(media_root, tree)
    assert run_cli(capsys, "upload")[0] == 0
    code, report = run_cli(capsys, "verify")
    assert code == 0
    assert report["ok"] is True
    assert (report["checked"], report["matched"]) == (len(tree), len(tree))
    assert report["missing"] == report["mismatched"] == report["extra"] == []


@on_every_s3
def test_missing_mismatched_and_extra_are_listed(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing objects, a size difference, same-size different content (by the stored
    hash, and by hashing a download where no hash is stored) are listed and exit 1;
    extra objects are listed without failing (item 49)."""
    tree = {n: n.encode() * 3 for n in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt")}
    write_tree(media_root, tree)
    assert run_cli(capsys, "upload")[0] == 0
    bucket = migrate_env
    s3.delete_object(Bucket=bucket, Key="media/a.txt")
    s3.put_object(Bucket=bucket, Key="media/b.txt", Body=b"short")
    other = b"X" * len(tree["c.txt"])
    s3.put_object(
        Bucket=bucket,
        Key="media/c.txt",
        Body=other,
        Metadata={"sha256": hashlib.sha256(other).hexdigest()},
    )
    s3.put_object(Bucket=bucket, Key="media/d.txt", Body=b"Y" * len(tree["d.txt"]))
    # e.txt: rewritten by another tool, same bytes, no hash: a download proves it.
    s3.put_object(Bucket=bucket, Key="media/e.txt", Body=tree["e.txt"])
    s3.put_object(Bucket=bucket, Key="media/only-in-s3.txt", Body=b"new")
    code, report = run_cli(capsys, "verify")
    assert code == 1
    assert report["ok"] is False
    assert report["missing"] == ["a.txt"]
    assert report["mismatched"] == [
        {"path": "b.txt", "reason": "size: 15 on disk, 5 in S3"},
        {"path": "c.txt", "reason": "content: SHA-256 differs"},
        {"path": "d.txt", "reason": "content: SHA-256 differs"},
    ]
    assert report["extra"] == ["only-in-s3.txt"]
    assert report["matched"] == 2  # e.txt and f.txt


@on_every_s3
def test_deep_catches_an_object_whose_hash_lies(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """An object whose x-amz-meta-sha256 names the file's bytes but holds others passes
    the HEAD check; --deep downloads it and finds out."""
    write_tree(media_root, {"a.txt": b"good"})
    s3.put_object(
        Bucket=migrate_env,
        Key="media/a.txt",
        Body=b"evil",
        Metadata={"sha256": hashlib.sha256(b"good").hexdigest()},
    )
    assert run_cli(capsys, "verify")[0] == 0
    code, report = run_cli(capsys, "verify", "--deep")
    assert code == 1
    assert report["mismatched"][0]["path"] == "a.txt"
    assert "do not match its x-amz-meta-sha256" in report["mismatched"][0]["reason"]


def test_unreadable_entries_fail_verification(
    migrate_env: str, media_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO has no object and never will: verify reports it and exits 1."""
    write_tree(media_root, {"a.txt": b"a"})
    assert run_cli(capsys, "upload")[0] == 0
    os.mkfifo(media_root / "pipe")
    code, report = run_cli(capsys, "verify")
    assert code == 1
    assert report["failures"] == [{"path": "pipe", "error": "not a regular file (FIFO)"}]


def test_plain_output(
    migrate_env: str, media_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json: one line per missing file and a summary line."""
    write_tree(media_root, {"a.txt": b"a"})
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "missing: a.txt" in out
    assert "verify: 0 matched, 1 missing" in out
