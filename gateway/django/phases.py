"""One Django storage for every phase of a migration, chosen by the gateway's switches.

================  ===============================  ==================================
phase             ``USE_S3`` / ``LOCAL_FALLBACK``   where files are written and read
================  ===============================  ==================================
local             off / (any)                      ``MEDIA_ROOT`` only
migrating         on / on                          written to S3 *and* ``MEDIA_ROOT``;
                                                   read from disk while a copy is there,
                                                   from S3 otherwise
S3                on / off                         S3 only
================  ===============================  ==================================

The migrating phase is what lets an app keep working while ``upload`` copies the old
files: the app's own reads (thumbnails, renditions) find every file on disk, the new
ones reach S3 as they are written (so ``upload`` has nothing left to copy for them),
and a rollback to local mode loses nothing, since every file is also on disk. The
gateway's hybrid serving (``GATEWAY_LOCAL_FALLBACK``) sees the same two places.

The phase is read from :func:`gateway.django.gateway_settings` on each call, not
fixed at construction, so ``STORAGES`` and ``FileField(storage=...)`` follow a change
of the switches (and ``override_settings`` in tests). ``url()`` is the gateway URL in
every phase and does no I/O.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible

from ..exceptions import RequestError
from ..paths import validate_relpath
from ..settings import Settings
from . import gateway_settings
from .storage import (
    PUBLIC_PREFIX,
    GatewayFileSystemStorage,
    GatewayS3Storage,
    GatewayURLs,
    MediaStorage,
    PublicMediaStorage,
    _probes,
)

__all__ = ["GatewayStorage", "PublicGatewayStorage"]

# What a missing disk copy raises: FileSystemStorage lets open()/stat() errors through.
_NOT_ON_DISK = (FileNotFoundError, NotADirectoryError)
# Bytes read at a time to hash a mirrored copy: few system calls, a bounded buffer.
_HASH_CHUNK = 1024 * 1024
# The names (media_prefix + name) this process is writing to S3 alone, each from the
# get_available_name() of a save() to its end. The disk's O_EXCL settles two saves of
# one name; S3 has no create-if-absent that every server honours (rclone ignores
# If-None-Match), so without this two threads that both found a name free would both
# write it, and two rows would name one upload.
_WRITING: set[str] = set()
_WRITING_LOCK = threading.Lock()
# The keys the current thread's save() reserved, released when it returns.
_reserved = threading.local()


class _Sides:
    """The storages of one phase: ``disk``, ``s3`` or both (migrating)."""

    def __init__(self, disk: GatewayFileSystemStorage | None, s3: GatewayS3Storage | None):
        self.disk, self.s3 = disk, s3

    @property
    def phase(self) -> str:
        if self.disk and self.s3:
            return "migrating"
        return "s3" if self.s3 else "local"


@deconstructible(path="gateway.django.storage.GatewayStorage")
class GatewayStorage(GatewayURLs, Storage):
    """Private media in every phase: disk, disk and S3, or S3 (see the module's table).

    ``media_prefix`` is a directory under ``MEDIA_ROOT`` / ``AWS_LOCATION`` for this
    storage's names, as for the other gateway storages; ``file_permissions_mode`` and
    ``directory_permissions_mode`` go to the disk side, other options (``bucket_name``,
    ``object_parameters``, credentials...) to the S3 side. Names are never
    overwritten: a name taken on either side gets a new suffix. Two saves of one name
    at once get two names, but in the S3 phase only within one process: two processes
    that find a name free at the same moment both write it (as django-storages does).
    """

    #: The S3 side's class: its object parameters and typing are those of the S3 phase;
    #: no ACL is sent unless the project asks for one (see _build).
    s3_class: type[GatewayS3Storage] = MediaStorage

    def __init__(self, *, media_prefix: str | None = None, **options: Any) -> None:
        self._disk_options = {} if media_prefix is None else {"media_prefix": media_prefix}
        # FileSystemStorage's own options go to the disk side (S3Storage refuses them);
        # every other option to the S3 side.
        self._file_options = {name: options.pop(name) for name in _DISK_ONLY if name in options}
        self._options = options
        self._built: tuple[Settings, _Sides] | None = None
        self.media_prefix = GatewayFileSystemStorage(**self._disk_options).media_prefix

    @property
    def phase(self) -> str:
        """``"local"``, ``"migrating"`` or ``"s3"``, as the settings say now."""
        return self._sides().phase

    def _sides(self) -> _Sides:
        settings = gateway_settings()
        if self._built is None or self._built[0] is not settings:
            self._built = settings, self._build(settings)
        return self._built[1]

    def _build(self, settings: Settings) -> _Sides:
        disk = s3 = None
        if not settings.use_s3 or settings.local_fallback:
            disk = _Disk(**self._disk_options, **self._file_options)
        if settings.use_s3:
            # No ACL unless the project asks for one (AWS_DEFAULT_ACL or default_acl=):
            # buckets made since 2023 have ACLs disabled and refuse a PUT that sets one
            # (public-read also under Block Public Access), and `upload` sets none, so
            # objects written by the app and copied by upload are alike. Public files are
            # served through the gateway's presigned redirects; a CDN reading the bucket
            # directly needs a bucket policy on the public prefix.
            acl = {"default_acl": getattr(django_settings, "AWS_DEFAULT_ACL", None)}
            options = {**acl, **self._options}
            s3 = _checksummed(self.s3_class)(**self._disk_options, **options)
        return _Sides(disk, s3)

    # Writes

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        keys: list[str] = []
        outer, _reserved.keys = getattr(_reserved, "keys", None), keys
        try:
            return str(super().save(name, content, max_length=max_length))
        finally:
            with _WRITING_LOCK:
                _WRITING.difference_update(keys)
            _reserved.keys = outer

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        # Django's search asks self.exists() until a name is free on both sides; the S3
        # side's HEADs are counted and bounded as in GatewayS3Storage's own search.
        token = _probes.set([0])
        try:
            while True:
                available = str(super().get_available_name(name, max_length))
                keys: list[str] | None = getattr(_reserved, "keys", None)
                if keys is None or self._sides().disk:
                    return available  # not for a save(), or the disk settles it
                with _WRITING_LOCK:
                    # Free unless a save of this process took it since exists() said so.
                    if self.media_prefix + available not in _WRITING:
                        _WRITING.add(self.media_prefix + available)
                        keys.append(self.media_prefix + available)
                        return available
        finally:
            _probes.reset(token)

    def _save(self, name: str, content: File[Any]) -> str:
        self._check_name(name)
        sides = self._sides()
        if not sides.disk:
            assert sides.s3
            return str(sides.s3._save(name, content))
        source = content if hasattr(content, "temporary_file_path") else _Source(content)
        _paths.last = None
        try:
            name = sides.disk._save(name, source)
        except BaseException:
            if isinstance(source, _Source) and source.started and _paths.last:
                # The source broke off (a client gone) or the disk failed (full, EIO)
                # after the file was created: no truncated file stays for the gateway to
                # serve and `upload` to copy. The last path the disk side asked for is
                # that file, which this call created (O_EXCL), never another writer's.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(_paths.last)
            raise
        if not sides.s3:
            return name
        # S3 gets the bytes as written to disk (content may be a stream read once); its
        # Content-Type comes from the name, as for every write and for `upload`.
        try:
            with sides.disk.open(name, "rb") as copy:
                sides.s3._save(name, _Hashed(copy))
        except BaseException:
            # A write is whole or absent: no disk copy that S3 lacks.
            sides.disk.delete(name)
            raise
        return name

    def _check_name(self, name: str) -> None:
        """Refuse a name the gateway would never serve (NUL, a segment over 255 bytes):
        S3 alone takes it, and its URL, `pull` and a rollback would all fail later."""
        try:
            validate_relpath(self.media_prefix + posixpath.normpath(name))
        except RequestError:
            raise SuspiciousFileOperation(
                f"{type(self).__name__} cannot save {name!r}: not a path the gateway serves"
            ) from None

    def delete(self, name: str) -> None:
        # S3 first: if it fails, both copies stay and the call can be repeated.
        sides = self._sides()
        if sides.s3:
            sides.s3.delete(name)
        if sides.disk:
            sides.disk.delete(name)

    # Reads: the disk copy while there is one, S3 otherwise

    def _open(self, name: str, mode: str = "rb") -> File[Any]:
        sides = self._sides()
        if sides.phase == "migrating" and any(flag in mode for flag in "wax+"):
            raise ValueError(
                f"GatewayStorage cannot open {name!r} for writing while migrating: a file"
                f" written in place would reach only one side; use save()"
            )
        opened: File[Any] = self._read("_open", name, mode)
        return opened

    def exists(self, name: str) -> bool:
        if self.media_prefix + name in _WRITING:
            return True  # being written to S3 by this process: taken
        sides = self._sides()
        if sides.disk and sides.disk.exists(name):
            return True
        return bool(sides.s3 and sides.s3.exists(name))

    def size(self, name: str) -> int:
        return int(self._read("size", name))

    def get_modified_time(self, name: str) -> datetime:
        when: datetime = self._read("get_modified_time", name)
        return when

    def get_accessed_time(self, name: str) -> datetime:
        when: datetime = self._read("get_accessed_time", name)
        return when

    def get_created_time(self, name: str) -> datetime:
        when: datetime = self._read("get_created_time", name)
        return when

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        directories: set[str] = set()
        files: set[str] = set()
        sides = self._sides()
        for side in (sides.disk, sides.s3):
            if side is None:
                continue
            try:
                found = side.listdir(path)
            except _NOT_ON_DISK:
                continue  # a directory that only S3 has yet (or no longer)
            directories.update(found[0])
            files.update(found[1])
        return sorted(directories), sorted(files)

    def path(self, name: str) -> str:
        """The disk path in local mode, and while migrating for a file still on disk."""
        disk = self._sides().disk
        if disk is None:
            raise NotImplementedError("files are in S3 only (USE_S3 on, fallback off)")
        path: str = disk.path(name)
        if self.phase == "migrating" and not disk.exists(name):
            raise NotImplementedError(f"{name!r} is in S3 only: use open()")
        return path

    def url(self, name: str, *, download: bool = False, expire: int | None = None) -> str:
        """The gateway URL of ``name`` in every phase; ``expire`` as in django-storages."""
        return self.gateway_url(name, download=download, expires_in=expire)

    def _read(self, method: str, name: str, *args: str) -> Any:
        """``method(name, *args)`` of the disk side, or of S3 when disk lacks the file."""
        sides = self._sides()
        if sides.disk:
            try:
                return getattr(sides.disk, method)(name, *args)
            except _NOT_ON_DISK:
                if not sides.s3:
                    raise
        assert sides.s3
        return getattr(sides.s3, method)(name, *args)


#: The options of FileSystemStorage that GatewayStorage passes to its disk side.
_DISK_ONLY = ("file_permissions_mode", "directory_permissions_mode")


class _Disk(GatewayFileSystemStorage):
    """The disk side: notes in this thread the last path it gave, which during its
    ``_save`` is the file it creates (it asks for the path of each name it tries)."""

    def path(self, name: str) -> str:
        path: str = super().path(name)
        _paths.last = path
        return path


# The last path the disk side gave in this thread (see _Disk).
_paths = threading.local()


class _Source(File):
    """What the disk side reads of ``content``; ``started`` once it asked for the bytes,
    which it does only after creating its file."""

    def __init__(self, content: File[Any]) -> None:
        super().__init__(content, getattr(content, "name", None))
        self.started = False

    def chunks(self, chunk_size: int | None = None) -> Iterator[Any]:
        self.started = True
        yield from self.file.chunks(chunk_size)


class _Hashed(File):
    """A disk copy on its way to S3, with the SHA-256 `upload` and `verify` trust."""

    def __init__(self, copy: File[Any]) -> None:
        super().__init__(copy.file, copy.name)
        digest = hashlib.sha256()
        while chunk := copy.read(_HASH_CHUNK):
            digest.update(chunk)
        copy.seek(0)
        self.sha256 = digest.hexdigest()


def _checksummed(base: type[GatewayS3Storage]) -> type[GatewayS3Storage]:
    """``base`` storing a mirrored copy's SHA-256 as ``x-amz-meta-sha256``, as `upload`
    does: `upload` then skips the copy rather than sending it again, and `verify` and
    `pull` compare hashes rather than download it."""

    def _get_write_parameters(self: Any, name: str, content: Any = None) -> dict[str, Any]:
        # django-storages' hook that sees the content (get_object_parameters sees the name).
        parameters: dict[str, Any] = base._get_write_parameters(self, name, content)
        sha256 = getattr(content, "sha256", None)
        # As S3Storage._save decides: a gzipped object does not hold the file's bytes.
        gzipped = (
            self.gzip
            and parameters.get("ContentType") in self.gzip_content_types
            and "ContentEncoding" not in parameters
        )
        if sha256 is not None and not gzipped:
            parameters["Metadata"] = {**parameters.get("Metadata", {}), "sha256": sha256}
        return parameters

    if base not in _CHECKSUMMED:
        # The same names as ``base``, so that errors and reprs name the class configured.
        namespace = {
            "_get_write_parameters": _get_write_parameters,
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
        }
        _CHECKSUMMED[base] = type(base.__name__, (base,), namespace)
    return _CHECKSUMMED[base]


# One subclass per S3 class (a dict, not functools.cache: classes are hashable, but
# mypy does not see it). Filled once per class; a race makes an equal second one.
_CHECKSUMMED: dict[type[GatewayS3Storage], type[GatewayS3Storage]] = {}


@deconstructible(path="gateway.django.storage.PublicGatewayStorage")
class PublicGatewayStorage(GatewayStorage):
    """Public media (under :data:`~gateway.django.storage.PUBLIC_PREFIX`) in every phase."""

    s3_class = PublicMediaStorage

    def __init__(self, *, media_prefix: str | None = None, **options: Any) -> None:
        prefix = PUBLIC_PREFIX if media_prefix is None else media_prefix
        super().__init__(media_prefix=prefix, **options)
