"""Whether a bucket's CORS rules let browsers on the site's origin PUT direct uploads.

A browser PUTs a direct upload straight to the bucket's origin, so the bucket must
answer its preflight: the site's origin allowed, ``PUT`` allowed, every header the
upload sends allowed (``Content-Type`` and the ``AWS_S3_OBJECT_PARAMETERS`` headers),
and ``ETag`` exposed, which the script reads from each part of a multipart upload. S3
matches a rule as :func:`judge` does: origins and headers compare case-insensitively
for headers, and a ``*`` in a rule's entry matches any run of characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["judge", "upload_headers"]

# What a browser sends without asking (the CORS "safelisted" request headers) is not
# in the preflight; Content-Type is, for any type but three form encodings.
_SAFELISTED = frozenset({"accept", "accept-language", "content-language"})


def upload_headers(object_headers: Mapping[str, str]) -> list[str]:
    """The headers a direct upload's PUT sends that its preflight names, lower-case."""
    names = {"content-type", *(name.lower() for name in object_headers)}
    return sorted(names - _SAFELISTED)


def judge(
    rules: Sequence[Mapping[str, Any]], origin: str, headers: Iterable[str]
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` for browsers on ``origin`` PUTting with ``headers``,
    under the bucket's CORS ``rules`` (as GetBucketCors returns them)."""
    wanted = sorted({header.lower() for header in headers})
    for rule in rules:
        if not any(_matches(pattern, origin) for pattern in rule.get("AllowedOrigins", [])):
            continue
        if "PUT" not in {method.upper() for method in rule.get("AllowedMethods", [])}:
            continue
        allowed = [pattern.lower() for pattern in rule.get("AllowedHeaders", [])]
        missing = [h for h in wanted if not any(_matches(p, h) for p in allowed)]
        if missing:
            continue
        # The first rule that matches is the one S3 applies.
        exposed = {header.lower() for header in rule.get("ExposeHeaders", [])}
        if "etag" not in exposed:
            return [], [
                f"CORS: the rule that lets {origin} PUT does not expose ETag; direct uploads"
                f" in parts (over GATEWAY_UPLOAD_MULTIPART_MB) cannot complete: add"
                f' "ExposeHeaders": ["ETag"]'
            ]
        return [], []
    return [
        f"CORS: no rule of the bucket lets {origin} PUT with the headers {', '.join(wanted)}:"
        f" browsers cannot upload directly; add the rule in the README's Direct uploads"
    ], []


def _matches(pattern: str, value: str) -> bool:
    if "*" not in pattern:
        return pattern == value
    parts = (re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(".*".join(parts), value) is not None
