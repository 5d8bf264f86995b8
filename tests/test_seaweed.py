"""The SeaweedFS fixture (tests/seaweed.py) is a cluster on loopback that checks
signatures; what it answers as S3 is tested with rclone's in test_s3server.py (item 67)."""

from __future__ import annotations

from tests.s3server import S3Server
from tests.seaweed import listening


def test_listens_on_loopback_only(seaweed_server: S3Server) -> None:
    """The cluster's five processes listen on 127.0.0.1 only, an HTTP and a gRPC port
    each: no Iceberg or Lance listener, no metrics, debug or public port."""
    addresses = listening(seaweed_server.pids)
    assert {host for host, _ in addresses} == {"127.0.0.1"}
    assert len(addresses) == 10, sorted(addresses)
    port = int(seaweed_server.endpoint_url.rsplit(":", 1)[1])
    assert ("127.0.0.1", port) in addresses
