"""Benchmark ``django_url``: what one media link costs a Django page, in the same run.

Ours: ``GatewayStorage().url(name)``, the storage the README's ``STORAGES`` names (an
HMAC for a gateway URL, no boto3, in every phase of a migration), ``MediaStorage().url``
(the S3-only storage) and :func:`gateway.django.media_url`. Baseline: the seed
guide's storage, django-storages' ``S3Boto3Storage.url()`` with ``querystring_auth``,
which asks boto3 for a presigned URL on every call. Each renders the same 1,000 names
per round; rounds alternate between the cases and the best round counts, so a slow
spell of the machine hits a round rather than one case.

Both are configured with fake credentials and a loopback endpoint where nothing
listens: presigning is offline, and no case touches the network.

Target (issue 4): ours at least 20x cheaper per call than the baseline.

Run: ``python -m bench.django_url`` (writes ``bench/results/django_url.md``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable

from ._common import Options, Report, free_port, progress, write_report
from ._results import cost_rows

NAMES = 1000
# Seven alternating rounds take ~3 s here, nearly all of it in the baseline.
ROUNDS = 7
# The issue's target: a page of 1,000 links must cost a twentieth of boto3's presigning.
TARGET_SPEEDUP = 20

BASELINE = "S3Boto3Storage.url() (boto3 presign)"
OURS = "GatewayStorage.url()"
S3_ONLY_CASE = "MediaStorage.url()"
MEDIA_URL_CASE = "gateway.django.media_url()"
GROUP = "one media URL"
BUCKET = "bench-django-url"


def run(options: Options | None = None, *, rounds: int = ROUNDS) -> Report:
    """Measure the three cases; ``options`` is accepted for ``python -m bench`` and unused
    (no server, no load)."""
    _configure_django()
    from storages.backends.s3boto3 import S3Boto3Storage

    from gateway.django import media_url
    from gateway.django.storage import GatewayStorage, MediaStorage

    names = [f"documents/{index:04d}/report {index}.pdf" for index in range(NAMES)]
    # The seed guide's MediaStorage, as django-storages serves it.
    seed_storage = S3Boto3Storage(location="media", file_overwrite=False, default_acl="private")
    cases: dict[str, Callable[[str], str]] = {
        BASELINE: seed_storage.url,
        OURS: GatewayStorage().url,
        S3_ONLY_CASE: MediaStorage().url,
        MEDIA_URL_CASE: media_url,
    }
    _check(cases, names[0])
    best = {case: float("inf") for case in cases}
    for _ in range(rounds):
        for case, url in cases.items():
            started = time.perf_counter()
            for name in names:
                url(name)
            per_call = (time.perf_counter() - started) / NAMES * 1e6
            best[case] = min(best[case], per_call)
    progress(", ".join(f"{case} {value:.1f} us" for case, value in best.items()))

    base = best[BASELINE]
    report = Report("django_url", "media URLs in Django pages, without boto3")
    report.rows += cost_rows(GROUP, best, baseline=BASELINE, ours=OURS, speedup=TARGET_SPEEDUP)
    report.notes += [
        f"{OURS} is {base / best[OURS]:.1f}x cheaper than {BASELINE}; "
        f"{S3_ONLY_CASE} {base / best[S3_ONLY_CASE]:.1f}x; "
        f"{MEDIA_URL_CASE} {base / best[MEDIA_URL_CASE]:.1f}x. Lower is better; the ratio "
        f"is the case's time over the baseline's.",
        f"{NAMES:,} names per round, best of {rounds} alternating rounds; private names "
        f"(signed), fake credentials, loopback endpoint, no network.",
        f"Versions: Django {_version('django')}, django-storages {_version('django-storages')}, "
        f"boto3 {_version('boto3')}, itsdangerous {_version('itsdangerous')}.",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()} on {platform.system()} {platform.release()}.",
    ]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.django_url", description=__doc__)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    report = run(rounds=args.rounds)
    print(write_report(report), flush=True)
    for row in report.missed:
        print(f"target missed: {row.group}: {row.case}", file=sys.stderr)
    return 1 if args.strict and report.missed else 0


def _configure_django() -> None:
    from django.conf import settings

    if settings.configured:
        if getattr(settings, "AWS_STORAGE_BUCKET_NAME", None) == BUCKET:
            return  # configured by an earlier run in this process
        raise RuntimeError("bench.django_url configures Django itself; run it in its own process")
    settings.configure(
        GATEWAY_SECRET_KEY=secrets.token_urlsafe(32),
        MEDIA_URL="/media/",
        # The migrating phase: GatewayStorage's url() must not care.
        USE_S3=True,
        GATEWAY_LOCAL_FALLBACK=True,
        AWS_STORAGE_BUCKET_NAME=BUCKET,
        # A port that was free a moment ago: should anything try to connect, it fails.
        AWS_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        AWS_S3_REGION_NAME="us-east-1",
        AWS_ACCESS_KEY_ID="AKIA" + secrets.token_hex(8).upper(),
        AWS_SECRET_ACCESS_KEY=secrets.token_hex(20),
        AWS_S3_SIGNATURE_VERSION="s3v4",
        AWS_QUERYSTRING_AUTH=True,
    )


def _check(cases: dict[str, Callable[[str], str]], name: str) -> None:
    """Fail before measuring a case that returns something else (a fast wrong URL is no
    win). The first call also builds boto3's client, which is not what is measured."""
    baseline = cases[BASELINE](name)
    if "X-Amz-Signature=" not in baseline:
        raise RuntimeError(f"{BASELINE}: not a presigned URL: {baseline}")
    for case in (OURS, S3_ONLY_CASE, MEDIA_URL_CASE):
        url = cases[case](name)
        if not url.startswith("/media/documents/0000/report%200.pdf?exp=") or "&sig=" not in url:
            raise RuntimeError(f"{case}: not a signed gateway URL: {url}")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    raise SystemExit(main())
