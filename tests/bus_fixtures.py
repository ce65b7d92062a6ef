"""Fixtures for the shared-feed tests: a real redis-server, feed servers and hubs on the bus.

:class:`BusWorld` starts, in the test's own event loop, feed servers (real provider processes of
:class:`tests.bus_test_providers.ListingProvider`, recording every hook call to a file) and hubs
whose sources come from the bus, all on one private redis-server; at teardown everything is
stopped and no provider process may be left running.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from nbfeed.bus import BusClient, FeedServer
from nbfeed.hub import Hub, HubConfig, StreamBatch, Subscription
from nbfeed.providers.registry import ProviderSpec, resolve_spec
from tests.redis_server import RedisServer

SOURCE = "listing"
SYMBOLS = [f"S{i:02d}" for i in range(50)]
PROVIDER = "tests.bus_test_providers:ListingProvider"


def _runtime_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) provider process."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return b"nbfeed.providers.runtime" in cmdline and "\nState:\tZ" not in status


async def until(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``pred`` (state that changes in other processes and in Redis) until truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert loop.time() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        await asyncio.sleep(0.05)


class Collector:
    """Everything a subscription delivers: rows per symbol, and status/error events."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.rows: dict[str, list[dict]] = {}
        self.events: list[dict] = []
        sub.on_batch(self._take)

    def _take(self, items: list[Any]) -> None:
        for item in items:
            if isinstance(item, StreamBatch):
                self.rows.setdefault(item.symbol, []).extend(item.rows)
            else:
                self.events.append(item)

    def count(self, symbol: str | None = None) -> int:
        if symbol is not None:
            return len(self.rows.get(symbol, []))
        return sum(len(r) for r in self.rows.values())

    def states(self) -> list[str]:
        return [e.get("state") for e in self.events if e.get("type") == "status"]

    def source_states(self) -> list[str]:
        """The source's states only (running, restarting...), without the per-symbol ones
        (live, stale), which may follow a source's "running" when its rows resume late."""
        return [e.get("state") for e in self.events
                if e.get("type") == "status" and "symbol" not in e]


class BusWorld:
    """Feed servers and hubs on one redis-server (module docstring)."""

    def __init__(self, tmp: Path, redis: RedisServer) -> None:
        self.tmp = tmp
        self.redis = redis
        self.record = tmp / "calls.jsonl"
        self.listing = tmp / "listing.txt"
        self.feeds: list[FeedServer] = []
        self.hubs: list[Hub] = []
        self.pids: set[int] = set()

    def spec(self, **options: Any) -> ProviderSpec:
        options = {"record": str(self.record), "symbols": [*SYMBOLS, "HANG1"],
                   "period": 0.02, "listing": str(self.listing), **options}
        return resolve_spec(SOURCE, PROVIDER, **options)

    async def feed(self, *, url: str | None = None, specs: list[ProviderSpec] | None = None,
                   lease_ttl: float = 3.0, **kw: Any) -> FeedServer:
        n = len(self.feeds)
        config = HubConfig(home=self.tmp / f"feed{n}", providers=specs or [self.spec()],
                           backoff_base=0.05, request_timeout=kw.pop("request_timeout", 30.0))
        feed = FeedServer(url or self.redis.url, config, lease_ttl=lease_ttl,
                          feed_id=f"feed{n}", **kw)
        self.feeds.append(feed)
        await feed.start()
        return feed

    async def hub(self, *, url: str | None = None, lease_ttl: float = 3.0,
                  wait: bool = True, **config: Any) -> Hub:
        n = len(self.hubs)
        client = BusClient(url or self.redis.url, lease_ttl=lease_ttl, server_id=f"user{n}")
        config.setdefault("request_timeout", 10.0)
        hub = Hub(client.hub_config(home=self.tmp / f"user{n}", **config))
        self.hubs.append(hub)
        await hub.start()
        if wait:
            await until(lambda: hub.catalog.lookup(SOURCE, "S00"), 30,
                        "the catalog to reach the user hub")
        return hub

    def note_pids(self) -> None:
        for feed in self.feeds:
            for source in feed.leased.values():
                if source.inner.pid:
                    self.pids.add(source.inner.pid)

    def calls(self, hook: str | None = None) -> list[dict]:
        try:
            lines = self.record.read_text().splitlines()
        except FileNotFoundError:
            return []
        calls = [json.loads(line) for line in lines if line.strip()]
        return [c for c in calls if hook is None or c["hook"] == hook]

    def streamed(self) -> list[str]:
        """Symbols the provider was asked to start (``subscribe`` hook), in order."""
        return [c["args"][0] for c in self.calls("subscribe")]

    async def close(self) -> None:
        self.note_pids()
        for hub in self.hubs:
            await hub.stop()
        for feed in self.feeds:
            await feed.stop()


def redis_keys(server: RedisServer, pattern: str = "nbfeed:*") -> dict[str, int]:
    """Every key matching ``pattern`` and its TTL in ms (-1: none), read with redis-py."""
    import redis

    client = redis.Redis.from_url(server.url)
    try:
        return {k.decode(): client.pttl(k) for k in client.scan_iter(match=pattern)}
    finally:
        client.close()


@pytest_asyncio.fixture
async def bus_world(tmp_path, redis_server):
    world = BusWorld(tmp_path, redis_server)
    try:
        yield world
    finally:
        await world.close()
    leaked = [pid for pid in world.pids if _runtime_alive(pid)]
    assert not leaked, f"provider processes still running: {leaked}"
