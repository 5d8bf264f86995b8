"""Keep signatures and credentials out of logs.

A gateway URL's ``sig`` opens a private file until it expires, and a presigned S3 URL's
``X-Amz-Signature`` (with its ``X-Amz-Credential`` and ``X-Amz-Security-Token``) does the
same on the bucket, so no log line may carry their values. :func:`redact_query` is the
access log's (cheap, per request); :func:`redact_text` scans free text (error messages,
other servers' access lines); :class:`RedactingFilter` applies it to every record of a
logger, which :func:`guard_logs` installs on the gateway's loggers and on uvicorn's and
gunicorn's access and error loggers.
"""

from __future__ import annotations

import logging
import re
import traceback
from urllib.parse import unquote_plus

__all__ = [
    "REDACTED",
    "SENSITIVE",
    "RedactingFilter",
    "guard",
    "guard_logs",
    "redact_query",
    "redact_text",
]

REDACTED = "[REDACTED]"
#: Query parameters whose values must never be logged, lower-case: names compare
#: case-insensitively and after percent-decoding (``%73ig``, ``X%2DAmz%2DSignature``).
SENSITIVE = frozenset({"sig", "x-amz-signature", "x-amz-credential", "x-amz-security-token"})
# The gateway's loggers but gateway.access, whose lines are redacted as they are built
# (a filter there would cost every request a call).
# A filter applies only to records logged on its own logger, not to those propagated
# from a child, so each logger is named (tests/serving/test_access_log.py reads the
# package's getLogger calls to keep this complete).
OWN_LOGGERS = (
    "gateway",
    "gateway.delegate",
    "gateway.health",
    "gateway.local",
    "gateway.proxy",
    "gateway.uploads",
)
# Loggers of the servers that run the gateway: their access lines print the request
# target, and their error lines may quote it.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "gunicorn.access", "gunicorn.error")

# A name=value pair anywhere in text (a URL in a message, a request line; a value ends
# where a nested query begins), and the parts
# of an S3 error document that quote a signature or a credential.
_PAIR = re.compile(r"([^\s=?&;\"'<>]+)=([^\s=?&;\"'<>]*)")
_SEPARATORS = re.compile(r"([&;])")
_S3_FIELDS = re.compile(
    r"<(SignatureProvided|AWSAccessKeyId|StringToSign|StringToSignBytes|CanonicalRequest|"
    r"CanonicalRequestBytes)>[^<]*(?:</\1>)?"
)


def _is_sensitive(name: str) -> bool:
    if "%" in name or "+" in name:
        name = unquote_plus(name)
    return name.lower() in SENSITIVE


def _hides_a_secret(value: str) -> bool:
    # A URL nested in a value (?next=/media/a.jpg%3Fsig%3D...) carries its query along.
    if "%" not in value:
        return False
    decoded = unquote_plus(value)
    return decoded != value and redact_text(decoded) != decoded


def redact_query(query: str) -> str:
    """``query`` with the value of every sensitive parameter replaced by ``[REDACTED]``."""
    # ";" separates too: servers and frameworks that accept it would read
    # "exp=1;sig=..." or an HTML-escaped "exp=1&amp;sig=..." as a signature, and the
    # value is one for the unescaped link (redact_text agrees).
    parts = _SEPARATORS.split(query)
    for index in range(0, len(parts), 2):
        name, equals, value = parts[index].partition("=")
        if equals and (_is_sensitive(name) or _hides_a_secret(value)):
            parts[index] = f"{name}={REDACTED}"
    return "".join(parts)


def redact_text(text: str) -> str:
    """``text`` with the value of every sensitive ``name=value`` pair (in a URL, a query or
    a request line) and S3's echo of a signature or credential replaced."""
    if "=" in text:
        text = _PAIR.sub(_redact_pair, text)
    if "</" in text:
        text = _S3_FIELDS.sub(lambda m: f"<{m[1]}>{REDACTED}</{m[1]}>", text)
    return text


def _redact_pair(match: re.Match[str]) -> str:
    name, value = match[1], match[2]
    # The name may be the tail of a path (/a?b=c is matched from "/a?b" on): its last part.
    short = re.split(r"[/?]", name)[-1]
    if _is_sensitive(short) or _hides_a_secret(value):
        return f"{name}={REDACTED}"
    return match[0]


class RedactingFilter(logging.Filter):
    """Redacts a record's message, arguments and traceback before any handler sees it.

    Arguments keep their shape (uvicorn's access formatter unpacks a tuple, gunicorn's
    formats a mapping): only their text values change.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(redact_text(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict):
            for key, value in args.items():
                if isinstance(value, str):
                    args[key] = redact_text(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.rstrip("\n")
        return True


_FILTER = RedactingFilter()


def guard(*names: str) -> None:
    """Install the redacting filter on the loggers ``names`` (once each).

    A logger's filters survive ``logging.config.dictConfig`` (it replaces handlers and
    levels, and adds filters), so uvicorn's ``--log-config`` keeps them.
    """
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def guard_logs() -> None:
    """Guard the gateway's loggers, and uvicorn's and gunicorn's: whoever runs the
    gateway under their own server command keeps its access log, without signatures."""
    guard(*OWN_LOGGERS, *SERVER_LOGGERS)
