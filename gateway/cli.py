"""The ``media-gateway`` command: serve, sign and check (and the migration's commands).

Results go to stdout, errors to stderr as one line. Exit codes: 0 success, 1 a check
failed, 2 bad usage or settings.

Every command but ``serve`` takes its :class:`Settings` as an argument: ``main`` reads
them from the environment, ``manage.py media_gateway`` from Django's settings
(:func:`gateway.django.gateway_settings`), and both register the same commands with
:func:`add_commands` and run them with :func:`run`.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .exceptions import ConfigError
from .settings import Settings, forwarded_hosts
from .signing import URLSigner

__all__ = ["Command", "add_commands", "build_app", "log_config", "main", "run", "tune_malloc"]

#: A command that runs on settings given to it: ``(parsed arguments, settings) -> exit code``.
Command = Callable[[argparse.Namespace, Settings], int]

# serve passes --app/--interface to its worker processes through these variables:
# uvicorn starts each worker from an import string, so they cannot take arguments.
APP_VARIABLE = "MEDIA_GATEWAY_APP"
INTERFACE_VARIABLE = "MEDIA_GATEWAY_INTERFACE"
# --access-log/--no-access-log reach the workers as the setting itself.
ACCESS_LOG_VARIABLE = "GATEWAY_ACCESS_LOG"
# mallopt's parameter numbers for the trim and mmap thresholds in glibc's malloc.h, and
# the values tune_malloc sets (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ alike).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 2 * 1024 * 1024
TRIM_THRESHOLD = 4 * 1024 * 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            result: int = _serve(args)
        else:
            result = run(args, Settings.from_env())
    except ConfigError as exc:
        print(f"media-gateway: {exc}", file=sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="media-gateway",
        description="Serve media behind signed URLs, from local disk or S3.",
        epilog="Settings come from the environment and ./.env; see .env.example.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway in front of an app with uvicorn")
    serve.add_argument("--app", help="the app to wrap, as MODULE:ATTR (default: media only)")
    serve.add_argument("--interface", choices=("asgi", "wsgi"), default="asgi")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--forwarded-allow-ips",
        metavar="ADDRS",
        help="proxies whose X-Forwarded-For/-Proto are believed (default:"
        " GATEWAY_FORWARDED_ALLOW_IPS, else 127.0.0.1)",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a line per request on stdout, signatures redacted "
        "(default: GATEWAY_ACCESS_LOG, which is on)",
    )
    serve.add_argument(
        "--log-config",
        metavar="FILE",
        help="uvicorn's --log-config (JSON, YAML or INI) instead of the gateway's own; "
        "the access lines go to the gateway.access logger",
    )
    # serve reads its settings itself: an app that is already a gateway brings its own.
    serve.set_defaults(command=None)
    add_commands(commands)
    return parser


def add_commands(commands: Any) -> None:
    """Register sign, check, upload, verify and pull on ``commands`` (the action of
    ``add_subparsers``); each sets ``command`` to a :data:`Command`, which :func:`run`
    calls."""
    sign = commands.add_parser("sign", help="print a signed URL for a media path")
    sign.add_argument("path", help="relative media path, such as docs/report.pdf")
    sign.add_argument("--expires", type=int, default=None, metavar="SECONDS")
    sign.add_argument("--download", action="store_true", help="ask browsers to save the file")
    sign.add_argument("--content-type", help="answer with this type instead of the guessed one")
    sign.set_defaults(command=_sign)

    check = commands.add_parser("check", help="validate the settings and report what they say")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument(
        "--origin",
        type=_origin,
        metavar="URL",
        help="also check that the bucket's CORS rules let browsers on this origin (the"
        " site's, like https://www.example.com) PUT direct uploads",
    )
    check.set_defaults(command=_check)

    from .migrate.cli import add_commands as add_migrate_commands

    add_migrate_commands(commands)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the command ``args`` names with ``settings``; raises ConfigError (exit code 2)."""
    command: Command = args.command
    return command(args, settings)


def _sign(args: argparse.Namespace, settings: Settings) -> int:
    signer = URLSigner.from_settings(settings)
    try:
        url = signer.sign_url(
            args.path,
            expires_in=args.expires,
            download=args.download,
            content_type=args.content_type,
        )
    except ValueError as exc:
        print(f"media-gateway: {exc}", file=sys.stderr)
        return 2
    print(url)
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    root = settings.media_root
    report: dict[str, Any] = {}
    if getattr(args, "settings_from", None):  # manage.py names the settings module
        report["settings"] = args.settings_from
    report |= {
        "mode": "s3" if settings.use_s3 else "local",
        "media_url": settings.media_url,
        "media_root": str(root.resolve()),
        "media_root_exists": root.is_dir(),
        "public_prefixes": list(settings.public_prefixes),
        "signing_keys": len(settings.secret_keys),
        "url_ttl": settings.url_ttl,
        "url_window": settings.url_window,
    }
    problems = []
    if (not settings.use_s3 or settings.local_fallback) and not root.is_dir():
        problems.append(f"MEDIA_ROOT: directory {str(root)!r} does not exist")
    if settings.use_s3:
        report.update(
            bucket=settings.aws_storage_bucket_name,
            endpoint=settings.s3_endpoint_url,
            public_endpoint=settings.public_endpoint_url,
            location=settings.aws_location,
            delivery=settings.s3_delivery,
            local_fallback=settings.local_fallback,
        )
        from .bucket import check_bucket

        s3_report, s3_problems = check_bucket(settings, inventory=True, origin=args.origin)
        report.update(s3_report)
        problems += s3_problems
    elif args.origin:
        report["warnings"] = ["CORS: not needed in local mode (uploads go to the gateway)"]
    report["ok"] = not problems
    report["problems"] = problems
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            if key not in ("problems", "warnings"):
                print(f"{key:18} {value}")
        for warning in report.get("warnings", []):
            print(f"media-gateway: warning: {warning}", file=sys.stderr)
        for problem in problems:
            print(f"media-gateway: {problem}", file=sys.stderr)
    return 0 if not problems else 1


def _origin(value: str) -> str:
    """A browser's Origin: scheme, host and an optional port, nothing else."""
    if not re.fullmatch(r"https?://[^/\s?#]+", value):
        raise argparse.ArgumentTypeError(
            f"expected an origin like https://www.example.com, with no path (got {value!r})"
        )
    return value


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.access_log is not None:
        os.environ[ACCESS_LOG_VARIABLE] = "true" if args.access_log else "false"
    app = _import_app(args.app) if args.app else None
    if args.app:
        os.environ[APP_VARIABLE] = args.app
    inner = _gateway_of(app)
    # Fail here, with exit code 2, rather than in every worker. An app that is already
    # a gateway (asgi.py wraps Django, as the README says) brings its own settings.
    settings = inner.settings if inner is not None else Settings.from_env()
    trusted = settings.forwarded_allow_ips
    if args.forwarded_allow_ips is not None:
        trusted = forwarded_hosts("--forwarded-allow-ips", args.forwarded_allow_ips)
    os.environ[INTERFACE_VARIABLE] = args.interface
    build_app()
    uvicorn.run(
        "gateway.cli:build_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # Client address and scheme from the proxy's headers, from trusted proxies only.
        proxy_headers=True,
        forwarded_allow_ips=list(trusted),
        # Each worker reads the settings itself; .env is read by Settings.from_env.
        env_file=None,
        # uvicorn's access line prints the request target, signature and all: the
        # gateway writes its own (GATEWAY_ACCESS_LOG), with the signature redacted.
        access_log=False,
        log_config=args.log_config or log_config(),
    )
    return 0


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration plus the gateway's loggers: the access lines on
    stdout through a buffered handler (at most a second late), the gateway's warnings
    and errors on stderr as uvicorn prints its own."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["gateway.access"] = {
        "class": "gateway.serving.access_log.AccessLogHandler",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["gateway"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["gateway.access"] = {
        "handlers": ["gateway.access"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def build_app() -> Any:
    """The app uvicorn runs: the gateway around ``$MEDIA_GATEWAY_APP`` (if any)."""
    from .serving.middleware import MediaGateway

    tune_malloc()

    spec = os.environ.get(APP_VARIABLE)
    app = _import_app(spec) if spec else None
    inner = _gateway_of(app)
    if app is not None and os.environ.get(INTERFACE_VARIABLE) == "wsgi":
        from a2wsgi import WSGIMiddleware

        app = WSGIMiddleware(app)
    if inner is not None:
        # Already a gateway, with the settings its project gave it: a second one around
        # it would read only the environment and refuse what the first allows.
        return app
    return MediaGateway(app)


def _gateway_of(app: Any) -> Any:
    """The gateway ``app`` is (ASGI) or holds (the WSGI adapter), or None."""
    from .serving.middleware import MediaGateway
    from .wsgi import MediaGatewayWSGI

    if isinstance(app, MediaGateway):
        return app
    if isinstance(app, MediaGatewayWSGI):
        return app.gateway
    return None


def tune_malloc() -> None:
    # glibc raises its mmap threshold each time a large block is freed and its trim
    # threshold with it, so the 1 MiB read buffers of streamed files ended up in
    # per-thread heaps it kept: RSS grew 20 MB over a 60 s soak (bench/soak.py). Fixed
    # thresholds bound that; they sit above the buffers, because buffers mmapped and
    # unmapped one by one (a 128 KiB threshold) are page-faulted anew for every MiB:
    # media-gateway serve streamed a 512 MiB file at 0.7 GB/s that way, 1.7 GB/s with
    # these, and the soak's growth at rest stays under its 10 MB target.
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _import_app(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            "--app", f"expected MODULE:ATTR, like mysite.asgi:application (got {spec!r})"
        )
    if os.getcwd() not in sys.path:  # like uvicorn: apps are found from the working dir
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("--app", f"cannot import {module_name!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError("--app", f"module {module_name!r} has no attribute {attr!r}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
