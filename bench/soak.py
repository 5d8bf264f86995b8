"""Benchmark ``soak``: every delivery path at once, for a minute, in one gateway process.

The soak of the hardening issue: 256 concurrent keep-alive connections against one
uvicorn worker that serves local files (4 KiB and 1 MiB), S3 redirects (hybrid mode:
the object is not on disk) and S3 proxying (4 KiB and 1 MiB, streamed from a loopback
``rclone serve s3``). The proxy is a second gateway wrapped by the first, under its own
prefix, so that one process runs all three paths, as a migrating deployment would.

Each path gets its own load generator and an equal share of the connections, so an
error names its path. Measured: requests and errors (non-2xx/3xx responses and socket
errors, including requests unanswered after ``REQUEST_TIMEOUT``); the mean time per
request; the process's VmRSS and open descriptors every second.

Targets (hardening issue): no errors; RSS growth from the end of the warm-up to the end
of the load at most 10 MB; open descriptors back to their idle count once the load
stops. RSS growth is read at rest, a moment after the warm-up and after the load: under
load, RSS swings by 10-20 MB from one second to the next with the 1 MiB bodies in flight,
as much as the target allows in all.

Length: the issue's soak is 60 s, ``python -m bench soak --duration 60``. With the other
benchmarks (``python -m bench``, no ``--duration``) it lasts 15 s so that ``make bench``
stays short. ``BENCH_SOAK_DURATION`` overrides both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from gateway import URLSigner
from gateway.serving.proxy import IDLE_CLIENTS

from . import _s3apps
from ._common import (
    CLIENT_CPU,
    REPO_ROOT,
    Options,
    Report,
    Row,
    cpu_seconds,
    load_generator,
    memory_kib,
    pinned,
    progress,
    request,
    run_load,
    serve_gateway,
)
from ._environment import describe

FULL_DURATION = 60.0  # the soak
SHORT_DURATION = 15.0  # under ``python -m bench`` without --duration
CONNECTIONS = 256
# Long enough for the pools to fill at full concurrency (uvicorn's connections, anyio's
# worker threads, httpx's connections to S3, malloc's arenas) before RSS is first read.
WARMUP = 10.0
# A request unanswered this long is an error. wrk's default, 2 s, fails requests that
# merely queue on one saturated core; browsers and nginx (proxy_read_timeout 60 s) wait
# longer. Slowness shows in the "mean time per request" rows instead.
REQUEST_TIMEOUT = 30
SAMPLE_INTERVAL = 1.0
RSS_WINDOW = 5  # samples (seconds) whose median is the RSS at the start or end of the load
# Seconds between the warm-up and the measured load, for an RSS reading at rest.
REST = 2.0
# After the load: how long descriptors get to return to their idle count. uvicorn closes
# a connection as soon as wrk does. httpx's idle connections to S3 outlive their 5 s
# keep-alive expiry until the pool is next used, so descriptors are read once more
# after one request per path.
SETTLE_TIMEOUT = 10.0
RSS_GROWTH_LIMIT_MB = 10
MB = 1_000_000

SMALL, LARGE = 4 * 1024, 1024 * 1024


@dataclasses.dataclass(frozen=True)
class MediaPath:
    prefix: str  # the gateway that answers: /media/ (hybrid) or /proxied/ (proxy)
    relpath: str
    on_disk: bool  # else in the bucket only
    size: int
    status: int  # what the gateway answers


PATHS = {
    "local 4 KiB": MediaPath(_s3apps.MEDIA_URL, "docs/small.bin", True, SMALL, 200),
    "local 1 MiB": MediaPath(_s3apps.MEDIA_URL, "video/large.bin", True, LARGE, 200),
    "S3 redirect": MediaPath(_s3apps.MEDIA_URL, "s3/redirected.bin", False, SMALL, 302),
    "S3 proxy 4 KiB": MediaPath(_s3apps.PROXY_URL, "s3/small.bin", False, SMALL, 200),
    "S3 proxy 1 MiB": MediaPath(_s3apps.PROXY_URL, "s3/large.bin", False, LARGE, 200),
}


def run(options: Options) -> Report:
    duration = soak_duration(options)
    report = Report("soak", f"{duration:g} s soak, {CONNECTIONS} connections, every path")
    with contextlib.ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-soak-")))
        root = base / "media"
        root.mkdir()
        bodies = {SMALL: secrets.token_bytes(SMALL), LARGE: secrets.token_bytes(LARGE)}
        objects = {}
        for path in PATHS.values():
            if path.on_disk:
                (root / path.relpath).parent.mkdir(parents=True, exist_ok=True)
                (root / path.relpath).write_bytes(bodies[path.size])
            else:
                objects[path.relpath] = bodies[path.size]
        s3 = _s3apps.s3_environment(base, objects, BENCH_MEDIA_ROOT=str(root))
        env = stack.enter_context(s3)
        # As shipped: `media-gateway serve` in hybrid mode, access log on, in front of a
        # second gateway in proxy mode.
        settings = {
            **env,
            **_s3apps.gateway_settings(env),
            "MEDIA_ROOT": str(root),
            "GATEWAY_LOCAL_FALLBACK": "true",
            "PYTHONPATH": str(REPO_ROOT),
        }
        gateway = serve_gateway("gateway", settings, "--app", "bench._s3apps:proxied")
        server = stack.enter_context(gateway)
        urls = {name: server.url + _sign(env, path) for name, path in PATHS.items()}
        s3_port = urlsplit(env["BENCH_S3_ENDPOINT"]).port
        probe = Probe(server.pid, port=urlsplit(server.url).port, s3_port=s3_port)
        soak = _soak(urls, probe, duration)
    report.rows += _rows(soak)
    report.notes += _notes(soak, options)
    return report


def soak_duration(options: Options) -> float:
    """BENCH_SOAK_DURATION, else ``--duration`` when given, else the short soak.

    ``Options`` cannot say whether ``--duration`` was given, only whether it differs from
    its default (2 s per round, far too short for a soak): that is taken as "not given".
    """
    if os.environ.get("BENCH_SOAK_DURATION"):
        return float(os.environ["BENCH_SOAK_DURATION"])
    if options.duration != Options().duration:
        return options.duration
    return SHORT_DURATION


def _sign(env: dict[str, str], path: MediaPath) -> str:
    signer = URLSigner(secret_keys=(env["BENCH_SECRET"],), media_url=path.prefix)
    return signer.sign_url(path.relpath)


# --- the process under test ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sample:
    seconds: float  # since the probe was made
    rss_kib: int
    fds: int

    @property
    def rss_mb(self) -> float:
        return self.rss_kib * 1024 / MB


class Probe:
    """The gateway's VmRSS and open descriptors, read from /proc on demand and every
    second while ``sampling``."""

    def __init__(self, pid: int, *, port: int | None, s3_port: int | None) -> None:
        self.pid, self.port, self.s3_port = pid, port, s3_port
        self.samples: list[Sample] = []
        self._started = time.monotonic()

    def sample(self) -> Sample:
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        now = Sample(time.monotonic() - self._started, memory_kib(self.pid), fds)
        self.samples.append(now)
        return now

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(SAMPLE_INTERVAL):
                self.sample()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def descriptors(self) -> dict[str, int]:
        """Open descriptors by kind: client connections (with the listening socket),
        connections to S3, media files, and the rest (epoll, pipes, eventfd...)."""
        ports = _socket_ports(self.pid)
        kinds = dict.fromkeys(("clients", "S3", "media files", "other"), 0)
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            with contextlib.suppress(FileNotFoundError):  # closed while we looked
                target = os.readlink(fd)
                kind = "other"
                if target.startswith("socket:["):
                    local, remote = ports.get(int(target[8:-1]), (0, 0))
                    if local == self.port:
                        kind = "clients"
                    elif remote == self.s3_port:
                        kind = "S3"
                elif "/media/" in target:
                    kind = "media files"
                kinds[kind] += 1
        return kinds


def _socket_ports(pid: int) -> dict[int, tuple[int, int]]:
    """Socket inode -> (local port, remote port), for the TCP sockets of pid's network."""
    ports = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                ports[int(fields[9])] = (local, remote)
    return ports


# --- the load -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PathLoad:
    connections: int
    requests: int
    requests_per_s: float
    # Non-2xx/3xx responses and socket errors, timeouts included, by kind (wrk's names).
    errors: dict[str, int]

    @property
    def seconds_per_request(self) -> float:
        """Mean time a connection spent per request (Little's law). wrk's own latency
        figures are not used: here its mean latency times its request count exceeded
        its connection-seconds, which no real latency can."""
        return self.connections / self.requests_per_s if self.requests_per_s else 0.0


def _load_all(urls: dict[str, str], duration: float) -> dict[str, PathLoad]:
    """Load every URL at once, with ``CONNECTIONS`` shared out evenly, each by its own
    generator process pinned to the client core."""
    share, extra = divmod(CONNECTIONS, len(urls))
    with ThreadPoolExecutor(len(urls)) as pool:
        futures = {
            name: pool.submit(_load, url, share + (index < extra), duration)
            for index, (name, url) in enumerate(urls.items())
        }
        return {name: future.result() for name, future in futures.items()}


def _load(url: str, connections: int, duration: float) -> PathLoad:
    if load_generator() != "wrk":
        load = run_load(url, connections=connections, duration=duration)
        errors = {"non-2xx/3xx or socket": load.errors} if load.errors else {}
        return PathLoad(connections, load.requests, load.requests_per_s, errors)
    # _common.run_load's wrk with the soak's timeout, and the errors by kind.
    seconds = max(1, round(duration))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={REQUEST_TIMEOUT}s"]
    done = subprocess.run(
        [*pinned(CLIENT_CPU), *argv, url],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + REQUEST_TIMEOUT + 30,
        check=False,
    )
    out = done.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if done.returncode or rate is None or total is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{out}{done.stderr}")
    errors = {k: int(n) for k, n in re.findall(r"(connect|read|write|timeout) (\d+)", out)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors["non-2xx/3xx"] = int(bad.group(1)) if bad else 0
    errors = {kind: n for kind, n in errors.items() if n}
    return PathLoad(connections, int(total.group(1)), float(rate.group(1)), errors)


# --- the soak -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Soak:
    duration: float
    loads: dict[str, PathLoad]
    cpu_share: float  # of one core, during the measured load
    idle: Sample  # before any load
    idle_fds: dict[str, int]
    rested: Sample  # at rest between the warm-up and the measured load
    during: list[Sample]  # from the start of the measured load to its end, every second
    after: Sample  # once descriptors settled, or SETTLE_TIMEOUT later
    after_fds: dict[str, int]
    settle_seconds: float
    checked: Sample  # after one more request per path
    checked_fds: dict[str, int]

    # Under load, medians of the first and last few seconds' samples: single readings
    # swing with the 1 MiB bodies in flight.
    @property
    def start_mb(self) -> float:
        return statistics.median(s.rss_mb for s in self.during[:RSS_WINDOW])

    @property
    def end_mb(self) -> float:
        return statistics.median(s.rss_mb for s in self.during[-RSS_WINDOW:])

    @property
    def max_mb(self) -> float:
        return max(s.rss_mb for s in self.during)


def _soak(urls: dict[str, str], probe: Probe, duration: float) -> Soak:
    for name, url in urls.items():
        _expect(name, url)
    idle, idle_fds = probe.sample(), probe.descriptors()
    progress(f"idle: RSS {idle.rss_mb:.1f} MB, {idle.fds} fds {idle_fds}")
    _load_all(urls, WARMUP)
    time.sleep(REST)
    rested = probe.sample()
    progress(f"at rest after a {WARMUP:g} s warm-up: RSS {rested.rss_mb:.1f} MB")
    with probe.sampling():
        first = len(probe.samples)
        probe.sample()
        started, cpu = time.monotonic(), cpu_seconds(probe.pid)
        loads = _load_all(urls, duration)
        cpu_share = (cpu_seconds(probe.pid) - cpu) / (time.monotonic() - started)
        probe.sample()
        during = probe.samples[first:]
    settling = time.monotonic()
    time.sleep(REST)
    after = probe.sample()
    while after.fds > idle.fds and time.monotonic() - settling < SETTLE_TIMEOUT:
        time.sleep(0.25)
        after = probe.sample()
    settle_seconds = time.monotonic() - settling
    after_fds = probe.descriptors()
    for name, url in urls.items():  # still answering, and answering right
        _expect(name, url)
    checked, checked_fds = probe.sample(), probe.descriptors()
    soak = Soak(
        duration,
        loads,
        cpu_share,
        idle,
        idle_fds,
        rested,
        during,
        after,
        after_fds,
        settle_seconds,
        checked,
        checked_fds,
    )
    progress(
        f"soak: {sum(x.requests for x in loads.values()):,} requests, "
        f"{sum(sum(x.errors.values()) for x in loads.values())} errors; RSS {soak.start_mb:.1f} -> "
        f"{soak.end_mb:.1f} MB (max {soak.max_mb:.1f}, at rest {rested.rss_mb:.1f} -> "
        f"{after.rss_mb:.1f}); fds idle {idle.fds}, after {after.fds} {after_fds}, after "
        f"one more request per path {checked.fds}"
    )
    return soak


def _expect(name: str, url: str) -> None:
    """Fail before (or after) soaking a path that answers something else."""
    path = PATHS[name]
    size = path.size if path.status == 200 else 0
    got, headers, length = request(url)
    if (got, length) != (path.status, size):
        raise RuntimeError(f"{name}: expected {path.status} with {size} bytes, got {got}, {length}")
    if path.status == 302:
        got, _, length = request(headers["location"])
        if (got, length) != (200, path.size):
            raise RuntimeError(f"{name}: S3 answered {got} with {length} bytes to the redirect")


# --- the report ---------------------------------------------------------------------


def _rows(soak: Soak) -> list[Row]:
    group = f"soak requests ({CONNECTIONS} connections, {soak.duration:g} s)"
    rows = [Row(group, name, load.requests, "requests") for name, load in soak.loads.items()]
    rows.append(Row(group, "all paths", sum(x.requests for x in soak.loads.values()), "requests"))
    # In the same chart as the requests: a chart of zeros alone cannot be scaled.
    errors = sum(sum(load.errors.values()) for load in soak.loads.values())
    rows.append(
        Row(group, "errors: non-2xx/3xx, socket", errors, "requests", target="= 0", met=not errors)
    )
    rows += [
        Row("soak, mean time per request", name, load.seconds_per_request * 1000, "ms")
        for name, load in soak.loads.items()
    ]
    growth = soak.after.rss_mb - soak.rested.rss_mb
    rows += [
        Row("gateway RSS", "idle, before load", soak.idle.rss_mb, "MB"),
        Row("gateway RSS", "at rest after warm-up", soak.rested.rss_mb, "MB"),
        Row("gateway RSS", f"start of load ({RSS_WINDOW} s median)", soak.start_mb, "MB"),
        Row("gateway RSS", f"end of load ({RSS_WINDOW} s median)", soak.end_mb, "MB"),
        Row("gateway RSS", "max during load", soak.max_mb, "MB"),
        Row("gateway RSS", "at rest after load", soak.after.rss_mb, "MB"),
        Row(
            "gateway RSS growth",
            "at rest, after load - after warm-up",
            growth,
            "MB",
            target=f"<= {RSS_GROWTH_LIMIT_MB} MB",
            met=growth <= RSS_GROWTH_LIMIT_MB,
            target_value=RSS_GROWTH_LIMIT_MB,
        ),
        Row(
            "gateway RSS growth",
            f"under load, end - start ({RSS_WINDOW} s medians)",
            soak.end_mb - soak.start_mb,
            "MB",
        ),
    ]
    during = max(sample.fds for sample in soak.during)
    rows += [
        Row("open fds", "idle, before load", soak.idle.fds, "fds"),
        Row("open fds", "max during load", during, "fds"),
        Row(
            "open fds",
            f"after load ({soak.settle_seconds:.0f} s later)",
            soak.after.fds,
            "fds",
            # Client connections and files must all be closed; what may remain are the
            # proxy's kept-alive connections to S3, at most IDLE_CLIENTS by design.
            target=f"<= idle ({soak.idle.fds}) + {IDLE_CLIENTS} kept S3 connections",
            met=soak.after.fds <= soak.idle.fds + IDLE_CLIENTS,
            target_value=soak.idle.fds + IDLE_CLIENTS,
        ),
        Row("open fds", "after one more request per path", soak.checked.fds, "fds"),
    ]
    return rows


def _notes(soak: Soak, options: Options) -> list[str]:
    series = ", ".join(f"{sample.rss_mb:.1f}" for sample in soak.during[::5])
    generator = "wrk" if load_generator() == "wrk" else "Python load generator"
    notes = [
        f"{soak.duration:g} s of load after a {WARMUP:g} s warm-up; {CONNECTIONS} "
        f"connections shared evenly by the {len(PATHS)} paths, each loaded by its own "
        f"{generator} process (-t1, --timeout {REQUEST_TIMEOUT}s), all pinned to the client "
        f"core. The gateway used {soak.cpu_share:.0%} of its core. Requests/s: "
        + ", ".join(f"{name} {load.requests_per_s:,.0f}" for name, load in soak.loads.items())
        + ".",
        "Errors by path: "
        + ", ".join(f"{name} {_errors(load)}" for name, load in soak.loads.items())
        + f". Mean time per request: connections / requests/s (Little's law), the wait of "
        f"one request on a core shared by {CONNECTIONS} connections.",
        f"RSS: VmRSS of the one uvicorn process, MB = 10^6 bytes; every 5 s of the load: "
        f"{series}. At rest: {REST:g} s after the warm-up's or the load's connections "
        "closed.",
        f"Open fds by kind: idle {soak.idle_fds}; {soak.settle_seconds:.0f} s after the "
        f"load {soak.after_fds}; after one more request per path {soak.checked_fds}.",
    ]
    if soak.duration < FULL_DURATION:
        notes.append(
            f"A short soak: the issue's lasts {FULL_DURATION:g} s "
            f"(python -m bench soak --duration {FULL_DURATION:g})."
        )
    return notes + [n for n in describe(options) if n.startswith(("Servers", "Machine"))]


def _errors(load: PathLoad) -> str:
    if not load.errors:
        return "0"
    return (
        f"{sum(load.errors.values())} ("
        + ", ".join(f"{k} {n}" for k, n in load.errors.items())
        + ")"
    )
