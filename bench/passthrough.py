"""Benchmark ``passthrough``: what the gateway costs the requests it does not answer.

A Django page served by the Django project bare, and by the same project wrapped by
the gateway, on the same uvicorn, in interleaved rounds. Every request that is not
media passes through the middleware: one prefix check, then the app. Target: the
wrapped app keeps at least 0.95x of the bare app's requests/s (no issue sets one; a
pass-through should not be noticed).
"""

from __future__ import annotations

import contextlib
import secrets
import statistics
import tempfile
from pathlib import Path

from ._common import Options, Report, Row, cpu_seconds, request, run_load, serve_uvicorn
from ._environment import describe

TARGET = 0.95
BARE = "Django alone"
OURS = "Django behind the gateway"
FACTORIES = {BARE: "bench._django_apps:django_bare", OURS: "bench._django_apps:django_gateway"}
PAGE = "/"


def run(options: Options) -> Report:
    report = Report("passthrough", "Pass-through: a Django page with and without the gateway")
    rates: dict[str, list[float]] = {case: [] for case in FACTORIES}
    cpu: dict[str, list[float]] = {case: [] for case in FACTORIES}
    with contextlib.ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pass-")))
        (base / "media").mkdir()
        env = {
            "BENCH_SECRET": secrets.token_urlsafe(32),
            "BENCH_MEDIA": str(base / "media"),
            "DJANGO_SETTINGS_MODULE": "tests.djangoproject.settings",
            "DJANGO_TEST_DB": str(base / "db.sqlite3"),
        }
        servers = {}
        for case, factory in FACTORIES.items():
            server = stack.enter_context(serve_uvicorn(case, factory, env=env))
            status, _, _ = request(server.url + PAGE)
            if status != 200:
                raise RuntimeError(f"{case}: {PAGE} answered {status}")
            run_load(server.url + PAGE, connections=options.connections, duration=options.warmup)
            servers[case] = server
        for _ in range(options.rounds):
            for case, server in servers.items():
                before = cpu_seconds(server.pid)
                load = run_load(
                    server.url + PAGE, connections=options.connections, duration=options.duration
                )
                rates[case].append(load.requests_per_s)
                cpu[case].append((cpu_seconds(server.pid) - before) / load.requests * 1e6)
    ratio = statistics.median(o / b for o, b in zip(rates[OURS], rates[BARE], strict=True))
    cpu_ratio = statistics.median(b / o for o, b in zip(cpu[OURS], cpu[BARE], strict=True))
    base_rate = statistics.median(rates[BARE])
    report.rows += [
        Row("Django page", BARE, base_rate, "req/s", "(the baseline)", 1.0),
        Row(
            "Django page",
            OURS,
            statistics.median(rates[OURS]),
            "req/s",
            BARE,
            ratio,
            f">= {TARGET}x",
            ratio >= TARGET,
            base_rate * TARGET,
        ),
        Row(
            "Django page, server CPU",
            BARE,
            statistics.median(cpu[BARE]),
            "us/req",
            "(the baseline)",
            1.0,
        ),
        Row(
            "Django page, server CPU", OURS, statistics.median(cpu[OURS]), "us/req", BARE, cpu_ratio
        ),
    ]
    report.notes += [
        f"{options.rounds} interleaved rounds of {options.duration:g} s per server; value = "
        "median, ratio = median of the per-round ratios (CPU: bare / wrapped).",
        *(note for note in describe(options) if not note.startswith("Downloads")),
    ]
    return report
