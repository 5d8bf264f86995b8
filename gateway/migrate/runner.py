"""Running many per-file tasks: a bounded thread pool, outcomes, progress and summary.

Shared by upload, verify and pull. Tasks run on worker threads; their outcomes come
back to the calling thread, which alone touches the state file and the counters. At
most a few tasks per worker wait in the queue, so a walk of a million files never
turns into a million queued tasks.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO, TypeVar

from .state import Record
from .walk import display

__all__ = ["Cancelled", "Outcome", "Progress", "Runner", "Summary", "prefetch"]

# Queued tasks per worker: enough that no worker waits for the walk, few enough that
# memory does not grow with the tree.
QUEUE_PER_WORKER = 4
# Seconds between progress lines when stderr is not a terminal.
PLAIN_INTERVAL = 10.0
# Seconds between redraws of the progress bar.
BAR_INTERVAL = 0.2


class Cancelled(Exception):
    """The run was interrupted (SIGINT, SIGTERM); in-flight work stops and cleans up."""


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one file. ``status`` is a key of :class:`Summary`'s counters."""

    relpath: str
    status: str
    size: int = 0
    error: str = ""
    record: Record | None = None


@dataclasses.dataclass
class Summary:
    """Counters by status, bytes moved, and the files that failed with why."""

    counts: dict[str, int]
    bytes: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = dataclasses.field(default_factory=list)
    interrupted: bool = False

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        if outcome.status == "failed":
            self.failures.append({"path": display(outcome.relpath), "error": outcome.error})

    def as_json(self) -> dict[str, Any]:
        # Workers finish in any order; report in the walk's.
        self.failures.sort(key=lambda item: item["path"].encode())
        return {
            **self.counts,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "failures": self.failures,
            **({"interrupted": True} if self.interrupted else {}),
        }


class Progress:
    """A progress bar on a terminal (files, bytes, rate, ETA), a line every few seconds
    otherwise, nothing with ``quiet``. ``total`` is filled in by a counting walk when
    there is a bar to show an ETA on."""

    def __init__(self, verb: str, *, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.verb = verb
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = not quiet and self.stream.isatty()
        self.files = 0
        self.bytes = 0
        self.total_files: int | None = None
        self.total_bytes: int | None = None
        self.started = time.monotonic()
        self._shown = self.started

    def update(self, size: int, *, moved: bool) -> None:
        self.files += 1
        if moved:
            self.bytes += size
        now = time.monotonic()
        if self.quiet or now - self._shown < (BAR_INTERVAL if self.tty else PLAIN_INTERVAL):
            return
        self._shown = now
        self._show(now)

    def _show(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.bytes / elapsed
        text = f"{self.verb}: {self.files:,} files, {_size(self.bytes)}, {_size(rate)}/s"
        if self.total_files:
            share = min(self.files / self.total_files, 1.0)
            eta = elapsed / share - elapsed if share > 0 else math.inf
            bar = "#" * int(share * 20)
            text = (
                f"[{bar:<20}] {self.files:,}/{self.total_files:,} files, {_size(self.bytes)},"
                f" {_size(rate)}/s, ETA {_duration(eta)}"
            )
        if self.tty:
            self.stream.write(f"\r\x1b[K{text}")
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()

    def count_in_background(self, entries: Iterable[object]) -> None:
        """Fill in the totals for the ETA from ``entries`` (a second walk of the source,
        cheap next to the transfers) on a daemon thread."""

        def count() -> None:
            files = size = 0
            for entry in entries:
                files += 1
                size += getattr(entry, "size", 0)
            self.total_files, self.total_bytes = files, size

        threading.Thread(target=count, daemon=True, name="count").start()

    def done(self) -> None:
        if self.tty:
            self._show(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02}:{seconds % 60:02}"


class Runner:
    """Run per-file tasks on ``workers`` threads; hand their outcomes to ``on_outcome``
    on the thread that calls :meth:`submit` and :meth:`finish`.

    A task that raises becomes a ``failed`` outcome with the exception's message, so one
    file's trouble never stops the others.
    """

    def __init__(self, workers: int, on_outcome: Callable[[Outcome], None]) -> None:
        self.workers = workers
        self.on_outcome = on_outcome
        self.cancelled = threading.Event()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="media-gateway")
        self._slots = threading.Semaphore(workers * QUEUE_PER_WORKER)
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._running = 0

    def submit(self, relpath: str, task: Callable[[], Outcome]) -> None:
        while not self._slots.acquire(timeout=0.05):
            self.drain()
        self.drain()
        self._running += 1
        self._pool.submit(self._run, relpath, task)

    def _run(self, relpath: str, task: Callable[[], Outcome]) -> None:
        try:
            if self.cancelled.is_set():
                raise Cancelled()
            outcome = task()
        except Cancelled:
            outcome = Outcome(relpath, "cancelled")
        except Exception as exc:  # one file's failure must not stop the run
            outcome = Outcome(relpath, "failed", error=_message(exc))
        self._outcomes.put(outcome)
        self._slots.release()

    def drain(self, *, block: bool = False) -> None:
        while self._running:
            try:
                outcome = self._outcomes.get(block=block, timeout=0.1 if block else None)
            except queue.Empty:
                if not block:
                    return
                continue
            self._running -= 1
            if outcome.status != "cancelled":
                self.on_outcome(outcome)

    def finish(self) -> None:
        """Wait for every task and hand over its outcome."""
        self.drain(block=True)
        self._pool.shutdown()

    def cancel(self) -> None:
        """Stop: queued tasks are dropped, running ones see ``cancelled`` and clean up."""
        self.cancelled.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        # Tasks dropped from the queue never report; count them out.
        while True:
            try:
                outcome = self._outcomes.get_nowait()
            except queue.Empty:
                break
            if outcome.status != "cancelled":
                self.on_outcome(outcome)
        self._running = 0


def _message(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


T = TypeVar("T")
# Items a prefetching thread may run ahead: two listing pages.
PREFETCH = 2000
_END = object()


def prefetch(items: Iterable[T], ahead: int = PREFETCH) -> Iterator[T]:
    """Iterate ``items`` on a thread, up to ``ahead`` items ahead of the consumer, so that
    its waits (network) overlap with the consumer's work. Errors are re-raised here."""
    buffer: queue.Queue[Any] = queue.Queue(ahead)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:
            put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="prefetch")
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # A producer stuck in a request ends with it; it is a daemon and holds nothing.
        thread.join(timeout=1.0)
