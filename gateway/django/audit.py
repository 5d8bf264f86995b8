"""``manage.py media_gateway audit``: the database's files against the disk and the bucket.

Two findings. *Missing*: a ``FileField`` (or ``ImageField``) value of some row whose file
is neither under ``MEDIA_ROOT`` nor in the bucket under ``AWS_LOCATION``: a page that
links it gets a 404, and no migration tool can bring it back. *Orphans*: files on disk or
objects in the bucket that no row names: left behind by deleted rows or failed saves,
paid for, and never served to anyone who asks through the site.

The cost: one query per model that has file fields, reading only its primary key and
file columns with ``iterator()`` (constant memory per row, whatever the table's size);
one walk of ``MEDIA_ROOT`` and one listing of the bucket (``USE_S3`` on). What stays in
memory is the set of relative paths found on disk and in the bucket, a dict entry each
(130 bytes for a 40-character path, measured with tracemalloc), and the findings.

Where a row's file lies comes from its field's storage: a gateway storage's name lives at
``media_prefix + name`` on disk and in the bucket, a ``FileSystemStorage`` under
``MEDIA_ROOT`` at its path there. Any other storage is asked ``exists(name)`` per row,
and its files take no part in the orphans.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.apps import apps
from django.core.files.storage import FileSystemStorage, Storage
from django.db import models

from ..exceptions import ConfigError
from ..settings import Settings

__all__ = ["AuditReport", "MissingFile", "Orphan", "audit"]

# What the dict of present paths holds for each: where the file is, and whether a row
# named it. One small int a path rather than two sets of names.
ON_DISK = 1
IN_BUCKET = 2
NAMED = 4
# Rows fetched per round trip by iterator(); Django's own default.
CHUNK_SIZE = 2000

# name -> relative media path, or None where the storage cannot say (asked instead).
Locator = Callable[[str], str] | None


@dataclasses.dataclass(frozen=True, slots=True)
class MissingFile:
    """A row's file that is neither on disk nor in the bucket."""

    model: str  # app_label.ModelName
    field: str
    pk: Any
    name: str  # as stored in the row
    relpath: str | None  # where the gateway looks; None for a storage it cannot map


@dataclasses.dataclass(frozen=True, slots=True)
class Orphan:
    """A file no row names, and where it is: ``("disk",)``, ``("s3",)`` or both."""

    relpath: str
    where: tuple[str, ...]


@dataclasses.dataclass
class AuditReport:
    """What :func:`audit` found; ``ok`` when no row's file is missing."""

    rows: int = 0
    names: int = 0
    files: int = 0
    missing: list[MissingFile] = dataclasses.field(default_factory=list)
    orphans: list[Orphan] = dataclasses.field(default_factory=list)
    #: Fields whose storage maps to no path: checked with ``exists()`` one row at a time.
    unchecked: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "names": self.names,
            "files": self.files,
            "missing": [
                {**dataclasses.asdict(item), "pk": _plain(item.pk)} for item in self.missing
            ],
            "orphans": [{"path": item.relpath, "where": list(item.where)} for item in self.orphans],
            "unchecked": self.unchecked,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        return (
            f"audit: {self.rows} rows, {self.names} file names, {self.files} files;"
            f" {len(self.missing)} missing, {len(self.orphans)} orphans"
            f" in {self.seconds:.1f} s"
        )


def audit(settings: Settings, *, using: str = "default") -> AuditReport:
    """Compare every file field of every installed model with the files present."""
    started = time.monotonic()
    present: dict[str, int] = {}
    root = settings.media_root
    if not root.is_dir() and (not settings.use_s3 or settings.local_fallback):
        # The app writes there in these phases: every row would be "missing" for a typo.
        raise ConfigError("MEDIA_ROOT", f"directory {str(root)!r} does not exist")
    if root.is_dir():
        for relpath in _disk(str(root)):
            present[relpath] = ON_DISK
    if settings.use_s3:
        for relpath in _bucket(settings):
            present[relpath] = present.get(relpath, 0) | IN_BUCKET
    report = AuditReport(files=len(present))
    for model, fields in _file_fields():
        _check_rows(report, present, model, fields, root=str(root), using=using)
    report.orphans = [
        Orphan(_shown(relpath), _where(bits))
        for relpath, bits in sorted(present.items())
        if bits < NAMED
    ]
    report.seconds = time.monotonic() - started
    return report


def _check_rows(
    report: AuditReport,
    present: dict[str, int],
    model: type[models.Model],
    fields: list[models.FileField],
    *,
    root: str,
    using: str,
) -> None:
    """Read ``model``'s primary keys and file columns in one query, a chunk at a time."""
    locators = [_locator(field.storage, root) for field in fields]
    label = model._meta.label
    report.unchecked += [
        f"{label}.{field.name}: {type(field.storage).__name__} maps to no media path;"
        " checked with exists() row by row"
        for field, locate in zip(fields, locators, strict=True)
        if locate is None
    ]
    columns = [field.attname for field in fields]
    rows = model._base_manager.using(using).values_list("pk", *columns)
    for pk, *names in rows.iterator(chunk_size=CHUNK_SIZE):
        report.rows += 1
        for field, locate, name in zip(fields, locators, names, strict=True):
            if not name:  # blank=True: no file
                continue
            report.names += 1
            if not _found(present, field.storage, locate, name):
                path = locate(name) if locate else None
                report.missing.append(MissingFile(label, field.name, pk, name, path))


def _file_fields() -> Iterator[tuple[type[models.Model], list[models.FileField]]]:
    """Each model that owns a table with file columns, and those columns' fields."""
    for model in apps.get_models():
        meta = model._meta
        if meta.proxy or meta.swapped:  # a proxy's table is its concrete model's
            continue
        # Local fields only: a multi-table child's inherited columns are its parent's,
        # read once with the parent.
        fields = [f for f in meta.local_concrete_fields if isinstance(f, models.FileField)]
        if fields:
            yield model, fields


def _locator(storage: Storage, root: str) -> Locator:
    prefix = _media_prefix(storage)
    if prefix is not None:
        return lambda name: prefix + name
    if isinstance(storage, FileSystemStorage):
        inside = os.path.relpath(os.path.realpath(storage.location), os.path.realpath(root))
        if inside == ".":
            return lambda name: name
        if not inside.startswith(".."):
            return lambda name: f"{inside}/{name}"
    return None


def _media_prefix(storage: Storage) -> str | None:
    """A gateway storage's ``media_prefix``; None for any other storage."""
    try:
        from .storage import GatewayURLs
    except ImportError:  # pragma: no cover - no django-storages: no gateway storages
        return None
    return storage.media_prefix if isinstance(storage, GatewayURLs) else None


def _found(present: dict[str, int], storage: Storage, locate: Locator, name: str) -> bool:
    if locate is None:
        return bool(storage.exists(name))
    relpath = locate(name)
    bits = present.get(relpath)
    if bits is None:
        return False
    present[relpath] = bits | NAMED
    return True


def _where(bits: int) -> tuple[str, ...]:
    return (("disk",) if bits & ON_DISK else ()) + (("s3",) if bits & IN_BUCKET else ())


def _disk(root: str) -> Iterator[str]:
    """Relative paths of the files under ``root``, ``/``-separated as storage names."""
    for directory, _, files in os.walk(root):
        base = os.path.relpath(directory, root)
        for name in files:
            yield name if base == "." else f"{base}/{name}".replace(os.sep, "/")


def _bucket(settings: Settings) -> Iterable[str]:
    """Relative paths of the objects under ``AWS_LOCATION``, one listing page at a time."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ..bucket import check_bucket
    from ..s3 import make_s3_client

    if not settings.aws_storage_bucket_name:
        raise ConfigError("AWS_STORAGE_BUCKET_NAME", "is required to audit the bucket")
    report, problems = check_bucket(settings)  # one line naming the variable to fix
    if not report.get("bucket_reachable"):
        variable, _, message = problems[0].partition(": ")
        raise ConfigError(variable, message)
    prefix = settings.key_for("")
    client = make_s3_client(settings)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.aws_storage_bucket_name, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                # Keys ending in / are the "folders" consoles create: no file maps to them.
                if not key.endswith("/"):
                    yield key[len(prefix) :]
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError("AWS_S3_ENDPOINT_URL", f"listing the bucket failed: {exc}") from None
    finally:
        client.close()


def _shown(relpath: str) -> str:
    """``relpath`` printable and JSON-safe: a file name that is not UTF-8 (os.walk's
    surrogates) with its bytes as ``\\xNN``, as ``upload`` and ``verify`` show it."""
    return relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | str) or value is None else str(value)
