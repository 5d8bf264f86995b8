"""The local side of a migration: walk order, refused entries, selection, hashing and
the merge with a listing. RELIABILITY items 46, 47 and 57."""

from __future__ import annotations

import dataclasses
import os
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.migrate.walk import (
    LocalFile,
    Problem,
    Selector,
    SourceChanged,
    hash_file,
    join,
    shard_of,
    walk,
)
from tests.migrate.support import ODD_NAMES, odd_tree, write_tree


@dataclasses.dataclass(frozen=True)
class Remote:
    key: str


def files(root: Path, **options: Any) -> list[LocalFile]:
    return [e for e in walk(str(root), Selector(**options)) if isinstance(e, LocalFile)]


def problems(root: Path) -> dict[str, str]:
    return {e.relpath: e.error for e in walk(str(root)) if isinstance(e, Problem)}


def test_order_is_s3_key_order(tmp_path: Path) -> None:
    """The walk yields paths sorted by UTF-8 bytes, as ListObjectsV2 lists keys, across
    directory boundaries (d-x < d/a < d0) and for NFC and NFD names."""
    names = [*ODD_NAMES, "d/a", "d-x", "d0", "d.b/c", "D", "z", "\u00e9/x", "e\u0301"]
    write_tree(tmp_path, {name: b"x" for name in names})
    got = [f.relpath for f in files(tmp_path)]
    assert got == sorted(names, key=lambda n: n.encode("utf-8"))


def test_regular_files_carry_their_stat(tmp_path: Path) -> None:
    """Size, mtime and a fingerprint that includes ctime and inode."""
    (tmp_path / "a.txt").write_bytes(b"12345")
    (entry,) = files(tmp_path)
    st = os.stat(tmp_path / "a.txt")
    assert (entry.relpath, entry.size, entry.mtime_ns) == ("a.txt", 5, st.st_mtime_ns)
    assert entry.fingerprint == (5, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def test_special_entries_are_problems(tmp_path: Path) -> None:
    """FIFO, broken symlink, symlink to a directory or out of the root: reported per
    entry, the rest still walked (item 46)."""
    root = tmp_path / "media"
    write_tree(root, {"ok.txt": b"x", "sub/inner.txt": b"y", "zz.txt": b"z"})
    os.mkfifo(root / "pipe")
    (root / "broken").symlink_to(root / "nowhere")
    (root / "dirlink").symlink_to(root / "sub")
    (tmp_path / "outside.txt").write_bytes(b"secret")
    (root / "escape").symlink_to(tmp_path / "outside.txt")
    (root / "inside").symlink_to(root / "ok.txt")
    assert problems(root) == {
        "pipe": "not a regular file (FIFO)",
        "broken": "broken symlink",
        "dirlink": "symlink to a directory: not followed",
        "escape": "symlink leads out of the source directory",
    }
    found = {f.relpath: f.size for f in files(root)}
    assert found == {"inside": 1, "ok.txt": 1, "sub/inner.txt": 1, "zz.txt": 1}


def test_names_s3_or_the_gateway_cannot_take(tmp_path: Path) -> None:
    """Invalid UTF-8, a key over 1,024 bytes and a backslash are explicit rejections
    (item 47); a directory with an invalid name is reported once."""
    root = tmp_path
    (root / "good.txt").write_bytes(b"x")
    bad = os.fsencode(str(root)) + b"/bad\xff.txt"
    with open(bad, "wb") as f:
        f.write(b"x")
    os.mkdir(os.fsencode(str(root)) + b"/dir\xfe")
    with open(os.fsencode(str(root)) + b"/dir\xfe/inner.txt", "wb") as f:
        f.write(b"x")
    long_dir = root.joinpath(*["d" * 254] * 4)  # 1,019 bytes; the file makes 1,025
    long_dir.mkdir(parents=True)
    (long_dir / "f.txt").write_bytes(b"x")
    (root / "back\\slash.txt").write_bytes(b"x")
    found = problems(root)
    assert found.pop("bad\udcff.txt") == "name is not valid UTF-8, and S3 keys must be"
    assert found.pop("dir\udcfe") == "name is not valid UTF-8, and S3 keys must be"
    assert found.pop("back\\slash.txt") == "name has a backslash, which the gateway cannot serve"
    ((long_path, error),) = found.items()
    assert long_path.endswith("/f.txt") and "limited to 1024" in error
    assert [f.relpath for f in files(root)] == ["good.txt"]


def test_unreadable_directory_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory that cannot be listed is reported and skipped. Tests run as root,
    for whom chmod 000 denies nothing, so scandir is made to fail as it would (item 46)."""
    write_tree(tmp_path, {"a.txt": b"x", "locked/b.txt": b"y", "z.txt": b"z"})
    real = os.scandir

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        if os.fsdecode(path).endswith("/locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr("gateway.migrate.walk.os.scandir", scandir)
    assert problems(tmp_path) == {"locked": "cannot list directory: Permission denied"}
    assert [f.relpath for f in files(tmp_path)] == ["a.txt", "z.txt"]


def test_include_and_exclude(tmp_path: Path) -> None:
    """Globs match the whole relative path; * crosses /, as in aws s3 sync."""
    write_tree(tmp_path, {"a.jpg": b"", "b.txt": b"", "cache/c.jpg": b"", "docs/d.jpg": b""})
    assert [f.relpath for f in files(tmp_path, include=["*.jpg"], exclude=["cache/*"])] == [
        "a.jpg",
        "docs/d.jpg",
    ]


def test_shards_partition_the_tree_stably(tmp_path: Path) -> None:
    """Every path lands in exactly one shard, and a path's shard is the same in every
    process (blake2b, not Python's salted hash)."""
    names = [f"dir{i % 7}/file{i}.bin" for i in range(300)]
    write_tree(tmp_path, {name: b"" for name in names})
    shards = [{f.relpath for f in files(tmp_path, shard=(index, 3))} for index in range(3)]
    assert sum(len(s) for s in shards) == len(names)
    assert set().union(*shards) == set(names)
    assert all(len(s) > 60 for s in shards)
    assert shard_of("avatars/1.jpg", 1000) == 811  # fixed forever: machines must agree
    with pytest.raises(ValueError, match="0 <= I < N"):
        Selector(shard=(3, 3))


def test_hash_file_and_part_crcs(tmp_path: Path) -> None:
    """SHA-256 of the whole file and CRC32 per part; a change after the walk is caught."""
    data = os.urandom(5 * 1024 * 1024 + 17)
    (tmp_path / "f.bin").write_bytes(data)
    (entry,) = files(tmp_path)
    part = 2 * 1024 * 1024
    sha256, crcs = hash_file(entry, part_size=part)
    import hashlib

    assert sha256 == hashlib.sha256(data).hexdigest()
    assert crcs == [zlib.crc32(data[i : i + part]) for i in range(0, len(data), part)]
    (tmp_path / "f.bin").write_bytes(data[:-1] + b"!")
    with pytest.raises(SourceChanged):
        hash_file(entry)


def test_join_pairs_two_sorted_streams() -> None:
    """Local-only, remote-only and matched entries, in one pass."""
    local = [Problem("a", "x"), Problem("c", "x"), Problem("e", "x")]
    remote = [Remote("b"), Remote("c"), Remote("f")]
    pairs = [(lo and lo.relpath, re and re.key) for lo, re in join(local, remote)]
    assert pairs == [("a", None), (None, "b"), ("c", "c"), ("e", None), (None, "f")]
    with pytest.raises(RuntimeError, match="out of order"):
        list(join([], [Remote("b"), Remote("a")]))


def test_join_memory_is_flat() -> None:
    """Merging two generated streams of 50,000 entries holds a few entries, not the
    streams (item 57; bench/upload.py measures a million through the whole uploader)."""

    def local() -> Iterator[Problem]:
        for i in range(50_000):
            yield Problem(f"dir{i // 1000:04}/file{i % 1000:04}", "")

    def remote() -> Iterator[Remote]:
        for i in range(0, 50_000, 2):
            yield Remote(f"dir{i // 1000:04}/file{i % 1000:04}")

    tracemalloc.start()
    try:
        pairs = sum(1 for _ in join(local(), remote()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pairs == 50_000
    assert peak < 500_000  # the entries alone would take ~5 MB


def test_odd_names_are_walked_as_is(tmp_path: Path) -> None:
    """Odd names come out byte for byte (item 47)."""
    write_tree(tmp_path, odd_tree())
    assert sorted(f.relpath for f in files(tmp_path)) == sorted(ODD_NAMES)


def test_direct_upload_temporary_files_are_skipped(tmp_path: Path) -> None:
    """A direct upload writes `.upload-<16 hex>` beside its name until it is complete, and
    a crash (SIGKILL mid-body) leaves it there: never a file to copy to the bucket. Names
    that only look alike are media like any other."""
    import secrets

    from gateway.serving.receive import TEMP_PREFIX

    left_by_a_crash = f"{TEMP_PREFIX}{secrets.token_hex(8)}"  # as receive_to_file names it
    write_tree(
        tmp_path,
        {
            f"uploads/{left_by_a_crash}": b"half",
            "uploads/.upload-notes.txt": b"mine",
            "uploads/.upload-0123456789ABCDEF": b"upper case: not the gateway's",
            "uploads/photo.png": b"png",
        },
    )
    assert [f.relpath for f in files(tmp_path)] == [
        "uploads/.upload-0123456789ABCDEF",
        "uploads/.upload-notes.txt",
        "uploads/photo.png",
    ]
