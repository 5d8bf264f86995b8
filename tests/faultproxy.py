"""A TCP proxy on loopback that injects faults between the gateway and S3.

``FaultProxy(upstream_port)`` forwards bytes both ways; set ``mode`` at any time:
``pass``, ``delay`` (wait ``delay`` seconds before connecting upstream), ``drop``
(accept and never answer) or ``reset`` (accept, then reset the connection).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Literal

from tests.loopback import LoopbackServer

Mode = Literal["pass", "delay", "drop", "reset"]


class FaultProxy(LoopbackServer):
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.connections = 0
        super().__init__()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if self.mode == "drop":
            await asyncio.sleep(3600)
        if self.mode == "delay":
            await asyncio.sleep(self.delay)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))
