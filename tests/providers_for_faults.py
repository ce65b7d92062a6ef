"""Provider classes and observers for the fault tests (hung providers, churn, bystanders).

The classes run in real provider processes (shipped by reference, like any packaged provider).
:class:`Bystander` (a hub subscription) and :class:`WireBystander` (a socket of a real server)
watch a stream that has nothing to do with a fault and measure the longest gap between two
deliveries, the figure every fault scenario must keep under a second.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from tests.providers_for_tests import RecordingProvider
from tests.server_fixtures import WireClient


class HangingHookProvider(RecordingProvider):
    """A RecordingProvider whose hooks block for the symbols of option ``hang`` (forever) and
    ``slow`` (``slow_seconds`` each, default 1.5), while its other streams keep publishing."""

    name = "hanging"

    def start_streaming(self, client: Any, symbol: str, interval: str) -> None:
        if symbol in self.options.get("hang", ()):
            self._record("hang", symbol, interval)
            threading.Event().wait()  # a deadlock: never returns
        if symbol in self.options.get("slow", ()):
            time.sleep(float(self.options.get("slow_seconds", 1.5)))
        super().start_streaming(client, symbol, interval)


class Bystander:
    """Reads a hub :class:`~nbfeed.hub.Subscription` (or any async ``get()`` of deliveries)
    in a task and records when each delivery arrived; :meth:`max_gap` is the longest silence."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub
        self.arrivals: list[float] = []
        self.rows = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                items = await self.sub.get()
            except EOFError:  # the subscription was closed (the hub stopped)
                return
            if any(getattr(item, "rows", None) for item in items):
                self.arrivals.append(time.monotonic())
                self.rows += sum(len(getattr(item, "rows", ())) for item in items)

    async def flowing(self, timeout: float = 30.0) -> None:
        """Wait until rows arrive, and start measuring from there."""
        deadline = time.monotonic() + timeout
        while not self.arrivals:
            assert time.monotonic() < deadline, "the bystander stream never started"
            await asyncio.sleep(0.05)
        self.arrivals = self.arrivals[-1:]

    def max_gap(self) -> float:
        """The longest time between two deliveries, up to now (now counts as an arrival)."""
        times = [*self.arrivals, time.monotonic()]
        return max(b - a for a, b in zip(times, times[1:]))

    def stop(self) -> None:
        self._task.cancel()


class WireBystander:
    """A socket subscribed to ``counting``/``A`` whose frames are read in a task; records when
    each ``data_update`` arrived."""

    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.arrivals: list[float] = []
        self._task = asyncio.ensure_future(self._run())

    @classmethod
    async def open(cls, jp_ws_fetch, source: str = "counting", symbol: str = "A"):
        client = await WireClient.open(jp_ws_fetch)
        await client.request({"type": "subscribe", "id": "by", "source": source,
                              "symbols": [symbol]})
        await client.until(lambda f: f["type"] == "data_update")
        self = cls(client)
        await asyncio.sleep(0.3)
        return self

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.client.recv(timeout=3600)
            except AssertionError:  # the socket closed (the server stops after the test):
                return  # no more arrivals, so max_gap() shows it as a gap growing from now
            if frame["type"] == "data_update":
                self.arrivals.append(time.monotonic())
            self.client.frames.clear()

    def max_gap(self) -> float:
        times = [*self.arrivals, time.monotonic()]
        return max(b - a for a, b in zip(times, times[1:]))

    def close(self) -> None:
        self._task.cancel()
        self.client.close()
