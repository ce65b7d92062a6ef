"""Provider classes the hub tests run in real provider processes, and helpers to observe them.

The classes live in an importable module so the hub ships them by dotted path
(``tests.providers_for_tests:RecordingProvider``), the way a packaged provider is loaded. What a
provider does in its own process is reported back in two ways: the rows it publishes, and a
JSON-lines *record* file (option ``record``) with one line per hook call - hook name, arguments,
pid and thread - that the test reads with :func:`read_calls`.

Options shared by the recording providers:

* ``record``: path of the JSON-lines file to append hook calls to (no recording when missing);
* ``symbols``: the names ``get_dataset`` lists (default ``["AAA", "BBB"]``);
* ``intervals``: the intervals each entry lists (default tick, 1m and 1d);
* ``period``: seconds between two rows of a subscribed stream (default 0.05; 0 = never publish);
* ``silent``: symbols whose streams never publish (for ``no_update``).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbfeed.intervals import TICK, bar_starts, floor_bar, interval_ms
from nbfeed.providers.base import Provider
from nbfeed.providers.csv import CSVProvider
from nbfeed.timeutil import now_ms

DEFAULT_SYMBOLS = ["AAA", "BBB"]
DEFAULT_INTERVALS = [TICK, "1m", "1d"]
_record_lock = threading.Lock()  # hooks run on several threads of one process


class RecordingProvider(Provider):
    """Simple-level provider that records every hook call and publishes a counter per stream.

    Tick rows: ``time, symbol, price, seq``; candle rows: the bar of now with ``seq`` as an
    extra field. ``get_history`` returns one bar per bar start in ``[start, end)`` whose close is
    ``100 + (bar number % 10)``, so answers are checkable without the provider.
    """

    name = "rec"

    def init(self) -> None:
        self._record("init")
        self._stops: dict[tuple[str, str], threading.Event] = {}

    def get_dataset(self) -> list[dict]:
        self._record("get_dataset")
        intervals = list(self.options.get("intervals", DEFAULT_INTERVALS))
        return [{"source": self.name, "name": sym, "name_label": f"Test instrument {sym}",
                 "type": "candlestick", "categories": ["Tests"], "intervals": intervals}
                for sym in self.options.get("symbols", DEFAULT_SYMBOLS)]

    def start_streaming(self, client: Any, symbol: str, interval: str) -> None:
        self._record("start_streaming", client, symbol, interval)
        super().start_streaming(client, symbol, interval)

    def on_close(self, client: Any, symbol: str, interval: str) -> None:
        self._record("on_close", client, symbol, interval)
        super().on_close(client, symbol, interval)

    def subscribe(self, symbol: str, interval: str) -> None:
        self._record("subscribe", symbol, interval)
        period = float(self.options.get("period", 0.05))
        if period <= 0 or symbol in self.options.get("silent", ()):
            return  # a silent stream (no_update tests)
        stop = self._stops[(symbol, interval)] = threading.Event()
        threading.Thread(target=self._publish_loop, args=(symbol, interval, period, stop),
                         daemon=True).start()

    def unsubscribe(self, symbol: str, interval: str) -> None:
        self._record("unsubscribe", symbol, interval)
        stop = self._stops.pop((symbol, interval), None)
        if stop is not None:
            stop.set()

    def no_update(self, symbol: str, interval: str) -> None:
        self._record("no_update", symbol, interval)

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        self._record("get_history", symbol, interval, start, end, count)
        end = min(now_ms() + 1, end if end is not None else now_ms() + 1)
        if start is None:
            start = end - (count or 10) * interval_ms(interval)
        starts = bar_starts(start, end, interval)
        if count is not None:
            starts = starts[-count:]
        return [history_bar(symbol, interval, t) for t in starts]

    # ---- plumbing -------------------------------------------------------------------------

    def _publish_loop(self, symbol: str, interval: str, period: float,
                      stop: threading.Event) -> None:
        seq = 0
        while not stop.is_set() and not self.stopping.is_set():
            now = now_ms()
            if interval == TICK:
                row = {"time": now, "symbol": symbol, "price": 100.0 + seq % 7, "seq": seq}
            else:
                price = 100.0 + seq % 7
                row = {"time": floor_bar(now, interval), "symbol": symbol, "open": 100.0,
                       "high": max(100.0, price), "low": 100.0, "close": price,
                       "volume": float(seq), "seq": seq}
            self.publish(row, interval=interval)
            seq += 1
            stop.wait(period)

    def _record(self, hook: str, *args: Any) -> None:
        record_call(self.options.get("record"), hook, *args)


def record_call(path: str | None, hook: str, *args: Any) -> None:
    """Append one hook call to the JSON-lines record at ``path`` (nothing when ``path`` is None)."""
    if not path:
        return
    line = json.dumps({"hook": hook, "args": list(args), "pid": os.getpid(),
                       "thread": threading.current_thread().name, "t": time.time()})
    with _record_lock, open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def history_bar(symbol: str, interval: str, t: int) -> dict:
    """The bar :class:`RecordingProvider` returns for the bar starting at ``t``."""
    close = 100.0 + (t // interval_ms(interval)) % 10
    return {"time": t, "symbol": symbol, "open": 100.0, "high": max(100.0, close), "low": 99.0,
            "close": close, "volume": 10.0}


class FaultyProvider(RecordingProvider):
    """A recording provider with bad days, chosen by symbol prefix.

    ``FAIL*``: ``subscribe`` and ``get_history`` raise; ``HANG*``: ``get_history`` never answers
    (until the process stops); ``DEGRADE*``: ``subscribe`` reports status ``degraded`` first.
    """

    name = "faulty"

    def subscribe(self, symbol: str, interval: str) -> None:
        if symbol.startswith("FAIL"):
            raise RuntimeError(f"upstream refused to stream {symbol}")
        if symbol.startswith("DEGRADE"):
            self.set_status("degraded", "upstream answers slowly")
        super().subscribe(symbol, interval)

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        if symbol.startswith("FAIL"):
            raise RuntimeError(f"history backend is down for {symbol}")
        if symbol.startswith("HANG"):
            self._record("get_history", symbol, interval, start, end, count)
            self.stopping.wait()
            return []
        return super().get_history(symbol, interval, start, end, count)


class ScriptedBarsProvider(RecordingProvider):
    """A recording provider whose streams publish the rows of option ``live`` once, one
    ``publish`` per row in order (each gets the stream's symbol), then stay silent: what the
    hub does with live bars (which are final, what reaches the cache) becomes checkable.
    With option ``pause`` (seconds) the rows go out that far apart, from a thread, so each one
    reaches the hub on its own."""

    def subscribe(self, symbol: str, interval: str) -> None:
        self._record("subscribe", symbol, interval)
        rows = [{**row, "symbol": symbol} for row in self.options.get("live", [])]
        pause = float(self.options.get("pause", 0))
        if not pause:
            for row in rows:
                self.publish(row, interval=interval)
            return

        def run() -> None:
            for row in rows:
                self.publish(row, interval=interval)
                if self.stopping.wait(pause):
                    return

        threading.Thread(target=run, daemon=True).start()


class SparseProvider(ScriptedBarsProvider):
    """Scripted live bars over a history that holds only the bars at option ``bars`` (times):
    a source with no bar for a minute without trades, like Polygon's aggregates."""

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        self._record("get_history", symbol, interval, start, end, count)
        times = [t for t in self.options.get("bars", [])
                 if (start is None or t >= start) and (end is None or t < end)]
        if count is not None:
            times = times[-count:]
        return [history_bar(symbol, interval, t) for t in times]


class NoHistoryProvider(ScriptedBarsProvider):
    """Scripted live bars, and a history backend that is down: every ``get_history`` raises."""

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        self._record("get_history", symbol, interval, start, end, count)
        raise RuntimeError(f"history backend is down for {symbol}")


class RecordingCSVProvider(CSVProvider):
    """nbfeed's csv provider, recording every ``get_history`` call in option ``record``."""

    def __init__(self, **options: Any) -> None:
        self._record_path = options.pop("record", None)
        super().__init__(**options)

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        record_call(self._record_path, "get_history", symbol, interval, start, end, count)
        return super().get_history(symbol, interval, start, end, count)


class CounterProvider(Provider):
    """Publishes exactly ``total`` numbered rows per subscribed tick stream, as fast as it can.

    Options: ``total`` rows per publishing thread (default 10_000), ``batch`` rows per
    ``publish`` call (default 100), ``threads`` publishing threads per stream (default 1; each
    numbers its own rows 0..total-1 and tags them with ``thread``), ``pause`` seconds between
    batches (default 0.001). Rows: ``time, symbol, thread, seq``.
    """

    name = "counter"

    def get_dataset(self) -> list[dict]:
        return [{"source": self.name, "name": sym, "type": "quote", "intervals": [TICK]}
                for sym in self.options.get("symbols", ["CNT"])]

    def subscribe(self, symbol: str, interval: str) -> None:
        for k in range(int(self.options.get("threads", 1))):
            threading.Thread(target=self._count, args=(symbol, k), daemon=True).start()

    def _count(self, symbol: str, thread: int) -> None:
        total = int(self.options.get("total", 10_000))
        batch = int(self.options.get("batch", 100))
        pause = float(self.options.get("pause", 0.001))
        for first in range(0, total, batch):
            if self.stopping.is_set():
                return
            now = now_ms()
            self.publish([{"time": now, "symbol": symbol, "thread": thread, "seq": i}
                          for i in range(first, min(total, first + batch))], interval=TICK)
            if pause:
                time.sleep(pause)


class InitFailsProvider(Provider):
    """A provider whose ``init`` raises, as one with a missing API key would."""

    name = "broken"

    def init(self) -> None:
        raise RuntimeError("no API key configured for the upstream service")


class BadDatasetProvider(RecordingProvider):
    """Lists one valid entry and one whose ``type`` no chart knows."""

    name = "baddata"

    def get_dataset(self) -> list[dict]:
        return [{"source": self.name, "name": "GOOD", "type": "candlestick", "intervals": ["1d"]},
                {"source": self.name, "name": "WEIRD", "type": "bar-chart", "intervals": ["1d"]}]


# ---- a provider written for the reference app, ported by renaming the import only ----------

_REFERENCE_INTERVALS = ["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                        "1d", "1w", "1M"]


class ReferencePortProvider(Provider):
    """Written against the reference charting app's provider page; only the import changed.

    It keeps its own ``ws_client`` sets, starts one thread per stream on the first client and
    stops it when the last one leaves, sends ``write_message`` messages with ``send_from`` and
    answers ``get_history`` with datapoints dated ``%Y-%m-%d %H:%M:%S`` whose keys are
    ``my_provider-<symbol>-<interval>-<field>``.
    """

    def init(self):
        self.ws_clients = {}
        self.streams = {}

    def get_dataset(self):
        return [{
            "source": "my_provider",
            "name": "BTCUSDT",
            "name_label": "Bitcoin - USD pair",
            "type": "candlestick",
            "categories": ["Crypto"],
            "intervals": _REFERENCE_INTERVALS,
            "outputs": [{"name": "open", "y_axis": "price"}, {"name": "high", "y_axis": "price"},
                        {"name": "low", "y_axis": "price"}, {"name": "close", "y_axis": "price"},
                        {"name": "volume", "y_axis": "volume"}],
        }]

    def start_streaming(self, ws_client, symbol, interval):
        key = (symbol, interval)
        self.ws_clients.setdefault(key, set()).add(ws_client)
        if key not in self.streams:
            stop = threading.Event()
            self.streams[key] = stop
            threading.Thread(target=self.stream, args=(symbol, interval, stop),
                             daemon=True).start()

    def stream(self, symbol, interval, stop):
        while not stop.is_set():
            k = self.kline(int(time.time() * 1000), interval)
            ws_clients = list(self.ws_clients.get((symbol, interval), ()))
            self.send_from({
                "action": "write_message",
                "ws_clients": ws_clients,
                "source": "my_provider",
                "name": symbol,
                "interval": interval,
                "args": [json.dumps({
                    "type": "data_update",
                    "source": "my_provider",
                    "name": symbol,
                    "interval": interval,
                    "data": self.format_datapoint(symbol, interval, k),
                })],
            })
            stop.wait(0.05)

    def kline(self, t, interval):
        start = floor_bar(t, interval)
        base = 60000.0 + (start // 60000) % 100
        return [start, base, base + 5.0, base - 5.0, base + 1.0, 12.5]

    def format_datapoint(self, symbol, interval, k):
        from datetime import datetime, timezone

        date_str = datetime.fromtimestamp(k[0] / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return {
            "date": date_str,
            f"my_provider-{symbol}-{interval}-open": k[1],
            f"my_provider-{symbol}-{interval}-high": k[2],
            f"my_provider-{symbol}-{interval}-low": k[3],
            f"my_provider-{symbol}-{interval}-close": k[4],
            f"my_provider-{symbol}-{interval}-volume": k[5],
        }

    def no_update(self, symbol, interval):
        pass

    def get_history(self, symbol, interval, start_time_query, end_time_query, count):
        t = floor_bar(start_time_query, interval)
        end = min(end_time_query, int(time.time() * 1000))
        data = []
        while t < end:
            data.append(self.format_datapoint(symbol, interval, self.kline(t, interval)))
            t += interval_ms(interval)
        return data

    def on_close(self, ws_client, symbol, interval):
        key = (symbol, interval)
        clients = self.ws_clients.get(key, set())
        clients.discard(ws_client)
        if not clients and key in self.streams:
            self.streams.pop(key).set()


# ---- test-side helpers ---------------------------------------------------------------------


def read_calls(path: str | Path, hook: str | None = None) -> list[dict]:
    """The hook calls recorded in ``path`` (all, or those of ``hook``), in call order."""
    p = Path(path)
    if not p.exists():
        return []
    calls = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
    return [c for c in calls if hook is None or c["hook"] == hook]


async def wait_until(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll ``condition`` (cheap, e.g. reading a record file) until it returns something truthy.

    For effects that happen in another process and have no event to await; fails naming
    ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


class Received:
    """What a subscription delivered so far: ``rows`` (from data batches) and ``events``."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.events: list[dict] = []
        self.deliveries = 0

    def states(self, source: str | None = None) -> list[str]:
        """States of the provider (source-wide ``status`` events), in order."""
        return [e["state"] for e in self.events
                if e.get("type") == "status" and "symbol" not in e
                and source in (None, e.get("source"))]

    def stream_states(self, symbol: str | None = None) -> list[str]:
        """States of single streams (``live``, ``stale``, ``closed``), in order."""
        return [e["state"] for e in self.events
                if e.get("type") == "status" and "symbol" in e
                and symbol in (None, e.get("symbol"))]

    def errors(self) -> list[dict]:
        return [e for e in self.events if e.get("type") == "error"]


async def receive(sub: Any, until: Callable[[Received], bool], what: str,
                  timeout: float = 15.0, into: Received | None = None) -> Received:
    """Read deliveries of ``sub`` until ``until(received)`` holds; fails naming ``what``."""
    got = into if into is not None else Received()
    deadline = time.monotonic() + timeout
    while not until(got):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; got "
                                 f"{len(got.rows)} rows, events {got.events[-5:]}")
        try:
            items = await asyncio.wait_for(sub.get(), remaining)
        except asyncio.TimeoutError:
            continue
        got.deliveries += 1
        for item in items:
            if isinstance(item, dict):
                got.events.append(item)
            else:
                got.rows.extend(item.rows)
    return got
