"""Progress of a run on stderr: a bar on a terminal, a line every few seconds otherwise."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

__all__ = ["Progress"]

# Seconds between progress lines when stderr is not a terminal.
PLAIN_INTERVAL = 10.0
# Seconds between redraws of the progress bar.
BAR_INTERVAL = 0.2


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
