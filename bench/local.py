"""Benchmark ``local``: serving files from local disk, against baselines in the same run.

(a) Many small files: a 4 KiB file behind a signed URL, in requests/s, as a ratio of a
    bare ASGI app answering a fixed 302 on the same uvicorn (the ceiling for any Python
    app here), next to Starlette's StaticFiles and servestatic.
(b) One big file: a 512 MiB download by a single client, in MB/s, as a ratio of nginx
    with sendfile, next to Starlette and servestatic; plus each server's peak RSS, which
    must not grow with the file.

Targets come from the foundation issue: (a) >= 0.35x of the bare 302, (b) >= 0.5x nginx.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gateway import URLSigner

from . import _apps
from ._common import (
    HOST,
    Options,
    PeakMemory,
    Report,
    Row,
    Server,
    download,
    free_port,
    request,
    run_load,
    serve,
    uvicorn,
)
from ._environment import describe

SMALL_SIZE = 4 * 1024
LARGE_SIZE = 512 * 1024 * 1024
SMALL_TARGET = 0.35
LARGE_TARGET = 0.5
# A streaming server holds a few chunks per download (256 KiB in the gateway) plus
# socket buffers; anything near the file's size would mean it buffers the body.
RSS_GROWTH_LIMIT_MIB = 32
MB = 1_000_000

SMALL_PATH = "docs/small.jpg"
PUBLIC_PATH = f"{_apps.PUBLIC_PREFIX}/small.jpg"
LARGE_PATH = "video/large.bin"
BARE = "bare ASGI 302"
NGINX = "nginx sendfile"
OURS = "gateway, signed URL"
STARLETTE = "Starlette StaticFiles"
SERVESTATIC = "servestatic (ASGI)"


def run(options: Options) -> Report:
    report = Report("local", "local-disk delivery")
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        base = Path(tmp)
        # nginx's worker drops root privileges and must still reach the files.
        base.chmod(0o755)
        root = base / "media"
        _make_media(root)
        secret = secrets.token_urlsafe(32)
        env = {"BENCH_MEDIA_ROOT": str(root), "BENCH_SECRET": secret}
        settings = _apps.settings(root, secret)
        signer = URLSigner(
            secret_keys=settings.secret_keys,
            media_url=settings.media_url,
            ttl=settings.url_ttl,
            window=settings.url_window,
        )
        report.rows += _small_files(env, signer, options, report.notes)
        report.rows += _large_file(base, env, signer, options, report.notes)
    report.notes += describe(options)
    return report


def _make_media(root: Path) -> None:
    for relpath in (SMALL_PATH, PUBLIC_PATH, LARGE_PATH):
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
    small = secrets.token_bytes(SMALL_SIZE)
    (root / SMALL_PATH).write_bytes(small)
    (root / PUBLIC_PATH).write_bytes(small)
    # Real blocks (not a sparse file, whose holes read differently) written fast: one
    # random 8 MiB block repeated. Nothing here compresses, so the repeats cost nothing.
    block = secrets.token_bytes(8 * 1024 * 1024)
    with open(root / LARGE_PATH, "wb") as file:
        for _ in range(LARGE_SIZE // len(block)):
            file.write(block)


# --- (a) 4 KiB ----------------------------------------------------------------------


def _small_files(
    env: dict[str, str], signer: URLSigner, options: Options, notes: list[str]
) -> list[Row]:
    signed = signer.sign_url(SMALL_PATH)
    # (case, app factory, request target, expected status). Every app gets the same
    # signed URL so the request bytes are identical; the others ignore the query.
    cases = [
        (BARE, "bench._apps:redirect", signed, 302),
        (OURS, "bench._apps:gateway", signed, 200),
        ("gateway, public prefix", "bench._apps:gateway", f"/media/{PUBLIC_PATH}", 200),
        (STARLETTE, "bench._apps:starlette_static", signed, 200),
    ]
    if importlib.util.find_spec("servestatic"):
        cases.append((SERVESTATIC, "bench._apps:servestatic", signed, 200))
    else:
        notes.append("servestatic is not installed: skipped (pip install servestatic).")
    rates: dict[str, float] = {}
    for case, factory, target, status in cases:
        port = free_port()
        with serve(case, uvicorn(factory, port), port, env=env) as server:
            url = server.url + target
            got, _, length = request(url)
            expected_length = SMALL_SIZE if status == 200 else 0
            if (got, length) != (status, expected_length):
                raise RuntimeError(
                    f"{case}: expected {status} with {expected_length} bytes, "
                    f"got {got} with {length}"
                )
            run_load(url, connections=options.connections, duration=options.warmup)
            load = run_load(url, connections=options.connections, duration=options.duration)
        if load.errors:
            notes.append(f"{case}: {load.errors} errors in {load.requests} requests.")
        rates[case] = load.requests_per_s
        _progress(f"4 KiB  {case:<26} {load.requests_per_s:>10,.0f} req/s")

    return _compare("4 KiB file", "req/s", rates, BARE, SMALL_TARGET)


# --- (b) 512 MiB --------------------------------------------------------------------


def _large_file(
    base: Path, env: dict[str, str], signer: URLSigner, options: Options, notes: list[str]
) -> list[Row]:
    signed = signer.sign_url(LARGE_PATH)
    servers: list[tuple[str, contextlib.AbstractContextManager[Server], str]] = []
    if shutil.which("nginx"):
        servers.append((NGINX, _nginx(base / "nginx", base / "media"), f"/media/{LARGE_PATH}"))
    else:
        notes.append("nginx is not installed: no 512 MiB baseline (apt-get install nginx-light).")
    for case, factory in _python_servers():
        servers.append((case, _uvicorn(case, factory, env), signed))

    speeds: dict[str, float] = {}
    rows = []
    for case, context, target in servers:
        with context as server:
            url = server.url + target
            status, headers, _ = request(url, "HEAD")
            if status != 200 or headers.get("content-length") != str(LARGE_SIZE):
                raise RuntimeError(f"{case}: HEAD gave {status}, {headers.get('content-length')}")
            with PeakMemory(server.pid) as memory:
                speeds[case] = max(download(url, LARGE_SIZE) for _ in range(options.runs)) / MB
            idle, peak = memory.idle_kib / 1024, memory.peak_kib / 1024
        rows.append(Row("512 MiB peak RSS", case, peak, "MiB", f"idle {idle:.0f} MiB"))
        if case == OURS:
            limit = idle + RSS_GROWTH_LIMIT_MIB
            rows[-1] = dataclasses.replace(
                rows[-1],
                target=f"<= idle + {RSS_GROWTH_LIMIT_MIB} MiB",
                met=peak <= limit,
                target_value=limit,
            )
        _progress(
            f"512 MiB {case:<24} {speeds[case]:>8,.0f} MB/s  RSS {idle:.0f} -> {peak:.0f} MiB"
        )
    return _compare("512 MiB file", "MB/s", speeds, NGINX, LARGE_TARGET) + rows


def _python_servers() -> list[tuple[str, str]]:
    """(case, uvicorn factory) of the Python servers that deliver the big file."""
    servers = [(OURS, "bench._apps:gateway"), (STARLETTE, "bench._apps:starlette_static")]
    if importlib.util.find_spec("servestatic"):
        servers.append((SERVESTATIC, "bench._apps:servestatic"))
    return servers


def _compare(
    group: str, unit: str, values: dict[str, float], baseline: str, target: float
) -> list[Row]:
    """Rows for ``values`` as ratios of ``values[baseline]``; ours carries the target."""
    base = values.get(baseline)
    rows = []
    for case, value in values.items():
        if base is None:
            row = Row(group, case, value, unit)
            if case == OURS:
                row = dataclasses.replace(row, target=f">= {target}x {baseline} (not measured)")
        else:
            label = "(the baseline)" if case == baseline else baseline
            row = Row(group, case, value, unit, label, value / base)
            if case == OURS:
                row = dataclasses.replace(
                    row,
                    target=f">= {target}x",
                    met=value / base >= target,
                    target_value=target * base,
                )
        rows.append(row)
    return rows


@contextlib.contextmanager
def _uvicorn(name: str, factory: str, env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    with serve(name, uvicorn(factory, port), port, env=env) as server:
        yield server


@contextlib.contextmanager
def _nginx(prefix: Path, root: Path) -> Iterator[Server]:
    """nginx set up as a fast static server would be: one worker, sendfile, no logs,
    every path it writes (pid, logs, temp files) inside ``prefix``."""
    prefix.mkdir()
    port = free_port()
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = prefix / "nginx.conf"
    config.write_text(
        "daemon off;\n"
        "worker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    access_log off;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    default_type application/octet-stream;\n"
        f"{temp_paths}"
        f"    server {{\n        listen {HOST}:{port};\n"
        f"        location {_apps.MEDIA_URL} {{ alias {root}/; }}\n    }}\n"
        "}\n"
    )
    # -e: nginx opens its compiled-in error log before it reads the config.
    argv = ["nginx", "-p", f"{prefix}/", "-c", str(config), "-e", f"{prefix}/error.log"]
    with serve("nginx", argv, port) as server:
        yield server


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)
