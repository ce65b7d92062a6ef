"""``LiveChart``: a live candlestick or line chart in a notebook, drawn by bundled JavaScript.

Usage::

    from nbfeed.widgets.chart import LiveChart

    LiveChart(df)                        # OHLC[V] columns -> candles (+ volume pane), else lines
    chart = LiveChart(stream)            # history (if the stream has it) then live bars
    chart = LiveChart(df, stream, max_bars=2000, title="AAPL 1m")
    chart.update([{"time": 1767225600000, "open": 1, "high": 2, "low": 0.5, "close": 1.5}])
    chart.to_frame()                     # the bars the chart holds, as a DataFrame
    chart.close()                        # stop following the stream and close the widget

    chart = LiveChart("simulated", symbol="AAPL", interval="1m")   # subscribes, owns the stream
    chart.show("MSFT", interval="5m")    # another symbol or interval, same widget

A stream is any object with ``on_update(callback)`` (see :mod:`.source`, shared with LiveGrid);
the callback gets lists of nbfeed rows from any thread. Optional: ``interval`` ("1m",
"tick"...), ``symbol``/``symbols``, ``source``, ``history(count[, interval])`` and ``latest``.
A stream object given to the chart is never closed by it; a source name makes the chart
subscribe itself and own that subscription (closed by :meth:`LiveChart.close` and
:meth:`LiveChart.show`).

How updates travel (see docs GRID.md: message count, not bytes, is what the Jupyter path pays
for): rows are merged into a bounded, time-keyed store as they arrive (a bar with the same time
replaces the open bar, a later one appends, at most ``max_bars`` are kept). A background thread
sends at most ``flush_hz`` messages per second, each one binary ``delta`` carrying every bar
changed since the last one, with a sequence number. The browser applies deltas once per animation
frame; on a sequence gap (a view opened late, a message lost) it asks for a resync and the
kernel answers with one ``_snapshot`` state update. A new view, a page reload or a saved notebook
reads ``_snapshot``, which is serialized from the window when it is read, so it is always
current. For tick streams in line mode each flush adds at most one point (the latest price), and
the line starts from the source's recent 1 s (else 1 m) bars when it has them. The flushes run on
a :class:`~.coalesce.FlushLoop` thread (the one LiveGrid uses) rather than the kernel's event
loop, so that updates keep flowing while a cell is running.

The bar window and the binary frame format live in :mod:`.chart_window`; turning DataFrames and
rows into checked (time, values) pairs lives in :mod:`.chart_input`. This module is the widget:
traits, the stream, locking and flushing.

Failure behaviour: ``update()`` validates every row before applying any and raises
:class:`nbfeed.errors.BadRequest` naming the bad row and value. Rows from a stream are validated
the same way but bad ones are dropped (counted in ``stats``, logged once) so one bad row cannot
break the stream's thread. History the stream fails to give raises a ``UserWarning`` and the
chart goes live without it (a tick stream without bars is not a failure: no warning). If
sending fails (kernel shutting down) the error is logged and the flush thread carries on.
"""

from __future__ import annotations

import inspect
import logging
import pathlib
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from ..errors import BadRequest, NBFeedError
from ..intervals import TICK, check_interval, interval_ms
from ..timeutil import to_ms
from .chart_input import (
    CANDLE_COLUMNS,
    Plan,
    RowPlace,
    frame_symbol,
    frame_times,
    frame_values,
    is_numeric,
    row_values,
)
from .chart_window import BarWindow, encode_frame
from .coalesce import FlushLoop
from .source import StreamSource, subscribe

__all__ = ["LiveChart"]

log = logging.getLogger("nbfeed.widgets.chart")

_KINDS = ("auto", "candle", "line")
_MAX_BARS_LIMIT = 1_000_000
_MAX_FLUSH_HZ = 60.0


# --- the widget ----------------------------------------------------------------------------------

class LiveChart(anywidget.AnyWidget):
    """A candlestick (OHLC[V], with a volume pane) or line chart that updates live.

    ``LiveChart(data=None, stream=None, *, kind="auto", field=None, symbol=None, interval=None,
    volume=True, max_bars=5000, flush_hz=10, height=400, title=None)``; ``LiveChart(stream)``
    also works. ``data`` is a DataFrame (tz-aware or naive-UTC DatetimeIndex, or a ``time``
    column) or a list of rows. ``kind="auto"`` draws candles when open/high/low/close exist and
    no ``field`` is given, else lines: ``field``, or every numeric column of a DataFrame, or
    ``price``/``close`` of rows. ``symbol`` picks one symbol out of multi-symbol rows (default:
    the stream's only symbol, else the first one seen). The last bar updates in place, new bars
    append, the browser keeps the user's zoom and pan (wheel zooms, drag pans, double-click
    goes back to following the newest bar).

    ``data`` may also be a source name: ``LiveChart("simulated", symbol="AAPL",
    interval="1m")`` subscribes (the chart owns that stream) and starts from its history.
    :meth:`show` switches symbol or interval in place.

    ``height``, ``title``, ``volume`` and ``symbol`` are synced traits: setting one restyles the
    chart (``symbol`` is the label; :meth:`show` changes what is plotted).
    """

    _esm = pathlib.Path(__file__).parent / "static" / "chart.js"

    # Serialized from the store whenever ipywidgets reads it (new view, page reload, resync),
    # so the stored value itself stays empty and never goes stale.
    _snapshot = traitlets.Bytes(b"").tag(
        sync=True, to_json=lambda _value, widget: widget._encode_snapshot())
    _max_bars = traitlets.Int(5000).tag(sync=True)
    _interval_ms = traitlets.Int(0).tag(sync=True)
    _interval = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    _generation = traitlets.Int(0).tag(sync=True)  # grows when show() replaces the data
    height = traitlets.Int(400, min=100, max=4000).tag(sync=True)
    title = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    symbol = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    volume = traitlets.Bool(True).tag(sync=True)
    #: "" while the stream is live, else its state ("stale", "closed", "restarting"...): the
    #: page marks the last bar so a dead feed never looks like a quiet market.
    _stale = traitlets.Unicode("").tag(sync=True)

    def __init__(self, data: Any = None, stream: Any = None, *, kind: str = "auto",
                 field: str | None = None, symbol: str | None = None, interval: str | None = None,
                 volume: bool = True, max_bars: int = 5000, flush_hz: float = 10,
                 height: int = 400, title: str | None = None) -> None:
        owned = False
        if isinstance(data, str):
            if stream is not None:
                raise BadRequest("pass either a source name or a stream, not both")
            if not isinstance(symbol, str) or not symbol:
                raise BadRequest(f"LiveChart({data!r}, ...) needs symbol=, e.g. symbol='AAPL'")
            stream, data, owned = subscribe(data, [symbol], check_interval(interval or "1m")), \
                None, True
        if stream is None and _is_stream(data):
            data, stream = None, data
        if stream is not None and not _is_stream(stream):
            raise BadRequest(f"stream must have an on_update(callback) method, got "
                             f"{type(stream).__name__}")
        if kind not in _KINDS:
            raise BadRequest(f"kind must be one of {', '.join(_KINDS)}; got {kind!r}")
        if field is not None and (not isinstance(field, str) or not field):
            raise BadRequest(f"field must be a column name, got {field!r}")
        if symbol is not None and not isinstance(symbol, str):
            raise BadRequest(f"symbol must be a string, got {symbol!r}")
        if isinstance(max_bars, bool) or not isinstance(max_bars, int) or not (
                1 <= max_bars <= _MAX_BARS_LIMIT):
            raise BadRequest(f"max_bars must be an integer from 1 to {_MAX_BARS_LIMIT}, "
                             f"got {max_bars!r}")
        if isinstance(flush_hz, bool) or not isinstance(flush_hz, (int, float)) or not (
                0 < flush_hz <= _MAX_FLUSH_HZ):
            raise BadRequest(f"flush_hz must be a number above 0 and at most {_MAX_FLUSH_HZ:g} "
                             f"(messages per second), got {flush_hz!r}")
        if isinstance(height, bool) or not isinstance(height, int) or not 100 <= height <= 4000:
            raise BadRequest(f"height must be an integer from 100 to 4000 pixels, got {height!r}")
        if title is not None and not isinstance(title, str):
            raise BadRequest(f"title must be a string, got {title!r}")
        if interval is None and stream is not None:
            interval = getattr(stream, "interval", None)
        if interval is not None:
            interval = check_interval(interval)
        if symbol is None and stream is not None:
            symbol = _stream_symbol(stream)

        self._kind_wanted, self._field = kind, field
        self._bar_interval = interval
        self._lock = threading.RLock()        # the window and flush bookkeeping
        self._send_lock = threading.Lock()    # keeps sends (and their seq numbers) in order
        self._loop = FlushLoop(self._flush_due, float(flush_hz),
                               name=f"nbfeed-chart-{id(self):x}")
        self._plan: Plan | None = None
        self._store: BarWindow | None = None
        self._max_bars_n = max_bars
        self._seq = 0
        self._dirty_from: int | None = None   # oldest bar time changed since the last flush
        self._tick: tuple[int, list[float | None]] | None = None
        self._resync = False
        self._source = StreamSource(stream, owned=owned) if stream is not None else None
        self._stats = dict.fromkeys(("rows_received", "rows_rejected", "rows_other_symbol",
                                     "deltas_sent", "snapshots_sent"), 0)
        self._symbol = symbol
        if stream is not None and interval is not None and data is None:
            self._plan_from_interval(interval)
        if data is not None:
            self._ingest(data, strict=True, notify=False)
        try:
            super().__init__(_max_bars=max_bars, _interval_ms=self._bar_ms(), height=height,
                             title=title, symbol=self._symbol, volume=bool(volume),
                             _interval=self._bar_interval)
        except BaseException:
            if self._source is not None:
                self._source.detach()
            raise
        with self._lock:  # the comm's opening message already carried the data
            self._dirty_from, self._resync = None, False
        self.on_msg(self._on_front_msg)
        self._loop.start()
        if self._source is not None:
            self._attach(fetch_history=data is None)

    # -- public API --

    @property
    def kind(self) -> str:
        """``candle``, ``line``, or ``auto`` until the first data decides."""
        return self._plan.kind if self._plan else "auto"

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the chart holds (candles: open, high, low, close, volume)."""
        return self._plan.columns if self._plan else ()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: rows received/rejected/skipped for another symbol, messages sent, bars."""
        with self._lock:
            return {**self._stats, "bars": len(self._store) if self._store else 0,
                    "seq": self._seq}

    def update(self, rows: Any) -> int:
        """Merge rows (a dict, a list of dicts or a DataFrame); safe from any thread.

        A row with the time of an existing bar replaces its values, a later one appends. All
        rows are checked first: a bad one raises BadRequest and nothing is applied. Returns the
        number of rows applied (rows of another symbol are skipped). Sending is asynchronous.
        """
        return self._ingest(rows, strict=True)

    def flush(self) -> None:
        """Send what is pending now, from the calling thread, instead of at the next tick."""
        self._flush_now()

    def to_frame(self) -> pd.DataFrame:
        """The bars the chart holds, indexed by a UTC ``DatetimeIndex`` named ``time``."""
        with self._lock:
            self._commit_tick()
            if self._store is None:
                return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
            times, values = self._store.view()
            index = pd.to_datetime(times, unit="ms", utc=True).rename("time")
            return pd.DataFrame(values.T.copy(), index=index, columns=list(self._store.columns))

    def detach(self) -> None:
        """Stop following the stream; the chart stays on screen and ``update()`` still works.

        The callback the stream holds is disarmed and unregistered (see :mod:`.source`); a
        stream the chart subscribed itself is closed.
        """
        source, self._source = self._source, None
        if source is not None:
            source.detach()

    def close(self) -> None:
        """Detach from the stream, stop the flush thread and close the widget (views go away)."""
        if "_loop" in self.__dict__:  # also runs from __del__ after a failed __init__
            self.detach()
            self._loop.stop()
        super().close()

    def show(self, symbol: str | None = None, interval: str | None = None) -> None:
        """Plot another symbol and/or interval in this same widget (no new output needed).

        Subscribes through the stream's source (``nbfeed.client.connect()``), loads that
        stream's history, and replaces what the chart holds; the browser resets its view.
        The chart owns the new subscription (closing any subscription it owned before).
        """
        source = self._source
        name = source.source if source is not None else None
        if name is None:
            raise BadRequest("show() needs a chart that follows an nbfeed stream (it subscribes "
                             "through the stream's source); this chart has none")
        if symbol is not None and (not isinstance(symbol, str) or not symbol):
            raise BadRequest(f"symbol must be a string, got {symbol!r:.40}")
        new_symbol = symbol or self._symbol or (source.symbols[:1] or [None])[0]
        new_interval = check_interval(interval) if interval is not None else self._bar_interval
        if new_interval == TICK and self._kind_wanted == "candle":
            raise BadRequest("this chart draws candles; a tick stream cannot make them")
        stream = subscribe(name, [new_symbol], new_interval)
        self.detach()
        with self._send_lock, self._lock:
            self._symbol, self._bar_interval = new_symbol, new_interval
            self._plan, self._store, self._tick, self._dirty_from = None, None, None, None
            self._source = StreamSource(stream, owned=True)
            if new_interval is not None:
                self._plan_from_interval(new_interval)
            self.symbol = new_symbol
            self._interval_ms = self._bar_ms()
            self._interval = new_interval
            self._generation += 1
            self._resync = True
        self._attach(fetch_history=True)
        self._loop.poke()

    # -- input --

    def _plan_from_interval(self, interval: str) -> None:
        if interval == TICK:
            cols = (self._field or "price",)
            self._set_plan(Plan("line", cols) if self._kind_wanted != "candle" else None)
        elif self._kind_wanted == "line" or self._field is not None:
            self._set_plan(Plan("line", (self._field or "close",)))
        else:
            self._set_plan(Plan("candle", CANDLE_COLUMNS))

    def _set_plan(self, plan: Plan | None) -> None:
        """Fix what the chart plots, once: the first data (or the stream's interval) decides."""
        if plan is None:
            raise BadRequest("kind='candle' needs a bar stream (interval like '1m'); "
                             "this stream has interval 'tick': use kind='line'")
        with self._lock:
            if self._plan is not None:
                return
            self._plan = plan
            self._store = BarWindow(plan.columns, self._max_bars_n)
            self._resync = True

    def _ingest(self, rows: Any, *, strict: bool, overwrite: bool = True,
                notify: bool = True) -> int:
        collapse = False
        if isinstance(rows, pd.DataFrame):
            times, cols = self._parse_frame(rows)
            parsed: Iterable[tuple[int, list[float | None]]] = zip(times.tolist(), cols,
                                                                   strict=True)
            n_in = len(rows)
        else:
            if type(rows) is dict or isinstance(rows, Mapping):
                rows = [rows]
            elif isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
                raise BadRequest(f"rows must be a dict, a list of dicts or a DataFrame, got "
                                 f"{type(rows).__name__}")
            elif type(rows) is not list:
                rows = list(rows)
            n_in = len(rows)
            parsed = self._parse_rows(rows, strict)
            # Tick rows in line mode: the latest price is plotted once per flush.
            collapse = overwrite and self._bar_interval == TICK
        applied = 0
        with self._lock:
            self._stats["rows_received"] += n_in
            store = self._store
            for t, vals in parsed:
                if store is None:
                    break
                if collapse:
                    self._tick = (t, vals)
                    applied += 1
                elif store.upsert(t, vals, overwrite):
                    applied += 1
                    if self._dirty_from is None or t < self._dirty_from:
                        self._dirty_from = t
        if applied and notify:
            self._loop.poke()
        return applied

    def _parse_frame(self, df: pd.DataFrame) -> tuple[np.ndarray, list[list[float | None]]]:
        times, time_col = frame_times(df)
        cols = [c for c in df.columns if c != time_col]
        df, times, symbol = frame_symbol(df, times, cols, self._symbol)
        if self._symbol is None and symbol is not None:
            self._symbol = symbol
        if self._plan is None:
            self._set_plan(Plan.resolve(self._kind_wanted, self._field, map(str, cols),
                                        [str(c) for c in cols if is_numeric(df[c])],
                                        "the DataFrame", one_series=False))
        return frame_values(df, times, cols, self.kind, self.columns, self._max_bars_n)

    def _parse_rows(self, rows: list[Any], strict: bool) -> list[tuple[int, list[float | None]]]:
        out: list[tuple[int, list[float | None]]] = []
        other = 0
        for i, row in enumerate(rows):
            try:
                item = self._parse_row(i, row)
            except NBFeedError as exc:
                if strict:
                    raise
                self._reject(exc)
                continue
            if item is None:
                other += 1
            else:
                out.append(item)
        if other:
            with self._lock:
                self._stats["rows_other_symbol"] += other
        return out

    def _parse_row(self, i: int, row: Any) -> tuple[int, list[float | None]] | None:
        if type(row) is not dict and not isinstance(row, Mapping):
            raise BadRequest(f"row {i} must be a dict, got {type(row).__name__} {row!r:.60}")
        t = row.get("time")
        if t is None and "time" not in row:
            raise BadRequest(f"row {i} has no 'time' (keys: {', '.join(map(str, row))})")
        sym = row.get("symbol")
        if sym is not None:
            if self._symbol is None:
                self._adopt_symbol(str(sym))
            if sym != self._symbol and str(sym) != self._symbol:
                return None
        if type(t) is not int or not 10**11 <= t < 10**14:  # already epoch ms: the usual case
            try:
                t = to_ms(t, "time")
            except BadRequest as exc:
                raise BadRequest(f"row {i}: {exc}") from None
        if self._plan is None:
            numeric = [k for k, v in row.items() if isinstance(v, (int, float))
                       and not isinstance(v, bool)]
            plan = Plan.resolve(self._kind_wanted, self._field, row.keys(), numeric,
                                 f"row {i}", one_series=True)
            self._set_plan(plan)
            if self._bar_interval is None and plan.kind == "line" and "price" in plan.columns:
                self._bar_interval = TICK
        return t, row_values(row, RowPlace(i, t), self.kind, self.columns)

    def _adopt_symbol(self, sym: str) -> None:
        """A chart without a symbol follows the first one its rows carry."""
        with self._send_lock:  # the trait update is a comm message: keep it in order
            if self._symbol is None:
                self._symbol = sym
                if self.comm is not None:
                    self.symbol = sym

    def _reject(self, exc: Exception) -> None:
        with self._lock:
            n = self._stats["rows_rejected"]
            self._stats["rows_rejected"] = n + 1
        if n == 0 or (n + 1) % 1000 == 0:
            log.warning("LiveChart dropped %d bad stream row(s); latest: %s", n + 1, exc)

    def _bar_ms(self) -> int:
        return (interval_ms(self._bar_interval) if self._bar_interval not in (None, TICK)
                else 0)

    # -- stream --

    def _attach(self, fetch_history: bool) -> None:
        source = self._source
        if source is None:
            return
        source.attach(lambda rows: self._ingest(rows, strict=False), self._on_stream_event)
        if fetch_history:
            # Live rows are already flowing; history fills in around them without overwriting
            # newer values of the open bar.
            self._load_history(source)

    def _on_stream_event(self, event: dict) -> None:
        """The shown symbol's own status events (and the provider's) mark the last bar."""
        if not isinstance(event, dict) or event.get("type") != "status":
            return
        symbol = event.get("symbol")
        if symbol is not None and self._symbol is not None and symbol != self._symbol:
            return
        state = str(event.get("state") or "")
        self._stale = "" if state in ("live", "running", "starting") else state[:20]

    def _load_history(self, source: StreamSource) -> None:
        """Start from the stream's recent bars (a tick line from 1 s, else 1 m, closes)."""
        try:
            if self._bar_interval == TICK:
                frame = self._tick_history(source)
            else:
                frame = source.history(self._max_bars_n)
                if inspect.isawaitable(frame):
                    if inspect.iscoroutine(frame):
                        frame.close()
                    raise BadRequest("stream.history() is asynchronous; the chart needs rows")
            if frame is not None and len(frame):
                self._ingest(frame, strict=True, overwrite=False)
            if self._bar_interval == TICK:
                self._ingest(source.latest_rows(), strict=False, overwrite=False)
        except Exception as exc:  # a live chart without history beats no chart
            warnings.warn(f"LiveChart: could not load history from the stream: {exc}",
                          stacklevel=3)

    def _tick_history(self, source: StreamSource) -> pd.DataFrame | None:
        """Recent bar closes as the tick line's past (the plotted field), or None."""
        if self._plan is None or self._plan.kind != "line" or len(self._plan.columns) != 1:
            return None
        field = self._plan.columns[0]
        for interval in ("1s", "1m"):
            try:
                bars = source.history(min(self._max_bars_n, 600), interval=interval)
            except TypeError:
                return None  # a stream whose history() takes no interval
            except NBFeedError:
                continue  # the source has no bars at this interval
            if isinstance(bars, pd.DataFrame) and len(bars) and "close" in bars.columns:
                out = bars[["close"]].rename(columns={"close": field})
                return out if isinstance(out.index, pd.DatetimeIndex) else None
        return None

    # -- sending --

    def _encode_snapshot(self) -> bytes:
        with self._lock:
            if self._store is None:
                return encode_frame(self._seq, (), np.empty(0), np.empty((0, 0)))
            times, values = self._store.view()
            return encode_frame(self._seq, self._store.columns, times, values)

    def _on_front_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("kind") == "resync":
            with self._lock:
                self._resync = True
            self._loop.poke()

    def _commit_tick(self) -> None:
        if self._tick is not None and self._store is not None:
            t, vals = self._tick
            self._tick = None
            if self._store.upsert(t, vals) and (self._dirty_from is None or t < self._dirty_from):
                self._dirty_from = t

    def _pending(self) -> bool:
        return self._resync or self._dirty_from is not None or self._tick is not None

    def _flush_due(self) -> float | None:
        """One flush on the FlushLoop's thread (at most ``flush_hz`` a second)."""
        if self._pending():
            self._flush_now()
        return None

    def _flush_now(self) -> None:
        with self._send_lock:
            with self._lock:
                self._commit_tick()
                snapshot, self._resync = self._resync, False
                payload = None
                if snapshot:
                    self._dirty_from = None
                elif self._dirty_from is not None and self._store is not None:
                    times, values = self._store.since(self._dirty_from)
                    self._dirty_from = None
                    if len(times):
                        self._seq += 1
                        payload = encode_frame(self._seq, self._store.columns, times, values)
                seq = self._seq
            if snapshot:
                self._stats["snapshots_sent"] += 1
                self.send_state("_snapshot")
            elif payload is not None:
                self._stats["deltas_sent"] += 1
                self.send({"kind": "delta", "seq": seq}, [payload])


def _is_stream(obj: Any) -> bool:
    return callable(getattr(obj, "on_update", None)) and not isinstance(obj, pd.DataFrame)


def _stream_symbol(stream: Any) -> str | None:
    symbols = StreamSource(stream, owned=False).symbols
    return symbols[0] if len(symbols) == 1 else None
