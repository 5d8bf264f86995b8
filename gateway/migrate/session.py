"""From settings to a migration's parts: the source or destination directory, the S3
client (checked against the bucket), the state file, and S3 errors that mean the
settings are wrong turned into a :class:`~gateway.exceptions.ConfigError` naming the
variable to fix.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ..exceptions import ConfigError, S3Error
from ..network import ca_bundle, proxy_for, proxy_variable, tls_context, untrusted_message
from ..params import object_headers
from ..settings import Settings
from ..sigv4 import Credentials
from .state import State, default_state_path
from .walk import Selector
from .wire import S3Wire

__all__ = [
    "config_error",
    "credentials_for",
    "directory",
    "headers_for",
    "session",
    "without_state",
]

# S3 error codes that mean the settings are wrong rather than a file.
_CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthorizationHeaderMalformed",
    "InvalidToken",
    "ExpiredToken",
    "403",
}


def config_error(exc: S3Error, settings: Settings) -> ConfigError:
    bucket = settings.aws_storage_bucket_name
    if exc.code in ("NoSuchBucket", "NotFound"):
        return ConfigError(
            "AWS_STORAGE_BUCKET_NAME",
            f"bucket {bucket!r} does not exist at {settings.s3_endpoint_url}; "
            "create it first (the migration tools never create buckets)",
        )
    if exc.code in _CREDENTIAL_CODES:
        return ConfigError(
            "AWS_ACCESS_KEY_ID",
            f"S3 refused the credentials for bucket {bucket!r} ({exc}); check "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    url = settings.s3_endpoint_url
    if exc.region is not None:
        return ConfigError("AWS_S3_REGION_NAME", f"bucket {bucket!r}: {exc}")
    if exc.code == "TLSError":
        return ConfigError("AWS_CA_BUNDLE", untrusted_message(url, ca_bundle(settings)))
    if exc.code == "ProxyError":
        return ConfigError(proxy_variable(url), f"{exc.message}; not connecting to {url} directly")
    if exc.code == "ConnectionError":
        return ConfigError("AWS_S3_ENDPOINT_URL", f"cannot reach {url}: {exc}")
    return ConfigError("AWS_S3_ENDPOINT_URL", f"S3 failed for bucket {bucket!r}: {exc}")


def directory(given: Path | None, media_root: Path, option: str) -> Path:
    path = given or media_root
    variable = option if given else "MEDIA_ROOT"
    if not path.is_dir():
        raise ConfigError(variable, f"directory {str(path)!r} does not exist")
    try:
        os.scandir(path).close()
    except OSError as exc:
        raise ConfigError(variable, f"cannot list {str(path)!r}: {exc.strerror}") from None
    return path


def headers_for(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    try:
        return object_headers(settings.aws_s3_object_parameters)
    except ValueError as exc:
        raise ConfigError("AWS_S3_OBJECT_PARAMETERS", str(exc)) from None


def credentials_for(settings: Settings) -> Callable[[], Credentials]:
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        fixed = Credentials(
            settings.aws_access_key_id, settings.aws_secret_access_key, settings.aws_session_token
        )
        return lambda: fixed
    from ..s3 import credentials_provider  # boto3's chain: roles, profiles, SSO

    return credentials_provider(settings)


@contextlib.contextmanager
def session(
    settings: Settings, local_dir: Path, *, state_path: Path | None, stateful: bool = True
) -> Iterator[tuple[S3Wire, State]]:
    """The bucket's client, checked (a missing bucket is never created), and the state
    file of ``local_dir`` (``state_path``, else the default one; none unless
    ``stateful``); both closed on the way out."""
    bucket = settings.aws_storage_bucket_name
    if not bucket:
        raise ConfigError("AWS_STORAGE_BUCKET_NAME", "is required to migrate")
    try:
        wire = S3Wire(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.aws_s3_region_name,
            bucket=bucket,
            addressing_style=settings.addressing_style,
            credentials=credentials_for(settings),
            tls=tls_context(settings),
            proxy_for=proxy_for,
        )
    except ValueError as exc:  # a proxy this client cannot use (https://)
        raise ConfigError(proxy_variable(settings.s3_endpoint_url), str(exc)) from None
    path: Path | None = None
    if stateful:
        path = state_path or default_state_path(
            local_dir,
            endpoint=settings.s3_endpoint_url,
            bucket=bucket,
            prefix=settings.key_for(""),
        )
    state = State(path)
    try:
        wire.check_bucket()
        yield wire, state
    finally:
        state.close()
        wire.close()


def without_state(selector: Selector, source: Path, state_path: Path) -> Selector:
    """``selector`` that also leaves out the state file when it lies inside the source:
    it changes all along the run, and is no media."""
    inside = os.path.relpath(os.path.realpath(state_path), os.path.realpath(source))
    if inside.startswith(".."):
        return selector
    excluded = [*selector.exclude, glob.escape(inside) + "*"]
    return Selector(
        include=selector.include, exclude=excluded, shard=(selector.index, selector.count)
    )
