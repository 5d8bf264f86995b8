"""A CONNECT proxy on loopback that counts the tunnels it opens.

``ConnectProxy(hosts={"s3.test": "127.0.0.1"})`` answers ``CONNECT host:port`` by
connecting to the host (or what ``hosts`` maps it to) and piping bytes both ways.
``tunnels`` lists each tunnel's ``host:port``; ``sent`` counts the bytes clients sent
through them. Anything but CONNECT gets 405 and is listed in ``refused``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from tests.loopback import LoopbackServer


class ConnectProxy(LoopbackServer):
    def __init__(self, hosts: Mapping[str, str] | None = None) -> None:
        self.hosts = dict(hosts or {})
        self.tunnels: list[str] = []
        self.refused: list[str] = []
        self._sent = [0]
        super().__init__()

    @property
    def sent(self) -> int:
        return self._sent[0]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method != "CONNECT":
            self.refused.append(f"{method} {target}")
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(self.hosts.get(host, host), int(port))
        self.tunnels.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(self.pipe(reader, up_writer, self._sent), self.pipe(up_reader, writer))
