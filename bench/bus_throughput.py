"""Shared-feed throughput: row updates/s delivered through Redis to 10 consumer processes.

Measured in one run, on one private redis-server, with the same client library (redis-py's
asyncio client) on both sides:

* **reference** - a bare Redis pipeline of the same batches: one process ``XADD``s batches of
  quote rows (JSON, ``MAXLEN ~``) to each stream in pipelines, offering the same rows/s as the
  feed's provider; 10 processes ``XREAD BLOCK`` every stream and decode each entry's rows. No
  hub, no demand, no fan-out: the ceiling of moving these batches through Redis with this client
  on this machine;
* **nbfeed** - a feed server process (``python -m nbfeed.bus``) whose provider publishes the
  reference's own quote batches (``bench/_bus_provider.py``, so neither side pays for making
  rows) -> Redis -> 10 consumer processes, each a hub on the bus (``BusClient``) subscribed to
  every stream, counting the rows its subscription delivers.

By default the offer (10 streams x 10k updates/s in batches of 50) is more than 10 consumers can
take on a small machine, so both figures are capacities; ``--batch 10 --rate 2000`` shows small
batches. Every consumer counts rows over the same wall
clock window; the total over the 10 is reported. The reference uses batches of the size the feed
server wrote in the round before (rows per Redis entry, printed). Target: nbfeed >= 60 % of the
reference.

Usage::

    python bench/bus_throughput.py                 # 3 rounds, ~2 minutes
    python bench/bus_throughput.py --rounds 1      # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _bus import FeedProcess, Redis, load
from _bus_provider import sample_batches

TARGET = 0.60
CONSUMERS = 10
SOURCE = "batches"
PROVIDER = f"{SOURCE}=_bus_provider:BatchProvider"


# ---- roles (each its own process) -----------------------------------------------------------


async def bare_producer(url: str, streams: int, batch: int, length: int, rate: float) -> None:
    """Pipelines of one batch per stream, at ``rate`` rows/s per stream (the feed's offer)."""
    import orjson
    import redis.asyncio as aioredis

    batches = sample_batches(streams, batch)
    keys = [f"bench:data:{i}" for i in range(streams)]
    client = aioredis.Redis.from_url(url)
    period = batch / rate
    next_at = time.perf_counter()
    while True:
        pipe = client.pipeline(transaction=False)
        for key, rows in zip(keys, batches):
            pipe.xadd(key, {"r": orjson.dumps(rows)}, maxlen=length, approximate=True)
        await pipe.execute()
        next_at += period
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.25:
            next_at = time.perf_counter()  # far behind: this is its capacity


async def _start_time() -> float:
    """Say ready on stdout, then read the common start time the orchestrator sends."""
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return float(line)


async def bare_consumer(url: str, streams: int, window: float) -> dict:
    import orjson
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    ids: dict[str, bytes] = {}
    for i in range(streams):
        last = await client.xrevrange(f"bench:data:{i}", "+", "-", count=1)
        ids[f"bench:data:{i}"] = last[0][0] if last else b"0-0"
    await client.xread(ids, count=1, block=5000)  # the producer is sending
    start = await _start_time()
    rows = 0
    end = start + window
    cpu = None
    while True:
        reply = await client.xread(ids, count=1000, block=100)
        now = time.time()
        if cpu is None and now >= start:
            cpu = time.process_time()
        for key, entries in reply or []:
            ids[key.decode()] = entries[-1][0]
            n = 0
            for _id, fields in entries:
                n += len(orjson.loads(fields[b"r"]))
            if start <= now < end:
                rows += n
        if now >= end:
            break
    cpu = time.process_time() - (cpu or time.process_time())
    await client.aclose()
    return {"rows": rows, "cpu": cpu}


async def bus_consumer(url: str, streams: int, window: float, home: str) -> dict:
    from nbfeed.bus import BusClient
    from nbfeed.hub import Hub, StreamBatch

    client = BusClient(url)
    hub = Hub(client.hub_config(home=home))
    await hub.start()
    try:
        deadline = time.time() + 60
        while not hub.catalog.lookup(SOURCE, f"SIM{streams - 1:05d}"):
            assert time.time() < deadline, "no catalog"
            await asyncio.sleep(0.05)
        sub = await hub.subscribe(SOURCE, [f"SIM{i:05d}" for i in range(streams)])
        counted: dict = {"rows": 0}
        flowing = asyncio.Event()
        start = end = float("inf")

        def take(items: list) -> None:
            flowing.set()
            now = time.time()
            if start <= now < end:
                for item in items:
                    if type(item) is StreamBatch:
                        counted["rows"] += len(item.rows)

        sub.on_batch(take)
        await flowing.wait()
        start = await _start_time()
        end = start + window
        loop = asyncio.get_running_loop()
        loop.call_at(loop.time() + max(0.0, start - time.time()),
                     lambda: counted.__setitem__("cpu0", time.process_time()))
        await asyncio.sleep(max(0.0, end - time.time()))
        counted["cpu"] = time.process_time() - counted.get("cpu0", time.process_time())
        counted["conflated"] = hub.stats()["conflated_rows"]
        return counted
    finally:
        await hub.stop()


# ---- orchestration --------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _run_consumers(procs: list[subprocess.Popen], window: float) -> list[dict]:
    """Wait until every consumer receives rows, start their windows together, collect."""
    for proc in procs:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"a consumer failed before it was ready: {line!r}")
    start = time.time() + 0.5
    for proc in procs:
        proc.stdin.write(f"{start}\n")
        proc.stdin.flush()
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=window + 60)
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _rows_per_entry(redis: Redis, streams: int) -> float:
    import orjson

    client = redis.client()
    sizes = []
    for i in range(streams):
        for _id, fields in client.xrevrange(f"nbfeed:data:{SOURCE}:tick:SIM{i:05d}",
                                            count=200):
            if b"r" in fields:
                sizes.append(len(orjson.loads(fields[b"r"])))
    client.close()
    return statistics.mean(sizes) if sizes else 1.0


def args_consumers() -> int:
    return int(os.environ.get("NBFEED_BENCH_CONSUMERS", CONSUMERS))


def _us_per_row(results: list[dict]) -> float:
    rows = sum(r["rows"] for r in results)
    return sum(r["cpu"] for r in results) / rows * 1e6 if rows else float("nan")


def nbfeed_round(streams: int, rate: float, batch: int, window: float,
                 length: int) -> tuple[float, float, float]:
    redis = Redis()
    home = tempfile.mkdtemp(prefix="nbfeed-bench-")
    feed = FeedProcess(redis.url, [PROVIDER], {
        f"{SOURCE}.rate": rate, f"{SOURCE}.streams": streams, f"{SOURCE}.batch": batch},
        f"{home}/feed", ["--stream-length", str(length)])
    try:
        feed.wait_owned(redis, SOURCE)
        consumers = [_spawn("--role", "bus-consumer", "--url", redis.url, "--streams",
                            str(streams), "--window", str(window), "--home", f"{home}/c{k}")
                     for k in range(args_consumers())]
        results = _run_consumers(consumers, window)
        per_entry = _rows_per_entry(redis, streams)
    finally:
        feed.stop()
        redis.stop()
    conflated = sum(r.get("conflated", 0) for r in results)
    if conflated:
        print(f"  (nbfeed consumers conflated {conflated:,} rows: they fell behind)")
    return sum(r["rows"] for r in results) / window, per_entry, _us_per_row(results)


def reference_round(streams: int, batch: int, window: float, length: int,
                    rate: float) -> float:
    redis = Redis()
    try:
        producer = _spawn("--role", "bare-producer", "--url", redis.url, "--streams",
                          str(streams), "--batch", str(batch), "--length", str(length),
                          "--rate", str(rate))
        consumers = [_spawn("--role", "bare-consumer", "--url", redis.url, "--streams",
                            str(streams), "--window", str(window))
                     for _ in range(args_consumers())]
        results = _run_consumers(consumers, window)
        producer.kill()
        producer.wait(10)
    finally:
        redis.stop()
    return sum(r["rows"] for r in results) / window, _us_per_row(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", default="main")
    parser.add_argument("--url")
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50, help="rows per provider batch")
    parser.add_argument("--length", type=int, default=1000,
                        help="MAXLEN ~ of every stream, both sides")
    parser.add_argument("--rate", type=float, default=10_000,
                        help="updates/s per stream offered (the provider, and the reference)")
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--home")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.role == "bare-producer":
        asyncio.run(bare_producer(args.url, args.streams, args.batch, args.length, args.rate))
        return
    if args.role == "bare-consumer":
        print(json.dumps(asyncio.run(bare_consumer(args.url, args.streams, args.window))))
        return
    if args.role == "bus-consumer":
        print(json.dumps(asyncio.run(bus_consumer(args.url, args.streams, args.window,
                                                  args.home))))
        return

    print(f"nbfeed shared-feed throughput - {os.cpu_count()} CPUs, load average {load()}")
    print(f"{args.streams} streams, {CONSUMERS} consumer processes each reading all of them, "
          f"MAXLEN ~{args.length}; {args.rounds} rounds of {args.window:g} s\n")
    ours, refs = [], []
    for k in range(args.rounds):
        delivered, per_entry, our_cpu = nbfeed_round(args.streams, args.rate, args.batch,
                                                     args.window, args.length)
        batch = max(1, round(per_entry))
        reference, ref_cpu = reference_round(args.streams, batch, args.window, args.length,
                                             args.rate)
        ours.append(delivered)
        refs.append(reference)
        print(f"round {k + 1}: nbfeed {delivered:>11,.0f} rows/s   bare pipeline "
              f"{reference:>11,.0f} rows/s   ({delivered / reference:.0%}; {per_entry:.1f} "
              f"rows per entry; consumer CPU {our_cpu:.2f} vs {ref_cpu:.2f} us/row)   "
              f"load {load()}", flush=True)
    ratio = statistics.median(o / r for o, r in zip(ours, refs))
    print(f"\nnbfeed through Redis to {CONSUMERS} consumers: median "
          f"{statistics.median(ours):,.0f} rows/s; bare XADD/XREAD pipeline: "
          f"{statistics.median(refs):,.0f} rows/s")
    print(f"ratio {ratio:.0%} (target >= {TARGET:.0%}): {'OK' if ratio >= TARGET else 'BELOW'}")


if __name__ == "__main__":
    main()
