"""``LiveChart``: a live candlestick or line chart in a notebook, drawn by bundled JavaScript.

Usage::

    from nbfeed.widgets.chart import LiveChart

    LiveChart(df)                        # OHLC[V] columns -> candles (+ volume pane), else lines
    chart = LiveChart(stream)            # history (if the stream has it) then live bars
    chart = LiveChart(df, stream, max_bars=2000, title="AAPL 1m")
    chart.update([{"time": 1767225600000, "open": 1, "high": 2, "low": 0.5, "close": 1.5}])
    chart.to_frame()                     # the bars the chart holds, as a DataFrame
    chart.close()                        # stop following the stream and close the widget

A stream is any object with ``on_update(callback)``; the callback gets lists of nbfeed rows from
any thread. Optional: ``interval`` ("1m", "tick"...), ``symbol``/``symbols``, ``history(count)``
and ``latest``. The chart never starts or stops the stream itself.

How updates travel (see docs GRID.md: message count, not bytes, is what the Jupyter path pays
for): rows are merged into a bounded, time-keyed store as they arrive (a bar with the same time
replaces the open bar, a later one appends, at most ``max_bars`` are kept). A background thread
sends at most ``flush_hz`` messages per second, each one binary ``delta`` carrying every bar
changed since the last one, with a sequence number. The browser applies deltas once per animation
frame; on a sequence gap (a view opened late, a message lost) it asks for a resync and the
kernel answers with one ``_snapshot`` state update. A new view, a page reload or a saved notebook
reads ``_snapshot``, which is serialized from the store when it is read, so it is always current.
For tick streams in line mode each flush adds at most one point (the latest price). The flush
runs on its own thread rather than the kernel's event loop so that updates keep flowing while a
cell is running.

Failure behaviour: ``update()`` validates every row before applying any and raises
:class:`nbfeed.errors.BadRequest` naming the bad row and value. Rows from a stream are validated
the same way but bad ones are dropped (counted in ``stats``, logged once) so one bad row cannot
break the stream's thread. If sending fails (kernel shutting down) the error is logged and the
flush thread carries on.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import pathlib
import struct
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from ..errors import BadRequest, NBFeedError
from ..intervals import TICK, check_interval, interval_ms
from ..timeutil import to_ms

__all__ = ["LiveChart", "decode_frame", "encode_frame"]

log = logging.getLogger("nbfeed.widgets.chart")

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")
_OHLC = CANDLE_COLUMNS[:4]
_TIME_NAMES = ("time", "date", "timestamp", "datetime")
_KINDS = ("auto", "candle", "line")
_MAX_BARS_LIMIT = 1_000_000
_MAX_FLUSH_HZ = 60.0
_MAGIC = b"NBCF"


# --- wire format ---------------------------------------------------------------------------------

def encode_frame(seq: int, columns: Sequence[str], times: np.ndarray, values: np.ndarray) -> bytes:
    """Bars as one binary frame: ``NBCF``, uint32 header length, JSON header, float64 columns.

    The JSON header is ``{"seq", "n", "columns"}`` padded with spaces so the arrays start on an
    8-byte boundary (the browser can view them as ``Float64Array`` without copying). Then ``n``
    times (epoch ms) and ``n`` values per column, all little-endian float64. Snapshots and deltas
    share the format; a delta's bars are upserts by time.
    """
    n = len(times)
    header = json.dumps({"seq": seq, "n": n, "columns": list(columns)}).encode()
    header += b" " * (-(8 + len(header)) % 8)
    body = np.asarray(times, dtype="<f8").tobytes() + np.asarray(values, dtype="<f8").tobytes()
    return _MAGIC + struct.pack("<I", len(header)) + header + body


def decode_frame(data: bytes | memoryview) -> dict[str, Any]:
    """Read :func:`encode_frame` output: ``{"seq", "columns", "times": int64[], name: float64[]}``.

    For tests and tools that inspect what the chart sends. Raises ValueError on a malformed frame.
    """
    raw = bytes(data)
    if len(raw) < 8 or raw[:4] != _MAGIC:
        raise ValueError("not a LiveChart frame (missing NBCF magic)")
    (hlen,) = struct.unpack("<I", raw[4:8])
    header = json.loads(raw[8:8 + hlen])
    n, columns = header["n"], header["columns"]
    arrays = np.frombuffer(raw, dtype="<f8", offset=8 + hlen)
    if arrays.size != n * (len(columns) + 1):
        raise ValueError(f"frame holds {arrays.size} numbers, header says {n} x {len(columns) + 1}")
    out: dict[str, Any] = {"seq": header["seq"], "columns": columns,
                           "times": arrays[:n].astype(np.int64)}
    for k, name in enumerate(columns):
        out[name] = arrays[n * (k + 1):n * (k + 2)].copy()
    return out


# --- the bounded bar store -----------------------------------------------------------------------

class _BarStore:
    """Time-sorted bars (int64 ms + float64 columns); keeps the newest ``max_bars``.

    Arrays grow to twice ``max_bars`` and are compacted when full, so appends are amortized O(1)
    and memory stays flat. Not thread-safe: the chart holds its lock around every call.
    """

    def __init__(self, columns: Sequence[str], max_bars: int) -> None:
        self.columns = tuple(columns)
        self.max_bars = max_bars
        cap = min(2 * max_bars, 1024)
        self._t = np.empty(cap, np.int64)
        self._v = np.empty((len(self.columns), cap), np.float64)
        self._lo = self._hi = 0

    def __len__(self) -> int:
        return self._hi - self._lo

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self._t[self._lo:self._hi], self._v[:, self._lo:self._hi]

    def since(self, t0: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the bars with time >= ``t0``."""
        i = self._lo + int(np.searchsorted(self._t[self._lo:self._hi], t0))
        return self._t[i:self._hi].copy(), self._v[:, i:self._hi].copy()

    def upsert(self, t: int, vals: Sequence[float | None], overwrite: bool = True) -> bool:
        """Replace the bar at ``t`` (values that are None are kept) or insert it in order.

        Returns False when nothing changed: the bar exists and ``overwrite`` is off, or it is
        older than a full window.
        """
        lo, hi = self._lo, self._hi
        if hi > lo and t <= self._t[hi - 1]:
            i = hi - 1 if t == self._t[hi - 1] else lo + int(np.searchsorted(self._t[lo:hi], t))
            if self._t[i] == t:
                if not overwrite:
                    return False
                for k, v in enumerate(vals):
                    if v is not None:
                        self._v[k, i] = v
                return True
            if hi - lo >= self.max_bars and i == lo:
                return False
            self._make_room()
            i += self._lo - lo
            lo, hi = self._lo, self._hi
            self._t[i + 1:hi + 1] = self._t[i:hi]
            self._v[:, i + 1:hi + 1] = self._v[:, i:hi]
        else:
            self._make_room()
            i = self._hi
        self._t[i] = t
        for k, v in enumerate(vals):
            self._v[k, i] = np.nan if v is None else v
        self._hi += 1
        if self._hi - self._lo > self.max_bars:
            self._lo = self._hi - self.max_bars
        return True

    def _make_room(self) -> None:
        """Ensure one free slot after ``_hi``: compact to the front, or grow up to 2*max_bars."""
        cap = len(self._t)
        if self._hi < cap:
            return
        n = self._hi - self._lo
        if cap < 2 * self.max_bars and n * 2 > cap:
            new_cap = min(2 * cap, 2 * self.max_bars)
            t, v = np.empty(new_cap, np.int64), np.empty((len(self.columns), new_cap), np.float64)
        else:
            t, v = self._t, self._v
        t[:n] = self._t[self._lo:self._hi]
        v[:, :n] = self._v[:, self._lo:self._hi]
        self._t, self._v, self._lo, self._hi = t, v, 0, n


# --- reading input -------------------------------------------------------------------------------

class _RowPlace:
    """``row 3 (time ...)`` for error messages, formatted only when an error is raised."""

    __slots__ = ("i", "t")

    def __init__(self, i: int, t: int) -> None:
        self.i, self.t = i, t

    def __str__(self) -> str:
        return f"row {self.i} (time {self.t})"


def _check_number(value: Any, name: str, where: Any, allow_nan: bool = False) -> float:
    if type(value) is float:
        if value - value == 0.0:  # finite (inf - inf and nan - nan are nan): the common case
            return value
        f = value
    elif value is None or isinstance(value, (bool, str, bytes)):
        raise BadRequest(f"{where}: {name} must be a number, got {value!r:.60}")
    else:
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise BadRequest(f"{where}: {name} must be a number, got "
                             f"{type(value).__name__} {value!r:.60}") from None
    if not math.isfinite(f) and not (allow_nan and f != f):
        raise BadRequest(f"{where}: {name} is {f}, expected a finite number")
    return f


def _datetimes_to_ms(values: Any, what: str) -> np.ndarray:
    idx = pd.DatetimeIndex(values)
    if idx.hasnans:
        raise BadRequest(f"{what} holds a missing time (NaT)")
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return idx.as_unit("ms").asi8.astype(np.int64)


def _numbers_to_ms(col: pd.Series, what: str) -> np.ndarray:
    """Epoch s/ms/us/ns by magnitude, as :func:`nbfeed.timeutil.number_to_ms` reads one number."""
    a = col.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(a).all():
        raise BadRequest(f"{what} holds a missing or infinite time")
    if pd.api.types.is_integer_dtype(col.dtype):
        i = col.to_numpy(dtype=np.int64)
        m = np.abs(i)
        return np.where(m < 10**11, i * 1000,
                        np.where(m < 10**14, i, np.where(m < 10**17, i // 1000, i // 10**6)))
    m = np.abs(a)
    ms = np.where(m < 1e11, np.round(a * 1000),
                  np.where(m < 1e14, a, np.where(m < 1e17, a // 1000, a // 1e6)))
    return ms.astype(np.int64)


def _frame_times(df: pd.DataFrame) -> tuple[np.ndarray, str | None]:
    """Epoch ms of every row and the name of the column they came from (None: the index)."""
    if isinstance(df.index, pd.DatetimeIndex):
        return _datetimes_to_ms(df.index, "the DataFrame's index"), None
    lower = {str(c).lower(): c for c in df.columns}
    name = next((lower[n] for n in _TIME_NAMES if n in lower), None)
    if name is None:
        raise BadRequest(
            "the DataFrame needs a DatetimeIndex or a 'time' column (epoch ms or datetimes); "
            f"got a {type(df.index).__name__} and columns {', '.join(map(str, df.columns))}")
    col = df[name]
    what = f"column {name!r}"
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return _datetimes_to_ms(col, what), name
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return _numbers_to_ms(col, what), name
    return np.array([to_ms(v, str(name)) for v in col], dtype=np.int64), name


def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)


class _Plan:
    """What the chart plots: ``kind``, the store's columns and the row fields they read."""

    def __init__(self, kind: str, columns: Sequence[str]) -> None:
        self.kind = kind
        self.columns = tuple(columns)

    @classmethod
    def resolve(cls, kind: str, field: str | None, keys: Iterable[str], numeric: Iterable[str],
                what: str, one_series: bool) -> _Plan:
        """Decide from the first data's keys; ``one_series``: rows plot price or close only."""
        keys = [str(k) for k in keys]
        lower = {k.lower() for k in keys}
        has_ohlc = all(c in lower for c in _OHLC)
        if kind == "candle" or (kind == "auto" and has_ohlc and field is None):
            if not has_ohlc:
                raise BadRequest(f"kind='candle' needs open, high, low and close; {what} has "
                                 f"{', '.join(keys) or 'nothing'}")
            return cls("candle", CANDLE_COLUMNS)
        if field is None and has_ohlc:
            field = next(k for k in keys if k.lower() == "close")
        if field is not None:
            if field not in keys:
                raise BadRequest(f"field {field!r} is not in {what} ({', '.join(keys)})")
            return cls("line", (field,))
        numeric = [str(k) for k in numeric if str(k).lower() not in (*_TIME_NAMES, "symbol")]
        for preferred in ("price", "close", "value"):
            if preferred in numeric:
                return cls("line", (preferred,) if one_series else numeric)
        if not numeric:
            raise BadRequest(f"{what} has no numeric column to plot ({', '.join(keys) or 'empty'})")
        return cls("line", numeric)


# --- the widget ----------------------------------------------------------------------------------

class _StreamListener:
    """The callback handed to a stream; disarmed on detach so the stream stops holding the chart."""

    def __init__(self, chart: LiveChart) -> None:
        self.chart: LiveChart | None = chart

    def __call__(self, rows: Any) -> None:
        chart = self.chart
        if chart is not None:
            chart._ingest(rows, strict=False)


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

    ``height``, ``title``, ``volume`` and ``symbol`` are synced traits: setting one restyles the
    chart (``symbol`` is the label; which rows are plotted is fixed at construction).
    """

    _esm = pathlib.Path(__file__).parent / "static" / "chart.js"

    # Serialized from the store whenever ipywidgets reads it (new view, page reload, resync),
    # so the stored value itself stays empty and never goes stale.
    _snapshot = traitlets.Bytes(b"").tag(
        sync=True, to_json=lambda _value, widget: widget._encode_snapshot())
    _max_bars = traitlets.Int(5000).tag(sync=True)
    _interval_ms = traitlets.Int(0).tag(sync=True)
    height = traitlets.Int(400, min=100, max=4000).tag(sync=True)
    title = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    symbol = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    volume = traitlets.Bool(True).tag(sync=True)

    def __init__(self, data: Any = None, stream: Any = None, *, kind: str = "auto",
                 field: str | None = None, symbol: str | None = None, interval: str | None = None,
                 volume: bool = True, max_bars: int = 5000, flush_hz: float = 10,
                 height: int = 400, title: str | None = None) -> None:
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
        self._interval = interval
        self._flush_period = 1.0 / float(flush_hz)
        self._lock = threading.RLock()        # the store and flush bookkeeping
        self._send_lock = threading.Lock()    # keeps sends (and their seq numbers) in order
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._plan: _Plan | None = None
        self._store: _BarStore | None = None
        self._max_bars_n = max_bars
        self._seq = 0
        self._dirty_from: int | None = None   # oldest bar time changed since the last flush
        self._tick: tuple[int, list[float | None]] | None = None
        self._resync = False
        self._flusher: threading.Thread | None = None
        self._listener: _StreamListener | None = None
        self._unsubscribe: Callable[[], Any] | None = None
        self._stream = stream
        self._stats = dict.fromkeys(("rows_received", "rows_rejected", "rows_other_symbol",
                                     "deltas_sent", "snapshots_sent"), 0)
        self._symbol = symbol
        if stream is not None and interval is not None and data is None:
            self._plan_from_interval(interval)
        if data is not None:
            self._ingest(data, strict=True, notify=False)
        super().__init__(_max_bars=max_bars, _interval_ms=self._bar_ms(), height=height,
                         title=title, symbol=self._symbol, volume=bool(volume))
        with self._lock:  # the comm's opening message already carried the data
            self._dirty_from, self._resync = None, False
        self.on_msg(self._on_front_msg)
        if stream is not None:
            self._attach(stream, fetch_history=data is None)

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

        Unregisters with what ``stream.on_update`` returned when that is callable, else with
        ``stream.off_update(callback)`` if the stream has it; either way the callback the stream
        holds is disarmed and no longer references the chart.
        """
        listener, unsubscribe, stream = self._listener, self._unsubscribe, self._stream
        self._listener = self._unsubscribe = self._stream = None
        if listener is None:
            return
        listener.chart = None
        try:
            if unsubscribe is not None:
                unsubscribe()
            elif hasattr(stream, "off_update"):
                stream.off_update(listener)
        except Exception:
            log.warning("could not unregister the chart from %r", stream, exc_info=True)

    def close(self) -> None:
        """Detach from the stream, stop the flush thread and close the widget (views go away)."""
        if hasattr(self, "_wake"):  # also runs from __del__ after a failed __init__
            self.detach()
            with self._lock:
                self._stop.set()
                self._wake.notify_all()
        super().close()

    # -- input --

    def _plan_from_interval(self, interval: str) -> None:
        if interval == TICK:
            cols = (self._field or "price",)
            self._set_plan(_Plan("line", cols) if self._kind_wanted != "candle" else None)
        elif self._kind_wanted == "line" or self._field is not None:
            self._set_plan(_Plan("line", (self._field or "close",)))
        else:
            self._set_plan(_Plan("candle", CANDLE_COLUMNS))

    def _set_plan(self, plan: _Plan | None) -> None:
        """Fix what the chart plots, once: the first data (or the stream's interval) decides."""
        if plan is None:
            raise BadRequest("kind='candle' needs a bar stream (interval like '1m'); "
                             "this stream has interval 'tick': use kind='line'")
        with self._lock:
            if self._plan is not None:
                return
            self._plan = plan
            self._store = _BarStore(plan.columns, self._max_bars_n)
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
            collapse = overwrite and self._interval == TICK
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
                self._start_flusher()
                self._wake.notify()
        return applied

    def _parse_frame(self, df: pd.DataFrame) -> tuple[np.ndarray, list[list[float | None]]]:
        times, time_col = _frame_times(df)
        cols = [c for c in df.columns if c != time_col]
        sym_col = next((c for c in cols if str(c).lower() == "symbol"), None)
        if sym_col is not None:
            symbols = [str(s) for s in pd.unique(df[sym_col].dropna())]
            if self._symbol is None and len(symbols) > 1:
                raise BadRequest(f"the DataFrame holds several symbols ({', '.join(symbols[:5])})"
                                 "; pass symbol= to pick one")
            if self._symbol is None and len(symbols) == 1:
                self._symbol = symbols[0]
            if self._symbol is not None:
                keep = (df[sym_col].astype(str) == self._symbol).to_numpy()
                df, times = df[keep], times[keep]
        if self._plan is None:
            self._set_plan(_Plan.resolve(self._kind_wanted, self._field, map(str, cols),
                                         [str(c) for c in cols if _numeric(df[c])],
                                         "the DataFrame", one_series=False))
        lower = {str(c).lower(): c for c in cols}
        order = np.argsort(times, kind="stable")
        times = times[order]
        # Keep the last row of each duplicated time, as a live update would.
        last = np.append(times[1:] != times[:-1], True) if len(times) else np.array([], bool)
        times, order = times[last][-self._max_bars_n:], order[last][-self._max_bars_n:]
        matrix = np.full((len(times), len(self.columns)), np.nan)
        for k, name in enumerate(self.columns):
            col = name if name in df.columns else lower.get(name.lower())
            if col is None:
                if self.kind == "candle" and name == "volume":
                    continue
                raise BadRequest(f"the DataFrame has no column {name!r} (the chart plots "
                                 f"{', '.join(self.columns)})")
            if not _numeric(df[col]):
                raise BadRequest(f"column {col!r} is not numeric (dtype {df[col].dtype})")
            values = df[col].to_numpy(dtype=np.float64, na_value=np.nan)[order]
            gaps_ok = self.kind == "line" or name == "volume"  # NaN: a gap in a line
            bad = np.isinf(values) | (False if gaps_ok else np.isnan(values))
            if bad.any():
                at = pd.Timestamp(int(times[np.argmax(bad)]), unit="ms", tz="UTC")
                raise BadRequest(f"column {col!r} is {values[np.argmax(bad)]} at {at}; "
                                 "expected a finite number")
            matrix[:, k] = values
        return times, [[None if v != v else v for v in row] for row in matrix.tolist()]

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
            plan = _Plan.resolve(self._kind_wanted, self._field, row.keys(), numeric,
                                 f"row {i}", one_series=True)
            self._set_plan(plan)
            if self._interval is None and plan.kind == "line" and "price" in plan.columns:
                self._interval = TICK
        where = _RowPlace(i, t)
        if self.kind == "candle":
            try:
                vals: list[float | None] = [row["open"], row["high"], row["low"], row["close"],
                                            row.get("volume")]
            except KeyError:
                missing = [c for c in _OHLC if c not in row]
                raise BadRequest(f"{where} has no {', '.join(missing)} (a candle needs open, "
                                 "high, low, close)") from None
            for k, v in enumerate(vals):
                # Finite floats (v - v == 0) pass without a call; a missing volume is allowed.
                if (type(v) is not float or v - v != 0.0) and (k < 4 or v is not None):
                    vals[k] = _check_number(v, CANDLE_COLUMNS[k], where, allow_nan=k == 4)
            return t, vals
        vals = [None if row.get(c) is None else _check_number(row[c], c, where)
                for c in self.columns]
        if all(v is None for v in vals):
            raise BadRequest(f"{where} has none of the plotted fields ({', '.join(self.columns)})")
        return t, vals

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
        return interval_ms(self._interval) if self._interval not in (None, TICK) else 0

    # -- stream --

    def _attach(self, stream: Any, fetch_history: bool) -> None:
        self._listener = _StreamListener(self)
        token = stream.on_update(self._listener)
        # nbfeed's Stream returns the callback itself (decorator use) and has off_update.
        self._unsubscribe = (token if callable(token) and token is not self._listener
                             else None)
        if not fetch_history:
            return
        # Live rows are already flowing; history fills in around them without overwriting
        # newer values of the open bar.
        try:
            if callable(getattr(stream, "history", None)):
                rows = stream.history(self._max_bars_n)
                if inspect.isawaitable(rows):
                    if inspect.iscoroutine(rows):
                        rows.close()
                    raise BadRequest("stream.history() is asynchronous; the chart needs rows")
                if rows is not None:
                    self._ingest(rows, strict=True, overwrite=False)
            latest = getattr(stream, "latest", None)
            if self._interval == TICK and latest is not None:
                if isinstance(latest, pd.DataFrame):
                    latest = latest.reset_index().to_dict("records")
                self._ingest(latest, strict=False, overwrite=False)
        except Exception as exc:  # a live chart without history beats no chart
            warnings.warn(f"LiveChart: could not load history from the stream: {exc}",
                          stacklevel=3)

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
                self._start_flusher()
                self._wake.notify()

    def _commit_tick(self) -> None:
        if self._tick is not None and self._store is not None:
            t, vals = self._tick
            self._tick = None
            if self._store.upsert(t, vals) and (self._dirty_from is None or t < self._dirty_from):
                self._dirty_from = t

    def _start_flusher(self) -> None:
        if self._flusher is None and not self._stop.is_set():
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                             name=f"nbfeed-chart-{self.model_id[:8]}")
            self._flusher.start()

    def _pending(self) -> bool:
        return self._resync or self._dirty_from is not None or self._tick is not None

    def _flush_loop(self) -> None:
        """At most one message per period; the first change after a quiet spell goes at once."""
        while True:
            with self._lock:
                self._wake.wait_for(lambda: self._pending() or self._stop.is_set())
            if self._stop.is_set():
                return
            try:
                self._flush_now()
            except Exception:
                log.exception("LiveChart could not send an update")
            if self._stop.wait(self._flush_period):
                return

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
    sym = getattr(stream, "symbol", None)
    if isinstance(sym, str):
        return sym
    syms = getattr(stream, "symbols", None)
    if isinstance(syms, (list, tuple)) and len(syms) == 1 and isinstance(syms[0], str):
        return syms[0]
    return None
