"""Benchmark ``local``: serving files from local disk, against baselines in the same run.

(a) Many small files: 4 KiB files behind signed URLs, in requests/s and in server CPU
    per request, as a ratio of a bare ASGI app answering a fixed 302 on the same uvicorn
    (the ceiling for any Python app here), next to Starlette's StaticFiles, servestatic,
    and the gateway's own response replayed from memory (what uvicorn alone charges for
    a response of that shape, so the rest of the gap is our code). The gateway runs as
    shipped, ``media-gateway serve`` with its default settings (access log on, to
    /dev/null by stdout redirection), on 1,000 files with a signed URL each, requested
    in turn; next to the same with ``--no-access-log`` (what the log costs), with
    GATEWAY_FILE_CACHE_MB=0 (every file opened and read on every request), and on 20,000
    files: more than it keeps or remembers, so every request opens its file and checks
    its signature.
(b) One big file: a 512 MiB download by a single client, in MB/s, as a ratio of nginx
    with sendfile, next to Starlette and servestatic; plus each server's peak RSS, which
    must not grow with the file.

Targets: (a) as shipped, >= 0.40x of the bare 302 and the access log costing at most
10% (issue 12); (b) >= 0.5x nginx (the foundation issue).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from gateway import URLSigner

from . import _apps
from ._common import (
    Loaded,
    Options,
    PeakMemory,
    Report,
    Row,
    Server,
    access_log_row,
    cpu_seconds,
    download,
    interleaved_rounds,
    memory_kib,
    progress,
    request,
    serve_gateway,
    serve_uvicorn,
)
from ._environment import describe
from ._nginx import available as nginx_available, serve_nginx

SMALL_SIZE = 4 * 1024
LARGE_SIZE = 512 * 1024 * 1024
SMALL_TARGET = 0.40  # issue 12, as shipped
LOG_TARGET = 0.90  # issue 12: the access log on costs at most 10% of the requests/s
# Signed URLs requested in turn for the target: a page's worth of different files.
ROTATION = 1_000
LARGE_TARGET = 0.5
# A streaming server holds a chunk or two per download plus socket buffers; growth
# anywhere near the file's size would mean it buffers the body.
RSS_GROWTH_LIMIT_MIB = 32
MB = 1_000_000

SMALL_PATH = "docs/small.jpg"
# Enough 4 KiB files (80 MB) that neither the kept files (8 MiB) nor the remembered
# signatures (2,048) hold them: requested in turn, none is found.
MANY_FILES = 20_000
PUBLIC_PATH = f"{_apps.PUBLIC_PREFIX}/small.jpg"
LARGE_PATH = "video/large.bin"

BARE = "bare ASGI 302"
NGINX = "nginx sendfile"
OURS = f"gateway as shipped, {ROTATION:,} files in turn"
QUIET = "the same, --no-access-log"
PUBLIC = "gateway as shipped, public prefix"
UNKEPT = "the same, GATEWAY_FILE_CACHE_MB=0"
MANY = f"gateway as shipped, {MANY_FILES:,} files in turn"
BIG = "gateway as shipped, signed URL"
REPLAY = "gateway's response, replayed"
STARLETTE = "Starlette StaticFiles"
SERVESTATIC = "servestatic (ASGI)"
# The other Python servers, as uvicorn app factories.
FACTORIES = {
    BARE: "bench._apps:redirect",
    REPLAY: "bench._apps:replay",
    STARLETTE: "bench._apps:starlette_static",
    SERVESTATIC: "bench._apps:servestatic",
}
# The gateway's cases: `media-gateway serve` OPTIONS, and settings besides the defaults.
GATEWAYS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    OURS: ((), {}),
    QUIET: (("--no-access-log",), {}),
    PUBLIC: ((), {}),
    UNKEPT: ((), {"GATEWAY_FILE_CACHE_MB": "0"}),
    MANY: ((), {}),
    BIG: ((), {}),
}


def run(options: Options) -> Report:
    report = Report("local", "local-disk delivery")
    if not importlib.util.find_spec("servestatic"):
        report.notes.append("servestatic is not installed: skipped (pip install servestatic).")
    if not nginx_available():
        report.notes.append("nginx is not installed: no 512 MiB baseline (nginx-light).")
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # nginx's worker runs as nobody and must reach the files
        root = base / "media"
        _make_media(root)
        secret = secrets.token_urlsafe(32)
        env = {"BENCH_MEDIA_ROOT": str(root), "BENCH_SECRET": secret}
        settings = _apps.settings(root, secret)
        signer = URLSigner.from_settings(settings)
        many = [signer.sign_url(_many_path(index)) for index in range(MANY_FILES)]
        report.rows += _small_files(env, signer.sign_url(SMALL_PATH), many, options, report.notes)
        report.rows += _large_file(base, env, signer.sign_url(LARGE_PATH), options, report.notes)
    report.notes += [
        f"4 KiB: {options.rounds} rounds of {options.duration:g} s per server, every server "
        "once per round; value = median requests/s, ratio = median of the per-round ratios.",
        *describe(options),
    ]
    return report


def _make_media(root: Path) -> None:
    for relpath in (SMALL_PATH, PUBLIC_PATH, LARGE_PATH):
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
    small = secrets.token_bytes(SMALL_SIZE)
    (root / SMALL_PATH).write_bytes(small)
    (root / PUBLIC_PATH).write_bytes(small)
    for index in range(MANY_FILES):
        path = root / _many_path(index)
        if index % 1000 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(small)
    # Real blocks (a sparse file's holes read differently), written fast: one random
    # 8 MiB block repeated. fsync, or the kernel writes 512 MiB back during the first
    # measurements, which cut them by two thirds in a trial run.
    block = secrets.token_bytes(8 * 1024 * 1024)
    with open(root / LARGE_PATH, "wb") as file:
        for _ in range(LARGE_SIZE // len(block)):
            file.write(block)
        file.flush()
        os.fsync(file.fileno())
    os.sync()  # the 20,000 small files too, before anything is measured


def _many_path(index: int) -> str:
    return f"many/{index // 1000:02d}/{index:05d}.jpg"


def _python_cases(*names: str) -> list[str]:
    return [n for n in names if n != SERVESTATIC or importlib.util.find_spec("servestatic")]


def _serve(case: str, env: dict[str, str]) -> contextlib.AbstractContextManager[Server]:
    if case not in GATEWAYS:
        return serve_uvicorn(case, FACTORIES[case], env=env)
    options, extra = GATEWAYS[case]
    settings = _apps.gateway_settings(Path(env["BENCH_MEDIA_ROOT"]), env["BENCH_SECRET"])
    return serve_gateway(case, {**settings, **extra}, *options)


def _small_files(
    env: dict[str, str], signed: str, many: list[str], options: Options, notes: list[str]
) -> list[Row]:
    # The baselines get one signed URL, so the request bytes are alike; those that do not
    # check signatures ignore the query. The gateway's cases take their targets in turn.
    rotation = many[:ROTATION]
    rotated = {OURS: rotation, QUIET: rotation, UNKEPT: rotation, MANY: many}
    targets = {PUBLIC: f"/media/{PUBLIC_PATH}"}
    cases = _python_cases(BARE, REPLAY, OURS, QUIET, UNKEPT, PUBLIC, MANY, STARLETTE, SERVESTATIC)
    env = {**env, "BENCH_REPLAY_TARGET": signed}
    with contextlib.ExitStack() as stack:
        servers = {}
        for case in cases:
            server = stack.enter_context(_serve(case, env))
            url = server.url + (rotated[case][0] if case in rotated else targets.get(case, signed))
            _expect(case, url, status=302 if case == BARE else 200, size=SMALL_SIZE)
            servers[case] = Loaded(url, server.pid, rotated.get(case, ()))
        rates, cpu = interleaved_rounds(servers, options, label="4 KiB", notes=notes)
    notes.append(
        "4 KiB, server CPU: CPU time of the server process per request, and the throughput "
        "ratio it implies (baseline CPU / case CPU). Unlike requests/s it does not depend on "
        "the share of the core the server got, nor on how fast the client is: trust it more "
        "when the run is noisy or the Python load generator ran."
    )
    return [
        *_compare("4 KiB file", "req/s", rates, BARE, SMALL_TARGET),
        *_compare("4 KiB file, server CPU", "us/req", cpu, BARE, SMALL_TARGET, inverse=True),
        access_log_row("4 KiB file, access log", rates, on=OURS, off=QUIET, target=LOG_TARGET),
    ]


def _large_file(
    base: Path, env: dict[str, str], signed: str, options: Options, notes: list[str]
) -> list[Row]:
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[str, int]] = {}  # case -> (URL, server pid)
        if nginx_available():
            nginx = serve_nginx(base / "nginx", url=_apps.MEDIA_URL, root=base / "media")
            server = stack.enter_context(nginx)
            servers[NGINX] = f"{server.url}/media/{LARGE_PATH}", server.pid
        for case in _python_cases(BIG, STARLETTE, SERVESTATIC):
            server = stack.enter_context(_serve(case, env))
            servers[case] = server.url + signed, server.pid
        idle = {case: memory_kib(pid) / 1024 for case, (_, pid) in servers.items()}
        peak = dict(idle)
        speeds: dict[str, list[float]] = {case: [] for case in servers}
        cpu: dict[str, list[float]] = {case: [] for case in servers}  # server CPU s per GB
        spent = dict.fromkeys(servers, 0.0)
        for case, (url, _) in servers.items():
            _expect(case, url, status=200, size=LARGE_SIZE, method="HEAD")
        for _ in range(options.runs):
            for case, (url, pid) in servers.items():
                if speeds[case] and spent[case] * (1 + 1 / len(speeds[case])) > options.run_budget:
                    continue  # the next run would overrun this server's time budget
                started, before = time.monotonic(), cpu_seconds(pid)
                with PeakMemory(pid) as memory:
                    speeds[case].append(download(url, LARGE_SIZE) / MB)
                cpu[case].append((cpu_seconds(pid) - before) / (LARGE_SIZE / 1e9))
                spent[case] += time.monotonic() - started
                peak[case] = max(peak[case], memory.peak_kib / 1024)
    progress(
        "512 MiB best: " + ", ".join(f"{c} {max(v):,.0f}" for c, v in speeds.items()) + " MB/s"
    )
    notes += [
        f"512 MiB, {case}: only {len(runs)} run(s) within the {options.run_budget:g} s budget."
        for case, runs in speeds.items()
        if len(runs) < options.runs
    ]

    best = {case: [max(runs)] for case, runs in speeds.items()}
    rows = _compare("512 MiB file", "MB/s", best, NGINX, LARGE_TARGET)
    # Without a target: one client on loopback can cap every server alike, and CPU per
    # gigabyte still shows what each one would cost under many concurrent downloads.
    cheapest = {case: [min(runs)] for case, runs in cpu.items()}
    rows += _compare("512 MiB, server CPU", "s/GB", cheapest, NGINX, None, inverse=True)
    for case in servers:
        row = Row("512 MiB peak RSS", case, peak[case], "MiB", f"idle {idle[case]:.1f} MiB")
        if case == BIG:
            limit = idle[case] + RSS_GROWTH_LIMIT_MIB
            row = dataclasses.replace(
                row,
                target=f"<= idle + {RSS_GROWTH_LIMIT_MIB} MiB",
                met=peak[case] <= limit,
                target_value=limit,
            )
        rows.append(row)
    return rows


def _expect(case: str, url: str, *, status: int, size: int, method: str = "GET") -> None:
    """Fail before measuring a server that answers something else (a fast 403 is no win)."""
    got, headers, length = request(url, method)
    if method == "HEAD":
        length = int(headers.get("content-length", -1))
    expected = size if status == 200 else 0
    if (got, length) != (status, expected):
        raise RuntimeError(f"{case}: expected {status} with {expected} bytes, got {got}, {length}")


def _compare(
    group: str,
    unit: str,
    samples: dict[str, list[float]],
    baseline: str,
    target: float | None,
    *,
    inverse: bool = False,
) -> list[Row]:
    """Rows with each case's median sample and its ratio to ``baseline``; ours carries
    ``target`` unless it is None. The ratio is the median of per-round ratios, which
    cancels a slow spell that hit every case of one round. ``inverse``: lower values are
    better (CPU per request), so the ratio is baseline / case, still "x of the
    baseline's throughput"."""
    rows = []
    for case, runs in samples.items():
        row = Row(group, case, statistics.median(runs), unit)
        if baseline in samples:
            pairs = zip(runs, samples[baseline], strict=True)
            ratio = statistics.median(b / v if inverse else v / b for v, b in pairs)
            label = "(the baseline)" if case == baseline else baseline
            row = dataclasses.replace(row, baseline=label, ratio=ratio)
        if case in (OURS, BIG) and target is not None:
            row = _with_target(row, samples, baseline, target, inverse=inverse)
        rows.append(row)
    return rows


def _with_target(
    row: Row, samples: dict[str, list[float]], baseline: str, target: float, *, inverse: bool
) -> Row:
    if row.ratio is None:
        return dataclasses.replace(row, target=f">= {target}x {baseline} (not measured)")
    base = statistics.median(samples[baseline])
    return dataclasses.replace(
        row,
        target=f">= {target}x",
        met=row.ratio >= target,
        target_value=base / target if inverse else base * target,
    )
