"""``manage.py media_gateway``: the ``media-gateway`` commands on Django's settings.

``sign``, ``check``, ``upload``, ``verify`` and ``pull`` are the CLI's own (same flags,
same output, same exit codes), run on :func:`gateway.django.gateway_settings` instead of
the environment alone, so the migration reads the configuration the site runs with.
``audit`` compares the database's file fields with the disk and the bucket
(:mod:`gateway.django.audit`). Bad settings or usage raise ``CommandError`` with exit
code 2; a failed check or copy exits 1, an interrupted one 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ....cli import add_commands, run
from ....exceptions import ConfigError
from ....settings import Settings
from ... import gateway_settings

# Exit code of bad usage or settings, as media-gateway's.
EXIT_USAGE = 2


class Command(BaseCommand):
    help = (
        "The media-gateway commands (sign, check, upload, verify, pull) on this project's"
        " settings, and audit: the file fields of the database against disk and bucket."
    )
    # The gateway's settings are checked by the command itself, as media-gateway does
    # (one line, exit code 2), rather than by a system check that exits 1.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(required=True, metavar="COMMAND", dest="name")
        add_commands(commands)
        audit = commands.add_parser(
            "audit",
            help="list file fields whose file is neither on disk nor in the bucket, and "
            "files no row names",
        )
        audit.add_argument("--json", action="store_true", help="print one JSON object")
        audit.set_defaults(command=_audit)
        hidden = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
        for subcommand in commands.choices.values():
            # Django's own options, which every other command takes wherever they stand;
            # the sub-commands accept them too, so `upload --settings mysite.dev -v 0`
            # parses (Django reads --settings and --pythonpath before the command runs).
            subcommand.add_argument("--settings", **hidden)
            subcommand.add_argument("--pythonpath", **hidden)
            subcommand.add_argument("-v", "--verbosity", type=int, choices=range(4), **hidden)
            for flag in ("--traceback", "--no-color", "--force-color"):
                subcommand.add_argument(flag, action="store_true", **hidden)
        parser.set_defaults(settings_from=f"Django ({django_settings.SETTINGS_MODULE})")

    def handle(self, *args: Any, **options: Any) -> None:
        # The commands print to sys.stdout and sys.stderr; these are the streams Django
        # gave the command (call_command(stdout=...)), the process's own otherwise.
        out, err = self.stdout._out, self.stderr._out
        try:
            settings = gateway_settings()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = run(argparse.Namespace(**options), settings)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from None
        except ConfigError as exc:
            raise CommandError(f"media-gateway: {exc}", returncode=EXIT_USAGE) from None
        if code:
            # As Django's own `migrate --check`: the output said why.
            sys.exit(code)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from ...audit import audit

    report = audit(settings)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for row in report.missing:
            print(f"missing: {row.model}.{row.field} pk={row.pk} {row.name}")
        for orphan in report.orphans:
            print(f"orphan: {orphan.relpath} ({', '.join(orphan.where)})")
        for problem in report.unchecked:
            print(f"media-gateway: {problem}", file=sys.stderr)
        print(report.summary())
    return 1 if report.missing else 0
