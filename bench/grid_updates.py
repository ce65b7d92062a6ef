"""Kernel cost of a live grid: LiveGrid's coalescing versus one ipydatagrid message per update.

Feeds upstream updates (one update = one symbol's new price) into a 500-row grid and
measures, in the same run:

- kernel CPU per 1,000 updates absorbed (``time.process_time``: all threads, the flush thread
  included; sleeping does not count), and
- comm messages per second the grid sends to the page (counted by replacing the widget's comm,
  the hook ``comm.create_comm`` offers; nothing leaves the process).

Rows:

- ``LiveGrid paced``: the upstream rate the issue asks for (default 20,000/s) from a background
  thread, as a stream would deliver it, with a page showing 30 rows that acknowledges every
  frame at once (a page that draws slower gets fewer frames: ``bench/grid_browser.py``);
- ``LiveGrid flat out``: the same, unpaced - how fast the kernel can absorb;
- ``naive set_cell_value``: ipydatagrid's ``DataGrid.set_cell_value`` once per update, as fast
  as it goes (reference). Its messages/s is what the page would have to take; Jupyter
  drops IOPub traffic above 1,000 msg/s.

Run: ``cd /work/main && python bench/grid_updates.py`` (about 15 s; ``--help`` for options).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import comm
import pandas as pd
from comm.base_comm import BaseComm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = 500
SYMBOLS = [f"S{i:03d}" for i in range(ROWS)]
IOPUB_LIMIT = 1000  # jupyter_server's default iopub_msg_rate_limit, msg/s


class CountingComm(BaseComm):
    """A comm that counts what a widget would publish to the page."""

    messages = 0
    nbytes = 0
    last_frame = 0  # sequence number of the last LiveGrid frame, for the page's acknowledgement

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        CountingComm.messages += 1
        CountingComm.nbytes += sum(len(memoryview(b).cast("B")) for b in buffers or [])
        content = (data or {}).get("content") or {}
        if isinstance(content, dict) and content.get("type") == "frame":
            CountingComm.last_frame = content["seq"]


def make_rows(n: int, start: int = 0) -> list[dict]:
    return [
        {"time": i, "symbol": SYMBOLS[(i * 7) % ROWS], "price": 100 + (i % 9973) * 0.01}
        for i in range(start, start + n)
    ]


def run_livegrid(total: int, rate: float | None, flush_hz: float, batch: int = 100) -> dict:
    from nbfeed.widgets.grid import LiveGrid

    grid = LiveGrid(columns=["symbol", "price"], flush_hz=flush_hz)
    grid.update(make_rows(ROWS))  # the 500 rows exist before the clock starts
    grid.wait(timeout=10)
    def page_says(content: dict) -> None:
        grid.comm.handle_msg({"content": {"data": {"method": "custom", "content": content}},
                              "buffers": []})

    # A page showing rows 0-29 (as grid.js says when it renders), which draws every frame at
    # once: it acknowledges the last frame after each batch.
    page_says({"type": "hello", "first": 0, "last": 29})
    rows = make_rows(total, start=ROWS)
    batches = [rows[i : i + batch] for i in range(0, total, batch)]

    def feed() -> None:
        start = time.monotonic()
        for k, b in enumerate(batches):
            if rate is not None:
                delay = start + k * batch / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            grid.update(b)
            if CountingComm.last_frame:
                page_says({"type": "ack", "seq": CountingComm.last_frame})

    messages0 = CountingComm.messages
    cpu0, wall0 = time.process_time(), time.monotonic()
    feeder = threading.Thread(target=feed)
    feeder.start()
    feeder.join()
    grid.wait(timeout=30)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    messages = CountingComm.messages - messages0
    expected = {r["symbol"]: r["price"] for r in rows}
    prices = grid.frame()["price"]
    final_ok = all(prices[s] == p for s, p in expected.items())
    grid.close()
    return {"updates": total, "cpu": cpu, "wall": wall, "messages": messages, "ok": final_ok}


def run_naive(total: int) -> dict:
    from ipydatagrid import DataGrid

    frame = pd.DataFrame({"price": [100.0] * ROWS}, index=pd.Index(SYMBOLS, name="symbol"))
    grid = DataGrid(frame)
    rows = make_rows(total, start=ROWS)
    messages0 = CountingComm.messages
    cpu0, wall0 = time.process_time(), time.monotonic()
    for row in rows:
        grid.set_cell_value("price", row["symbol"], row["price"])
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    messages = CountingComm.messages - messages0
    grid.close()
    return {"updates": total, "cpu": cpu, "wall": wall, "messages": messages, "ok": True}


def report(name: str, r: dict) -> None:
    per_k = 1000 * r["cpu"] / r["updates"] * 1000
    rate = r["updates"] / r["wall"]
    # A message rate over a window shorter than a second says nothing about a 10 Hz flusher.
    msgs_per_s = f"{r['messages'] / r['wall']:,.1f}" if r["wall"] >= 1 else "(<1 s run)"
    print(f"{name:<26} {r['updates']:>9,} {rate:>12,.0f} {per_k:>14.2f} "
          f"{msgs_per_s:>10} {r['messages']:>9,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20_000, help="paced upstream updates/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="paced run length")
    parser.add_argument("--flat-out", type=int, default=200_000, help="unpaced LiveGrid updates")
    parser.add_argument("--naive", type=int, default=3_000, help="naive set_cell_value updates")
    parser.add_argument("--flush-hz", type=float, default=10.0)
    args = parser.parse_args()

    comm.create_comm = CountingComm
    paced = run_livegrid(int(args.rate * args.seconds), args.rate, args.flush_hz)
    flat = run_livegrid(args.flat_out, None, args.flush_hz)
    naive = run_naive(args.naive)
    if not (paced["ok"] and flat["ok"]):
        raise SystemExit("LiveGrid did not end on the latest values")

    print(f"\n{ROWS}-row grid, update = one symbol's new price; flush_hz="
          f"{args.flush_hz:g}; CPU = kernel process CPU, all threads\n")
    print(f"{'':<26} {'updates':>9} {'updates/s':>12} {'CPU ms/1k upd':>14} "
          f"{'msgs/s':>10} {'msgs':>9}")
    report(f"LiveGrid paced {args.rate / 1000:g}k/s", paced)
    report("LiveGrid flat out", flat)
    report("naive set_cell_value", naive)
    def per_update(r: dict) -> float:
        return r["cpu"] / r["updates"]

    naive_msgs_at_rate = args.rate * naive["messages"] / naive["updates"]
    print(f"\nCPU per update, naive / LiveGrid: {per_update(naive) / per_update(paced):,.0f}x "
          f"paced (flushes included), {per_update(naive) / per_update(flat):,.0f}x flat out "
          "(buffering only: a few flushes)")
    print(f"messages/s at {args.rate:,.0f} updates/s: LiveGrid "
          f"{paced['messages'] / paced['wall']:.1f}, naive would need {naive_msgs_at_rate:,.0f} "
          f"({naive_msgs_at_rate / IOPUB_LIMIT:,.0f}x Jupyter's {IOPUB_LIMIT:,} msg/s IOPub limit)")
    naive_max = naive["updates"] / naive["wall"]
    print(f"naive tops out at {naive_max:,.0f} updates/s on this machine "
          f"({args.rate / naive_max:,.1f}x short of {args.rate:,.0f}/s)")


if __name__ == "__main__":
    main()
