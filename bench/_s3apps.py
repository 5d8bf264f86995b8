"""The S3 apps the ``redirect`` and ``soak`` benchmarks serve, as uvicorn ``--factory``
callables.

As in ``_apps``, the benchmark passes everything in ``BENCH_*`` variables, never in the
gateway's own (``AWS_*``, ``USE_S3``), so a developer's ``.env`` or shell cannot change
what is measured. ``BENCH_S3_*`` name the loopback ``rclone serve s3`` that
:func:`s3_environment` runs for the benchmark.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import MediaGateway, Settings
from gateway.dev.embedded_s3 import serve_s3
from gateway.s3 import make_s3_client

from ._apps import replaying

MEDIA_URL = "/media/"
# The soak's second gateway, wrapped by the first: proxy mode under its own prefix.
PROXY_URL = "/proxied/"
# What the Starlette baseline redirects to: a URL as long as a presigned one, so the
# response differs from the gateway's in the work done, not in its size.
FIXED_LOCATION = (
    "http://127.0.0.1:9/bench/media/docs/small.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=example-key%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=" + "0" * 64
)


def s3_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Gateway settings for the benchmark's S3 server, from ``BENCH_*`` variables."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {
        "secret_keys": (env["BENCH_SECRET"],),
        "media_root": Path(env.get("BENCH_MEDIA_ROOT", "media")),
        "media_url": MEDIA_URL,
        "use_s3": True,
        "aws_access_key_id": env["BENCH_S3_ACCESS_KEY"],
        "aws_secret_access_key": env["BENCH_S3_SECRET_KEY"],
        "aws_storage_bucket_name": env["BENCH_S3_BUCKET"],
        "aws_s3_endpoint_url": env["BENCH_S3_ENDPOINT"],
    }
    values.update(overrides)
    return Settings(**values)


def gateway_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The variables ``media-gateway serve`` reads for what :func:`s3_settings` says:
    the gateway as a user configures it, every other setting at its default."""
    return {
        "GATEWAY_SECRET_KEY": env["BENCH_SECRET"],
        "MEDIA_ROOT": env.get("BENCH_MEDIA_ROOT", "media"),
        "MEDIA_URL": MEDIA_URL,
        "USE_S3": "true",
        "AWS_ACCESS_KEY_ID": env["BENCH_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": env["BENCH_S3_SECRET_KEY"],
        "AWS_STORAGE_BUCKET_NAME": env["BENCH_S3_BUCKET"],
        "AWS_S3_ENDPOINT_URL": env["BENCH_S3_ENDPOINT"],
    }


def gateway_redirect() -> MediaGateway:
    """Our gateway in S3 redirect mode: a signed URL gets a 302 to a presigned URL."""
    return MediaGateway(settings=s3_settings())


def replay_redirect() -> ASGIApp:
    """The gateway's redirect for ``BENCH_REPLAY_TARGET``, recorded once and replayed:
    what uvicorn charges for a response of that shape, none of the gateway's work."""
    return replaying(gateway_redirect(), os.environ["BENCH_REPLAY_TARGET"])


def __getattr__(name: str) -> Any:
    """``proxied``: the app the soak runs behind ``media-gateway serve --app
    bench._s3apps:proxied``, a second gateway that proxies from S3 under ``/proxied/``.
    Built on first access, from ``BENCH_*`` variables; it writes no access line (the
    gateway in front of it does). An app of its own around that gateway, as a site's app
    with a gateway inside would be: ``serve --app`` serves a bare gateway as it is, with
    its own settings, instead of wrapping it in the hybrid one the soak runs."""
    if name == "proxied":
        settings = s3_settings(media_url=PROXY_URL, s3_delivery="proxy", access_log=False)
        inner = MediaGateway(settings=settings)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await inner(scope, receive, send)

        return app
    raise AttributeError(name)


def starlette_redirect() -> ASGIApp:
    """A Starlette route answering every media path with a fixed 302: what the
    framework alone charges for a redirect."""

    async def redirect(request: Request) -> RedirectResponse:
        return RedirectResponse(FIXED_LOCATION, status_code=302)

    return Starlette(routes=[Route(MEDIA_URL + "{path:path}", redirect)])


def starlette_boto3() -> ASGIApp:
    """How most apps redirect to S3: boto3's ``generate_presigned_url`` per request,
    called inline in an async view (it makes no network call, so nobody threads it)."""
    settings = s3_settings()
    client = make_s3_client(settings)
    bucket = settings.aws_storage_bucket_name

    async def redirect(request: Request) -> RedirectResponse:
        key = settings.key_for(request.path_params["path"])
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=settings.presign_ttl
        )
        return RedirectResponse(url, status_code=302)

    return Starlette(routes=[Route(MEDIA_URL + "{path:path}", redirect)])


# --- the S3 server ----------------------------------------------------------------

BUCKET = "bench"


@contextlib.contextmanager
def s3_environment(
    base: Path, objects: Mapping[str, bytes], **extra: str
) -> Iterator[dict[str, str]]:
    """Run ``rclone serve s3`` over ``base/s3`` with a bucket holding ``objects`` (media
    paths, stored under the gateway's key prefix); yield the ``BENCH_*`` variables that
    point the apps above at it, plus ``extra``.

    rclone is not pinned: the redirect benchmark never calls it, and the soak wants it
    on whichever core is free rather than queued behind the gateway.
    """
    data = base / "s3"
    data.mkdir()
    access_key = "AKIA" + secrets.token_hex(8).upper()
    secret_key = secrets.token_hex(20)
    log = base / "rclone.log"
    with serve_s3(data, access_key=access_key, secret_key=secret_key, log_path=log) as endpoint:
        env = {
            "BENCH_SECRET": secrets.token_urlsafe(32),
            "BENCH_S3_ENDPOINT": endpoint,
            "BENCH_S3_ACCESS_KEY": access_key,
            "BENCH_S3_SECRET_KEY": secret_key,
            "BENCH_S3_BUCKET": BUCKET,
            **extra,
        }
        settings = s3_settings(env)
        client = make_s3_client(settings)
        try:
            client.create_bucket(Bucket=BUCKET)
            for relpath, body in objects.items():
                client.put_object(Bucket=BUCKET, Key=settings.key_for(relpath), Body=body)
        finally:
            client.close()
        yield env
