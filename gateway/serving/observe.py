"""Observability: Prometheus metrics per media request (the access log of every
request is :mod:`gateway.access_log`'s).

Cheap when off: no metrics object exists unless ``GATEWAY_METRICS_PATH`` or
``GATEWAY_METRICS_PORT`` is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from starlette.types import Message, Send

from .access_log import access_logger as access_logger

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = ["OUTCOMES", "MemoryUse", "Metrics", "Observer", "access_logger"]

#: How a media request ended, the ``outcome`` label of the metrics.
OUTCOMES = ("redirect", "local", "proxy", "denied", "not_found", "bad_request", "error")
# Latency buckets from 100 us (a local 4 KiB file) to 10 s (a slow upstream).
LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)


class Metrics:
    """The gateway's Prometheus metrics, in a registry of their own."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        memory: Callable[[], dict[str, MemoryUse]] | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        if memory is not None:
            self.registry.register(_MemoryCollector(memory))
        self.requests = Counter(
            "media_gateway_requests",
            "Media requests by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "media_gateway_request_duration_seconds",
            "Time to answer a media request (to the last byte for local and proxy).",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.local_bytes = Counter(
            "media_gateway_local_bytes",
            "Body bytes served from local disk.",
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "media_gateway_upstream_errors",
            "S3 or delegate failures, by the status the client got.",
            ["status"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MemoryUse(NamedTuple):
    """One of the gateway's in-memory shortcuts, as counted so far."""

    hits: int
    entries: int
    #: Bytes held, where they are counted (kept files); None elsewhere.
    bytes: int | None = None


class _MemoryCollector:
    """Read at scrape time, so the request path only bumps plain integers."""

    def __init__(self, memory: Callable[[], dict[str, MemoryUse]]) -> None:
        self.memory = memory

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        hits = CounterMetricFamily(
            "media_gateway_memory_hits",
            "Requests answered from memory: kept small files, remembered signatures, "
            "redirects reused within their second.",
            labels=["kind"],
        )
        entries = GaugeMetricFamily(
            "media_gateway_memory_entries", "Entries held in memory.", labels=["kind"]
        )
        size = GaugeMetricFamily(
            "media_gateway_memory_bytes",
            "Bytes held for kept files (bodies, names and bookkeeping).",
            labels=["kind"],
        )
        for kind, use in self.memory().items():
            hits.add_metric([kind], use.hits)
            entries.add_metric([kind], use.entries)
            if use.bytes is not None:
                size.add_metric([kind], use.bytes)
        yield from (hits, entries, size)


class Observer:
    """Watches one media request: wraps ``send`` to see the status and the body size."""

    __slots__ = ("body_bytes", "method", "metrics", "outcome", "path", "started", "status")

    def __init__(self, metrics: Metrics | None, method: str, path: str) -> None:
        self.metrics = metrics
        self.method = method
        self.path = path
        self.started = time.perf_counter()
        self.status = 0
        self.body_bytes = 0
        self.outcome = "error"

    def wrap(self, send: Send) -> Send:
        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            else:
                self.body_bytes += len(message.get("body", b""))
            await send(message)

        return observed

    def finish(self, outcome: str | None = None) -> None:
        status = self.status
        if outcome is None or status >= 400:
            outcome = _outcome_for(status)
        self.outcome = outcome
        duration = time.perf_counter() - self.started
        metrics = self.metrics
        if metrics is not None:
            metrics.requests.labels(outcome).inc()
            metrics.latency.labels(outcome).observe(duration)
            if outcome == "local":
                metrics.local_bytes.inc(self.body_bytes)
            if status in (502, 503, 504):
                metrics.upstream_errors.labels(str(status)).inc()


def _outcome_for(status: int) -> str:
    if status in (401, 403):
        return "denied"
    if status == 404:
        return "not_found"
    if 400 <= status < 500:
        return "bad_request"
    return "error"
