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

from ._common import Loaded, Options, Report, Row, interleaved_rounds, request, serve_uvicorn
from ._environment import describe

TARGET = 0.95
BARE = "Django alone"
OURS = "Django behind the gateway"
FACTORIES = {BARE: "bench._django_apps:django_bare", OURS: "bench._django_apps:django_gateway"}
PAGE = "/"


def run(options: Options) -> Report:
    report = Report("passthrough", "Pass-through: a Django page with and without the gateway")
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
            servers[case] = Loaded(server.url + PAGE, server.pid)
        rates, cpu = interleaved_rounds(servers, options, label="Django page", notes=report.notes)
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
