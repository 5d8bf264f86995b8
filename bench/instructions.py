"""CPU instructions per request of ``media-gateway serve``, access log on and off.

``python -m bench.instructions`` runs the gateway as shipped under valgrind's callgrind,
sends 2,000 requests to warm it up, zeroes the counters, sends 4,000 more over 16
keep-alive connections at once (signed URLs in turn), and reads the count back; the
same for the bare ASGI 302 under uvicorn (no access log), the baseline of the targets,
and for the gateway's response replayed (what uvicorn charges for its shape: the
difference to the gateway without its log is the gateway's own code).
Both take 20 URLs in turn, not the 1,000 of ``make bench``: under callgrind the gateway
answers a few hundred requests a second, so with 1,000 URLs each request would renew its
remembered answer for a new second (and a file's path would be due its check), which
under real load happens to ~3% of them; with 20 few do, as there. Unlike
requests/s or CPU time, the count hardly moves when other processes share the machine,
so it compares the access log on and off reliably on a busy one (wall-clock numbers
there swing by 30%). Slow (about 40 s per case) and not part of ``make bench``; needs
valgrind.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from gateway import URLSigner

from . import _apps, _s3apps
from ._common import HOST, REPO_ROOT, free_port, uvicorn

WARMUP, MEASURED, CONNECTIONS = 2_000, 4_000, 16
ROTATION = {"local": 20, "redirect": 20}
START_TIMEOUT = 300.0  # seconds: imports run ~50x slower under callgrind


def main() -> int:
    counts = {}
    for mode in ("redirect", "local"):
        with _environment(mode) as (settings, targets):
            gateway = [sys.executable, str(Path(sys.executable).parent / "media-gateway")]
            gateway += ["serve", "--host", HOST]
            replay = "bench._s3apps:replay_redirect" if mode == "redirect" else "bench._apps:replay"
            cases = {
                "bare ASGI 302": _uvicorn("bench._apps:redirect"),
                "gateway's response, replayed": _uvicorn(replay),
                "access log on": gateway,
                "access log off": [*gateway, "--no-access-log"],
            }
            for case, command in cases.items():
                counts[mode, case] = _count(command, settings, targets)
                print(f"{mode}, {case}: {counts[mode, case]:,.0f} instructions/request")
        on, off = counts[mode, "access log on"], counts[mode, "access log off"]
        floor = counts[mode, "bare ASGI 302"]
        replayed = counts[mode, "gateway's response, replayed"]
        print(
            f"{mode}: the access log adds {on - off:,.0f} ({on / off - 1:.1%}); "
            f"bare 302 / as shipped = {floor / on:.2f}x (no log: {floor / off:.2f}x, "
            f"replayed: {floor / replayed:.2f}x); the gateway's own code: "
            f"{off - replayed:,.0f} instructions/request without the log"
        )
    return 0


def _uvicorn(factory: str) -> list[str]:
    command = uvicorn(factory, 0)
    del command[command.index("--port") : command.index("--port") + 2]  # _count adds its own
    return command


@contextlib.contextmanager
def _environment(mode: str) -> Iterator[tuple[dict[str, str], list[str]]]:
    with contextlib.ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-instr-")))
        if mode == "redirect":
            env = stack.enter_context(_s3apps.s3_environment(base, {"docs/small.jpg": b"x"}))
            signer = URLSigner.from_settings(_s3apps.s3_settings(env))
            settings = {**env, **_s3apps.gateway_settings(env)}  # BENCH_*: the replay's
        else:
            root = base / "media"
            (root / "docs").mkdir(parents=True)
            for index in range(ROTATION[mode]):
                (root / "docs" / f"{index:05d}.jpg").write_bytes(bytes(4096))
            secret = secrets.token_urlsafe(32)
            signer = URLSigner.from_settings(_apps.settings(root, secret))
            settings = _apps.gateway_settings(root, secret)
            settings |= {"BENCH_MEDIA_ROOT": str(root), "BENCH_SECRET": secret}
        urls = [signer.sign_url(f"docs/{index:05d}.jpg") for index in range(ROTATION[mode])]
        yield {**settings, "BENCH_REPLAY_TARGET": urls[0]}, urls


def _count(server: list[str], settings: dict[str, str], targets: list[str]) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-instr-") as tmp:
        out = Path(tmp) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += [*server, "--port", str(port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_"))}
        env.update(settings)
        env["PYTHONPATH"] = str(REPO_ROOT)  # the bare app's factory, from an empty directory
        process = subprocess.Popen(
            command,
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the access log, as in bench/_common.serve_gateway
            stderr=subprocess.DEVNULL,
        )
        try:
            _connect(port, process).close()
            _load(port, targets, WARMUP)
            _control("-z", process.pid)
            _load(port, targets, MEASURED)
            _control("-d", process.pid)
            dumps = [p for p in Path(tmp).glob("callgrind.out.*") if p.stat().st_size]
            text = dumps[0].read_text(errors="replace")
            match = re.search(r"^summary: (\d+)", text, re.MULTILINE)
            if match is None:
                raise RuntimeError(f"no summary in {dumps[0]}")
            return int(match[1]) / MEASURED
        finally:
            process.terminate()
            process.wait(60)


def _connect(port: int, process: subprocess.Popen[bytes]) -> http.client.HTTPConnection:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        try:
            connection.connect()
            return connection
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the gateway did not start under callgrind") from None
            time.sleep(0.5)


def _load(port: int, targets: list[str], count: int) -> None:
    """``count`` requests over CONNECTIONS connections at once, each its share of the
    targets in turn."""
    with concurrent.futures.ThreadPoolExecutor(CONNECTIONS) as pool:
        shares = [targets[n::CONNECTIONS] or targets for n in range(CONNECTIONS)]
        futures = [pool.submit(_requests, port, share, count // CONNECTIONS) for share in shares]
        for future in futures:
            future.result()


def _requests(port: int, targets: list[str], count: int) -> None:
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    for index in range(count):
        connection.request("GET", targets[index % len(targets)])
        response = connection.getresponse()
        response.read()
        if response.status not in (200, 302):
            raise RuntimeError(f"{targets[index % len(targets)]} answered {response.status}")


def _control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)
    time.sleep(1)  # the dump is written by the process, asynchronously


if __name__ == "__main__":
    raise SystemExit(main())
