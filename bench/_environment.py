"""What a result depends on besides the code: machine, versions, tools and pinning."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import time

from ._common import Options, downloader, load_generator, pinning_note


def describe(options: Options) -> list[str]:
    """Notes for a report, so that numbers from two machines are never compared blindly."""
    if load_generator() == "wrk":
        version = " ".join(_first_line(["wrk", "-v"]).split()[:2])
        load = (
            f"Load: {version}, -t1 -c{options.connections}, "
            f"{options.warmup:g} s warm-up, then {round(options.duration)} s per round."
        )
    else:
        load = (
            f"Load: the Python asyncio client (bench/_loadgen.py; wrk missing or BENCH_NO_WRK "
            f"set), {options.connections} connections, {options.warmup:g} s warm-up, then "
            f"{options.duration:g} s per round. It can saturate before a fast server does, "
            "which compresses requests/s ratios towards 1; the server-CPU rows are immune."
        )
    fetch = "curl" if downloader() == "curl" else "the Python client (bench/_loadgen.py)"
    fetch = f"one at a time with {fetch}"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return [
        load,
        f"Downloads: {fetch}, best of {options.runs}; MB = 10^6 bytes.",
        f"Servers: uvicorn {_version('uvicorn')} ({loop}, {http}), one process; the gateway "
        "as `media-gateway serve` starts it (access log on, stdout to /dev/null), the "
        "baselines under plain uvicorn with no access log; "
        f"Starlette {_version('starlette')}; servestatic {_version('servestatic')}; "
        f"{_first_line(['nginx', '-v'])}.",
        f"Machine: {_cpu()}, {os.cpu_count()} CPUs; {pinning_note()}; "
        f"Python {platform.python_version()} on {platform.system()} {platform.release()}.",
    ]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return f"{argv[0]} not installed"
    # wrk and nginx print their version to stderr.
    return (done.stdout + done.stderr).strip().splitlines()[0]


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class ForeignLoad:
    """How busy others kept the machine during a block: CPU time of other processes (in
    user and system mode, minus what this process and its waited-for children used),
    and time the hypervisor gave our virtual CPUs to other guests ("steal").

    Benchmarks share the machine with whatever else runs; this says when to distrust a
    result rather than silently publishing it. On a shared VM, steal is what swings a
    bare 302 from 40,000 to 2,000 requests/s between rounds.
    """

    def __enter__(self) -> ForeignLoad:
        self._start = (time.monotonic(), _busy_seconds(), _own_seconds(), _steal_seconds())
        return self

    def __exit__(self, *exc_info: object) -> None:
        elapsed = time.monotonic() - self._start[0]
        capacity = elapsed * (os.cpu_count() or 1)
        busy = _busy_seconds() - self._start[1]
        own = _own_seconds() - self._start[2]
        self.fraction = max(0.0, busy - own) / capacity
        self.steal = max(0.0, _steal_seconds() - self._start[3]) / capacity

    def note(self) -> str:
        text = (
            f"Other processes used {self.fraction:.0%} of the CPUs during the run, and the "
            f"hypervisor took {self.steal:.0%} (steal)"
        )
        if self.fraction > NOISY or self.steal > NOISY:
            return f"{text}: **noisy run**, compare ratios only, and rerun on a quiet machine."
        return f"{text} (quiet enough)."


# A rough line: 5% of two cores is a tenth of the core the server is pinned to.
NOISY = 0.05


def _busy_seconds() -> float:
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    user, nice, system = (int(x) for x in fields[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def _steal_seconds() -> float:
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    # cpu user nice system idle iowait irq softirq steal ...
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system
