"""How many rows a LiveChart absorbs and how few messages it sends, next to one message per row.

Part 1 (in process, no kernel): rows/s through ``LiveChart.update`` one row per call and 1,000 per
call, and the cost of encoding a one-bar delta and a full snapshot.

Part 2 (a real kernel over ZMQ, as a notebook has): a thread in the kernel feeds ``--rows`` candle
rows as fast as it can; this script, playing the front end, counts the comm messages that reach
it and the time until the last row's close is visible. The reference, in the same run, is the
naive approach: the same kernel sends one comm message per row (``widget.send``) for
``--naive-rows`` rows. (Through jupyter_server, the naive path would also hit the 1,000 msg/s
IOPub limit and lose messages: see docs GRID.md. That is not measured here.)

    cd /work/main && python bench/chart_updates.py [--rows 200000] [--naive-rows 20000]

Target: the chart keeps up with >= 100k rows/s from one thread and sends <= flush_hz messages/s.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from nbfeed.widgets.chart import LiveChart  # noqa: E402
from nbfeed.widgets.chart_window import decode_frame, encode_frame  # noqa: E402

T0 = 1_767_312_000_000
MIN = 60_000


def rows(n: int, per_bar: int = 100) -> list[dict]:
    return [{"time": T0 + i // per_bar * MIN, "open": 1.0, "high": 2.0 + i, "low": 0.5,
             "close": float(i), "volume": float(i)} for i in range(n)]


def in_process(n: int) -> None:
    data = rows(n)
    chart = LiveChart(flush_hz=10)
    t = time.perf_counter()
    for r in data:
        chart.update(r)
    one = n / (time.perf_counter() - t)
    chart.close()
    chart = LiveChart(flush_hz=10)
    t = time.perf_counter()
    for i in range(0, n, 1000):
        chart.update(data[i:i + 1000])
    batch = n / (time.perf_counter() - t)
    chart.flush()
    stats = chart.stats
    chart.close()
    print(f"update(), 1 row per call:      {one:12,.0f} rows/s")
    print(f"update(), 1000 rows per call:  {batch:12,.0f} rows/s   "
          f"({stats['deltas_sent']} deltas sent for {n:,} rows)")
    cols = ("open", "high", "low", "close", "volume")
    for bars in (1, 5000):
        times = np.arange(bars, dtype=np.int64) * MIN + T0
        values = np.random.default_rng(0).random((5, bars))
        reps = 2000 if bars == 1 else 200
        t = time.perf_counter()
        for _ in range(reps):
            blob = encode_frame(1, cols, times, values)
        enc = (time.perf_counter() - t) / reps * 1e6
        t = time.perf_counter()
        for _ in range(reps):
            decode_frame(blob)
        dec = (time.perf_counter() - t) / reps * 1e6
        print(f"frame of {bars:5d} bars: {len(blob):8,d} bytes, encode {enc:8.1f} us, "
              f"decode {dec:8.1f} us")


KERNEL_CHART = """
import threading, time
from nbfeed.widgets.chart import LiveChart
chart = LiveChart(flush_hz=10)
rows = [{{"time": {t0} + i // 100 * 60000, "open": 1.0, "high": 2.0 + i, "low": 0.5,
          "close": float(i), "volume": float(i)}} for i in range({n})]
def feed():
    t = time.perf_counter()
    for r in rows:
        chart.update(r)
    print(f"KERNEL ingest {{len(rows) / (time.perf_counter() - t):.0f}}")
threading.Thread(target=feed).start()
"""

KERNEL_NAIVE = """
import threading, time, ipywidgets
w = ipywidgets.DOMWidget()
rows = [{{"time": {t0} + i // 100 * 60000, "open": 1.0, "high": 2.0 + i, "low": 0.5,
          "close": float(i), "volume": float(i)}} for i in range({n})]
def feed():
    t = time.perf_counter()
    for r in rows:
        w.send(r)
    print(f"KERNEL ingest {{len(rows) / (time.perf_counter() - t):.0f}}")
threading.Thread(target=feed).start()
"""


def through_kernel(kc, code: str, done) -> dict:
    """Run ``code``; count comm messages until ``done(msg)`` says the last row is visible.

    Gives up 5 s after the kernel finished feeding with nothing more arriving (messages that
    ZMQ dropped never come): ``seconds`` is then NaN and ``delivered`` False.
    """
    kc.execute(code)
    t0 = None
    count = nbytes = 0
    ingest = None
    delivered = False
    last_seen = time.monotonic()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if delivered and ingest is not None:
            break
        if ingest is not None and time.monotonic() - last_seen > 5:
            break
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        if msg["msg_type"] == "stream" and "KERNEL ingest" in msg["content"]["text"]:
            ingest = float(msg["content"]["text"].split()[-1])
        if msg["msg_type"] == "error":
            raise RuntimeError(msg["content"])
        if msg["msg_type"] != "comm_msg" or msg["content"]["data"].get("method") != "custom":
            continue
        last_seen = time.monotonic()
        t0 = t0 or time.perf_counter()
        count += 1
        nbytes += sum(len(b) for b in msg["buffers"]) + len(str(msg["content"]["data"]))
        if done(msg):
            delivered, elapsed = True, time.perf_counter() - t0
    return {"messages": count, "bytes": nbytes, "delivered": delivered,
            "seconds": elapsed if delivered else float("nan"), "ingest": ingest}


def in_kernel(n: int, naive_n: int) -> None:
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env)
    last = float(n - 1)
    try:
        chart = through_kernel(
            kc, KERNEL_CHART.format(t0=T0, n=n),
            lambda m: decode_frame(m["buffers"][0])["close"][-1] == last)
        naive = through_kernel(
            kc, KERNEL_NAIVE.format(t0=T0, n=naive_n),
            lambda m: m["content"]["data"]["content"].get("close") == float(naive_n - 1))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    for name, r, rows_n in (("LiveChart (coalesced)", chart, n),
                            ("one message per row", naive, naive_n)):
        seen = (f"last row visible after {r['seconds']:5.2f} s" if r["delivered"]
                else "LAST ROW NEVER ARRIVED (messages dropped)")
        print(f"{name:22s} {rows_n:8,d} rows -> {r['messages']:7,d} messages "
              f"({r['bytes'] / 1e6:5.2f} MB); kernel thread fed {r['ingest'] or 0:9,.0f} rows/s;"
              f" {seen}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--naive-rows", type=int, default=20_000)
    args = ap.parse_args()
    print("== in process ==")
    in_process(args.rows)
    print("== through a real kernel (ZMQ IOPub, no jupyter_server) ==")
    in_kernel(args.rows, args.naive_rows)


if __name__ == "__main__":
    main()
