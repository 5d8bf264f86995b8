"""Helpers every benchmark shares: ports, CPU pinning, servers, load and downloads.

Servers run as subprocesses on 127.0.0.1 and a free port, pinned to one core; the load
generator runs pinned to the other, so neither steals the other's CPU and the numbers
compare the servers rather than the scheduler. The result writer lives in ``_results``
and is re-exported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from ._results import (
    Report as Report,
    Row as Row,
    access_log_row as access_log_row,
    write_report as write_report,
)

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
# Core 0 serves, core 1 generates load: the machine has two and that is the split that
# keeps a Python server from competing with its own client.
SERVER_CPU, CLIENT_CPU = 0, 1
# Long enough for uvicorn to import Starlette and scan a media root; a server that takes
# longer is broken, and the run should say so rather than wait.
READY_TIMEOUT = 20.0
# What a stopped server gets before SIGKILL: uvicorn drains keep-alive connections first.
STOP_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class Options:
    """Knobs shared by the benchmarks; the defaults keep ``python -m bench local`` near
    two minutes on two cores."""

    # Seconds of measured load per case and round. Every round measures every case back
    # to back, so a slow spell of this (virtual) machine hits a round, not one case.
    duration: float = 2.0
    # Nine: adjacent runs of one server differ by up to a tenth here, as much as the
    # access log's target (at most 10% slower); five rounds let that flip the verdict
    # from one run to the next (0.84 and 1.00 for the same code), nine hold it steadier.
    rounds: int = 9
    warmup: float = 1.0  # seconds of load thrown away first: imports, caches, pools
    connections: int = 32
    runs: int = 3  # downloads per large-file case; the best one counts
    # Seconds of downloading after which a slow server gets no further runs: servestatic
    # takes ~11 s for 512 MiB here and is far from any target.
    run_budget: float = 12.0


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the server binds it right after)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int) -> list[str]:
    """A ``taskset`` prefix for ``cpu``, or nothing when pinning is impossible here."""
    if shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2:
        return []
    if cpu not in os.sched_getaffinity(0):
        return []
    return ["taskset", "-c", str(cpu)]


def pinning_note() -> str:
    if pinned(SERVER_CPU) and pinned(CLIENT_CPU):
        return f"server pinned to CPU {SERVER_CPU}, client to CPU {CLIENT_CPU} (taskset)"
    return "no CPU pinning (taskset missing or fewer than 2 usable CPUs)"


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    url: str
    pid: int


@contextlib.contextmanager
def serve(
    name: str,
    argv: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO_ROOT,
    discard_stdout: bool = False,
    inherit_env: bool = True,
) -> Iterator[Server]:
    """Run ``argv`` pinned to the server core until the block ends, even on error.

    Ready means the port accepts connections. Whatever the server printed (warnings,
    tracebacks during the load) is echoed to stderr when it stops; ``discard_stdout``
    sends stdout (an access log) to /dev/null instead, as an operator sends it to a
    file or a log collector. Without ``inherit_env``, ``env`` is the whole environment.
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*pinned(SERVER_CPU), *argv],
            cwd=cwd,
            env={**(os.environ if inherit_env else {}), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if discard_stdout else log,
            stderr=log if discard_stdout else subprocess.STDOUT,
        )
        try:
            _wait_ready(name, process, port, log)
            yield Server(name, f"http://{HOST}:{port}", process.pid)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            output = _tail(log)
            if output:
                print(f"[{name} said]\n{output}", file=sys.stderr)


@contextlib.contextmanager
def serve_uvicorn(
    name: str, factory: str, *, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """``serve`` an app factory (``module:function``) under uvicorn on a free port."""
    port = free_port()
    with serve(name, uvicorn(factory, port), port, env=env) as server:
        yield server


# Where a developer's settings could change what ``media-gateway serve`` measures.
_SETTINGS_PREFIXES = ("GATEWAY_", "AWS_", "MEDIA_", "USE_S3")


@contextlib.contextmanager
def serve_gateway(name: str, settings: Mapping[str, str], *options: str) -> Iterator[Server]:
    """The gateway as the README starts it: ``media-gateway serve`` on a free port, with
    its defaults (uvloop, httptools, the access log on, to stdout) plus ``options``.

    The settings are exactly ``settings``: the developer's own variables are dropped and
    the working directory is an empty one, so no ``.env`` is read. The access log goes
    to /dev/null by stdout redirection, as an operator sends it to a file or a collector.
    """
    port = free_port()
    command = [str(Path(sys.executable).parent / "media-gateway"), "serve"]
    command += ["--host", HOST, "--port", str(port), *options]
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
    env.update(settings)
    with (
        tempfile.TemporaryDirectory(prefix="bench-cwd-") as cwd,
        serve(
            name, command, port, env=env, cwd=Path(cwd), discard_stdout=True, inherit_env=False
        ) as server,
    ):
        yield server


def uvicorn(factory: str, port: int) -> list[str]:
    """uvicorn argv for an app factory, with the defaults a deployment would use
    (uvloop and httptools when installed) and no per-request logging."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--lifespan",
        "off",
    ]


def _wait_ready(name: str, process: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not accept connections within {READY_TIMEOUT:.0f} s")


def _tail(log: IO[bytes], lines: int = 30) -> str:
    log.seek(0)
    text = log.read().decode("utf-8", "replace").strip()
    return "\n".join(text.splitlines()[-lines:])


def request(url: str, method: str = "GET") -> tuple[int, dict[str, str], int]:
    """One request: status, lower-cased headers and body length (read and dropped)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=30)
    try:
        conn.request(method, f"{parts.path}?{parts.query}" if parts.query else parts.path)
        response = conn.getresponse()
        length = 0
        while chunk := response.read(1 << 20):
            length += len(chunk)
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, length
    finally:
        conn.close()


# --- load -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Load:
    requests_per_s: float
    requests: int
    errors: int  # non-2xx/3xx responses plus socket errors


def load_generator() -> str:
    """``wrk`` when installed, else the Python client; BENCH_NO_WRK=1 forces the latter."""
    if shutil.which("wrk") and not os.environ.get("BENCH_NO_WRK"):
        return "wrk"
    return "python"


def run_load(url: str, *, connections: int, duration: float, targets: Sequence[str] = ()) -> Load:
    """Keep ``connections`` keep-alive connections busy on ``url`` for ``duration`` s.

    With ``targets`` (request targets such as ``/media/a.jpg?sig=...``), each request
    takes the next one in turn, on ``url``'s host, instead of ``url`` itself.
    """
    with contextlib.ExitStack() as stack:
        if load_generator() == "wrk":
            # wrk takes whole seconds; one thread because it has one core to itself.
            seconds = max(1, round(duration))
            argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
            if targets:
                argv[1:1] = ["-s", stack.enter_context(_wrk_script(targets))]
            out = _run([*pinned(CLIENT_CPU), *argv], timeout=seconds + 30)
            rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
            total = re.search(r"(\d+) requests in", out)
            if rate is None or total is None:
                raise RuntimeError(f"could not parse wrk output:\n{out}")
            errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            errors += int(bad.group(1)) if bad else 0
            return Load(float(rate.group(1)), int(total.group(1)), errors)
        argv = [sys.executable, "-m", "bench._loadgen", "load", url]
        argv += ["--connections", str(connections), "--duration", str(duration)]
        if targets:
            argv += ["--targets", stack.enter_context(_targets_file(targets))]
        result = json.loads(_run([*pinned(CLIENT_CPU), *argv], timeout=duration + 30))
    if not result["requests"]:
        raise RuntimeError(f"no response from {url} in {duration:g} s")
    errors = int(result["non_2xx_3xx"] + result["socket_errors"])
    return Load(result["requests_per_s"], int(result["requests"]), errors)


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A running server to load: ``url``, its process, and the request targets its load
    takes in turn (none: ``url`` itself every time)."""

    url: str
    pid: int
    targets: Sequence[str] = ()


def interleaved_rounds(
    servers: Mapping[str, Loaded], options: Options, *, label: str, notes: list[str]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Warm every server up, then load each in turn once per round; return requests/s
    and server CPU microseconds per request, a sample per round and case.

    All servers run at once, idle but for the one under load, so a slow spell of the
    machine hits one round of every case rather than every round of one case.
    """
    for server in servers.values():
        run_load(
            server.url,
            connections=options.connections,
            duration=options.warmup,
            targets=server.targets,
        )
    rates: dict[str, list[float]] = {case: [] for case in servers}
    cpu: dict[str, list[float]] = {case: [] for case in servers}
    for number in range(1, options.rounds + 1):
        for case, server in servers.items():
            before = cpu_seconds(server.pid)
            load = run_load(
                server.url,
                connections=options.connections,
                duration=options.duration,
                targets=server.targets,
            )
            cpu[case].append((cpu_seconds(server.pid) - before) / load.requests * 1e6)
            if load.errors:
                notes.append(f"{label}, {case}: {load.errors} errors in {load.requests}.")
            rates[case].append(load.requests_per_s)
        progress(
            f"{label} round {number}: "
            + ", ".join(f"{case} {values[-1]:,.0f}" for case, values in rates.items())
            + " req/s"
        )
    return rates, cpu


def progress(line: str) -> None:
    """A line of progress for whoever watches the run (stderr: stdout is the report)."""
    print(f"  {line}", file=sys.stderr, flush=True)


def _targets_file(targets: Sequence[str]) -> contextlib.AbstractContextManager[str]:
    """``targets``, one per line, in a temporary file."""
    return _text_file(targets, suffix=".txt")


def _wrk_script(targets: Sequence[str]) -> contextlib.AbstractContextManager[str]:
    """A wrk Lua script that requests ``targets`` in turn (they hold no quote or
    backslash: signed media paths are percent-encoded)."""
    if any('"' in t or "\\" in t or "\n" in t for t in targets):
        raise ValueError("targets must not contain quotes, backslashes or newlines")
    lines = ["local targets = {", *(f'  "{t}",' for t in targets), "}", "local index = 0"]
    lines += [
        "request = function()",
        "  index = index % #targets + 1",
        '  return wrk.format("GET", targets[index])',
        "end",
    ]
    return _text_file(lines, suffix=".lua")


@contextlib.contextmanager
def _text_file(lines: Sequence[str], *, suffix: str) -> Iterator[str]:
    """A temporary ASCII file of ``lines``, for as long as the block lasts."""
    with tempfile.NamedTemporaryFile("w", encoding="ascii", suffix=suffix, prefix="bench-") as file:
        file.write("\n".join(lines) + "\n")
        file.flush()
        yield file.name


def downloader() -> str:
    """``curl`` when installed, else the Python client; BENCH_NO_CURL=1 forces the latter."""
    if shutil.which("curl") and not os.environ.get("BENCH_NO_CURL"):
        return "curl"
    return "python"


def download(url: str, size: int) -> float:
    """Download ``url`` once with one client into nothing; return bytes per second."""
    if downloader() == "curl":
        fmt = "%{http_code} %{size_download} %{speed_download}"
        argv = ["curl", "-s", "-o", "/dev/null", "--max-time", "120", "-w", fmt, url]
        code, received, speed = _run([*pinned(CLIENT_CPU), *argv], timeout=150).split()
        status, got, rate = int(code), int(received), float(speed)
    else:
        argv = [sys.executable, "-m", "bench._loadgen", "download", url]
        result = json.loads(_run([*pinned(CLIENT_CPU), *argv], timeout=150))
        status, got, rate = int(result["status"]), int(result["bytes"]), result["bytes_per_s"]
    if status != 200 or got != size:
        raise RuntimeError(f"download of {url} gave {status} with {got} of {size} bytes")
    return rate


def _run(argv: list[str], *, timeout: float) -> str:
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# --- memory -----------------------------------------------------------------------


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """``field`` of /proc/PID/status (VmRSS now, VmHWM peak) summed over PID and its
    children, so that nginx's worker counts with its master."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1])
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += memory_kib(int(child), field)
    return total


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of PID (every thread) and its children, in seconds."""
    total = 0.0
    with contextlib.suppress(FileNotFoundError):
        # Fields after the parenthesised command name; utime and stime are 14 and 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    return total


class PeakMemory:
    """The peak memory of a server process tree over a block: VmRSS sampled every few
    milliseconds, and the kernel's VmHWM, which is exact but only for the main process
    and updated lazily."""

    # Fine enough to catch a buffer that lives as long as one chunk's send.
    INTERVAL = 0.005

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.idle_kib = memory_kib(pid)
        self.peak_kib = self.idle_kib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, memory_kib(self.pid, "VmHWM"))

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self.peak_kib = max(self.peak_kib, memory_kib(self.pid))
