"""Provider classes used by the server tests (importable, so they run in real processes)."""

from __future__ import annotations

import json
import threading
import time

from nbfeed import Provider


class CountingProvider(Provider):
    """Publishes a counter per stream and appends every hook call to ``options['log']``."""

    name = "counting"

    def init(self) -> None:
        self._streams: dict[tuple[str, str], threading.Event] = {}
        self._record("init")

    def _record(self, *call) -> None:
        with open(self.options["log"], "a") as fh:
            fh.write(json.dumps(list(call)) + "\n")

    def get_dataset(self):
        return [{"name": s, "name_label": f"Counter {s}", "type": "quote",
                 "intervals": ["tick", "1m"]} for s in ("A", "B", "C", "D")]

    def start_streaming(self, client, symbol, interval):
        self._record("start_streaming", symbol, interval)
        super().start_streaming(client, symbol, interval)

    def on_close(self, client, symbol, interval):
        self._record("on_close", symbol, interval)
        super().on_close(client, symbol, interval)

    def subscribe(self, symbol, interval):
        stop = threading.Event()
        self._streams[(symbol, interval)] = stop
        rate = float(self.options.get("rate", 200))

        def run() -> None:
            n = 0
            while not stop.is_set() and not self.stopping.is_set():
                n += 1
                self.publish({"time": int(time.time() * 1000), "symbol": symbol,
                              "price": float(n), "seq": n}, interval=interval)
                stop.wait(1.0 / rate)

        threading.Thread(target=run, daemon=True).start()

    def unsubscribe(self, symbol, interval):
        self._streams.pop((symbol, interval)).set()

    def get_history(self, symbol, interval, start, end, count):
        if symbol == "D":
            time.sleep(3600)  # never answers in time
        return []


def read_calls(path) -> list[list]:
    try:
        with open(path) as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []
