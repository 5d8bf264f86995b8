"""``manage.py media_gateway audit``: the test project's file fields against the disk and
the rclone bucket.

Each test runs in a transaction rolled back at its end, so that the rows other tests
left behind neither show up as missing here nor disappear for them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from gateway.django import gateway_settings
from gateway.django.audit import audit
from tests.django import test_django, test_management
from tests.django.test_management import s3_settings
from tests.s3server import S3Server

django_apps = test_django.django_apps
manage = test_management.manage


@pytest.fixture
def rows(django_apps: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """``rows(file=.., thumbnail=..)`` makes a Document in a database that holds no other
    until the test ends, when the transaction is rolled back."""
    from django.contrib.auth.models import User

    from tests.djangoproject.docs.models import Document

    with transaction.atomic():
        Document.objects.all().delete()
        owner = User.objects.create_user("audit-owner")

        def make(file: str = "", thumbnail: str = "") -> Any:
            return Document.objects.create(owner=owner, file=file, thumbnail=thumbnail)

        yield make
        transaction.set_rollback(True)


def put(server: S3Server, bucket: str, *keys: str) -> None:
    with contextlib.closing(server.client()) as s3:
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=b"object")


def write(root: Path, *relpaths: str) -> None:
    for relpath in relpaths:
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(b"file")


def run_audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``manage.py media_gateway audit ARGS``: exit code, stdout, stderr."""
    try:
        call_command("media_gateway", "audit", *args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_missing_files_and_orphans(
    rows: Callable[..., Any],
    s3_server: S3Server,
    s3_bucket: str,
    media_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Rows whose file is on disk or in the bucket pass (through the field's storage:
    thumbnails live under public/); a row whose file is in neither is missing, exit 1;
    files and objects no row names are orphans, with where they are. --json's shape."""
    write(media_root, "documents/on-disk.pdf", "documents/old.pdf", "documents/twice.pdf")
    put(
        s3_server,
        s3_bucket,
        "media/documents/in-bucket.pdf",
        "media/public/thumbnails/t.png",
        "media/documents/stale.pdf",
        "media/documents/twice.pdf",
        "outside-the-prefix.pdf",
    )
    found = rows(file="documents/on-disk.pdf", thumbnail="thumbnails/t.png")
    bucket_only = rows(file="documents/in-bucket.pdf")
    gone = rows(file="documents/gone.pdf", thumbnail="thumbnails/gone.png")
    with override_settings(**s3_settings(s3_server, s3_bucket, media_root)):
        code, out, _ = run_audit(capsys, "--json")
        assert code == 1
        report = json.loads(out)
        assert set(report) == {
            "ok",
            "rows",
            "names",
            "files",
            "missing",
            "orphans",
            "unchecked",
            "seconds",
        }
        assert (report["ok"], report["rows"], report["names"], report["files"]) == (False, 3, 5, 6)
        assert report["missing"] == [
            {
                "model": "docs.Document",
                "field": "file",
                "pk": gone.pk,
                "name": "documents/gone.pdf",
                "relpath": "documents/gone.pdf",
            },
            {
                "model": "docs.Document",
                "field": "thumbnail",
                "pk": gone.pk,
                "name": "thumbnails/gone.png",
                "relpath": "public/thumbnails/gone.png",
            },
        ]
        assert report["orphans"] == [
            {"path": "documents/old.pdf", "where": ["disk"]},
            {"path": "documents/stale.pdf", "where": ["s3"]},
            {"path": "documents/twice.pdf", "where": ["disk", "s3"]},
        ]
        assert report["unchecked"] == []

        code, out, _ = run_audit(capsys)
        assert code == 1
        assert f"missing: docs.Document.file pk={gone.pk} documents/gone.pdf" in out
        assert "orphan: documents/twice.pdf (disk, s3)" in out
        assert out.splitlines()[-1].startswith("audit: 3 rows, 5 file names, 6 files; 2 missing")

        gone.delete()
        code, out, _ = run_audit(capsys, "--json")
        assert code == 0  # orphans alone are reported, not a failure
        assert json.loads(out)["ok"] is True

    # Local mode: the bucket is not looked at, so what is only there is missing.
    with override_settings(MEDIA_ROOT=str(media_root)):
        missing = audit(gateway_settings()).missing
    assert [(item.pk, item.name) for item in missing] == [
        (found.pk, "thumbnails/t.png"),
        (bucket_only.pk, "documents/in-bucket.pdf"),
    ]


def test_one_query_of_the_file_columns(
    rows: Callable[..., Any], media_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One SELECT per model with file fields, of the primary key and the file columns
    only, read in chunks (iterator): 2500 rows, more than one chunk."""
    from tests.djangoproject.docs.models import Document

    owner = rows().owner
    Document.objects.bulk_create(
        Document(owner=owner, file=f"documents/{number}.pdf") for number in range(2500)
    )
    write(media_root, *(f"documents/{number}.pdf" for number in range(2500)))
    with override_settings(MEDIA_ROOT=str(media_root)), CaptureQueriesContext(connection) as qs:
        report = audit(gateway_settings())
    assert (report.rows, report.names, report.missing, report.orphans) == (2501, 2500, [], [])
    selects = [q["sql"] for q in qs.captured_queries if q["sql"].startswith("SELECT")]
    documents = [sql for sql in selects if '"docs_document"' in sql]
    assert documents == [
        'SELECT "docs_document"."id" AS "pk", "docs_document"."file" AS "file",'
        ' "docs_document"."thumbnail" AS "thumbnail" FROM "docs_document"'
    ]


def test_bad_bucket_settings_exit_2(
    rows: Callable[..., Any],
    s3_server: S3Server,
    s3_bucket: str,
    media_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bucket that does not exist: a CommandError naming the setting, exit code 2."""
    from django.core.management.base import CommandError

    values = {**s3_settings(s3_server, s3_bucket, media_root), "AWS_STORAGE_BUCKET_NAME": "none"}
    with override_settings(**values), pytest.raises(CommandError) as raised:
        call_command("media_gateway", "audit")
    assert raised.value.returncode == 2
    assert str(raised.value) == (
        "media-gateway: AWS_STORAGE_BUCKET_NAME: bucket 'none' does not exist"
    )


def test_audit_through_manage_py(
    manage: Callable[..., subprocess.CompletedProcess[str]], media_root: Path
) -> None:
    """The real command line on a project of its own: exit 1 and the missing row listed,
    then 0 once the file is there."""
    settings = {"MEDIA_ROOT": str(media_root)}
    assert manage("--verbosity", "0", command="migrate", settings=settings).returncode == 0
    create = (
        "from django.contrib.auth.models import User;"
        " from tests.djangoproject.docs.models import Document;"
        " Document.objects.create(owner=User.objects.create_user('u'), file='documents/a.pdf')"
    )
    done = manage("-c", create, command="shell", settings=settings)
    assert done.returncode == 0, done.stderr
    done = manage("audit", settings=settings)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0] == "missing: docs.Document.file pk=1 documents/a.pdf"
    write(media_root, "documents/a.pdf")
    done = manage("audit", "--json", settings=settings)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["missing"] == []


def test_public_api() -> None:
    """The audit module's __all__ lists exactly its public names, and each exists."""
    import gateway.django.audit

    names = ["AuditReport", "MissingFile", "Orphan", "audit"]
    assert sorted(gateway.django.audit.__all__) == names
    assert all(hasattr(gateway.django.audit, name) for name in names)


def test_names_that_are_not_utf8(
    rows: Callable[..., Any], media_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file whose name is not UTF-8 is listed with its bytes as \\xNN, as upload and
    verify show it, on a strict UTF-8 stdout (an en_US.UTF-8 terminal) and in --json
    (item 47)."""
    odd = os.path.join(os.fsencode(media_root), b"scans\xff")
    os.mkdir(odd)
    open(os.path.join(odd, b"r\xe9sum\xe9.pdf"), "wb").close()  # Latin-1, as old uploads
    strict = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    with override_settings(MEDIA_ROOT=str(media_root)):
        call_command("media_gateway", "audit", stdout=strict)
        strict.flush()
        assert strict.buffer.getvalue().decode().splitlines()[0] == (
            "orphan: scans\\xff/r\\xe9sum\\xe9.pdf (disk)"
        )
        code, out, _ = run_audit(capsys, "--json")
    assert code == 0
    assert json.loads(out)["orphans"] == [
        {"path": "scans\\xff/r\\xe9sum\\xe9.pdf", "where": ["disk"]}
    ]


def test_a_media_root_that_does_not_exist_exits_2(
    rows: Callable[..., Any], media_root: Path
) -> None:
    """In the phases that read the disk, a MEDIA_ROOT that is not there is a setting to
    fix (one line, exit 2), not every row reported missing."""
    rows(file="documents/a.pdf")
    with (
        override_settings(MEDIA_ROOT=str(media_root / "typo")),
        pytest.raises(CommandError) as raised,
    ):
        call_command("media_gateway", "audit")
    assert raised.value.returncode == 2
    assert str(raised.value) == (
        f"media-gateway: MEDIA_ROOT: directory {str(media_root / 'typo')!r} does not exist"
    )
