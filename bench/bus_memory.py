"""Redis memory with 1,000 live streams, held for 5 minutes: bounded, not growing.

A feed server (``python -m nbfeed.bus``, default ``--stream-length 200``) serves 1,000 streams of
the benchmark provider (``bench/_bus_provider.py``: 5 rows/s each, one row per entry, so 5,000
updates/s and every stream fills its ``MAXLEN ~`` window within a minute); a hub on the bus in
this process subscribes to all of them, so they are demanded and read the whole time. Every 10 s
the run samples Redis's ``used_memory``, its key count and the longest stream.

The reference is the run itself: memory once every stream is full (the mean of minute 2) against
the last minute. Target: the last minute within 10 % of minute 2, and no upward trend.

Usage::

    python bench/bus_memory.py                 # 5 minutes (plus ~30 s to start)
    python bench/bus_memory.py --minutes 1     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

from _bus import FeedProcess, Redis, load

from nbfeed.hub import Hub, StreamBatch

SOURCE = "batches"
STREAMS = 1_000
TARGET_GROWTH = 0.10


async def run(minutes: float, length: int) -> list[dict]:
    from nbfeed.bus import BusClient

    redis = Redis()
    home = tempfile.mkdtemp(prefix="nbfeed-bench-")
    feed = FeedProcess(redis.url, [f"{SOURCE}=_bus_provider:BatchProvider"],
                       {f"{SOURCE}.streams": STREAMS, f"{SOURCE}.rate": 5,
                        f"{SOURCE}.batch": 1}, f"{home}/feed",
                       ["--stream-length", str(length)])
    admin = redis.client()
    samples: list[dict] = []
    try:
        await asyncio.to_thread(feed.wait_owned, redis, SOURCE)
        hub = Hub(BusClient(redis.url).hub_config(home=f"{home}/user",
                                                  max_symbols_per_subscription=STREAMS))
        await hub.start()
        try:
            while not hub.catalog.lookup(SOURCE, f"SIM{STREAMS - 1:05d}"):
                await asyncio.sleep(0.1)
            sub = await hub.subscribe(SOURCE, [f"SIM{i:05d}" for i in range(STREAMS)])
            received = {"rows": 0}

            def take(items: list) -> None:
                for item in items:
                    if type(item) is StreamBatch:
                        received["rows"] += len(item.rows)

            sub.on_batch(take)
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) <= minutes * 60:
                memory = admin.info("memory")
                keys = admin.dbsize()
                longest = max(admin.xlen(f"nbfeed:data:{SOURCE}:tick:SIM{i:05d}")
                              for i in range(0, STREAMS, 50))
                samples.append({"t": elapsed, "used": memory["used_memory"],
                                "rss": memory["used_memory_rss"], "keys": keys,
                                "longest": longest, "rows": received["rows"]})
                print(f"{elapsed:6.0f} s  used_memory {memory['used_memory'] / 2**20:7.1f} MB  "
                      f"rss {memory['used_memory_rss'] / 2**20:7.1f} MB  keys {keys:5d}  "
                      f"longest stream {longest:4d} entries  rows read {received['rows']:,}"
                      f"  load {load()}", flush=True)
                await asyncio.sleep(10)
        finally:
            await hub.stop()
    finally:
        feed.stop()
        admin.close()
        redis.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--stream-length", type=int, default=200)
    args = parser.parse_args()
    print(f"nbfeed shared-feed memory - {os.cpu_count()} CPUs, load average {load()}")
    print(f"{STREAMS:,} streams x 5 rows/s, MAXLEN ~{args.stream_length}, "
          f"{args.minutes:g} minutes\n")
    started = time.monotonic()
    samples = asyncio.run(run(args.minutes, args.stream_length))
    full = ([s["used"] for s in samples if 60 <= s["t"] < 120]
            or [samples[len(samples) // 2]["used"]])
    last = [s["used"] for s in samples if s["t"] >= samples[-1]["t"] - 60]
    growth = statistics.mean(last) / statistics.mean(full) - 1
    peak = max(s["used"] for s in samples)
    print(f"\nused_memory: minute 2 mean {statistics.mean(full) / 2**20:.1f} MB, last minute mean "
          f"{statistics.mean(last) / 2**20:.1f} MB ({growth:+.1%}), peak {peak / 2**20:.1f} MB; "
          f"{samples[-1]['rows'] / samples[-1]['t']:,.0f} rows/s read")
    print(f"stable within {TARGET_GROWTH:.0%}: {'OK' if abs(growth) <= TARGET_GROWTH else 'NO'}"
          f"   (took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
