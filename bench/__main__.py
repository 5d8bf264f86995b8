"""Run the benchmarks: ``python -m bench`` runs all in turn, ``python -m bench local`` one."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
import traceback

from ._common import Options, Report, write_report
from ._environment import ForeignLoad

# Name -> module with ``run(Options) -> Report``. Imported lazily, so that a benchmark
# whose extra dependency is missing cannot break the others.
BENCHMARKS = {
    "local": "bench.local",
    "passthrough": "bench.passthrough",
    "django_url": "bench.django_url",
    "upload": "bench.upload",
    "redirect": "bench.redirect",
    "soak": "bench.soak",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks with same-run baselines. BENCH_NO_WRK=1 forces the Python "
        "load generator, BENCH_NO_CURL=1 the Python downloader.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(BENCHMARKS)}")
    defaults = Options()
    parser.add_argument(
        "--duration", type=float, default=defaults.duration, help="seconds of load per round"
    )
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument(
        "--runs", type=int, default=defaults.runs, help="downloads per large-file case"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    options = Options(
        duration=args.duration,
        rounds=args.rounds,
        connections=args.connections,
        runs=args.runs,
    )

    # SIGTERM would end Python without unwinding, leaving the servers running; as an
    # exception it stops them like Ctrl-C does.
    signal.signal(signal.SIGTERM, _terminate)
    failed, missed = [], []
    for name in args.names or list(BENCHMARKS):
        print(f"== bench {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            with ForeignLoad() as foreign:
                report: Report = importlib.import_module(BENCHMARKS[name]).run(options)
            report.notes.append(foreign.note())
        except Exception:
            # Servers are already stopped by their context managers; go on with the rest.
            traceback.print_exc()
            failed.append(name)
            continue
        print(write_report(report), flush=True)
        missed += [f"{name}: {row.group}: {row.case}" for row in report.missed]
        print(f"== bench {name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    for line in missed:
        print(f"target missed: {line}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 1 if args.strict and missed else 0


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    raise SystemExit(main())
