"""``media-gateway upload`` against a real S3 server (rclone): skip logic, transfers,
resumability, faults and exit codes. RELIABILITY items 43-52."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from gateway import MediaGateway, Settings
from gateway.cli import main
from gateway.migrate.runner import Summary
from gateway.migrate.state import State
from gateway.migrate.upload import (
    MAX_PARTS,
    Uploader,
    UploadOptions,
    part_size_for,
    relative_listing,
)
from gateway.migrate.walk import LocalFile, Problem, walk
from gateway.migrate.wire import S3Wire
from tests.conftest import SECRET
from tests.helpers import call
from tests.migrate import support
from tests.migrate.support import (
    FlakyProxy,
    incomplete_uploads,
    make_wire,
    objects,
    odd_tree,
    run_cli,
    write_tree,
)
from tests.s3server import S3Server, on_every_s3

# Fixtures shared with the other migration tests.
migrate_env = support.migrate_env
s3 = support.s3
wire = support.wire

MiB = 1 << 20


def upload_api(
    wire: S3Wire,
    root: Path,
    state_path: Path,
    *,
    hook: Callable[[str, str], None] | None = None,
    entries: Iterable[LocalFile | Problem] | None = None,
    **options: Any,
) -> Summary:
    """Run the Uploader directly, for knobs the CLI does not expose."""
    state = State(state_path)
    uploader = Uploader(
        wire,
        key_for=lambda relpath: f"media/{relpath}",
        state=state,
        options=UploadOptions(**options),
        hook=hook,
    )
    try:
        walked = walk(str(root)) if entries is None else entries
        return uploader.run(walked, relative_listing(wire, "media/"))
    finally:
        state.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@on_every_s3
def test_upload_then_rerun_skips(
    migrate_env: str,
    media_root: Path,
    s3: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every file lands at AWS_LOCATION/relpath with its SHA-256, Content-Type and the
    configured object parameters; a second run uploads nothing (items 47, 49)."""
    tree = odd_tree()
    write_tree(media_root, tree)
    monkeypatch.setenv("AWS_S3_OBJECT_PARAMETERS", '{"CacheControl": "max-age=86400"}')
    code, report = run_cli(capsys, "upload")
    assert code == 0, report
    assert (report["uploaded"], report["skipped"], report["failed"]) == (len(tree), 0, 0)
    assert report["bytes"] == sum(map(len, tree.values()))
    stored = objects(s3, migrate_env)
    assert set(stored) == {f"media/{name}" for name in tree}
    for name, data in tree.items():
        obj = stored[f"media/{name}"]
        assert obj["body"] == data
        assert obj["metadata"]["sha256"] == sha256(data)
        assert obj["cache_control"] == "max-age=86400"
    assert stored["media/a b.txt"]["content_type"] == "text/plain; charset=utf-8"
    assert stored["media/empty.bin"]["content_type"] == "application/octet-stream"

    code, report = run_cli(capsys, "upload")
    assert code == 0
    assert (report["uploaded"], report["skipped"], report["bytes"]) == (0, len(tree), 0)


@on_every_s3
def test_odd_names_round_trip_through_the_gateway(
    migrate_env: str, media_root: Path, s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spaces, %, +, #, ?, newline, NFC and NFD, 0 bytes, deep nesting: the gateway's
    redirect for each name fetches exactly the uploaded bytes (item 47)."""
    tree = odd_tree()
    write_tree(media_root, tree)
    assert run_cli(capsys, "upload")[0] == 0
    gateway = MediaGateway(
        settings=Settings(
            secret_keys=(SECRET,),
            media_root=media_root,
            use_s3=True,
            aws_location="media",  # as .env.example sets it
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
            aws_storage_bucket_name=migrate_env,
            aws_s3_endpoint_url=s3_server.endpoint_url,
        )
    )
    for name, data in tree.items():
        reply = call(gateway, gateway.signer.sign_url(name))
        assert reply.status == 302, name
        assert httpx.get(reply.headers["location"]).content == data, name


@on_every_s3
def test_sizes_around_the_thresholds(
    s3_server: S3Server, s3_bucket: str, s3: Any, tmp_path: Path, media_root: Path
) -> None:
    """0 B, 5 MiB - 1, exactly the threshold, 5 MiB + 1 and three parts: each object is
    byte-exact with the right hash; only files above the threshold use parts (item 48)."""
    sizes = {"zero": 0, "below": 5 * MiB - 1, "at": 5 * MiB, "above": 5 * MiB + 1}
    sizes["three"] = 11 * MiB
    tree = {name: os.urandom(size) for name, size in sizes.items()}
    write_tree(media_root, tree)
    with (
        FlakyProxy(s3_server.endpoint_url) as proxy,
        make_wire(s3_server, s3_bucket, proxy.url) as wire,
    ):
        summary = upload_api(
            wire, media_root, tmp_path / "s", multipart_threshold=5 * MiB, part_size=5 * MiB
        )
    assert summary.counts["uploaded"] == 5 and not summary.failures
    stored = objects(s3, s3_bucket)
    for name, data in tree.items():
        assert stored[f"media/{name}"]["body"] == data
        assert stored[f"media/{name}"]["metadata"]["sha256"] == sha256(data)
    parts = [path for method, path, _ in proxy.requests if "partNumber=" in path]
    assert sorted(p.split("?")[0].rsplit("/", 1)[1] for p in parts) == ["above"] * 2 + ["three"] * 3
    # boto3 >= 1.36 would send aws-chunked bodies and CRC32 trailers; we send neither.
    for _, _, headers in proxy.requests:
        lowered = {k.lower(): v for k, v in headers.items()}
        assert "aws-chunked" not in lowered.get("content-encoding", "")
        assert not any(k.startswith(("x-amz-checksum", "x-amz-trailer")) for k in lowered)


def test_part_size_scales_past_10000_parts() -> None:
    """A file that would need more than 10,000 parts gets bigger parts, in whole MiB."""
    assert part_size_for(100 * MiB, 8 * MiB) == 8 * MiB
    assert part_size_for(1 * MiB, 1 * MiB) == 5 * MiB  # S3's minimum part size
    for size in (80_000 * MiB + 1, 5 * 1024**4):
        part = part_size_for(size, 8 * MiB)
        assert part % MiB == 0 and -(-size // part) <= MAX_PARTS


@on_every_s3
def test_same_size_different_content_is_reuploaded(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """An object of the right size but other bytes, with no hash or a wrong one, is
    replaced; so is a file rewritten in place with its mtime put back (item 50)."""
    write_tree(media_root, {"a.txt": b"AAAA", "b.txt": b"BBBB", "c.txt": b"CCCC"})
    s3.put_object(Bucket=migrate_env, Key="media/a.txt", Body=b"xxxx")
    s3.put_object(
        Bucket=migrate_env, Key="media/b.txt", Body=b"yyyy", Metadata={"sha256": sha256(b"yyyy")}
    )
    code, report = run_cli(capsys, "upload")
    assert (code, report["uploaded"]) == (0, 3)
    stored = objects(s3, migrate_env)
    assert [stored[f"media/{n}"]["body"] for n in ("a.txt", "b.txt", "c.txt")] == [
        b"AAAA",
        b"BBBB",
        b"CCCC",
    ]

    path = media_root / "c.txt"
    before = path.stat()
    path.write_bytes(b"DDDD")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    code, report = run_cli(capsys, "upload")
    assert (code, report["uploaded"]) == (0, 1)
    assert objects(s3, migrate_env)["media/c.txt"]["body"] == b"DDDD"


@on_every_s3
def test_lost_state_resumes_from_the_listing(
    migrate_env: str, media_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the state file a re-run still uploads nothing: same size and the stored
    SHA-256 (a HEAD each) prove the objects complete (item 43)."""
    write_tree(media_root, {f"f{i}.txt": f"{i}".encode() * 100 for i in range(20)})
    assert run_cli(capsys, "upload")[0] == 0
    state_dir = tmp_path / ".media-gateway-state"
    assert len(list(state_dir.glob("*.sqlite3"))) == 1
    for path in state_dir.iterdir():
        path.unlink()
    code, report = run_cli(capsys, "upload")
    assert (code, report["uploaded"], report["skipped"]) == (0, 0, 20)


def test_file_changing_during_upload_is_sent_again(
    wire: S3Wire, s3: Any, tmp_path: Path, media_root: Path
) -> None:
    """A small file rewritten after it was read, and a large one changed in place
    between parts with its mtime restored: each is uploaded again, and every object
    holds exactly the bytes its sha256 names (item 45)."""
    small, large = media_root / "small.txt", media_root / "large.bin"
    small.write_bytes(b"first version")
    large_data = os.urandom(12 * MiB)
    large.write_bytes(large_data)
    changed: set[str] = set()

    def hook(event: str, relpath: str) -> None:
        if relpath in changed:
            return
        changed.add(relpath)
        if relpath == "small.txt":
            small.write_bytes(b"second, longer version")
        else:
            st = large.stat()
            with large.open("r+b") as f:
                f.seek(11 * MiB)
                f.write(b"!" * 16)
            os.utime(large, ns=(st.st_atime_ns, st.st_mtime_ns))

    summary = upload_api(
        wire, media_root, tmp_path / "s", hook=hook, multipart_threshold=5 * MiB, part_size=5 * MiB
    )
    assert summary.counts["uploaded"] == 2 and not summary.failures
    stored = objects(s3, wire.bucket)
    for name in ("small.txt", "large.bin"):
        data = (media_root / name).read_bytes()
        assert stored[f"media/{name}"]["body"] == data
        assert stored[f"media/{name}"]["metadata"]["sha256"] == sha256(data)
    assert data != large_data
    assert incomplete_uploads(s3, wire.bucket) == []


def test_file_that_keeps_changing_fails(
    wire: S3Wire, s3: Any, tmp_path: Path, media_root: Path
) -> None:
    """A file rewritten on every read fails after a few tries; no object is written,
    the other files are (item 45)."""
    write_tree(media_root, {"busy.log": b"0", "calm.txt": b"calm"})
    counter = iter(range(1, 100))

    def hook(event: str, relpath: str) -> None:
        if relpath == "busy.log":
            (media_root / "busy.log").write_bytes(b"x" * next(counter))

    summary = upload_api(wire, media_root, tmp_path / "s", hook=hook)
    assert summary.failures == [
        {"path": "busy.log", "error": "kept changing while being uploaded (3 tries)"}
    ]
    assert set(objects(s3, wire.bucket)) == {"media/calm.txt"}


def test_faults_are_reported_per_file(
    migrate_env: str,
    media_root: Path,
    s3: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FIFO, broken symlink, a file that cannot be opened (EACCES) and one that vanishes
    after the walk: each listed in the JSON, exit 1, the rest uploaded (item 46). Tests
    run as root, whom chmod 000 does not stop, so EACCES comes from a patched os.open."""
    write_tree(media_root, {"a.txt": b"a", "denied.txt": b"d", "vanish.txt": b"v", "z.txt": b"z"})
    os.mkfifo(media_root / "fifo")
    (media_root / "broken").symlink_to(media_root / "missing")
    real_open, real_walk = os.open, walk

    def open_(path: str | os.PathLike[str], flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("denied.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def walk_(*args: Any, **kwargs: Any) -> Iterator[LocalFile | Problem]:
        for entry in real_walk(*args, **kwargs):
            if entry.relpath == "vanish.txt":
                assert isinstance(entry, LocalFile)
                os.unlink(entry.path)
            yield entry

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr("gateway.migrate.cli.walk", walk_)
    code, report = run_cli(capsys, "upload")
    assert code == 1
    assert (report["uploaded"], report["failed"]) == (2, 4)
    errors = {f["path"]: f["error"] for f in report["failures"]}
    assert errors == {
        "broken": "broken symlink",
        "denied.txt": "PermissionError: Permission denied",
        "fifo": "not a regular file (FIFO)",
        "vanish.txt": "FileNotFoundError: No such file or directory",
    }
    assert set(objects(s3, migrate_env)) == {"media/a.txt", "media/z.txt"}


def test_plain_output_names_failures_on_stderr(
    migrate_env: str, media_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json: a summary line on stdout, one line per failed file on stderr."""
    write_tree(media_root, {"a.txt": b"a"})
    os.mkfifo(media_root / "fifo")
    assert main(["upload"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("upload: 1 uploaded, 0 skipped, 1 failed")
    assert "media-gateway: fifo: not a regular file (FIFO)" in err


def test_bad_settings_exit_2(
    migrate_env: str,
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A missing bucket is named and never created; bad credentials, a missing media
    directory, bad object parameters and bad --shard values exit 2."""
    (media_root / "a.txt").write_bytes(b"a")
    cases = [
        (
            "AWS_STORAGE_BUCKET_NAME",
            "no-such-bucket-here",
            "bucket 'no-such-bucket-here' does not exist",
        ),
        ("AWS_SECRET_ACCESS_KEY", "wrong", "AWS_ACCESS_KEY_ID: S3 refused the credentials"),
        ("MEDIA_ROOT", str(media_root / "nope"), "MEDIA_ROOT: directory"),
        ("AWS_S3_OBJECT_PARAMETERS", '{"Colour": "blue"}', "unsupported parameter 'Colour'"),
    ]
    for variable, value, message in cases:
        with monkeypatch.context() as patch:
            patch.setenv(variable, value)
            assert main(["upload", "--json"]) == 2, variable
            captured = capsys.readouterr()
            assert captured.out == ""
            assert captured.err.startswith("media-gateway: ") and message in captured.err
            assert captured.err.count("\n") == 1
    for shard in ("0/3", "4/3", "x", "1/0", "2/1"):
        with pytest.raises(SystemExit) as exc:
            main(["upload", "--shard", shard])
        assert exc.value.code == 2
        assert "expected I/N with 1 <= I <= N" in capsys.readouterr().err


def test_dry_run_uploads_nothing(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run counts what would be uploaded and writes no object."""
    write_tree(media_root, {"a.txt": b"a", "b.txt": b"b"})
    code, report = run_cli(capsys, "upload", "--dry-run")
    assert (code, report["uploaded"], report["dry_run"]) == (0, 2, True)
    assert objects(s3, migrate_env) == {}


def test_shards_and_globs_split_the_work(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three shards upload disjoint parts that make up the whole tree; --include and
    --exclude narrow a run (item 52: nothing missing, nothing extra)."""
    tree = {f"d{i % 5}/f{i}.txt": f"{i}".encode() for i in range(60)}
    tree["skip/me.tmp"] = b"tmp"
    write_tree(media_root, tree)
    uploaded = [
        run_cli(capsys, "upload", "--shard", f"{i}/3", "--exclude", "*.tmp")[1] for i in range(1, 4)
    ]
    assert sum(r["uploaded"] for r in uploaded) == 60
    assert all(r["uploaded"] > 5 for r in uploaded)
    assert set(objects(s3, migrate_env)) == {f"media/{n}" for n in tree if n != "skip/me.tmp"}
    code, report = run_cli(capsys, "upload", "--include", "skip/*")
    assert (code, report["uploaded"], report["skipped"]) == (0, 1, 0)


def test_shards_count_from_one(
    migrate_env: str,
    media_root: Path,
    s3: Any,
    s3_server: S3Server,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Item 65: --shard 1/3, 2/3 and 3/3, as the README writes them, upload every file
    exactly once (each shard's PUTs are counted on the wire); 0/3 is a usage error that
    says shards count from 1."""
    tree = {f"s/{i}.txt": f"{i}".encode() for i in range(90)}
    write_tree(media_root, tree)
    with pytest.raises(SystemExit) as exc:
        main(["upload", "--shard", "0/3"])
    assert exc.value.code == 2
    assert "shards count from 1" in capsys.readouterr().err
    assert objects(s3, migrate_env) == {}
    owners: dict[str, int] = {}
    for index in (1, 2, 3):
        before = set(objects(s3, migrate_env))
        code, report = run_cli(capsys, "upload", "--shard", f"{index}/3")
        assert (code, report["failed"], report["skipped"]) == (0, 0, 0)
        added = set(objects(s3, migrate_env)) - before
        assert len(added) == report["uploaded"] > 10  # each shard a real share
        for key in added:
            assert key not in owners
            owners[key] = index
    assert set(owners) == {f"media/{name}" for name in tree}
    # Any shard run again finds its files there already: nothing twice.
    code, report = run_cli(capsys, "upload", "--shard", "3/3")
    assert (code, report["uploaded"]) == (0, 0)


@on_every_s3
def test_error_aborts_the_multipart_upload(
    s3_server: S3Server, s3_bucket: str, s3: Any, tmp_path: Path, media_root: Path
) -> None:
    """A part refused for good fails the file and aborts its multipart upload: nothing
    incomplete is left behind (item 43)."""
    (media_root / "big.bin").write_bytes(os.urandom(11 * MiB))
    (media_root / "ok.txt").write_bytes(b"ok")

    def fail(number: int, method: str, path: str) -> int | None:
        return 403 if "partNumber=2" in path else None

    with (
        FlakyProxy(s3_server.endpoint_url, fail) as proxy,
        make_wire(s3_server, s3_bucket, proxy.url) as wire,
    ):
        summary = upload_api(
            wire, media_root, tmp_path / "s", multipart_threshold=5 * MiB, part_size=5 * MiB
        )
    assert [f["path"] for f in summary.failures] == ["big.bin"]
    assert "AccessDenied" in summary.failures[0]["error"]
    assert any(method == "DELETE" for method, _, _ in proxy.requests)
    assert incomplete_uploads(s3, s3_bucket) == []
    assert set(objects(s3, s3_bucket)) == {"media/ok.txt"}


@on_every_s3
def test_lost_complete_reply_is_recovered(
    s3_server: S3Server, s3_bucket: str, s3: Any, tmp_path: Path, media_root: Path
) -> None:
    """CompleteMultipartUpload succeeds but its answer is lost: the retry finds the
    upload gone, and a HEAD showing our size and hash proves the object complete."""
    data = os.urandom(6 * MiB)
    (media_root / "big.bin").write_bytes(data)
    lost: list[str] = []

    def lose_reply(method: str, path: str) -> bool:
        if method == "POST" and "uploadId=" in path and not lost:
            lost.append(path)
            return True
        return False

    with (
        FlakyProxy(s3_server.endpoint_url, lose_reply=lose_reply) as proxy,
        make_wire(s3_server, s3_bucket, proxy.url) as wire,
    ):
        summary = upload_api(
            wire, media_root, tmp_path / "s", multipart_threshold=5 * MiB, part_size=5 * MiB
        )
    assert lost and not summary.failures and summary.counts["uploaded"] == 1
    assert objects(s3, s3_bucket)["media/big.bin"]["body"] == data


def test_503_storm_at_concurrency_64(
    migrate_env: str,
    media_root: Path,
    s3_server: S3Server,
    s3: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A third of all requests answered 503 SlowDown, 64 files in flight: backoff and
    retries finish the job, nothing is lost, verify finds zero missing and zero extra
    (items 51, 52)."""
    tree = {f"d{i % 8}/f{i:03}.bin": os.urandom(1000 + i) for i in range(200)}
    tree["big.bin"] = os.urandom(20 * MiB)
    write_tree(media_root, tree)

    def fail(number: int, method: str, path: str) -> int | None:
        return 503 if number % 3 == 0 else None

    with FlakyProxy(s3_server.endpoint_url, fail) as proxy:
        monkeypatch.setenv("AWS_S3_ENDPOINT_URL", proxy.url)
        code, report = run_cli(capsys, "upload", "--workers", "64")
    assert code == 0, report["failures"]
    assert (report["uploaded"], report["failed"]) == (len(tree), 0)
    assert report["retries"] >= proxy.failed > 50
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", s3_server.endpoint_url)
    code, verified = run_cli(capsys, "verify")
    assert code == 0
    assert (verified["matched"], verified["missing"], verified["extra"]) == (len(tree), [], [])


def test_cleanup_aborts_orphans_under_the_prefix(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--cleanup aborts incomplete uploads left under the prefix, within the run's
    shard and globs, and leaves other prefixes alone; with --dry-run it only counts."""
    (media_root / "a.txt").write_bytes(b"a")
    for key in ("media/orphan1.bin", "media/x/orphan2.bin", "other/keep.bin"):
        s3.create_multipart_upload(Bucket=migrate_env, Key=key)
    code, report = run_cli(capsys, "upload", "--cleanup", "--dry-run")
    assert (code, report["aborted_uploads"]) == (0, 2)
    assert len(incomplete_uploads(s3, migrate_env)) == 3
    code, report = run_cli(capsys, "upload", "--cleanup")
    assert (code, report["aborted_uploads"], report["uploaded"]) == (0, 2, 1)
    assert [u["Key"] for u in incomplete_uploads(s3, migrate_env)] == ["other/keep.bin"]


def _start_upload(tmp_path: Path, endpoint: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AWS_S3_ENDPOINT_URL": endpoint}
    argv = [sys.executable, "-m", "gateway.cli", "upload", "--json"]
    argv += ["--state", str(tmp_path / "state.sqlite3")]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_multipart(s3: Any, bucket: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not incomplete_uploads(s3, bucket):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no multipart upload started"
        time.sleep(0.02)


def test_sigkill_mid_multipart_then_rerun(
    migrate_env: str,
    media_root: Path,
    s3_server: S3Server,
    s3: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGKILL while a multipart upload is in flight: a re-run with --cleanup aborts the
    orphan, uploads the rest without re-sending finished files, and verify passes with
    ListMultipartUploads empty (item 43)."""
    tree = {"big.bin": os.urandom(40 * MiB)} | {f"s/{i:02}.txt": b"x" * i for i in range(30)}
    write_tree(media_root, tree)
    with FlakyProxy(s3_server.endpoint_url, part_delay=2.0) as proxy:
        process = _start_upload(tmp_path, proxy.url)
        try:
            _wait_for_multipart(s3, migrate_env, process)
            time.sleep(0.3)
            process.kill()
        finally:
            process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert "media/big.bin" not in objects(s3, migrate_env)

    code, report = run_cli(
        capsys, "upload", "--cleanup", "--state", str(tmp_path / "state.sqlite3")
    )
    assert code == 0
    assert report["aborted_uploads"] == 1
    assert report["uploaded"] + report["skipped"] == len(tree)
    assert report["skipped"] > 0 and report["uploaded"] >= 1
    assert incomplete_uploads(s3, migrate_env) == []
    assert run_cli(capsys, "verify")[0] == 0


def test_sigint_aborts_in_flight_and_keeps_state(
    migrate_env: str, media_root: Path, s3_server: S3Server, s3: Any, tmp_path: Path
) -> None:
    """SIGINT: in-flight multipart uploads are aborted, the state file is committed and
    sound, the summary says interrupted, exit code 130 (item 44)."""
    tree = {"big.bin": os.urandom(40 * MiB)} | {f"s/{i:02}.txt": b"y" * i for i in range(30)}
    write_tree(media_root, tree)
    with FlakyProxy(s3_server.endpoint_url, part_delay=1.0) as proxy:
        process = _start_upload(tmp_path, proxy.url)
        try:
            _wait_for_multipart(s3, migrate_env, process)
            time.sleep(0.3)  # the small files finish; the parts wait 1 s at the proxy
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert incomplete_uploads(s3, migrate_env) == []
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT count(*) FROM files").fetchone()[0]
    db.close()
    assert rows == report["uploaded"] > 0


def test_state_file_inside_the_source_is_not_uploaded(
    migrate_env: str, media_root: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --state file under the source changes all along the run: it is left out."""
    (media_root / "a.txt").write_bytes(b"a")
    state = media_root / ".state" / "s.sqlite3"
    code, report = run_cli(capsys, "upload", "--state", str(state))
    assert (code, report["uploaded"], report["failed"]) == (0, 1, 0)
    assert state.exists()
    assert set(objects(s3, migrate_env)) == {"media/a.txt"}


def test_folder_markers_are_not_files() -> None:
    """Keys ending in / (console "folders") never pair with a file."""
    from gateway.migrate.wire import ObjectInfo

    class Listing:
        def list_objects(self, prefix: str, strip: bool = False) -> Iterator[ObjectInfo]:
            yield from (ObjectInfo(k, 0, "e") for k in ("a.txt", "dir/", "dir/b.txt"))

    # A stand-in with the one method relative_listing calls.
    listing = cast(S3Wire, Listing())
    assert [o.key for o in relative_listing(listing, "media/")] == ["a.txt", "dir/b.txt"]


def test_progress_bar_on_a_terminal() -> None:
    """On a terminal: one redrawn line with files, bytes, rate and an ETA once the
    counting walk has the total; a newline at the end."""
    import io

    from gateway.migrate.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress("upload", stream=stream)
    progress.total_files = 4
    progress._shown = 0.0
    progress.update(1024, moved=True)
    progress.done()
    text = stream.getvalue()
    assert text.startswith("\r\x1b[K[#####               ] 1/4 files, 1.0 KiB,")
    assert "ETA" in text and text.endswith("\n")


def test_small_file_buffers_are_bounded(
    wire: S3Wire, s3: Any, tmp_path: Path, media_root: Path
) -> None:
    """Whole small files are held in memory only up to buffer_bytes at once, whatever
    the number of workers."""
    write_tree(media_root, {f"f{i}.bin": os.urandom(3 * MiB) for i in range(8)})
    state = State(tmp_path / "s")
    seen = []
    uploader = Uploader(
        wire,
        key_for=lambda relpath: f"media/{relpath}",
        state=state,
        options=UploadOptions(workers=8, buffer_bytes=7 * MiB),
        hook=lambda event, relpath: seen.append(uploader._buffers.used),
    )
    try:
        summary = uploader.run(walk(str(media_root)), relative_listing(wire, "media/"))
    finally:
        state.close()
    assert summary.counts["uploaded"] == 8
    assert 3 * MiB <= max(seen) <= 6 * MiB  # two of 3 MiB fit in 7 MiB, three do not
