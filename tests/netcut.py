"""A TCP proxy on 127.0.0.1 whose link can be cut: a real network outage between two real peers.

``with NetCut(target_port) as link:`` forwards every connection to ``127.0.0.1:target_port``;
``link.cut(seconds)`` drops every open connection (reset, no goodbye) and refuses new ones for
``seconds``, then forwards again. It runs its own asyncio loop in a daemon thread, so a test can
use it from any thread, and ``cut`` returns the ``time.monotonic()`` at which the link is back.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time


class NetCut:
    """A cuttable TCP forwarder (see the module docstring)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self._down_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> NetCut:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="netcut")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is None:
            return

        async def close() -> None:
            self._drop_all()
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def cut(self, seconds: float) -> float:
        """Drop every connection now and refuse new ones for ``seconds``; returns when the link
        is back (``time.monotonic()``)."""
        assert self._loop is not None
        self._down_until = time.monotonic() + seconds

        async def drop() -> None:
            self._drop_all()

        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(10)
        return self._down_until

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # a reset, as when a link dies: no FIN handshake
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                                    b"\x00\x00\x00\x00")
                except OSError:
                    pass
            writer.close()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._down_until:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
