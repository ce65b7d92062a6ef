"""Hub throughput and latency: provider process -> hub -> in-process subscribers.

Measures, in one run and on the same machine state:

* **reference throughput** - quote row dicts (those of the simulated provider: 10 streams x
  500 rows, built once in the child) pickled through a ``multiprocessing`` Pipe (a socket pair,
  the kind of channel the hub reads its providers on) as fast as it
  goes, no hub: the ceiling of moving those rows between processes the plain way (the issue's
  reference); and the same rows turned into :class:`~nbfeed.columns.Columns` for every message
  and pickled as arrays: the plain-pipe ceiling of what the hub now carries, conversion
  included (the hub's ratio to it is what nbfeed adds on top);
* **hub throughput, the same data** - a flood provider (below) that publishes those very dicts
  over and over through ``Provider.publish``, delivered to 1 and to 10 in-process subscribers
  of its streams, counted over a fixed window (``len(batch)``: the subscribers do not ask for
  dicts). Its ratio to the reference is the target (>= 0.8); the rows travel as columns,
  built once in the provider process, so the hub pays little per row;
* **hub throughput, simulated** - the ``simulated`` provider at 100k updates/s per stream (more
  than the pipeline carries): it makes its rows (dicts, as authors do) before publishing, so it
  is slower than the flood; target >= 200k row updates/s to one subscriber. Rows an outbox
  conflated are shown, not counted;
* **reference latency** - rows stamped at send time, 10k rows/s through a bare Pipe;
* **hub latency** at a fixed 10k updates/s - a bench provider (below) stamps each row with the
  wall time at ``publish``; latency = receive wall time - that stamp (p50/p99; target p99 <= 10
  ms). The simulated provider is also shown: it stamps rows up to one 5 ms burst *before* it
  publishes them, so for it only the newest row of each burst is measured.

Usage::

    python bench/hub_throughput.py                        # 3 rounds, ~2 min
    python bench/hub_throughput.py --rounds 1 --window 1  # a quick look

Numbers on a shared machine move with its load: every round measures everything once,
interleaved, and the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import threading
import time
from collections import defaultdict

import numpy as np

from nbfeed.hub import Hub, HubConfig, StreamBatch
from nbfeed.providers.base import Provider
from nbfeed.providers.registry import ProviderSpec
from nbfeed.providers.simulated import SimulatedProvider

TARGET_ROWS_PER_S = 200_000
TARGET_RATIO = 0.8
TARGET_P99_MS = 10.0
LATENCY_RATE = 10_000


class BenchProvider(Provider):
    """Publishes ``rate`` quote rows/s per stream in batches of ``batch``, each row stamped with
    ``sent`` = wall time at publish. Defined in ``__main__``, so the hub ships it with
    cloudpickle."""

    def get_dataset(self):
        return [{"name": "B0", "type": "quote", "intervals": ["tick"]}]

    def subscribe(self, symbol, interval):
        threading.Thread(target=self._run, args=(symbol,), daemon=True).start()

    def _run(self, symbol):
        rate = float(self.options["rate"])
        batch = int(self.options.get("batch", 10))
        period = batch / rate
        next_at = time.perf_counter()
        seq = 0
        while not self.stopping.is_set():
            now = time.time()
            self.publish([{"time": int(now * 1000), "symbol": symbol, "price": 100.0,
                           "sent": now, "seq": seq + i} for i in range(batch)], interval="tick")
            seq += batch
            next_at += period
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.25:
                next_at = time.perf_counter()  # far behind: do not burst to catch up


class FloodProvider(Provider):
    """Publishes the reference's rows (copies of the same quote dicts, ``_sample_rows``) for
    every subscribed stream, over and over, as fast as ``publish`` takes them: the hub's side
    of the comparison with the bare pipe, with the same data going in."""

    def get_dataset(self):
        return [{"name": f"SIM{i:05d}", "type": "quote", "intervals": ["tick"]}
                for i in range(int(self.options["symbols"]))]

    def init(self):
        self._rows = {symbol: rows for symbol, _, rows in
                      _sample_rows(int(self.options["symbols"]), int(self.options["per_symbol"]))}
        self._started = False

    def subscribe(self, symbol, interval):
        if not self._started:
            self._started = True
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stopping.is_set():
            streams = self.streams()
            if not streams:
                time.sleep(0.01)
            for symbol, _ in streams:
                # Fresh dicts every time, as an author's are: re-sending the same dict objects
                # would let pickle's memo send each once per message, which no author gets.
                self.publish([dict(r) for r in self._rows[symbol]], interval="tick")


# ---- references: a bare pipe, no hub ------------------------------------------------------------


def _sample_rows(symbols: int, per_symbol: int) -> list[tuple[str, str, list[dict]]]:
    sim = SimulatedProvider(universe_size=symbols)
    sim.init()
    sim.stopping.set()
    now = int(time.time() * 1000)
    times = now - 5 + (np.arange(1, per_symbol + 1, dtype=np.int64) * 5) // per_symbol
    return [(f"SIM{i:05d}", "tick", sim.quotes(f"SIM{i:05d}", times)) for i in range(symbols)]


def _pipe_flood(conn, symbols: int, per_symbol: int) -> None:
    """Child: send the same ("data", ...) message as the runtime, as fast as possible."""
    msg = ("data", _sample_rows(symbols, per_symbol))
    try:
        while True:
            conn.send(msg)
    except (OSError, EOFError, BrokenPipeError):
        pass


def _pipe_flood_columns(conn, symbols: int, per_symbol: int) -> None:
    """Child: the same rows, turned into columns for every message (the work a provider
    process does per publish), pickled as arrays."""
    from nbfeed.columns import Columns

    groups = _sample_rows(symbols, per_symbol)
    try:
        while True:
            conn.send(("data", [(s, i, Columns.from_rows(rows, s)) for s, i, rows in groups]))
    except (OSError, EOFError, BrokenPipeError):
        pass


def _pipe_paced(conn, rate: int, batch: int, seconds: float) -> None:
    """Child: ``rate`` rows/s in batches, each row stamped with its send time."""
    period = batch / rate
    next_at = time.perf_counter()
    end = next_at + seconds
    seq = 0
    while next_at < end:
        now = time.time()
        rows = [{"time": int(now * 1000), "symbol": "B0", "price": 100.0, "sent": now,
                 "seq": seq + i} for i in range(batch)]
        conn.send(("data", [("B0", "tick", rows)]))
        seq += batch
        next_at += period
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    conn.send(("done",))


def reference_throughput(window: float, symbols: int, per_symbol: int,
                         columns: bool = False) -> float:
    ctx = multiprocessing.get_context("spawn")
    recv_end, send_end = ctx.Pipe()  # a socket pair, like the hub's channel
    child = ctx.Process(target=_pipe_flood_columns if columns else _pipe_flood,
                        args=(send_end, symbols, per_symbol), daemon=True)
    child.start()
    send_end.close()
    recv_end.recv()  # warm: the child is up
    deadline_warm = time.perf_counter() + 0.5
    while time.perf_counter() < deadline_warm:
        recv_end.recv()
    rows = 0
    start = time.perf_counter()
    while True:
        _, groups = recv_end.recv()
        rows += sum(len(r) for _, _, r in groups)
        if time.perf_counter() - start >= window:
            break
    elapsed = time.perf_counter() - start
    recv_end.close()
    child.terminate()
    child.join(5)
    return rows / elapsed


def reference_latency(seconds: float, rate: int, batch: int) -> np.ndarray:
    ctx = multiprocessing.get_context("spawn")
    recv_end, send_end = ctx.Pipe()  # a socket pair, like the hub's channel
    child = ctx.Process(target=_pipe_paced, args=(send_end, rate, batch, seconds), daemon=True)
    child.start()
    send_end.close()
    latencies: list[float] = []
    warm_until = None
    while True:
        msg = recv_end.recv()
        now = time.time()
        if msg[0] == "done":
            break
        rows = msg[1][0][2]
        if warm_until is None:
            warm_until = now + 0.5
        if now >= warm_until:
            latencies.extend(now - r["sent"] for r in rows)
    child.join(5)
    return np.asarray(latencies) * 1000


# ---- through the hub ------------------------------------------------------------------------


def _count(batch: StreamBatch) -> int:
    """Rows in a batch without building them as dicts (batches before columns: their list)."""
    return len(batch) if hasattr(batch, "__len__") else len(batch.rows)


async def hub_throughput(spec: ProviderSpec, subscribers: int, symbols: int,
                         window: float) -> dict:
    with tempfile.TemporaryDirectory() as home:
        hub = Hub(HubConfig(home=home, providers=[spec]))
        await hub.start()
        try:
            names = [f"SIM{i:05d}" for i in range(symbols)]
            counts = [0] * subscribers
            subs = [await hub.subscribe(spec.name, names, "tick") for _ in range(subscribers)]

            async def consume(k: int) -> None:
                async for items in subs[k]:
                    n = 0
                    for item in items:
                        if type(item) is StreamBatch:
                            n += _count(item)
                    counts[k] += n

            tasks = [asyncio.ensure_future(consume(k)) for k in range(subscribers)]
            await asyncio.sleep(1.0)  # warm-up: streams started, first bursts flowing
            before, conflated0 = list(counts), hub.stats()["conflated_rows"]
            start, cpu0 = time.perf_counter(), time.process_time()
            await asyncio.sleep(window)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
            delivered = [(c - b) / elapsed for c, b in zip(counts, before)]
            conflated = (hub.stats()["conflated_rows"] - conflated0) / elapsed
            for task in tasks:
                task.cancel()
            # The hub's own CPU (this process: reader thread, loop, subscribers) per row in.
            cpu_per_row = cpu / max(1.0, max(delivered) * elapsed) * 1e6
            return {"per_subscriber": min(delivered), "total": sum(delivered),
                    "conflated": conflated, "cpu_us_per_row": cpu_per_row}
        finally:
            await hub.stop()


async def hub_latency(spec: ProviderSpec, symbol: str, seconds: float,
                      newest_only: bool) -> np.ndarray:
    with tempfile.TemporaryDirectory() as home:
        hub = Hub(HubConfig(home=home, providers=[spec]))
        await hub.start()
        try:
            sub = await hub.subscribe(spec.name, [symbol], "tick")
            latencies: list[float] = []
            warm_until = time.time() + 0.5
            end = warm_until + seconds
            async for items in sub:
                now = time.time()
                if now >= end:
                    break
                if now < warm_until:
                    continue
                for item in items:
                    if type(item) is not StreamBatch:
                        continue
                    if newest_only:
                        latencies.append(now * 1000 - item.rows[-1]["time"])
                    else:
                        latencies.extend((now - r["sent"]) * 1000 for r in item.rows)
            return np.asarray(latencies)
        finally:
            await hub.stop()


# ---- report ---------------------------------------------------------------------------------


def _pct(values: np.ndarray) -> str:
    if not len(values):
        return "no samples"
    p50, p99, pmax = np.percentile(values, [50, 99, 100])
    return f"p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   max {pmax:7.2f} ms"


def _rates(values: list[float]) -> str:
    """Median of the rounds, then the best one: on a shared machine the best is the capacity,
    the median what a busy moment gives."""
    return f"{float(np.median(values)):>10,.0f} rows/s (best {max(values):,.0f})"


def throughput_round(r: dict[str, list], window: float, symbols: int, rate: float,
                     per_symbol: int) -> None:
    """One throughput round: both references, then the hub, appended to ``r``'s lists."""
    flood = ProviderSpec("flood", FloodProvider, {"symbols": symbols, "per_symbol": per_symbol})
    sim = ProviderSpec("simulated", SimulatedProvider, {"rate": rate, "universe_size": symbols})
    r["ref"].append(reference_throughput(window, symbols, per_symbol))
    r["ref_cols"].append(reference_throughput(window, symbols, per_symbol, columns=True))
    one = asyncio.run(hub_throughput(flood, 1, symbols, window))
    ten = asyncio.run(hub_throughput(flood, 10, symbols, window))
    sim_one = asyncio.run(hub_throughput(sim, 1, symbols, window))
    r["one"].append(one["per_subscriber"])
    r["ratio"].append(one["per_subscriber"] / r["ref"][-1])
    r["ratio_cols"].append(one["per_subscriber"] / r["ref_cols"][-1])
    r["ten"].append(ten["per_subscriber"])
    r["ten_total"].append(ten["total"])
    r["sim_one"].append(sim_one["per_subscriber"])
    r["cpu_one"].append(one["cpu_us_per_row"])
    r["cpu_sim"].append(sim_one["cpu_us_per_row"])
    r["conflated"].append(one["conflated"] + ten["conflated"] + sim_one["conflated"])


def latency_round(r: dict[str, list], window: float) -> None:
    """One latency round: the bare pipe, the bench provider, the simulated provider."""
    bench = ProviderSpec("bench", BenchProvider, {"rate": LATENCY_RATE, "batch": 10})
    sim = ProviderSpec("simulated", SimulatedProvider, {"rate": LATENCY_RATE})
    r["ref_lat"].append(reference_latency(window, LATENCY_RATE, 10))
    r["hub_lat"].append(asyncio.run(hub_latency(bench, "B0", window, newest_only=False)))
    r["sim_lat"].append(asyncio.run(hub_latency(sim, "AAPL", window, newest_only=True)))


def print_throughput(r: dict[str, list], symbols: int, per_symbol: int) -> None:
    def rounds(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    print("throughput (row updates/s delivered); the same data in: the quote dicts of "
          f"{symbols} streams x {per_symbol} rows, built once in the child")
    print(f"  reference  bare Pipe, those dicts pickled, no hub  {_rates(r['ref'])}")
    print(f"  reference  bare Pipe, the same as columns, built   {_rates(r['ref_cols'])}")
    print("             per message (Columns.from_rows + pickle, the provider's part)")
    print(f"  hub        flood provider publishing them, 1 sub   {_rates(r['one'])}")
    print(f"             ratio to the dict pipe {float(np.median(r['ratio'])):.2f} (per round "
          f"{rounds(r['ratio'])}; target {TARGET_RATIO:g}), to the columns pipe "
          f"{float(np.median(r['ratio_cols'])):.2f} (per round {rounds(r['ratio_cols'])})")
    print(f"  hub        the same, 10 subscribers, each         {_rates(r['ten'])}   all "
          f"together {float(np.median(r['ten_total'])):,.0f}")
    print(f"  hub        simulated provider making its rows      {_rates(r['sim_one'])}   "
          f"target {TARGET_ROWS_PER_S:,}")
    print(f"  hub process CPU per row (median): flood 1 sub {np.median(r['cpu_one']):.2f} us, "
          f"simulated 1 sub {np.median(r['cpu_sim']):.2f} us (the rest of the work is the "
          "provider process's)")
    print(f"  rows conflated by outboxes: {max(r['conflated']):,.0f}/s at most")


def print_latency(r: dict[str, list]) -> None:
    print(f"\nlatency at {LATENCY_RATE:,} updates/s (batches of 10 rows every ms), all rounds; "
          "p99 per round in brackets")
    for label, runs in (("reference  bare Pipe, stamped at send     ", r["ref_lat"]),
                        ("hub        bench provider, at publish     ", r["hub_lat"]),
                        ("hub        simulated, newest row of burst ", r["sim_lat"])):
        per_round = ", ".join(f"{np.percentile(x, 99):.1f}" if len(x) else "-" for x in runs)
        print(f"  {label} {_pct(np.concatenate(runs))}  [{per_round}]")
    print(f"  target: p99 <= {TARGET_P99_MS:g} ms for the hub; the simulated provider's stamps "
          "have 1 ms resolution")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds; each measures everything once, interleaved, so a load "
                             "spike from elsewhere hits reference and hub alike")
    parser.add_argument("--symbols", type=int, default=10, help="streams of the simulated source")
    parser.add_argument("--rate", type=float, default=100_000,
                        help="simulated updates/s per stream for the throughput runs (the "
                             "default offers more than the pipeline carries: measures capacity)")
    parser.add_argument("--only", choices=("throughput", "latency"),
                        help="measure one half (both by default)")
    args = parser.parse_args()
    per_symbol = max(1, int(args.rate * 0.005))  # rows per stream per 5 ms burst
    print(f"nbfeed hub throughput/latency - {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"offered: {args.symbols} simulated streams x {args.rate:,.0f} updates/s = "
          f"{args.symbols * args.rate:,.0f} rows/s; {args.rounds} rounds of {args.window:g} s "
          "windows\n")
    r: dict[str, list] = defaultdict(list)
    for _ in range(args.rounds):
        if args.only != "latency":
            throughput_round(r, args.window, args.symbols, args.rate, per_symbol)
        if args.only != "throughput":
            latency_round(r, args.window)
    if args.only != "latency":
        print_throughput(r, args.symbols, per_symbol)
    if args.only != "throughput":
        print_latency(r)
    print(f"\nload average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
