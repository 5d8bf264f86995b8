"""Benchmark ``passthrough``: what the gateway costs the requests it does not answer.

A Django page served by the Django project bare (under uvicorn, no access log), and by
the same project behind the gateway as shipped (``media-gateway serve --app ...`` with
its default settings, access log on to /dev/null), in interleaved rounds. Every request that is not
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

from ._common import (
    REPO_ROOT,
    Loaded,
    Options,
    Report,
    Row,
    interleaved_rounds,
    request,
    serve_gateway,
    serve_uvicorn,
)
from ._environment import describe

TARGET = 0.95
BARE = "Django alone"
OURS = "Django behind the gateway"
BARE_FACTORY = "bench._django_apps:django_bare"
OURS_APP = "tests.djangoproject.asgi:application"
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
        settings = {
            "GATEWAY_SECRET_KEY": env["BENCH_SECRET"],
            "MEDIA_ROOT": env["BENCH_MEDIA"],
            "DJANGO_SETTINGS_MODULE": env["DJANGO_SETTINGS_MODULE"],
            "DJANGO_TEST_DB": env["DJANGO_TEST_DB"],
            "PYTHONPATH": str(REPO_ROOT),  # the test project, from serve's empty directory
        }
        for case in (BARE, OURS):
            if case == BARE:
                server = stack.enter_context(serve_uvicorn(case, BARE_FACTORY, env=env))
            else:
                server = stack.enter_context(serve_gateway(case, settings, "--app", OURS_APP))
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
