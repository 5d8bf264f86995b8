"""The migration scaled out as the Kubernetes Indexed Job runs it (deploy/kubernetes.yaml):
``media-gateway upload --shard I/3`` in three processes at once, each with its own state
file, against the SeaweedFS cluster. RELIABILITY items 57, 65 and 67."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.migrate import support
from tests.s3server import S3Server

# Fixtures shared with the other migration tests.
migrate_env = support.migrate_env
s3 = support.s3

FILES = 3000
SHARDS = 3
SHARD_TIMEOUT = 240  # seconds for all shards of a round; about 5 s on 2 busy cores
# How far a shard's peak RSS may rise above that of the same command on an empty tree
# (79 MiB here). Measured: +3 MiB at 1,000 files a shard, +7 MiB at 4,000 (SQLite's page
# cache filling, bounded at 2 MiB, and the allocator); bench/upload.py walks a million
# files. Memory that grew with the files walked (a list of them, a listing kept whole)
# would cross this at a few KB a file.
RSS_GROWTH_LIMIT = 24 * 1024 * 1024


def tree() -> dict[str, bytes]:
    """FILES small files in 100 folders two levels deep, of varied sizes."""
    return {
        f"d{i % 10}/e{i % 100}/f{i}.bin": f"file {i} ".encode() * (1 + i % 50) for i in range(FILES)
    }


def run_shards(
    tmp_path: Path, root: Path, argv: list[str], *, shards: int = SHARDS
) -> list[tuple[int, dict[str, Any], int]]:
    """``media-gateway upload --json --shard I/N`` for every I at once, as the Job's pods
    are: each shard's exit code, JSON summary and peak RSS in bytes (from wait4)."""
    command = [str(Path(sys.executable).parent / "media-gateway"), "upload", "--json", *argv]
    env = {**os.environ, "MEDIA_ROOT": str(root)}
    running = []
    for index in range(1, shards + 1):
        out = tmp_path / f"shard-{index}.json"
        state = tmp_path / f"state-{index}.sqlite3"  # each pod its own, as in the Job
        args = ["--shard", f"{index}/{shards}", "--state", str(state)]
        with out.open("wb") as stdout:
            proc = subprocess.Popen([*command, *args], env=env, stdout=stdout, cwd=tmp_path)
        running.append((proc, out))
    results = []
    deadline = time.monotonic() + SHARD_TIMEOUT
    for proc, out in running:
        rss = _wait(proc, deadline, [other for other, _ in running])
        results.append((proc.returncode, json.loads(out.read_text()), rss))
    return results


def _wait(proc: subprocess.Popen[bytes], deadline: float, group: list[Any]) -> int:
    """Reap ``proc`` by the deadline with wait4, which also says its peak RSS (in bytes);
    past the deadline the whole group is killed."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_maxrss * 1024  # KiB on Linux
        if time.monotonic() > deadline:
            for other in group:
                other.kill()
                other.wait()
            raise AssertionError(f"a shard ran past {SHARD_TIMEOUT} s")
        time.sleep(0.05)


@pytest.mark.parametrize("s3_server", ["seaweedfs"], indirect=True)
def test_three_shards_at_once_upload_every_file_once(
    migrate_env: str,
    media_root: Path,
    tmp_path: Path,
    s3: Any,
    s3_server: S3Server,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Items 65, 67 and 57: three shards run at once on 3,000 files upload each file
    exactly once (their summaries add up to the tree, and the bucket holds exactly it); a
    second round of all three uploads nothing; ``verify`` passes; and each shard's peak
    RSS stays within RSS_GROWTH_LIMIT of the same command on an empty tree."""
    empty = tmp_path / "baseline" / "media"
    empty.mkdir(parents=True)
    baseline = max(rss for _, _, rss in run_shards(empty.parent, empty, [], shards=1))
    files = tree()
    support.write_tree(media_root, files)

    first = run_shards(tmp_path, media_root, [])
    assert [code for code, _, _ in first] == [0] * SHARDS, first
    summaries = [summary for _, summary, _ in first]
    assert sum(s["uploaded"] for s in summaries) == FILES
    assert all(s["uploaded"] > FILES // (2 * SHARDS) for s in summaries), summaries
    assert sum(s["failed"] + s["skipped"] for s in summaries) == 0
    assert sum(s["bytes"] for s in summaries) == sum(map(len, files.values()))
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=migrate_env)
        for item in page.get("Contents", [])
    ]
    assert sorted(keys) == sorted(f"media/{name}" for name in files)
    peaks = [rss for _, _, rss in first]
    assert all(peak - baseline < RSS_GROWTH_LIMIT for peak in peaks), (baseline, peaks)

    second = run_shards(tmp_path, media_root, [])
    assert [(code, s["uploaded"]) for code, s, _ in second] == [(0, 0)] * SHARDS
    assert sum(s["skipped"] for _, s, _ in second) == FILES

    code, report = support.run_cli(capsys, "verify")
    assert (code, report["ok"], report["matched"]) == (0, True, FILES), report
    print(f"\nbaseline {baseline >> 20} MiB, shard peaks {[p >> 20 for p in peaks]} MiB")
