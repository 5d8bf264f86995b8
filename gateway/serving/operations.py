"""Operations paths: metrics, readiness (is this gateway able to serve) and liveness."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.types import Send

from ..bucket import check_bucket
from ..settings import Settings
from .observe import Metrics
from .responses import send_whole

__all__ = ["Operations", "Readiness", "json_response"]

# A readiness probe every second from several load balancers must not become a
# HeadBucket every second: the answer is reused this long.
CACHE_SECONDS = 5.0
# What anyone who can reach the probe learns of a problem: a short code per setting.
# The details (bucket name, internal endpoint, S3's error) go to the log and to
# `media-gateway check`, never to the probe's body.
REASON_CODES = {
    "MEDIA_ROOT": "media_root",
    "AWS_STORAGE_BUCKET_NAME": "bucket",
    "AWS_ACCESS_KEY_ID": "credentials",
    "AWS_S3_ENDPOINT_URL": "endpoint",
    "AWS_CA_BUNDLE": "ca_bundle",
    "HTTPS_PROXY": "proxy",
    "HTTP_PROXY": "proxy",
    "clock": "clock",
}

logger = logging.getLogger("gateway.health")


class Readiness:
    """Checks that the settings work: MEDIA_ROOT exists, and in S3 mode the bucket
    answers HeadBucket with our credentials. Results are cached for a few seconds.

    The answer names each problem by a short code (:data:`REASON_CODES`); the full
    line is logged when the set of problems changes."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._result: tuple[float, bool, dict[str, Any]] | None = None
        self._problems: list[str] = []
        self._lock = anyio.Lock()

    async def check(self) -> tuple[bool, dict[str, Any]]:
        async with self._lock:  # one probe at a time; the others reuse its answer
            cached = self._result
            if cached is not None and self.clock() - cached[0] < CACHE_SECONDS:
                return cached[1], cached[2]
            # HeadBucket is a blocking boto3 call: off the event loop.
            ok, details, problems = await anyio.to_thread.run_sync(self._check_now)
            if cached is None or problems != self._problems:
                for problem in problems:
                    logger.warning("not ready: %s", problem)
                if not problems and cached is not None:
                    logger.warning("ready again")
            self._problems = problems
            self._result = (self.clock(), ok, details)
            return ok, details

    def _check_now(self) -> tuple[bool, dict[str, Any], list[str]]:
        settings = self.settings
        details: dict[str, Any] = {"mode": "s3" if settings.use_s3 else "local"}
        problems: list[str] = []
        needs_root = not settings.use_s3 or settings.local_fallback
        if needs_root and not os.path.isdir(settings.media_root):
            problems.append("MEDIA_ROOT: directory does not exist")
        if settings.use_s3:
            report, s3_problems = check_bucket(settings)
            details["bucket_reachable"] = report.get("bucket_reachable", False)
            problems += s3_problems
        details["problems"] = sorted(
            {REASON_CODES.get(problem.split(":", 1)[0], "s3") for problem in problems}
        )
        return not problems, details, problems


def json_response(
    status: int, payload: dict[str, Any]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(payload).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
    ]
    return status, headers, body


class Operations:
    """The operations paths a gateway answers, by path: GATEWAY_METRICS_PATH,
    GATEWAY_READY_PATH and GATEWAY_LIVE_PATH, and the metrics port."""

    def __init__(self, settings: Settings, metrics: Metrics | None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.readiness = Readiness(settings)
        self.routes: dict[str, Callable[[Send], Awaitable[None]]] = {}
        if settings.metrics_path:
            self.routes[settings.metrics_path] = self._send_metrics
        if settings.ready_path:
            self.routes[settings.ready_path] = self._send_ready
        if settings.live_path:
            self.routes[settings.live_path] = self._send_live

    def start_metrics_server(self) -> None:
        from prometheus_client import start_http_server

        assert self.metrics is not None and self.settings.metrics_port is not None
        try:
            start_http_server(
                self.settings.metrics_port,
                addr=self.settings.metrics_addr,
                registry=self.metrics.registry,
            )
        except OSError as exc:
            # With several workers only the first can bind the port; the others say so
            # once and keep serving media (use GATEWAY_METRICS_PATH for per-worker data).
            logger.warning("metrics port %s not opened: %s", self.settings.metrics_port, exc)

    async def _send_metrics(self, send: Send) -> None:
        assert self.metrics is not None
        body = self.metrics.render()
        headers = [
            (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"cache-control", b"no-store"),
        ]
        await send_whole(send, 200, headers, body)

    async def _send_ready(self, send: Send) -> None:
        ok, details = await self.readiness.check()
        await send_whole(send, *json_response(200 if ok else 503, {"ready": ok, **details}))

    async def _send_live(self, send: Send) -> None:
        await send_whole(send, *json_response(200, {"live": True}))
