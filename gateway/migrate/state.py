"""What earlier runs learnt, so that a re-run reads and asks as little as possible.

One SQLite file per (endpoint, bucket, prefix, local directory). A row says: when the
file had this fingerprint its SHA-256 was ``sha256``, and the object with ETag ``etag``
holds the same bytes. ListObjectsV2 returns ETags but no metadata, so with the row a
re-run can skip a file from the listing alone, without reading it or a HEAD per object;
an ETag is only ever compared with an ETag recorded for the same object, never with an
MD5. Without a row (first run, lost state, another machine) the uploader falls back to
a HEAD and a hash, so the state is a cache: deleting it costs time, never correctness.

SQLite commits are atomic, so a run killed at any moment (SIGKILL included) leaves the
state as of its last commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["Record", "State", "default_state_path"]

# Rows are committed in batches: one commit per file would cost an fsync per file.
COMMIT_ROWS = 1000
COMMIT_SECONDS = 2.0
# Rows read per query when looking up in walk order.
CHUNK_ROWS = 1000
# A file modified within this long of being hashed may change again within the same
# mtime tick (the "racy git" problem), so its row is not trusted without a re-hash.
RACY_NS = 2 * 10**9

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    relpath TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    etag TEXT NOT NULL,
    checked_ns INTEGER NOT NULL
) WITHOUT ROWID
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    fingerprint: tuple[int, int, int, int]
    sha256: str
    etag: str
    #: When the hash was computed (time.time_ns()).
    checked_ns: int

    def trusted_for(self, fingerprint: tuple[int, int, int, int]) -> bool:
        """True when a file with ``fingerprint`` can be taken to still hash to sha256."""
        return fingerprint == self.fingerprint and fingerprint[1] < self.checked_ns - RACY_NS


_SELECT = "SELECT relpath, size, mtime_ns, ctime_ns, ino, sha256, etag, checked_ns FROM files"


def _record(row: tuple[Any, ...]) -> Record:
    return Record((row[1], row[2], row[3], row[4]), row[5], row[6], row[7])


def default_state_path(local_dir: Path, *, endpoint: str, bucket: str, prefix: str) -> Path:
    """``<parent of local_dir>/.media-gateway-state/<bucket>-<hash>.sqlite3``: next to
    the media, outside it (it must not be uploaded), one file per target."""
    real = os.path.realpath(local_dir)
    digest = hashlib.sha256(f"{endpoint}\n{bucket}\n{prefix}\n{real}".encode()).hexdigest()
    return Path(real).parent / ".media-gateway-state" / f"{bucket}-{digest[:16]}.sqlite3"


class State:
    """The state file, or nothing when ``path`` is None or cannot be opened (the run
    then only costs more requests). Use from one thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pending = 0
        self._last_commit = time.monotonic()
        # Rows ahead of the last lookup, read in key order; see get().
        self._chunk: list[tuple[Any, ...]] = []
        self._index = 0
        self._last = ""
        self._exhausted = False
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            print(
                f"media-gateway: state file {path} unusable ({exc}); going on without",
                file=sys.stderr,
            )
            return
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.commit()
        except sqlite3.Error as exc:
            db.close()
            print(
                f"media-gateway: state file {path} unusable ({exc}); going on without",
                file=sys.stderr,
            )
            return
        self._db = db

    def get(self, relpath: str) -> Record | None:
        """The row of ``relpath``, or None.

        Lookups in increasing order (the walk's, which is the table's: SQLite compares
        TEXT as UTF-8 bytes) read the table in sorted chunks, one query per thousand
        rows rather than one per file; any other order falls back to a point query.
        """
        if self._db is None:
            return None
        if relpath < self._last:
            row = self._db.execute(f"{_SELECT} WHERE relpath = ?", (relpath,)).fetchone()
            return _record(row) if row else None
        self._last = relpath
        chunk = self._chunk
        while True:
            while self._index < len(chunk) and chunk[self._index][0] < relpath:
                self._index += 1
            if self._index < len(chunk) or self._exhausted:
                break
            after = chunk[-1][0] if chunk else ""
            chunk = self._chunk = self._db.execute(
                f"{_SELECT} WHERE relpath > ? ORDER BY relpath LIMIT {CHUNK_ROWS}", (after,)
            ).fetchall()
            self._index = 0
            self._exhausted = len(chunk) < CHUNK_ROWS
        if self._index < len(chunk) and chunk[self._index][0] == relpath:
            return _record(chunk[self._index])
        return None

    def put(self, relpath: str, record: Record) -> None:
        if self._db is None:
            return
        self._db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (relpath, *record.fingerprint, record.sha256, record.etag, record.checked_ns),
        )
        self._pending += 1
        if self._pending >= COMMIT_ROWS or time.monotonic() - self._last_commit > COMMIT_SECONDS:
            self.commit()

    def commit(self) -> None:
        if self._db is not None and self._pending:
            self._db.commit()
        self._pending = 0
        self._last_commit = time.monotonic()

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.commit()
            self._db.close()
            self._db = None
