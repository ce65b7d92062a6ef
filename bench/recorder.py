"""Flight recorder: what recording costs at 100k row updates/s, and how fast replay runs.

Measures, in one run and on the same machine state, each figure beside a reference:

* **recording overhead** - one ``simulated`` provider process publishing ``--streams`` quote
  streams at ``--rate`` updates/s in total (100k by default) into a hub with one live
  subscriber, *with* and *without* a recording of the same streams (rounds interleaved, so load
  from elsewhere hits both alike):

  - CPU of the recording side: the writer thread's own CPU time (from ``/proc``), and the
    whole process's CPU with recording minus without (which adds the hub's cost of handing each
    batch to the recorder's box);
  - bytes per row on disk (part files while recording; merged files after stop) next to the
    bytes per row of the JSON the websocket protocol sends for the same rows;
  - the live subscriber's delivered rows/s and latency (newest row of each burst: receive wall
    time minus the row's time) with and without recording;
  - the live subscriber's capacity (offered ``--saturate`` rows/s, more than the pipeline
    carries) with and without recording;

* **replay throughput at full speed** - the recording made above, played back ``speed="max"``:
  through the hub to an in-process subscriber (no acknowledgements), and through the notebook
  API (``feed.subscribe("replay", ...)``: ordered, acknowledged, to a callback); the reference
  is reading the same files and rebuilding the rows in this process with no hub at all.

Usage::

    python bench/recorder.py                     # 3 rounds of 3 s windows, ~90 s
    python bench/recorder.py --rounds 1 --window 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from nbfeed.hub import Hub, HubConfig, StreamBatch
from nbfeed.jsonfast import dumpb
from nbfeed.providers.registry import ProviderSpec
from nbfeed.recorder.layout import Layout
from nbfeed.recorder.reader import RecordingReader
from nbfeed.recorder.schema import table_to_rows

_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc."""
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


async def live_run(home: str, streams: int, rate: float, window: float, record: bool,
                   name: str = "bench") -> dict:
    """One window of the live pipeline, with or without a recording of the same streams."""
    spec = ProviderSpec("simulated", "nbfeed.providers.simulated:SimulatedProvider",
                        {"rate": rate / streams, "universe_size": streams})
    hub = Hub(HubConfig(home=home, providers=[spec], populate_on_start=True))
    await hub.start()
    try:
        names = [f"SIM{i:05d}" for i in range(streams)]
        sub = await hub.subscribe("simulated", names, "tick")
        counts = {"rows": 0}
        latencies: list[float] = []

        async def consume() -> None:
            async for items in sub:
                now = time.time() * 1000
                for item in items:
                    if type(item) is StreamBatch:
                        counts["rows"] += len(item.rows)
                        latencies.append(now - item.rows[-1]["time"])

        lags: list[float] = []

        async def probe() -> None:  # how late the hub's loop wakes for a 1 ms timer
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append((time.perf_counter() - t - 0.001) * 1000)

        task = asyncio.ensure_future(consume())
        prober = asyncio.ensure_future(probe())
        if record:
            await hub.recordings.start(name, [("simulated", names, "tick")])
        await asyncio.sleep(1.0)  # warm-up: streams flowing, first parts written
        recorder = hub.recordings._live[name].recorder if record else None
        tid = recorder._thread.native_id if recorder is not None else None
        writer0 = thread_cpu(tid) if tid else 0.0
        rows0, lat0, conflated0 = counts["rows"], len(latencies), hub.stats()["conflated_rows"]
        lag0 = len(lags)
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        elapsed = time.perf_counter() - t0
        out = {"rows_s": (counts["rows"] - rows0) / elapsed,
               "cpu": (time.process_time() - cpu0) / elapsed,
               "writer_cpu": ((thread_cpu(tid) - writer0) / elapsed) if tid else 0.0,
               "latency": np.asarray(latencies[lat0:]),
               "loop_lag": np.asarray(lags[lag0:]),
               "conflated_s": (hub.stats()["conflated_rows"] - conflated0) / elapsed}
        if record:
            live = recorder.info()
            out["part_bytes_per_row"] = live["bytes"] / max(1, live["rows"])
            info = await hub.recordings.stop(name)
            out["rows_recorded"] = info["rows"]
            out["lost_rows"] = info["lost_rows"]
            out["merged_bytes_per_row"] = info["bytes"] / max(1, info["rows"])
        task.cancel()
        prober.cancel()
        await sub.close()
        return out
    finally:
        await hub.stop()


def json_bytes_per_row(home: str, name: str) -> float:
    """Bytes per row of the JSON the websocket protocol would send for the recorded rows."""
    reader = RecordingReader(Layout(home), name)
    table = next(reader.tables())
    rows = table_to_rows(table.slice(0, 20_000), reader.json_columns).rows
    return len(dumpb(rows)) / len(rows)


def reference_read(home: str, name: str) -> float:
    """Rows/s: read the recording and rebuild its rows in this process (no hub)."""
    reader = RecordingReader(Layout(home), name)
    n = 0
    t0 = time.perf_counter()
    for table in reader.tables():
        n += len(table_to_rows(table, reader.json_columns).rows)
    return n / (time.perf_counter() - t0)


async def replay_through_hub(home: str, name: str, symbols: list[str], total: int) -> dict:
    """Rows/s through provider process -> hub -> an in-process subscriber, speed max."""
    hub = Hub(HubConfig(home=home, providers=[]))
    await hub.start()
    try:
        sub = await hub.subscribe("replay", symbols, "tick",
                                  options={"recording": name, "speed": "max"})
        n, t0 = 0, None
        async for items in sub:
            for item in items:
                if type(item) is StreamBatch:
                    if t0 is None:
                        t0 = time.perf_counter()
                    n += len(item.rows)
            if n + hub.stats()["conflated_rows"] >= total:
                break
        elapsed = time.perf_counter() - (t0 or time.perf_counter())
        return {"rows_s": n / max(elapsed, 1e-9), "delivered": n,
                "conflated": hub.stats()["conflated_rows"]}
    finally:
        await hub.stop()


def replay_through_feed(home: str, name: str, symbols: list[str]) -> dict:
    """Rows/s through the notebook API: ordered, acknowledged, to a callback."""
    import nbfeed

    with nbfeed.connect(embedded=True, home=home, providers=[]) as feed:
        stream = feed.subscribe("replay", symbols, recording=name, speed="max", paused=True)
        counted = {"n": 0, "t0": None}
        lock = threading.Lock()

        def count(rows: list[dict]) -> None:
            with lock:
                if counted["t0"] is None:
                    counted["t0"] = time.perf_counter()
                counted["n"] += len(rows)

        stream.on_update(count)
        stream.resume()
        if not stream.wait(600):
            raise RuntimeError("the replay did not finish")
        elapsed = time.perf_counter() - counted["t0"]
        stream.close()
        return {"rows_s": counted["n"] / elapsed, "delivered": counted["n"]}


def _med(values: list[float]) -> float:
    return float(np.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rate", type=float, default=100_000,
                        help="row updates/s offered in total (default 100k)")
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--saturate", type=float, default=1_000_000,
                        help="row updates/s offered for the capacity runs")
    args = parser.parse_args()
    print(f"nbfeed flight recorder - {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"offered: {args.streams} simulated quote streams, {args.rate:,.0f} row updates/s "
          f"in total; {args.rounds} rounds of {args.window:g} s windows, with and without a "
          "recording, interleaved\n")
    with tempfile.TemporaryDirectory() as home:
        plain: list[dict] = []
        recorded: list[dict] = []
        cap_plain: list[float] = []
        cap_rec: list[float] = []
        for r in range(args.rounds):
            plain.append(asyncio.run(live_run(home, args.streams, args.rate, args.window,
                                              False)))
            recorded.append(asyncio.run(live_run(home, args.streams, args.rate, args.window,
                                                 True, name=f"bench{r}")))
            cap_plain.append(asyncio.run(live_run(home, args.streams, args.saturate,
                                                  args.window, False))["rows_s"])
            cap_rec.append(asyncio.run(live_run(home, args.streams, args.saturate,
                                                args.window, True,
                                                name=f"cap{r}"))["rows_s"])
        name = f"bench{args.rounds - 1}"
        json_row = json_bytes_per_row(home, name)

        def lat(runs: list[dict]) -> str:
            values = np.concatenate([x["latency"] for x in runs])
            p50, p99 = np.percentile(values, [50, 99])
            return f"p50 {p50:5.1f} ms  p99 {p99:6.1f} ms"

        def loop_lag(runs: list[dict]) -> str:
            values = np.concatenate([x["loop_lag"] for x in runs])
            p50, p99 = np.percentile(values, [50, 99])
            return f"p50 {p50:5.2f} ms  p99 {p99:6.2f} ms"

        print("recording at the offered rate (median of rounds)")
        print(f"  live subscriber, without recording   {_med([x['rows_s'] for x in plain]):>10,.0f}"
              f" rows/s   latency {lat(plain)}")
        print(f"  live subscriber, with recording      "
              f"{_med([x['rows_s'] for x in recorded]):>10,.0f} rows/s   latency {lat(recorded)}")
        print(f"  hub loop lateness (1 ms timer), without recording   {loop_lag(plain)}")
        print(f"  hub loop lateness (1 ms timer), with recording      {loop_lag(recorded)}")
        print(f"  rows recorded per round              "
              f"{_med([x['rows_recorded'] for x in recorded]):>10,.0f}   lost: "
              f"{sum(x['lost_rows'] for x in recorded)}")
        cpu_plain = _med([x["cpu"] for x in plain])
        cpu_rec = _med([x["cpu"] for x in recorded])
        print(f"  hub process CPU, without recording   {cpu_plain * 100:>9.1f} % of a core")
        print(f"  hub process CPU, with recording      {cpu_rec * 100:>9.1f} % of a core "
              f"(+{(cpu_rec - cpu_plain) * 100:.1f})")
        print(f"  recorder writer thread alone         "
              f"{_med([x['writer_cpu'] for x in recorded]) * 100:>9.1f} % of a core = "
              f"{_med([x['writer_cpu'] / max(1, x['rows_s']) * 1e6 for x in recorded]):.2f} us"
              " CPU per row")
        print(f"  bytes per row: part files (zstd)     "
              f"{_med([x['part_bytes_per_row'] for x in recorded]):>10.1f}")
        print(f"  bytes per row: merged files          "
              f"{_med([x['merged_bytes_per_row'] for x in recorded]):>10.1f}")
        print(f"  bytes per row: websocket JSON rows   {json_row:>10.1f}   (reference)")
        print(f"\ncapacity: {args.saturate:,.0f} row updates/s offered (more than the pipeline "
              "carries)")
        print(f"  live subscriber, without recording   {_med(cap_plain):>10,.0f} rows/s "
              f"(best {max(cap_plain):,.0f})")
        print(f"  live subscriber, with recording      {_med(cap_rec):>10,.0f} rows/s "
              f"(best {max(cap_rec):,.0f})")

        total = _med([x["rows_recorded"] for x in recorded])
        info_rows = int(RecordingReader(Layout(home), name).manifest.get("rows") or total)
        symbols = [f"SIM{i:05d}" for i in range(args.streams)]
        ref = [reference_read(home, name) for _ in range(args.rounds)]
        hub_runs = [asyncio.run(replay_through_hub(home, name, symbols, info_rows))
                    for _ in range(args.rounds)]
        feed_runs = [replay_through_feed(home, name, symbols) for _ in range(args.rounds)]
        print(f"\nreplay at full speed ({info_rows:,} recorded rows)")
        print(f"  reference: read files + rebuild rows {_med(ref):>10,.0f} rows/s   "
              "(in this process, no hub: the player's own share of the work)")
        print(f"  provider -> hub -> subscriber        "
              f"{_med([x['rows_s'] for x in hub_runs]):>10,.0f} rows/s   (conflated by a slow "
              f"reader: {max(x['conflated'] for x in hub_runs):,})")
        print(f"  feed.subscribe('replay', speed='max') "
              f"{_med([x['rows_s'] for x in feed_runs]):>9,.0f} rows/s   ordered, acknowledged,"
              f" {min(x['delivered'] for x in feed_runs):,} of {info_rows:,} rows delivered")
    print(f"\nload average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
