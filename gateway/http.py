"""HTTP semantics without ASGI: validators, conditional requests, ranges, dispositions.

Plain functions over plain values, shared by local, redirect and proxy delivery and by the
uploader (content types).
"""

from __future__ import annotations

import functools
import mimetypes
import os
import time
import unicodedata
from email.utils import formatdate, parsedate_to_datetime
from typing import NamedTuple
from urllib.parse import quote

from .exceptions import PreconditionFailed, RangeNotSatisfiable

__all__ = [
    "CONDITIONAL_HEADERS",
    "Plan",
    "content_disposition",
    "content_type",
    "etag_for",
    "is_active",
    "plan_response",
    "precondition_status",
    "validator_headers",
]

# Types a browser may run script in when the URL is opened directly: HTML, SVG and
# every XML type (an XSLT stylesheet can turn XML into HTML), and multipart and message
# documents that can carry HTML. Uploaded files of these types must not act as the
# app's origin (is_active). ActiveStorage's content_types_to_serve_as_binary is the
# same idea.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "application/mathml+xml",
    }
)
SANDBOX_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
SANDBOX_HEADER = (b"content-security-policy", SANDBOX_CSP.encode("latin-1"))
# Request headers that change a GET's answer (Range and preconditions), in bytes as
# they appear in an ASGI scope.
CONDITIONAL_HEADERS = frozenset(
    {
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
    }
)


class Plan(NamedTuple):
    """What to send for a file: status, the byte span of the body, and for a 206 its
    Content-Range."""

    status: int
    start: int = 0
    length: int = 0
    content_range: str | None = None


def etag_for(st: os.stat_result) -> str:
    """A strong validator that changes whenever the file's size or mtime does."""
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def content_type(relpath: str) -> str:
    """The Content-Type for a file name, with a charset for text."""
    return _content_type_for_suffix(os.path.splitext(relpath)[1].lower())


@functools.lru_cache(maxsize=1024)
def _content_type_for_suffix(suffix: str) -> str:
    # Cached by suffix: guess_type is slow Python, a large share of a small file's
    # request (bench/results/local.md).
    guessed, _ = mimetypes.guess_type("x" + suffix, strict=False)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "application/json"):
        return f"{guessed}; charset=utf-8"
    return guessed


def is_active(content_type: str) -> bool:
    """Whether a response of this Content-Type may run script when opened directly.

    Decided from the type actually sent (a signed override, S3's stored type), never
    from the file name alone. Missing or unreadable types count as active: fail closed.
    """
    if "," in content_type:
        # A list: browsers take the last valid type of it (Fetch's "extract a MIME
        # type"), so `text/plain,text/html` is HTML. Lists are never ours: fail closed.
        return True
    mime = content_type.split(";", 1)[0].strip().lower()
    if "/" not in mime:
        return True
    return (
        mime in ACTIVE_TYPES
        or mime.endswith(("+xml", "/xml"))
        or mime.startswith(("multipart/", "message/"))
    )


def content_disposition(filename: str, *, attachment: bool) -> str:
    """One valid Content-Disposition value for any ``filename`` (RFC 6266, RFC 8187).

    The plain ``filename`` is an ASCII fallback with quotes, backslashes and control
    characters replaced; ``filename*`` carries the exact UTF-8 name.
    """
    kind = "attachment" if attachment else "inline"
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    ascii_name = "".join(
        "_" if c in '"\\' or ord(c) < 32 or ord(c) == 127 else c for c in ascii_name
    )
    value = f'{kind}; filename="{ascii_name or "download"}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def plan_response(st: os.stat_result, request_headers: dict[str, str]) -> Plan:
    """Evaluate preconditions (RFC 9110 section 13.2.2) and Range for a GET/HEAD.

    ``request_headers`` has lower-case names. Returns a 200, 206 or 304 plan; the
    validators are the file's (:func:`validator_headers`). Raises :class:`PreconditionFailed` or
    :class:`RangeNotSatisfiable`.

    Multiple ranges are answered with the whole file (200), which RFC 9110 allows;
    that keeps 1,000 hostile overlapping ranges as cheap as one (tests/README.md, items 25, 26).
    """
    size = st.st_size
    if not request_headers:
        return Plan(200, 0, size)
    etag = etag_for(st)
    mtime = int(st.st_mtime)
    if precondition_status(request_headers, etag, mtime) == 304:
        return Plan(304)

    range_header = request_headers.get("range")
    if range_header is not None and _if_range_holds(request_headers.get("if-range"), etag, mtime):
        span = _parse_range(range_header, size)
        if span is not None:
            start, end = span
            return Plan(206, start, end - start + 1, f"bytes {start}-{end}/{size}")
    return Plan(200, 0, size)


def precondition_status(
    request_headers: dict[str, str], etag: str | None, mtime: int | None
) -> int | None:
    """Evaluate the preconditions of a GET/HEAD (RFC 9110 section 13.2.2) against a
    representation's ETag and Last-Modified (Unix seconds), either of which may be
    unknown. Returns 304, or None to answer normally; raises :class:`PreconditionFailed`."""
    if_match = request_headers.get("if-match")
    if if_match is not None:
        if not (if_match.strip() == "*" or (etag and _etag_matches(if_match, etag, weak=False))):
            raise PreconditionFailed()
    elif mtime is not None:
        unmodified_since = _parse_date(request_headers.get("if-unmodified-since"))
        if unmodified_since is not None and mtime > unmodified_since:
            raise PreconditionFailed()

    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() == "*" or (etag and _etag_matches(if_none_match, etag, weak=True)):
            return 304
    elif mtime is not None:
        modified_since = _parse_date(request_headers.get("if-modified-since"))
        if modified_since is not None and mtime <= modified_since:
            return 304
    return None


def validator_headers(relpath: str, st: os.stat_result) -> tuple[tuple[bytes, bytes], ...]:
    """The headers that depend only on the file: type, sandbox, ETag, Last-Modified."""
    return _validator_headers(relpath, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4096)
def _validator_headers(
    relpath: str, dev: int, ino: int, mtime_ns: int, size: int
) -> tuple[tuple[bytes, bytes], ...]:
    # Cached per file version: building and encoding them is a fifth of the cost of a
    # small-file request (bench/local.py); a changed file has a new key.
    mime = content_type(relpath)
    headers = [
        (b"content-type", mime.encode("latin-1")),
        (b"etag", f'"{mtime_ns:x}-{size:x}"'.encode("ascii")),
        (b"last-modified", _http_date(mtime_ns // 1_000_000_000).encode("ascii")),
        (b"accept-ranges", b"bytes"),
    ]
    if is_active(mime):
        headers.append(SANDBOX_HEADER)
    return tuple(headers)


@functools.lru_cache(maxsize=4096)
def _http_date(timestamp: int) -> str:
    # formatdate is slow Python; files are served many times with one mtime.
    return formatdate(timestamp, usegmt=True)


def _etag_matches(header: str, etag: str, *, weak: bool) -> bool:
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            if not weak:
                continue
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def _parse_date(value: str | None) -> int | None:
    """Unix seconds of an HTTP date, or None for a missing, invalid or future date."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    timestamp = int(parsed.timestamp())
    return None if timestamp > time.time() else timestamp


def _if_range_holds(value: str | None, etag: str, mtime: int) -> bool:
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == etag  # strong comparison: a weak or stale tag gives the whole file
    return _parse_date(value) == mtime


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """The inclusive span of a single-range header; None to send the whole file."""
    unit, _, spec = value.partition("=")
    if "," in spec and unit.strip().lower() == "bytes":
        return None
    unsatisfiable = RangeNotSatisfiable(headers={"content-range": f"bytes */{size}"})
    if unit.strip().lower() != "bytes":
        raise unsatisfiable
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or last.isdigit()) or len(first) > 19 or len(last) > 19:
        raise unsatisfiable
    if not first.isascii() or not last.isascii() or (first and not first.isdigit()):
        raise unsatisfiable
    if last and not last.isdigit():
        raise unsatisfiable
    if not first:  # suffix range: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, min(end, size - 1)
