"""Workspace live grid sockets: what a fast source costs per socket once frames are throttled.

One ``simulated`` provider streams ``--symbols`` quote streams at ``--rate`` updates/s each. In
the same run, interleaved:

* **reference** - ``--sockets`` bare hub subscriptions drained as fast as possible (no
  projection, no JSON, no throttle): the hub's own cost of delivering the rows;
* **live grid** - the same number of :class:`~nbfeed.server_ext.workspace.live.LiveGridSession`
  objects (what each Workspace socket runs) writing to an in-memory sink: rows are conflated to
  the latest per symbol and sent at most 10 frames/s, each frame projected to the live fields
  and serialized.

Printed per mode: rows the hub delivered per second, frames/s and rows/frame per socket, bytes/s
per socket, and this process's CPU use. The target: a socket's frame rate stays <= 10/s
whatever the upstream rate, and CPU per socket stays well below the reference's per-row cost.

Usage::

    python bench/workspace_live.py                      # 50 symbols x 200/s, 20 sockets, ~20 s
    python bench/workspace_live.py --symbols 10 --window 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from nbfeed.hub import Hub, HubConfig
from nbfeed.intervals import TICK
from nbfeed.providers.registry import resolve_spec
from nbfeed.server_ext.workspace.live import LiveGridSession


async def reference(hub: Hub, symbols: list[str], sockets: int, window: float) -> dict:
    subs = [await hub.subscribe("simulated", symbols, TICK) for _ in range(sockets)]
    rows = 0

    async def drain(sub) -> None:
        nonlocal rows
        async for items in sub:
            rows += sum(len(i.rows) for i in items if hasattr(i, "rows"))

    tasks = [asyncio.ensure_future(drain(s)) for s in subs]
    await asyncio.sleep(0.5)  # warm up: streams started, first bursts through
    rows = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(window)  # the measurement window
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
    for task in tasks:
        task.cancel()
    for sub in subs:
        await sub.close()
    return {"rows_s": rows / elapsed, "cpu": cpu / elapsed, "frames_s": None,
            "rows_frame": None, "bytes_s": None}


async def live(hub: Hub, symbols: list[str], sockets: int, window: float) -> dict:
    sent = {"frames": 0, "rows": 0, "bytes": 0}
    loop = asyncio.get_running_loop()

    def send(frame: bytes):
        sent["frames"] += 1
        sent["rows"] += frame.count(b'"symbol"')
        sent["bytes"] += len(frame)
        done = loop.create_future()
        done.set_result(None)
        return done

    sessions = [LiveGridSession(hub, "simulated", send) for _ in range(sockets)]
    for s in sessions:
        await s.set_symbols(symbols)
    await asyncio.sleep(0.5)
    delivered0 = sum(s.sub.delivered_rows for s in sessions)
    for key in sent:
        sent[key] = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(window)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
    delivered = sum(s.sub.delivered_rows for s in sessions) - delivered0
    for s in sessions:
        await s.close()
    per = sockets * elapsed
    return {"rows_s": delivered / elapsed, "cpu": cpu / elapsed,
            "frames_s": sent["frames"] / per,
            "rows_frame": sent["rows"] / max(1, sent["frames"]),
            "bytes_s": sent["bytes"] / per}


def show(name: str, r: dict) -> None:
    frames = "-" if r["frames_s"] is None else f"{r['frames_s']:.1f}"
    rows_frame = "-" if r["rows_frame"] is None else f"{r['rows_frame']:.1f}"
    bytes_s = "-" if r["bytes_s"] is None else f"{r['bytes_s'] / 1024:.1f} KiB"
    print(f"  {name:<10} hub rows/s {r['rows_s']:>10,.0f}   frames/s/socket {frames:>6}   "
          f"rows/frame {rows_frame:>6}   per socket {bytes_s:>10}/s   CPU {100 * r['cpu']:.0f}%")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as home:
        hub = Hub(HubConfig(home=home, providers=[
            resolve_spec("simulated", None, rate=args.rate)]))
        await hub.start()
        try:
            symbols = [e["name"] for e in hub.catalog.search("", source="simulated",
                                                            limit=args.symbols)]
            print(f"{len(symbols)} symbols x {args.rate}/s, {args.sockets} sockets, "
                  f"{args.window:g} s windows, load {os.getloadavg()[0]:.2f}")
            for n in range(args.rounds):
                print(f"round {n + 1}")
                show("reference", await reference(hub, symbols, args.sockets, args.window))
                show("live grid", await live(hub, symbols, args.sockets, args.window))
        finally:
            await hub.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--sockets", type=int, default=20)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
