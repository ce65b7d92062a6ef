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


#: Filled in *this* (the hub's) process each time a :class:`Probe` is unpickled.
UNPICKLED: list[str] = []


def _probe_unpickled(label: str) -> Probe:
    UNPICKLED.append(label)
    return Probe(label)


class Probe:
    """A value that notes, in the process that unpickles it, that it was unpickled."""

    def __init__(self, label: str = "probe") -> None:
        self.label = label

    def __reduce__(self):
        return (_probe_unpickled, (self.label,))


class BigHistoryProvider(Provider):
    """1m bars of any span, computed fast; every ``get_history`` call is appended to
    ``options['log']`` as ``["asked", start, end, count, t]`` and ``["answered", bars, t]``.
    ``options['delay']`` seconds per call (``options['delays']``: per symbol);
    ``options['probe']`` (a list of symbols) puts a :class:`Probe` in the first bar of their
    answers. Streams ticks for bystanders (``options['rate']`` per second)."""

    name = "big"

    def init(self) -> None:
        self._stops: dict[tuple[str, str], threading.Event] = {}

    def _record(self, *call) -> None:
        with open(self.options["log"], "a") as fh:
            fh.write(json.dumps(list(call)) + "\n")

    def get_dataset(self):
        return [{"name": s, "name_label": f"Big {s}", "type": "candlestick",
                 "intervals": ["tick", "1m"]} for s in ("BIG", "OTHER")]

    def subscribe(self, symbol, interval):
        stop = self._stops[(symbol, interval)] = threading.Event()
        rate = float(self.options.get("rate", 50))

        def run() -> None:
            n = 0
            while not stop.is_set() and not self.stopping.is_set():
                n += 1
                self.publish({"time": int(time.time() * 1000), "symbol": symbol,
                              "price": float(n)}, interval=interval)
                stop.wait(1.0 / rate)

        threading.Thread(target=run, daemon=True).start()

    def unsubscribe(self, symbol, interval):
        self._stops.pop((symbol, interval)).set()

    def get_history(self, symbol, interval, start, end, count):
        import numpy as np

        self._record("asked", symbol, start, end, count, time.time())
        delay = (self.options.get("delays") or {}).get(symbol, self.options.get("delay", 0))
        time.sleep(float(delay))
        minute = 60_000
        stop = end - end % minute
        first = stop - count * minute if start is None else start - start % minute
        t = np.arange(first, stop, minute, dtype=np.int64)
        price = 100.0 + (t // minute) % 97
        rows = [{"time": a, "symbol": symbol, "open": p, "high": p + 1, "low": p - 1,
                 "close": p + 0.5, "volume": 10.0} for a, p in zip(t.tolist(), price.tolist())]
        if rows and symbol in (self.options.get("probe") or ()):
            rows[0]["probe"] = Probe(f"{symbol} {start} {end}")
        self._record("answered", symbol, len(rows), time.time())
        return rows
