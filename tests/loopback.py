"""A TCP server on 127.0.0.1 with its own event loop in a thread, for proxies in tests.

Subclasses implement ``serve(reader, writer)`` for each connection; ``pipe`` copies
bytes one way. ``close()`` (or leaving a ``with`` block) cancels every connection.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Self


class LoopbackServer:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(5) or self._server is None:
            raise RuntimeError(f"{type(self).__name__} did not start")
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.url: str = f"http://127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @staticmethod
    async def pipe(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        counted: list[int] | None = None,
    ) -> None:
        """Copy ``reader`` to ``writer`` until EOF; add the bytes to ``counted[0]``."""
        try:
            while data := await reader.read(65536):
                if counted is not None:
                    counted[0] += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def _run(self) -> None:
        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self._started.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.serve(reader, writer)
        except (asyncio.CancelledError, asyncio.IncompleteReadError, OSError, ValueError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
