"""What a result depends on besides the code: machine, versions, tools and pinning."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess

from ._common import Options, downloader, load_generator, pinning_note


def describe(options: Options) -> list[str]:
    """Notes for a report, so that numbers from two machines are never compared blindly."""
    if load_generator() == "wrk":
        version = " ".join(_first_line(["wrk", "-v"]).split()[:2])
        load = (
            f"Load: {version}, -t1 -c{options.connections}, "
            f"{options.warmup:g} s warm-up then {round(options.duration)} s measured."
        )
    else:
        load = (
            f"Load: the Python asyncio client (bench/_loadgen.py; wrk missing or BENCH_NO_WRK "
            f"set), {options.connections} connections, {options.warmup:g} s warm-up then "
            f"{options.duration:g} s measured. It saturates well below wrk, so fast servers "
            f"are capped and ratios are compressed towards 1."
        )
    fetch = "curl" if downloader() == "curl" else "the Python client (bench/_loadgen.py)"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return [
        load,
        f"Downloads: one {fetch} at a time, best of {options.runs}; MB = 10^6 bytes.",
        f"Servers: uvicorn {_version('uvicorn')} ({loop}, {http}), one process, no access "
        f"log; Starlette {_version('starlette')}; servestatic {_version('servestatic')}; "
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
