"""GatewayStorage: one storage for the local, migrating and S3 phases (RELIABILITY item 66).

Every test writes and reads through the storage against the real rclone server and a
real MEDIA_ROOT, and looks at both places directly (the disk and a boto3 listing) to see
where each byte went.
"""

from __future__ import annotations

import hashlib
import json
import resource
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db.migrations.writer import MigrationWriter
from django.test import override_settings

from gateway.django.storage import (
    GatewayStorage,
    PublicGatewayStorage,
    media_storage,
    public_media_storage,
)
from tests.django import test_django
from tests.s3server import S3Server

django_apps = test_django.django_apps

DJANGO_KEY = "django-project-gateway-key-0123456789"
CLOSED_PORT_ENDPOINT = "http://127.0.0.1:9"  # discard: nothing listens there
# The S3 side's client when S3 cannot be reached: fail at once, not after retries.
NO_RETRIES = Config(retries={"total_max_attempts": 1}, connect_timeout=2)


@pytest.fixture
def phase(
    django_apps: dict[str, Any], media_root: Path, s3_server: S3Server, s3_bucket: str
) -> Iterator[Callable[..., override_settings]]:
    """``with phase("migrating"):`` sets the two switches, pointing at the test bucket."""
    server = {
        "AWS_STORAGE_BUCKET_NAME": s3_bucket,
        "AWS_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "MEDIA_ROOT": str(media_root),
        "AWS_S3_OBJECT_PARAMETERS": {"CacheControl": "max-age=60"},
    }
    switches = {
        "local": {"USE_S3": False},
        "migrating": {"USE_S3": True, "GATEWAY_LOCAL_FALLBACK": True},
        "s3": {"USE_S3": True, "GATEWAY_LOCAL_FALLBACK": False},
    }

    def enter(name: str, **more: Any) -> override_settings:
        return override_settings(**{**server, **switches[name], **more})

    yield enter


class Bucket:
    """The test bucket seen directly with boto3, beside the storage."""

    def __init__(self, server: S3Server, name: str) -> None:
        self.client, self.name = server.client(), name

    def objects(self) -> dict[str, bytes]:
        """Every object: key -> bytes."""
        listing = self.client.list_objects_v2(Bucket=self.name).get("Contents", [])
        return {item["Key"]: self.read(item["Key"]) for item in listing}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def head(self, key: str) -> Any:
        return self.client.head_object(Bucket=self.name, Key=key)

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)


@pytest.fixture
def bucket(s3_server: S3Server, s3_bucket: str) -> Iterator[Bucket]:
    seen = Bucket(s3_server, s3_bucket)
    yield seen
    seen.client.close()


def on_disk(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file()
    }


def test_phase_follows_the_switches(phase: Any) -> None:
    """One instance, as STORAGES or a FileField holds it, follows a change of settings."""
    storage = GatewayStorage()
    for name in ("local", "migrating", "s3", "local"):
        with phase(name):
            assert storage.phase == name
    with phase("local", GATEWAY_LOCAL_FALLBACK=True):
        assert storage.phase == "local"  # the fallback means nothing without S3


def test_local_phase_writes_only_to_disk(phase: Any, media_root: Path, bucket: Bucket) -> None:
    with phase("local"):
        storage = GatewayStorage()
        name = storage.save("documents/a.txt", ContentFile(b"local"))
        with storage.open(name) as opened:
            assert opened.read() == b"local"
        assert storage.path(name) == str(media_root / name)
    assert on_disk(media_root) == {name: b"local"}
    assert bucket.objects() == {}


def test_migrating_phase_writes_both_sides(phase: Any, media_root: Path, bucket: Bucket) -> None:
    """Every write reaches the disk (hybrid serving, rollback) and S3 (nothing left for
    upload), the same bytes, with the headers the S3 phase gives (the type from the name,
    not the browser's claim; the object parameters)."""
    storage = GatewayStorage()
    with phase("migrating"):
        name = storage.save("documents/scan.pdf", claimed_html(b"%PDF-1.7 mirrored"))
    assert on_disk(media_root) == {name: b"%PDF-1.7 mirrored"}
    assert bucket.objects() == {f"media/{name}": b"%PDF-1.7 mirrored"}
    with phase("s3"):
        direct = storage.save("documents/direct.pdf", claimed_html(b"%PDF-1.7 direct"))
    mirrored, written = bucket.head(f"media/{name}"), bucket.head(f"media/{direct}")
    assert mirrored["ContentType"] == written["ContentType"] == "application/pdf"
    assert mirrored["CacheControl"] == written["CacheControl"] == "max-age=60"
    assert on_disk(media_root) == {name: b"%PDF-1.7 mirrored"}  # S3 phase: not on disk


def claimed_html(body: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("upload.pdf", body, content_type="text/html")


def test_migrating_phase_reads_disk_then_s3(phase: Any, media_root: Path, bucket: Bucket) -> None:
    """A file not uploaded yet is read from disk; one only in S3 (its disk copy gone)
    from S3; listdir shows both. Wagtail's renditions need the first (item 66)."""
    (media_root / "old").mkdir()
    (media_root / "old" / "original.png").write_bytes(b"not uploaded yet")
    bucket.put("media/old/only-in-s3.png", b"disk copy removed")
    storage = GatewayStorage()
    with phase("migrating"):
        for name, body in (
            ("old/original.png", b"not uploaded yet"),
            ("old/only-in-s3.png", b"disk copy removed"),
        ):
            assert storage.exists(name)
            with storage.open(name) as opened:
                assert opened.read() == body
            assert storage.size(name) == len(body)
            assert storage.get_modified_time(name).tzinfo is not None
        assert storage.path("old/original.png") == str(media_root / "old/original.png")
        with pytest.raises(NotImplementedError, match="in S3 only"):
            storage.path("old/only-in-s3.png")
        assert storage.listdir("old") == ([], ["only-in-s3.png", "original.png"])
        assert storage.listdir("") == (["old"], [])
        assert not storage.exists("old/neither.png")
        with pytest.raises(FileNotFoundError):
            storage.open("old/neither.png")


def test_a_name_taken_on_either_side_is_kept(phase: Any, media_root: Path, bucket: Bucket) -> None:
    """An object in S3 only, or a file on disk only, is never overwritten by a save."""
    bucket.put("media/documents/a.txt", b"in S3 only")
    (media_root / "documents").mkdir()
    (media_root / "documents" / "b.txt").write_bytes(b"on disk only")
    storage = GatewayStorage()
    with phase("migrating"):
        first = storage.save("documents/a.txt", ContentFile(b"new a"))
        second = storage.save("documents/b.txt", ContentFile(b"new b"))
    assert first != "documents/a.txt" and second != "documents/b.txt"
    assert bucket.read("media/documents/a.txt") == b"in S3 only"
    assert (media_root / "documents" / "b.txt").read_bytes() == b"on disk only"


def test_a_failed_write_leaves_no_half(phase: Any, media_root: Path, bucket: Bucket) -> None:
    """S3 unreachable: the save fails and its disk copy is gone. The disk unwritable:
    the save fails and S3 gets nothing."""
    with phase("migrating", AWS_S3_ENDPOINT_URL=CLOSED_PORT_ENDPOINT):
        storage = GatewayStorage(client_config=NO_RETRIES)
        with pytest.raises(Exception, match="Could not connect"):
            storage.save("documents/lost.txt", ContentFile(b"half"))
    assert on_disk(media_root) == {}

    (media_root / "documents").write_bytes(b"a file where a directory should be")
    with phase("migrating"), pytest.raises(OSError):
        GatewayStorage().save("documents/lost.txt", ContentFile(b"half"))
    assert bucket.objects() == {}


def test_delete_removes_both(phase: Any, media_root: Path, bucket: Bucket) -> None:
    storage = GatewayStorage()
    with phase("migrating"):
        name = storage.save("documents/gone.txt", ContentFile(b"x"))
        storage.delete(name)
        assert not storage.exists(name)
    assert on_disk(media_root) == {} and bucket.objects() == {}


def test_migrating_refuses_writes_in_place(phase: Any) -> None:
    """open("wb") would write one side only; save() writes both."""
    with phase("migrating"), pytest.raises(ValueError, match="use save"):
        GatewayStorage().open("documents/w.txt", "wb")


def test_s3_phase_needs_no_media_root(phase: Any, tmp_path: Path, bucket: Bucket) -> None:
    """After the switch MEDIA_ROOT may be gone: writes and reads are S3's alone."""
    storage = GatewayStorage()
    with phase("s3", MEDIA_ROOT=str(tmp_path / "moved-away")):
        name = storage.save("documents/s3.txt", ContentFile(b"s3 only"))
        with storage.open(name) as opened:
            assert opened.read() == b"s3 only"
        assert storage.listdir("documents") == ([], ["s3.txt"])
        with pytest.raises(NotImplementedError, match="S3 only"):
            storage.path(name)
    assert not (tmp_path / "moved-away").exists()
    assert bucket.objects() == {"media/documents/s3.txt": b"s3 only"}


def test_url_is_the_same_in_every_phase(phase: Any) -> None:
    """The gateway URL, signed with the project's key, public under the public prefix."""
    urls = set()
    for name in ("local", "migrating", "s3"):
        with phase(name, AWS_S3_ENDPOINT_URL=CLOSED_PORT_ENDPOINT):
            urls.add(GatewayStorage().url("documents/a.pdf", expire=60).split("exp=")[0])
            assert PublicGatewayStorage().url("logo.png") == "/media/public/logo.png"
    assert urls == {"/media/documents/a.pdf?"}


def test_public_variant(phase: Any, media_root: Path, bucket: Bucket) -> None:
    with phase("migrating"):
        name = PublicGatewayStorage().save("logo.png", ContentFile(b"png"))
    assert on_disk(media_root) == {f"public/{name}": b"png"}
    assert bucket.objects() == {f"media/public/{name}": b"png"}


def test_model_fields_and_migrations_name_the_functions(django_apps: dict[str, Any]) -> None:
    """media_storage() gives the phase storage; a storage instance serializes by its
    public path, so a migration written today still imports after a refactor."""
    assert isinstance(media_storage(), GatewayStorage)
    assert isinstance(public_media_storage(), PublicGatewayStorage)
    written, imports = MigrationWriter.serialize(GatewayStorage(media_prefix="avatars/"))
    assert written == "gateway.django.storage.GatewayStorage(media_prefix='avatars/')"
    assert imports == {"import gateway.django.storage"}


class BrokenSource(File):  # type: ignore[misc]
    """An upload whose client goes away after the first part."""

    def __init__(self) -> None:
        super().__init__(None, name="half.txt")

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        yield b"the first half"
        raise ConnectionResetError("client went away")


@pytest.mark.parametrize("name", ["local", "migrating"])
def test_a_broken_source_leaves_no_half(
    phase: Any, media_root: Path, bucket: Bucket, name: str
) -> None:
    """The stream breaks off mid-write: the save fails and no truncated file stays on
    disk, where the gateway would serve it and `upload` copy it (item 66)."""
    with phase(name), pytest.raises(ConnectionResetError):
        GatewayStorage().save("documents/half.txt", BrokenSource())
    assert on_disk(media_root) == {}
    assert bucket.objects() == {}


@pytest.mark.parametrize("name", ["local", "migrating", "s3"])
@pytest.mark.parametrize("odd", ["nul\x00.txt", "long/" + "n" * 252 + ".txt"])
def test_names_the_gateway_cannot_serve_are_refused(
    phase: Any, media_root: Path, bucket: Bucket, name: str, odd: str
) -> None:
    """NUL, or a segment over 255 bytes: refused in every phase, before either side
    is written; S3 alone would take it, and its URL, `pull` and a rollback would
    fail later (item 47)."""
    with phase(name), pytest.raises(SuspiciousFileOperation, match="not a path the gateway"):
        GatewayStorage().save(odd, ContentFile(b"x"))
    assert on_disk(media_root) == {}
    assert bucket.client.list_objects_v2(Bucket=bucket.name).get("Contents", []) == []


def test_upload_skips_what_the_mirror_wrote(
    phase: Any, media_root: Path, bucket: Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file the app wrote while migrating carries the SHA-256 `upload` trusts, so
    the backfill skips it instead of sending it again, and `verify` matches it
    (item 49)."""
    body = b"%PDF-1.7 written while migrating"
    with phase("migrating"):
        name = GatewayStorage().save("documents/new.pdf", ContentFile(body))
        call_command("media_gateway", "upload", "--json")
        uploaded = json.loads(capsys.readouterr().out)
        call_command("media_gateway", "verify", "--json")
        verified = json.loads(capsys.readouterr().out)
    assert (uploaded["uploaded"], uploaded["skipped"]) == (0, 1)
    # Metadata names are case-insensitive; rclone answers "Sha256".
    metadata = {
        key.lower(): value for key, value in bucket.head(f"media/{name}")["Metadata"].items()
    }
    assert metadata["sha256"] == hashlib.sha256(body).hexdigest()
    assert verified["ok"] is True


def test_concurrent_saves_of_one_name_in_the_s3_phase(phase: Any, bucket: Bucket) -> None:
    """Eight threads save the same name at once, each on a warm connection: eight
    names and eight objects, each with its own bytes; never two rows naming one
    upload, another user's file."""
    storage = GatewayStorage()
    saved: dict[int, str] = {}
    start = threading.Barrier(8)

    def save(number: int) -> None:
        storage.exists("warm-up")  # this thread's connection, made before the race
        start.wait(30)
        saved[number] = storage.save("avatars/image.jpg", ContentFile(b"photo %d" % number))

    with phase("s3"):
        threads = [threading.Thread(target=save, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(set(saved.values())) == 8
    objects = bucket.objects()
    assert {objects[f"media/{name}"] for name in saved.values()} == {
        b"photo %d" % number for number in range(8)
    }
    assert all(objects[f"media/{name}"] == b"photo %d" % n for n, name in saved.items())


def test_a_name_is_free_again_after_a_failed_save(phase: Any, bucket: Bucket) -> None:
    """The name a save took for itself is released when the save fails (here S3 refuses
    a key over 1,024 bytes), and asking for a name outside a save takes none."""
    long_name = "/".join(["s" * 200] * 6) + ".jpg"
    with phase("s3"):
        storage = GatewayStorage()
        with pytest.raises(ClientError, match="KeyTooLongError"):
            storage.save(long_name, ContentFile(b"x"))
        assert storage.get_available_name(long_name) == long_name
        assert storage.get_available_name("avatars/a.jpg") == "avatars/a.jpg"
        assert storage.save("avatars/a.jpg", ContentFile(b"x")) == "avatars/a.jpg"


@pytest.mark.parametrize("name", ["local", "migrating"])
def test_a_disk_that_fills_up_mid_write_leaves_no_half(
    phase: Any, media_root: Path, bucket: Bucket, name: str
) -> None:
    """The disk refuses more bytes mid-write (RLIMIT_FSIZE, as a full disk would): the
    save fails and the bytes written so far do not stay on disk (item 66)."""
    body = ContentFile(b"x" * (1 << 20))  # in 64 KiB chunks, past the limit
    with phase(name):
        storage = GatewayStorage()
        storage.exists("warm-up")  # everything but the write itself done before the limit
        ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a kill
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, limits[1]))
        try:
            with pytest.raises(OSError, match="File too large"):
                storage.save("documents/big.bin", body)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
            signal.signal(signal.SIGXFSZ, ignored)
    assert on_disk(media_root) == {}
    assert bucket.objects() == {}


@pytest.mark.parametrize("storage_class", [GatewayStorage, PublicGatewayStorage])
def test_no_acl_unless_the_project_asks(phase: Any, storage_class: type[GatewayStorage]) -> None:
    """A bucket with ACLs disabled (AWS's default since 2023) refuses a PUT with an ACL,
    and `upload` sends none: the storage sends none either, unless AWS_DEFAULT_ACL or
    default_acl says so. (rclone has no ACLs, so this reads the PUT's parameters.)"""
    for name in ("migrating", "s3"):
        with phase(name):
            s3_side = storage_class()._sides().s3
            assert s3_side is not None
            assert "ACL" not in s3_side._get_write_parameters("logo.png")
        with phase(name, AWS_DEFAULT_ACL="bucket-owner-full-control"):
            s3_side = storage_class()._sides().s3
            assert s3_side is not None
            params = s3_side._get_write_parameters("logo.png")
            assert params["ACL"] == "bucket-owner-full-control"
        with phase(name):
            s3_side = storage_class(default_acl="public-read")._sides().s3
            assert s3_side is not None
            assert s3_side._get_write_parameters("logo.png")["ACL"] == "public-read"


def test_file_system_options_reach_the_disk_side(phase: Any, media_root: Path) -> None:
    """file_permissions_mode and directory_permissions_mode are FileSystemStorage's: they
    were passed to the S3 side, where they were lost in the local phase and refused by
    S3Storage (an unknown setting) once USE_S3 turned on."""
    storage = GatewayStorage(file_permissions_mode=0o640, directory_permissions_mode=0o750)
    for index, name in enumerate(("local", "migrating")):
        with phase(name):
            saved = storage.save(f"reports{index}/r.txt", ContentFile(b"x"))
        assert (media_root / saved).stat().st_mode & 0o777 == 0o640
        assert (media_root / f"reports{index}").stat().st_mode & 0o777 == 0o750
