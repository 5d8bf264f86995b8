"""Settings: read from the environment and .env, validated at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import ConfigError, MediaGateway, Settings
from tests.conftest import SECRET

BASE = {"GATEWAY_SECRET_KEY": SECRET}


def test_defaults() -> None:
    """Only the secret key is required; the rest has documented defaults."""
    s = Settings.from_env(BASE)
    assert s.use_s3 is False
    assert s.media_root == Path("media")
    assert s.media_url == "/media/"
    assert s.public_prefixes == ()
    assert (s.url_ttl, s.url_window) == (3600, 300)
    assert s.aws_s3_region_name == "us-east-1"
    assert s.aws_location == ""  # the bucket root, as django-storages


def test_full_environment() -> None:
    """Every variable is read and normalised."""
    s = Settings.from_env(
        {
            "GATEWAY_SECRET_KEY": f"{SECRET}-old, {SECRET}-new",
            "USE_S3": "True",
            "MEDIA_ROOT": "/srv/media",
            "MEDIA_URL": "/uploads/",
            "GATEWAY_PUBLIC_PREFIXES": "avatars, /thumbs/",
            "GATEWAY_URL_TTL": "600",
            "GATEWAY_URL_WINDOW": "60",
            "GATEWAY_PUBLIC_MAX_AGE": "0",
            "GATEWAY_FILE_CACHE_MB": "0",
            "AWS_ACCESS_KEY_ID": "AK",
            "AWS_SECRET_ACCESS_KEY": "SK",
            "AWS_STORAGE_BUCKET_NAME": "bucket",
            "AWS_S3_REGION_NAME": "eu-west-3",
            "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_LOCATION": "/site/media/",
        }
    )
    assert s.secret_keys == (f"{SECRET}-old", f"{SECRET}-new")
    assert s.use_s3 is True
    assert s.media_root == Path("/srv/media")
    assert s.public_prefixes == ("avatars/", "thumbs/")
    assert (s.url_ttl, s.url_window, s.public_max_age) == (600, 60, 0)
    assert s.file_cache_mb == 0
    assert s.aws_location == "site/media"
    assert s.is_public("avatars/a.png") and not s.is_public("avatars-private/a.png")


def test_dotenv_file_and_environment_wins(tmp_path: Path) -> None:
    """.env in the working directory is read; the environment overrides it."""
    (tmp_path / ".env").write_text(
        f"GATEWAY_SECRET_KEY={SECRET}\nMEDIA_URL=/files/\nGATEWAY_URL_TTL=100\n"
    )
    s = Settings.from_env({"GATEWAY_URL_TTL": "200"})
    assert s.media_url == "/files/"
    assert s.url_ttl == 200


@pytest.mark.parametrize(
    ("env", "variable", "hint"),
    [
        ({}, "GATEWAY_SECRET_KEY", "is required"),
        ({"GATEWAY_SECRET_KEY": "short"}, "GATEWAY_SECRET_KEY", "at least 16"),
        ({**BASE, "USE_S3": "maybe"}, "USE_S3", "true or false"),
        ({**BASE, "MEDIA_URL": "media"}, "MEDIA_URL", "starts and ends with '/'"),
        ({**BASE, "MEDIA_URL": "https://cdn.example.com/media/"}, "MEDIA_URL", "starts"),
        ({**BASE, "GATEWAY_URL_TTL": "1h"}, "GATEWAY_URL_TTL", "integer number of seconds"),
        ({**BASE, "GATEWAY_URL_TTL": "0"}, "GATEWAY_URL_TTL", ">= 1"),
        ({**BASE, "GATEWAY_FILE_CACHE_MB": "8M"}, "GATEWAY_FILE_CACHE_MB", "mebibytes"),
        ({**BASE, "GATEWAY_FILE_CACHE_MB": "-1"}, "GATEWAY_FILE_CACHE_MB", ">= 0"),
        ({**BASE, "GATEWAY_METRICS_PORT": "http"}, "GATEWAY_METRICS_PORT", "port number"),
        (
            {**BASE, "GATEWAY_URL_TTL": "100", "GATEWAY_URL_WINDOW": "200"},
            "GATEWAY_URL_WINDOW",
            "must not exceed",
        ),
        ({**BASE, "GATEWAY_PUBLIC_PREFIXES": "../etc"}, "GATEWAY_PUBLIC_PREFIXES", "relative"),
        ({**BASE, "USE_S3": "true"}, "AWS_STORAGE_BUCKET_NAME", "required when USE_S3"),
        ({**BASE, "AWS_S3_ENDPOINT_URL": "minio:9000"}, "AWS_S3_ENDPOINT_URL", "http://"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], variable: str, hint: str) -> None:
    """A missing or invalid value raises one message naming the variable and the fix."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.variable == variable
    message = str(info.value)
    assert message.startswith(f"{variable}: ")
    assert hint in message
    assert "\n" not in message


def test_missing_media_root_fails_at_start(tmp_path: Path) -> None:
    """The gateway refuses to start on a MEDIA_ROOT that does not exist."""
    with pytest.raises(ConfigError, match="MEDIA_ROOT"):
        MediaGateway(settings=Settings(secret_keys=(SECRET,), media_root=tmp_path / "nope"))


def test_settings_are_frozen() -> None:
    """Settings cannot change after start-up."""
    s = Settings.from_env(BASE)
    with pytest.raises(AttributeError):
        s.url_ttl = 5  # type: ignore[misc]


def test_window_follows_a_short_ttl() -> None:
    """Without GATEWAY_URL_WINDOW, a TTL under five minutes gets a window equal to it."""
    assert Settings.from_env({**BASE, "GATEWAY_URL_TTL": "60"}).url_window == 60
    assert Settings.from_env({**BASE, "GATEWAY_URL_TTL": "7200"}).url_window == 300


def test_env_example_lists_every_variable() -> None:
    """.env.example documents every variable the settings read, with a comment."""
    import dataclasses
    import re

    read = {field.metadata["env"][0] for field in dataclasses.fields(Settings)}
    assert len(read) == len(dataclasses.fields(Settings))  # one variable per field
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE))
    assert read <= documented, read - documented
    lines = example.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z0-9_]+=", line):
            assert lines[index - 1].startswith("#") or re.match(
                r"^[A-Z0-9_]+=", lines[index - 1]
            ), line


def test_repr_hides_secrets() -> None:
    """Settings never print their keys or S3 secrets (logs, tracebacks)."""
    s = Settings(
        secret_keys=(SECRET,),
        aws_secret_access_key="s3-secret-value",
        aws_session_token="tok-value",
    )
    text = repr(s)
    assert SECRET not in text and "s3-secret-value" not in text and "tok-value" not in text


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"GATEWAY_UPLOAD_PATH": "/media/up/"}, "GATEWAY_UPLOAD_PATH: must not overlap"),
        ({"GATEWAY_UPLOAD_PATH": "/media/"}, "GATEWAY_UPLOAD_PATH: must not overlap"),
        ({"GATEWAY_UPLOAD_PATH": "uploads"}, "GATEWAY_UPLOAD_PATH: expected a path"),
        ({"GATEWAY_UPLOAD_MULTIPART_MB": "4"}, "GATEWAY_UPLOAD_MULTIPART_MB: expected 5"),
        ({"GATEWAY_UPLOAD_MULTIPART_MB": "9999"}, "GATEWAY_UPLOAD_MULTIPART_MB: expected 5"),
    ],
)
def test_upload_settings_are_checked(variables: dict[str, str], message: str) -> None:
    """The upload endpoint never lies under MEDIA_URL (it would shadow files), and parts
    stay within S3's limits; refused when the settings load, naming the variable."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE, **variables})
    assert Settings.from_env(BASE).upload_path == "/media-uploads/"
