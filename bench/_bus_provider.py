"""A provider for the shared-feed benchmarks: the reference's own batches, at a fixed rate.

``BatchProvider`` publishes, for every subscribed stream, the same precomputed quote batches
the bare Redis reference sends (``bench/bus_throughput.py``), ``rate`` rows/s per stream in
batches of ``batch`` rows, so the comparison measures moving rows through nbfeed and Redis,
not generating them. With option ``stamp`` each row also carries ``sent`` (wall time at
publish), for latency measurements.
"""

from __future__ import annotations

import threading
import time

from nbfeed.providers.base import Provider


def sample_batches(streams: int, batch: int) -> list[list[dict]]:
    """Quote rows of the ``simulated`` provider: ``batch`` rows for each of ``streams``."""
    import numpy as np

    from nbfeed.providers.simulated import SimulatedProvider

    sim = SimulatedProvider(universe_size=streams)
    sim.init()
    sim.stopping.set()
    now = int(time.time() * 1000)
    times = now - 5 + (np.arange(1, batch + 1, dtype=np.int64) * 5) // batch
    return [sim.quotes(f"SIM{i:05d}", times) for i in range(streams)]


class BatchProvider(Provider):
    name = "batches"

    def init(self) -> None:
        self.n_streams = int(self.options.get("streams", 10))
        self.batch = int(self.options.get("batch", 50))
        self.rate = float(self.options.get("rate", 10_000))
        self.stamp = bool(self.options.get("stamp", False))
        self.batches = {f"SIM{i:05d}": rows
                        for i, rows in enumerate(sample_batches(self.n_streams, self.batch))}
        self.live: set[str] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def get_dataset(self) -> list[dict]:
        return [{"name": name, "type": "quote", "intervals": ["tick"]}
                for name in sorted(self.batches)]

    def subscribe(self, symbol: str, interval: str) -> None:
        with self.lock:
            self.live.add(symbol)

    def unsubscribe(self, symbol: str, interval: str) -> None:
        with self.lock:
            self.live.discard(symbol)

    def _run(self) -> None:
        period = self.batch / self.rate
        next_at = time.perf_counter()
        while not self.stopping.is_set():
            with self.lock:
                live = list(self.live)
            now = time.time()
            for symbol in live:
                rows = self.batches[symbol]
                if self.stamp:  # latency runs: each row says when it was published
                    rows = [{**row, "sent": now} for row in rows]
                self.publish(rows, interval="tick")
            next_at += period
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.25:
                next_at = time.perf_counter()  # far behind: this is its capacity
