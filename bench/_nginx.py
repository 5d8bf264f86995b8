"""nginx as the reference static server: what a fast, careful deployment would run."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from ._common import HOST, Server, free_port, serve


def available() -> bool:
    return shutil.which("nginx") is not None


@contextlib.contextmanager
def serve_nginx(prefix: Path, *, url: str, root: Path) -> Iterator[Server]:
    """Serve ``root`` at ``url`` with one worker, sendfile and no access log. Every path
    nginx writes (pid, error log, temp files) lies in ``prefix``, which must not exist.

    The worker drops root privileges to ``nobody``, so ``root`` and its parents must be
    world-readable.
    """
    prefix.mkdir()
    port = free_port()
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = prefix / "nginx.conf"
    config.write_text(
        "daemon off;\n"
        "worker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    access_log off;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    default_type application/octet-stream;\n"
        f"{temp_paths}"
        f"    server {{\n        listen {HOST}:{port};\n"
        f"        location {url} {{ alias {root}/; }}\n    }}\n"
        "}\n"
    )
    # -e: nginx opens its compiled-in error log before it has read the config.
    argv = ["nginx", "-p", f"{prefix}/", "-c", str(config), "-e", f"{prefix}/error.log"]
    with serve("nginx", argv, port) as server:
        yield server
