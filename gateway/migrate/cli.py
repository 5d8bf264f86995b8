"""The migration commands of the CLI: upload, verify and pull.

Results go to stdout (one JSON object with ``--json``), per-file problems and progress
to stderr. Exit codes: 0 all done, 1 some files failed or differ, 2 bad usage or
settings (a missing bucket included: it is never created), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError, S3Error
from ..settings import Settings
from .progress import Progress
from .session import config_error, directory, headers_for, session, without_state
from .walk import Selector, walk
from .wire import ObjectInfo

__all__ = ["add_commands"]

# Threads per run. Small files are bound by request latency rather than CPU, so many
# help; bench/results/upload.md measures the uploader with 32.
DEFAULT_WORKERS = 32
MAX_WORKERS = 256
EXIT_INTERRUPTED = 130

# A command as gateway.cli runs it (gateway.cli.Command; migrate does not import the CLI).
Handler = Callable[[argparse.Namespace, Settings], int]


def add_commands(commands: Any) -> None:
    """Register upload, verify and pull on the CLI's subparsers."""
    upload = commands.add_parser(
        "upload",
        help="copy MEDIA_ROOT to the bucket; re-runs skip what is there already",
        description="Copy every regular file under the source to AWS_LOCATION/relpath. "
        "A file is skipped when its object has the same size and SHA-256 (stored as "
        "x-amz-meta-sha256). Safe to interrupt and re-run.",
    )
    _source_options(upload)
    upload.add_argument("--dry-run", action="store_true", help="say what would be uploaded")
    upload.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        metavar="I/N",
        help="handle the paths whose stable hash falls in shard I of N, counted from 1 "
        "(--shard 1/4 ... --shard 4/4), so that N machines can share one tree",
    )
    upload.add_argument(
        "--cleanup",
        action="store_true",
        help="first abort incomplete multipart uploads left under the prefix by earlier "
        "runs (within --shard and the globs)",
    )
    upload.add_argument(
        "--older-than",
        type=int,
        default=0,
        metavar="SECONDS",
        help="with --cleanup, spare uploads begun in the last SECONDS: a browser's direct "
        "upload in parts may still be under way (86400 covers its signed URLs' lifetime)",
    )
    upload.set_defaults(command=_guarded(_upload))

    verify = commands.add_parser(
        "verify",
        help="compare every local file with its object: existence, size, SHA-256",
    )
    _source_options(verify, state=False)
    verify.add_argument(
        "--deep",
        action="store_true",
        help="download and hash every object instead of trusting its x-amz-meta-sha256",
    )
    verify.set_defaults(command=_guarded(_verify))

    pull = commands.add_parser(
        "pull",
        help="copy objects missing or different on disk back into MEDIA_ROOT (rollback)",
    )
    pull.add_argument(
        "--dest", type=Path, metavar="DIR", help="directory to pull into (default MEDIA_ROOT)"
    )
    _common_options(pull)
    pull.set_defaults(command=_guarded(_pull))


def _common_options(parser: argparse.ArgumentParser, *, state: bool = True) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"files in flight (default {DEFAULT_WORKERS})",
    )
    if not state:
        return
    parser.add_argument(
        "--state",
        type=Path,
        metavar="PATH",
        help="state file that lets re-runs skip without reading files (default: "
        "<parent of the media directory>/.media-gateway-state/)",
    )


def _source_options(parser: argparse.ArgumentParser, *, state: bool = True) -> None:
    parser.add_argument(
        "--source", type=Path, metavar="DIR", help="directory to read (default MEDIA_ROOT)"
    )
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only paths matching GLOB (fnmatch on the relative path; repeatable)",
    )
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="skip paths matching GLOB"
    )
    _common_options(parser, state=state)


def _workers(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_WORKERS} (got {raw!r})")
    return value


def _shard(raw: str) -> tuple[int, int]:
    """``I/N`` counted from 1, as Jest's and Playwright's ``--shard``; returned as the
    :class:`Selector`'s ``(I - 1, N)``."""
    index, _, count = raw.partition("/")
    try:
        number, total = int(index), int(count)
    except ValueError:
        number = total = 0
    if not 1 <= number <= total:
        hint = "; shards count from 1" if number == 0 and total > 0 else ""
        raise argparse.ArgumentTypeError(
            f"expected I/N with 1 <= I <= N, as in --shard 1/4 ... --shard 4/4 (got {raw!r}){hint}"
        )
    return number - 1, total


# --- the commands ------------------------------------------------------------


def _upload(args: argparse.Namespace, settings: Settings) -> int:
    from .upload import Uploader, UploadOptions, cleanup, relative_listing

    source = directory(args.source, settings.media_root, "--source")
    selector = Selector(include=args.include, exclude=args.exclude, shard=args.shard)
    headers, read_headers = headers_for(settings)
    with session(settings, source, state_path=args.state) as (wire, state):
        if state.path is not None:
            selector = without_state(selector, source, state.path)
        prefix = settings.key_for("")
        aborted = 0
        if args.cleanup:
            before = time.time() - max(0, args.older_than)
            aborted = cleanup(wire, prefix, selector, before=before, dry_run=args.dry_run)
        progress = Progress("upload", quiet=args.json)
        if progress.tty:
            progress.count_in_background(walk(str(source), selector))
        uploader = Uploader(
            wire,
            key_for=settings.key_for,
            state=state,
            options=UploadOptions(workers=args.workers, dry_run=args.dry_run),
            headers=headers,
            read_headers=read_headers,
            progress=progress,
        )
        try:
            summary = uploader.run(walk(str(source), selector), relative_listing(wire, prefix))
        except KeyboardInterrupt:
            summary = uploader.summary
    result = summary.as_json()
    if args.cleanup:
        result["aborted_uploads"] = aborted
    if args.dry_run:
        result["dry_run"] = True
    result["retries"] = wire.retries
    _report("upload", result, summary.failures, args.json)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 1 if summary.failures else 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from .upload import relative_listing
    from .verify import Verifier

    source = directory(args.source, settings.media_root, "--source")
    selector = Selector(include=args.include, exclude=args.exclude)
    _, read_headers = headers_for(settings)
    with session(settings, source, state_path=None, stateful=False) as (wire, _):
        verifier = Verifier(
            wire,
            key_for=settings.key_for,
            workers=args.workers,
            deep=args.deep,
            read_headers=read_headers,
            progress=Progress("verify", quiet=args.json),
        )
        listing = _selected(relative_listing(wire, settings.key_for("")), selector)
        try:
            report = verifier.run(walk(str(source), selector), listing)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for path in report.missing:
            print(f"missing: {path}")
        for item in report.mismatched:
            print(f"mismatched: {item['path']} ({item['reason']})")
        for path in report.extra:
            print(f"extra: {path}")
        for item in report.failures:
            print(f"media-gateway: {item['path']}: {item['error']}", file=sys.stderr)
        print(
            f"verify: {report.matched} matched, {len(report.missing)} missing, "
            f"{len(report.mismatched)} mismatched, {len(report.extra)} extra, "
            f"{len(report.failures)} failed in {report.seconds:.1f} s"
        )
    return 0 if report.ok else 1


def _pull(args: argparse.Namespace, settings: Settings) -> int:
    from .pull import Puller
    from .upload import relative_listing

    dest: Path = args.dest or settings.media_root
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        variable = "--dest" if args.dest else "MEDIA_ROOT"
        raise ConfigError(variable, f"cannot create {str(dest)!r}: {exc.strerror}") from None
    _, read_headers = headers_for(settings)
    with session(settings, dest, state_path=args.state) as (wire, state):
        puller = Puller(
            wire,
            key_for=settings.key_for,
            dest=str(dest),
            state=state,
            workers=args.workers,
            read_headers=read_headers,
            progress=Progress("pull", quiet=args.json),
        )
        try:
            summary = puller.run(walk(str(dest)), relative_listing(wire, settings.key_for("")))
        except KeyboardInterrupt:
            summary = puller.summary
    _report("pull", summary.as_json(), summary.failures, args.json)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 1 if summary.failures else 0


# --- plumbing ----------------------------------------------------------------


def _guarded(handler: Handler) -> Handler:
    """Run a command with SIGTERM treated as Ctrl-C, and S3 errors that mean bad
    settings turned into ConfigError (exit code 2)."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            return handler(args, settings)
        except KeyboardInterrupt:  # before or after the transfers, which report their own
            print("media-gateway: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except S3Error as exc:
            raise config_error(exc, settings) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return run


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def _selected(listing: Iterable[ObjectInfo], selector: Selector) -> Iterator[ObjectInfo]:
    return (item for item in listing if selector(item.key))


def _report(
    verb: str, result: dict[str, Any], failures: list[dict[str, str]], as_json: bool
) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for failure in failures:
        print(f"media-gateway: {failure['path']}: {failure['error']}", file=sys.stderr)
    counts = ", ".join(
        f"{value} {name}"
        for name, value in result.items()
        if isinstance(value, int) and name not in ("bytes", "retries", "aborted_uploads")
    )
    extra = (
        f"; aborted {result['aborted_uploads']} incomplete uploads"
        if "aborted_uploads" in result
        else ""
    )
    print(f"{verb}: {counts}, {result['bytes']:,} bytes in {result['seconds']:.1f} s{extra}")
    if result.get("interrupted"):
        print(f"media-gateway: {verb} interrupted; run it again to finish", file=sys.stderr)
