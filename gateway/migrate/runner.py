"""The run template of upload, verify and pull, and the thread pool it runs tasks on.

A :class:`Job` joins a walk with a listing and plans each pair on the calling thread:
an outcome at once (skipped, failed), or a task for the pool. Tasks run on worker
threads; their outcomes come back to the calling thread, which alone touches the state
file and the counters. At most a few tasks per worker wait in the queue, so a walk of a
million files never turns into a million queued tasks.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ..exceptions import Cancelled
from .progress import Progress
from .replies import ObjectInfo
from .state import Record, State
from .walk import LocalFile, Problem, display, join

if TYPE_CHECKING:
    from .wire import S3Wire

__all__ = ["Cancelled", "Copier", "Job", "Outcome", "Runner", "Summary", "prefetch"]

# Queued tasks per worker: enough that no worker waits for the walk, few enough that
# memory does not grow with the tree.
QUEUE_PER_WORKER = 4


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


ResultT = TypeVar("ResultT")


class Job(Generic[ResultT]):
    """The run template: every pair of a walk joined with a listing is planned on the
    calling thread (:meth:`_plan`), tasks run on ``workers`` threads, and every outcome
    is recorded on the calling thread (:meth:`_record`). Subclasses fill in those two,
    and :meth:`_close` and :meth:`_result`.

    :param key_for: the S3 key of a relpath.
    :param read_headers: headers every request on an object repeats (SSE-C keys).
    """

    #: What the progress line says is going on.
    verb: ClassVar[str]

    def __init__(
        self,
        wire: S3Wire,
        *,
        key_for: Callable[[str], str],
        workers: int,
        read_headers: Mapping[str, str] | None,
        progress: Progress | None,
    ) -> None:
        self.wire = wire
        self.key_for = key_for
        self.read_headers = dict(read_headers or {})
        self.progress = progress or Progress(self.verb, quiet=True)
        self.runner = Runner(workers, self._record)

    def run(self, entries: Iterable[LocalFile | Problem], listing: Iterable[ObjectInfo]) -> ResultT:
        """Plan every pair and wait for every task. Raises KeyboardInterrupt after
        cancelling the tasks in flight (which clean up: multipart uploads are aborted)
        when interrupted; what was done so far stays on the job."""
        started = time.monotonic()
        finished = False
        try:
            for local, remote in join(entries, listing):
                self._plan(local, remote)
            self.runner.finish()
            finished = True
        except BaseException:
            self.runner.cancel()
            raise
        finally:
            self._close(time.monotonic() - started, interrupted=not finished)
            self.progress.done()
        return self._result()

    def _plan(self, local: LocalFile | Problem | None, remote: ObjectInfo | None) -> None:
        """Record an outcome, or submit a task to :attr:`runner`, for one pair."""
        raise NotImplementedError

    def _record(self, outcome: Outcome) -> None:
        raise NotImplementedError

    def _close(self, seconds: float, *, interrupted: bool) -> None:
        """Called once the run ends, finished or not."""

    def _result(self) -> ResultT:
        raise NotImplementedError


class Copier(Job[Summary]):
    """A job that copies files (upload, pull): counts by status and bytes moved in
    :attr:`summary`, and the state rows its outcomes carry written to ``state``."""

    #: The status of a file that was copied.
    moved: ClassVar[str]

    def __init__(
        self,
        wire: S3Wire,
        *,
        key_for: Callable[[str], str],
        state: State,
        workers: int,
        read_headers: Mapping[str, str] | None,
        progress: Progress | None,
    ) -> None:
        super().__init__(
            wire, key_for=key_for, workers=workers, read_headers=read_headers, progress=progress
        )
        self.state = state
        self.summary = Summary({self.moved: 0, "skipped": 0, "failed": 0})
        #: Whether outcomes' rows are written (not in a dry run, which copied nothing).
        self.remember = True

    def _record(self, outcome: Outcome) -> None:
        self.summary.add(outcome)
        moved = outcome.status == self.moved
        if moved:
            self.summary.bytes += outcome.size
        if outcome.record is not None and self.remember:
            self.state.put(outcome.relpath, outcome.record)
        self.progress.update(outcome.size, moved=moved)

    def _close(self, seconds: float, *, interrupted: bool) -> None:
        self.state.commit()
        self.summary.seconds = seconds
        self.summary.interrupted = interrupted

    def _result(self) -> Summary:
        return self.summary
