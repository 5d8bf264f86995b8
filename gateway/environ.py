"""Reading variables: the environment over ``.env``, and one parser per kind of value.

Each parser takes the variable's name so that an invalid value is refused with a
:class:`ConfigError` naming it.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from .exceptions import ConfigError

__all__ = ["PARSERS", "forwarded_hosts", "read_environ", "split"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def read_environ(environ: Mapping[str, str] | None, env_file: str | Path | None) -> dict[str, str]:
    """``env_file`` (when it exists) overlaid by ``environ`` (default ``os.environ``)."""
    env: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env


def split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def forwarded_hosts(variable: str, raw: str) -> tuple[str, ...]:
    """``raw`` as uvicorn's ``forwarded_allow_ips``: comma-separated addresses and
    networks, or ``*``. Raises :class:`ConfigError` naming ``variable`` otherwise."""
    hosts = tuple(split(raw))
    for host in hosts:
        if host == "*":
            continue
        try:
            ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ConfigError(
                variable, f"expected addresses or networks like 127.0.0.1,10.0.0.0/8 (got {host!r})"
            ) from None
    if not hosts:
        raise ConfigError(variable, "expected at least one address, network or *")
    return hosts


def _bool(variable: str, raw: str, unit: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(variable, f"expected true or false (got {raw!r})")


def _int(variable: str, raw: str, unit: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(variable, f"expected an integer {unit} (got {raw!r})") from None


def _float(variable: str, raw: str, unit: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(variable, f"expected a number of seconds (got {raw!r})") from None


def _json_object(variable: str, raw: str, unit: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(
            variable,
            f'expected a JSON object like {{"CacheControl": "max-age=86400"}} (got {raw!r})',
        )
    return value


#: How each kind of setting is read from its (stripped, non-empty) text.
PARSERS: dict[str, Callable[[str, str, str], Any]] = {
    "text": lambda variable, raw, unit: raw,
    "lower": lambda variable, raw, unit: raw.lower(),
    "path": lambda variable, raw, unit: Path(raw),
    "list": lambda variable, raw, unit: tuple(split(raw)),
    "hosts": lambda variable, raw, unit: forwarded_hosts(variable, raw),
    "bool": _bool,
    "int": _int,
    "float": _float,
    "json": _json_object,
}
