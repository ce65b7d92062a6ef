"""Latency the shared feed adds over local mode, at 10k row updates/s.

In one run, rounds interleaved:

* **local** (the reference) - a hub in this process runs the provider in its own child process,
  as a Jupyter server without a bus does; a subscriber measures each row's age on arrival;
* **bus** - the same provider in a feed server process (``python -m nbfeed.bus``) -> Redis ->
  a hub on the bus (``BusClient``) in this process; the same subscriber, the same measurement.

The provider (``bench/_bus_provider.py``) publishes 10 streams x 1,000 rows/s in batches of 10,
each row stamped with the wall time at ``publish``; age = arrival wall time - stamp. Reported:
p50 and p99 of both, and the p99 the bus adds (target <= 10 ms).

Usage::

    python bench/bus_latency.py                 # 3 rounds of 5 s each way, ~1.5 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import numpy as np
from _bus import FeedProcess, Redis, load

from nbfeed.hub import Hub, HubConfig, StreamBatch
from nbfeed.providers.registry import ProviderSpec

TARGET_ADDED_P99_MS = 10.0
SOURCE = "batches"
STREAMS, RATE, BATCH = 10, 1_000, 10  # 10k row updates/s in all
OPTIONS = {"streams": STREAMS, "rate": RATE, "batch": BATCH, "stamp": True}
SYMBOLS = [f"SIM{i:05d}" for i in range(STREAMS)]


async def measure(hub: Hub, seconds: float) -> np.ndarray:
    deadline = time.time() + 60
    while not hub.catalog.lookup(SOURCE, SYMBOLS[-1]):
        assert time.time() < deadline, "no catalog"
        await asyncio.sleep(0.05)
    sub = await hub.subscribe(SOURCE, SYMBOLS, "tick")
    ages: list[float] = []
    warm_until = time.time() + 1.0
    end = warm_until + seconds
    async for items in sub:
        now = time.time()
        if now >= end:
            break
        if now < warm_until:
            continue
        for item in items:
            if type(item) is StreamBatch:
                ages.extend(now - row["sent"] for row in item.rows)
    await sub.close()
    return np.asarray(ages) * 1000


async def local_round(seconds: float) -> np.ndarray:
    with tempfile.TemporaryDirectory() as home:
        spec = ProviderSpec(SOURCE, "_bus_provider:BatchProvider", dict(OPTIONS))
        hub = Hub(HubConfig(home=home, providers=[spec]))
        await hub.start()
        try:
            return await measure(hub, seconds)
        finally:
            await hub.stop()


async def bus_round(seconds: float) -> np.ndarray:
    from nbfeed.bus import BusClient

    redis = Redis()
    home = tempfile.mkdtemp(prefix="nbfeed-bench-")
    feed = FeedProcess(redis.url, [f"{SOURCE}=_bus_provider:BatchProvider"],
                       {f"{SOURCE}.{k}": v for k, v in OPTIONS.items()}, f"{home}/feed")
    try:
        await asyncio.to_thread(feed.wait_owned, redis, SOURCE)
        client = BusClient(redis.url)
        hub = Hub(client.hub_config(home=f"{home}/user"))
        await hub.start()
        try:
            return await measure(hub, seconds)
        finally:
            await hub.stop()
    finally:
        feed.stop()
        redis.stop()


def _pct(values: np.ndarray) -> tuple[float, float]:
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"nbfeed shared-feed latency - {os.cpu_count()} CPUs, load average {load()}")
    print(f"{STREAMS} streams x {RATE:,} rows/s in batches of {BATCH} = "
          f"{STREAMS * RATE:,} updates/s; {args.rounds} rounds of {args.seconds:g} s each way\n")
    added = []
    for k in range(args.rounds):
        local = asyncio.run(local_round(args.seconds))
        bus = asyncio.run(bus_round(args.seconds))
        (l50, l99), (b50, b99) = _pct(local), _pct(bus)
        added.append(b99 - l99)
        print(f"round {k + 1}: local p50 {l50:5.2f} ms p99 {l99:6.2f} ms ({len(local):,} rows)"
              f"   bus p50 {b50:5.2f} ms p99 {b99:6.2f} ms ({len(bus):,} rows)   added p99 "
              f"{b99 - l99:6.2f} ms   load {load()}", flush=True)
    median = float(np.median(added))
    print(f"\np99 added by the bus (median of rounds): {median:.2f} ms (target <= "
          f"{TARGET_ADDED_P99_MS:g} ms): {'OK' if median <= TARGET_ADDED_P99_MS else 'ABOVE'}")


if __name__ == "__main__":
    main()
