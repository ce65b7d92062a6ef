"""``nbfeed.LiveGrid``: a live table whose changed cells flash, drawn by nbfeed's own front end.

Usage::

    grid = nbfeed.LiveGrid("simulated", ["AAPL", "MSFT"], interval="tick")
    grid = nbfeed.LiveGrid(stream, columns=["symbol", "price", {"field": "volume", "live": False}])
    grid = nbfeed.LiveGrid(columns=["symbol", "price"])   # fed by hand: grid.update(rows)
    grid.on_click(lambda row: print(row["symbol"]))       # a clicked row, back in Python

Design:

- **Widget**: an anywidget whose browser half (``static/grid.js``) draws a virtualised DOM
  table: only the rows on screen exist as elements and only cells whose text changed are
  touched. The kernel keeps the table; sort and filter run here (:mod:`.grid_order`).
  It replaced an ipydatagrid ``StreamingDataGrid`` because that one could not keep up in the
  browser: measured in JupyterLab + headless Chromium with 40+ streaming symbols, each update
  message cost the page 130-150 ms in Lumino's per-cell canvas blits, so the page painted 1-2
  frames/s at 99% main-thread busy and fell minutes behind (``bench/grid_browser.py`` measures
  both this grid and Perspective's widget on the same stream).
- **Coalescing**: upstream rows (from any thread) land in an :class:`UpdateBuffer` - latest value
  per (row, field) - and a :class:`FlushLoop` thread applies them at most ``flush_hz`` times a
  second, whatever the upstream rate.
- **Frames and back-pressure** (:mod:`.grid_viewport`): a flush sends at most one frame, the
  rows of the page's window that changed, as binary columns; the page acknowledges each frame
  after drawing it and the next one waits for that, so the kernel never sends faster than the
  page draws (slower under load, never behind). Without acknowledgements (no view yet) it falls
  back to one full frame per second; while a cell runs (acknowledgements cannot be read then)
  frames go at ``flush_hz`` unacknowledged.
- **Flashes** are drawn by the browser: the kernel marks each sent cell that rose or fell; the
  page pulses its background for ``flash_ms`` and fades it. A cell that keeps changing pulses at
  most once every two seconds and otherwise shows its latest direction as a thin coloured bar,
  so a busy grid never turns into a wash of colour.
- **Candles**: rows keyed by (symbol, time): the open bar updates in place, a new time appends,
  and ``max_rows`` bounds the rolling window; ``follow`` keeps the newest bar in view until the
  user scrolls away.

Several views of one grid (the same output shown twice) share the kernel's window: the last one
that scrolled decides which rows are sent.

Failure behaviour: a flush that raises is logged and the grid keeps going; rows without the row
id raise :class:`BadRequest` in the caller's thread (the stream's callback); a value that is not
a number shows blank, with one warning per field; malformed browser messages are logged and
ignored. ``close()`` stops the flush thread, closes a subscription the grid opened itself and
closes the widget.
"""

from __future__ import annotations

import logging
import pathlib
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from ..errors import BadRequest
from ..intervals import is_bar
from .coalesce import FlushLoop, RateMeter, UpdateBuffer
from .grid_columns import (
    Column,
    browser_columns,
    default_column_names,
    parse_columns,
    standard_fields,
    time_format,
    with_support_fields,
)
from .grid_inputs import (
    check_bool,
    check_flash_ms,
    check_flush_hz,
    check_max_height,
    check_max_rows,
    check_stale_after,
    check_timezone,
    is_index,
    key_fields_for,
    key_function,
    resolve_stream,
    stream_interval,
)
from .grid_order import check_transforms, display_order
from .grid_table import GridTable
from .grid_viewport import CELLS, Viewport
from .source import frame_rows

log = logging.getLogger(__name__)

_STATIC = pathlib.Path(__file__).parent / "static"
_GRID_OPTIONS = ("layout", "column_widths")
_LIVE_STATES = ("running", "live", "starting")


class LiveGrid(anywidget.AnyWidget):
    """A live grid of a stream's rows, keyed by ``row_id``, updated in place.

    Parameters
    ----------
    stream:
        A stream (anything with ``on_update(callback)``; see :mod:`.source`), or a source name -
        then ``symbols`` and ``interval`` are passed to ``nbfeed.connect().subscribe(...)`` and
        the grid closes that subscription on :meth:`close` - or None to feed the grid with
        :meth:`update`.
    columns:
        Field names, :class:`~nbfeed.widgets.grid_columns.Column` objects, nbfeed dicts or
        Workspace ``columnsDefs`` entries (mapping in :mod:`.grid_columns`). Default: the
        stream's fields. ``"age"`` adds a column counting seconds since each row's ``time``.
    row_id:
        Field (or fields) identifying a row. Candle streams add ``time``: one row per bar.
    flash_ms:
        How long a changed cell's highlight takes to fade (0 turns highlights off).
    flush_hz:
        Most frames (screen updates) per second, 0 < flush_hz <= 60.
    max_rows:
        Rolling window: beyond it the oldest rows are dropped (default 1,000 for candles,
        10,000 otherwise).
    newest_first:
        Show the newest row at the top.
    follow:
        Keep the newest row in view as rows are appended, until the user scrolls away (default:
        on for candle streams).
    timezone:
        IANA name of the zone times are shown in (default UTC; the header says which).
    max_height:
        The grid grows with its rows up to this many pixels, then scrolls.
    stale_after:
        Seconds without an update after which a row is dimmed (default: never; rows are also
        dimmed while the stream reports them stale).
    **grid_options:
        ``layout`` (ipywidgets Layout) and ``column_widths`` (header or field -> pixels).
    """

    _esm = _STATIC / "grid.js"
    _css = _STATIC / "grid.css"

    _columns = traitlets.List().tag(sync=True)
    _options = traitlets.Dict().tag(sync=True)
    _status = traitlets.Dict().tag(sync=True)
    _selected_uid = traitlets.Int(0).tag(sync=True)

    def __init__(
        self,
        stream: Any = None,
        symbols: str | Sequence[str] | None = None,
        *,
        interval: str | None = None,
        columns: Iterable[str | Mapping[str, Any] | Column] | None = None,
        row_id: str | Sequence[str] = "symbol",
        flash_ms: float = 400,
        flush_hz: float = 10.0,
        max_rows: int | None = None,
        newest_first: bool = False,
        follow: bool | None = None,
        timezone: str = "UTC",
        max_height: int = 420,
        stale_after: float | None = None,
        **grid_options: Any,
    ) -> None:
        self._ready = False
        self._closed = False
        self.flush_hz = check_flush_hz(flush_hz)
        self.flash_ms = check_flash_ms(flash_ms)
        self.newest_first = check_bool(newest_first, "newest_first")
        if follow is not None:
            check_bool(follow, "follow")
        if max_rows is not None:
            check_max_rows(max_rows)
        timezone = check_timezone(timezone)
        max_height = check_max_height(max_height)
        stale_after = check_stale_after(stale_after)
        unknown = sorted(set(grid_options) - set(_GRID_OPTIONS))
        if unknown:
            raise BadRequest(f"unknown LiveGrid option(s) {', '.join(unknown)}; accepted: "
                             f"{', '.join(_GRID_OPTIONS)} besides the named parameters")
        self._source = resolve_stream(stream, symbols, interval)
        self.stream = self._source.stream if self._source is not None else None
        try:
            self._setup(interval, columns, row_id, max_rows, grid_options, {
                "follow": follow, "timezone": timezone, "max_height": max_height,
                "stale_after": stale_after})
        except BaseException:
            # Nothing may outlive a failed construction: rows still arriving are dropped and a
            # subscription opened for this grid is closed.
            self._closed = True
            if self._source is not None:
                self._source.detach()
            raise

    def _setup(
        self,
        interval: str | None,
        columns: Iterable[str | Mapping[str, Any] | Column] | None,
        row_id: str | Sequence[str],
        max_rows: int | None,
        grid_options: dict[str, Any],
        options: dict[str, Any],
    ) -> None:
        source = self._source
        self.interval = stream_interval(source, interval)
        bar = is_bar(self.interval)
        self.key_fields = key_fields_for(row_id, bar)
        self.max_rows = max_rows if max_rows is not None else (1_000 if bar else 10_000)

        # Listen before reading the snapshot, so no row falls between the two: rows arriving
        # now wait in the buffer and are applied on top of the snapshot.
        self._key_of = key_function(self.key_fields)
        self._buffer = UpdateBuffer()
        self._loop = FlushLoop(self._flush, self.flush_hz, name=f"nbfeed-grid-{id(self):x}")
        self.stats = {"rows_received": 0, "flushes": 0, "frames": 0, "full_frames": 0,
                      "acks": 0}
        self._click_callbacks: list[Callable[[dict[str, Any]], Any]] = []
        self.selected: dict[str, Any] | None = None
        self._source_state = "live"
        self._symbol_states: dict[str, str] = {}
        if source is not None:
            source.attach(self.update, self._on_stream_event)

        latest = source.latest_rows() if source is not None else []
        latest_cols = list(latest[0].keys()) if latest else []
        known = None
        if source is not None:
            known = set(standard_fields(bar)) | set(latest_cols) | set(source.fields) | {"age"}
        specs = columns if columns is not None else default_column_names(bar, latest_cols)
        spec = parse_columns(
            specs, key_fields=self.key_fields, known_fields=known,
            time_fmt=time_format(self.interval),
        )
        if self.flash_ms == 0:  # highlights off
            spec = [replace(c, flash=False) for c in spec]
        spec = with_support_fields(spec, price=("close" if bar else "price")
                                   if source is not None else None)
        self.columns_spec = spec
        self._headers = {c.field: c.header for c in spec if not c.hide}

        self._lock = threading.RLock()
        self._flushed = threading.Condition()
        self._applied = 0
        self._table = GridTable(spec, self.key_fields, max_rows=self.max_rows,
                                flash_s=self.flash_ms / 1000.0)
        self._viewport = Viewport(self.flush_hz)
        CELLS.hook()
        self._transforms: list[dict[str, Any]] = []
        self._order = np.arange(0)
        self._order_key: tuple[int, int] = (-1, -1)
        self._transform_version = 0
        self._sent_state: tuple[int, int] = (-1, -1)
        self._force = False
        self._rate = RateMeter()
        if latest:
            self._table.apply(self._merge(latest), time.monotonic())
        # What the browser draws: text fields go as JSON, numbers (and times) as float64.
        wire = [c for c in spec if c.kind != "age"]
        self._text_fields = [c.field for c in wire if c.kind == "text"]
        self._num_fields = [c.field for c in wire if c.kind != "text"]

        visible = browser_columns(spec, grid_options.pop("column_widths", {}) or {})
        follow = options["follow"] if options["follow"] is not None else bar
        super().__init__(
            _columns=visible,
            _options={
                "flash_ms": self.flash_ms, "max_height": options["max_height"],
                "timezone": options["timezone"], "follow": follow,
                "newest_first": self.newest_first, "stale_after": options["stale_after"],
                "time_field": "time" if "time" in self._num_fields else None,
                "symbol_field": "symbol" if "symbol" in self._table.fields else None,
            },
            _status={"state": "live"},
            **grid_options,
        )
        self.on_msg(self._on_front_msg)
        # A stream that was already stale before this grid existed says so here, not only on
        # its next change of state.
        statuses = getattr(getattr(source, "stream", None), "statuses", None)
        if isinstance(statuses, dict):
            for symbol, state in statuses.items():
                if state in ("stale", "closed"):
                    self._on_stream_event({"type": "status", "symbol": symbol, "state": state})
        self._ready = True
        self._loop.start()
        self._loop.poke()

    # ------------------------------------------------------------------ public API

    def update(self, rows: Iterable[Mapping[str, Any]] | Mapping[str, Any] | pd.DataFrame) -> None:
        """Feed rows (a dict, a list of dicts or a DataFrame); safe from any thread.

        Only the latest value per (row, field) is kept until the next flush. Raises BadRequest
        if a row is not a mapping or lacks the row id.
        """
        if self._closed:
            return
        if isinstance(rows, Mapping):
            rows = [rows]
        elif isinstance(rows, pd.DataFrame):
            rows = frame_rows(rows)
        elif isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
            raise BadRequest(f"update() takes a row dict or a list of them, got {rows!r:.80}")
        elif not isinstance(rows, list):
            rows = list(rows)  # a generator must survive the slow path below
        key_of = self._key_of
        try:
            keyed = [(key_of(row), row) for row in rows]
        except (KeyError, TypeError, IndexError, ValueError):
            keyed = [(self._checked_key(row), row) for row in rows]
        if not keyed:
            return
        self.stats["rows_received"] += len(keyed)
        self._rate.count(len(keyed))
        self._buffer.add(keyed)
        self._loop.poke()

    def wait(self, predicate: Callable[[LiveGrid], bool] | None = None,
             timeout: float = 5.0) -> bool:
        """Block until every row given so far is applied and ``predicate(grid)`` holds.

        The predicate is re-checked after each flush. Returns False on timeout. For scripts
        and tests; never needed in normal use.
        """
        target = self._buffer.sequence
        deadline = time.monotonic() + timeout
        with self._flushed:
            while not (self._applied >= target and (predicate is None or predicate(self))):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._flushed.wait(min(remaining, 0.1))
        return True

    @property
    def data(self) -> pd.DataFrame:
        """The current rows by field name, indexed by row id (times as UTC datetimes)."""
        return self.frame()

    def frame(self) -> pd.DataFrame:
        """The current rows by field name, indexed by row id, in arrival order."""
        with self._lock:
            return self._table.frame()

    def flash_state(self) -> pd.DataFrame:
        """Per flashing column, the direction of a change within ``flash_ms``: +1 rose, -1 fell."""
        with self._lock:
            return self._table.flash_state(time.monotonic())

    def get_visible_data(self) -> pd.DataFrame:
        """The rows as the page orders them (sort/filter applied), under their headers."""
        with self._lock:
            order = self._current_order()
            cols = {}
            for col in self.columns_spec:
                if col.hide or col.kind == "age":
                    continue
                values = self._table.array(col.field)[order]
                if col.kind == "time":
                    values = pd.to_datetime(values, unit="ms", utc=True)
                cols[col.header] = values
            return pd.DataFrame(cols)

    @property
    def row_count(self) -> int:
        """Rows the page shows (after filters)."""
        with self._lock:
            return len(self._current_order())

    def transform(self, transforms: list[dict]) -> None:
        """Sort/filter as ipydatagrid spells it; ``column`` may be a header or a field name.

        ``[{"type": "sort", "column": "price", "desc": True}, {"type": "filter", "column":
        "price", "operator": "<", "value": 100}]``; ``[]`` clears. Kept while data streams.
        """
        checked = check_transforms(transforms, self._headers)
        with self._lock:
            self._transforms = checked
            self._transform_version += 1
        self._loop.poke()

    @property
    def transforms(self) -> list[dict[str, Any]]:
        """The active sort/filter transforms (columns as field names)."""
        with self._lock:
            return [dict(t) for t in self._transforms]

    def on_click(self, callback: Callable[[dict[str, Any]], Any]) -> Callable:
        """Call ``callback(row)`` when a row is clicked in the page (row: field -> value).

        Runs on the kernel's main thread. Returns the callback (works as a decorator). The last
        clicked row is also in :attr:`selected`.
        """
        if not callable(callback):
            raise BadRequest(f"on_click needs a callable, got {callback!r:.80}")
        self._click_callbacks.append(callback)
        return callback

    def set_status(self, state: str, symbols: Iterable[str] | None = None,
                   detail: str = "") -> None:
        """Show a stream state in the status line; ``stale`` dims rows (of ``symbols``, or all).

        Stream status events reach this by themselves; call it to mark staleness by hand.
        """
        if not isinstance(state, str) or not state:
            raise BadRequest(f"state must be a word like 'live' or 'stale', got {state!r:.40}")
        stale = sorted(str(s) for s in symbols) if symbols is not None else None
        self._status = {"state": state, "symbols": stale, "detail": str(detail)[:200]}

    def close(self) -> None:
        """Stop updating: stop the flush thread, close an owned subscription, close the widget."""
        if not self.__dict__.get("_ready"):
            self._closed = True
            try:
                super().close()
            except Exception:
                pass
            return
        if not self._closed:
            self._closed = True
            self._loop.stop()
            if self._source is not None:
                self._source.detach()
            with self._flushed:
                self._flushed.notify_all()
        super().close()

    # ------------------------------------------------------------------ flushing

    def _current_order(self) -> np.ndarray:
        key = (self._table.version, self._transform_version)
        if key != self._order_key:
            self._order = display_order(self._table, self._transforms, self.newest_first)
            self._order_key = key
        return self._order

    def _flush(self) -> float | None:
        updates, sequence = self._buffer.drain()
        now = time.monotonic()
        wake_at = None
        with self._lock:
            if self._closed:
                return None
            if updates:
                self._table.apply(updates, now)
            state = (self._table.version, self._transform_version)
            if state != self._sent_state or self._force:
                due = self._viewport.next_send_at(now, CELLS.running)
                if due <= now:
                    self._send_frame(now, state)
                else:
                    wake_at = due
            self.stats["flushes"] += 1
        with self._flushed:
            self._applied = sequence
            self._flushed.notify_all()
        return wake_at

    def _send_frame(self, now: float, state: tuple[int, int]) -> None:
        sort = next((t for t in reversed(self._transforms) if t["type"] == "sort"), None)
        frame = self._viewport.build(
            self._table, self._current_order(), now=now, text_fields=self._text_fields,
            num_fields=self._num_fields, extra={
                "force": self._force,
                "sort": [sort["column"], sort["desc"]] if sort else None,
                "ups": round(self._rate.per_second(now), 1),
                "filtered": any(t["type"] == "filter" for t in self._transforms),
            })
        self._sent_state = state
        self._force = False
        if frame is None:
            return
        content, buffers = frame
        self.stats["frames"] += 1
        self.stats["full_frames"] += bool(content["reset"])
        self.send(content, buffers)

    # ------------------------------------------------------------------ browser messages

    def _on_front_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "ack":
                self._on_ack(content)
            elif kind in ("hello", "view"):
                self._on_view(content, full=kind == "hello")
            elif kind == "sort":
                self._on_sort(content)
            elif kind == "click":
                self._on_click(content)
            else:
                log.warning("LiveGrid: ignoring an unknown message from the page: %.120r",
                            content)
        except BadRequest as exc:
            log.warning("LiveGrid: ignoring a bad %s message from the page: %s", kind, exc)

    def _on_ack(self, content: Mapping[str, Any]) -> None:
        seq = content.get("seq")
        if not is_index(seq):
            raise BadRequest(f"ack needs a sequence number, got {seq!r:.40}")
        with self._lock:
            self._viewport.ack(seq)
            self.stats["acks"] += 1
        self._loop.poke()

    def _on_view(self, content: Mapping[str, Any], full: bool) -> None:
        first, last = content.get("first"), content.get("last")
        if not (is_index(first) and is_index(last) and first <= last):
            raise BadRequest(f"a view needs rows first <= last, got {first!r:.20}, {last!r:.20}")
        with self._lock:
            self._viewport.set_view(first, last)
            if full:
                self._viewport.reset()
                self._viewport.acked = self._viewport.seq  # a new page waits for nothing
            self._force = True
        self._loop.poke()

    def _on_sort(self, content: Mapping[str, Any]) -> None:
        field, desc = content.get("field"), content.get("desc")
        others = [t for t in self.transforms if t["type"] != "sort"]
        if field is None:
            self.transform(others)
            return
        if desc not in (True, False):
            raise BadRequest(f"sort needs desc true or false, got {desc!r:.20}")
        self.transform([*others, {"type": "sort", "column": field, "desc": desc}])

    def _on_click(self, content: Mapping[str, Any]) -> None:
        uid = content.get("uid")
        if not is_index(uid):
            raise BadRequest(f"click needs a row uid, got {uid!r:.40}")
        with self._lock:
            pos = self._table.position_of_uid(uid)
            if pos is None:
                return  # the row left the rolling window meanwhile
            row = self._table.row(pos)
        self.selected = row
        self._selected_uid = uid
        for callback in list(self._click_callbacks):
            try:
                callback(dict(row))
            except Exception:
                log.exception("a LiveGrid on_click callback raised")

    def _on_stream_event(self, event: dict) -> None:
        """Status events of the stream: the provider's (no ``symbol``: every row) and each
        symbol's own (``stale``/``closed``/``live``: only that symbol's rows dim)."""
        if not isinstance(event, dict) or event.get("type") != "status":
            return
        state = str(event.get("state") or "")
        symbols = event.get("symbols")
        if isinstance(symbols, list):  # a whole set at once (hand-made or older events)
            shown, stale, detail = ("live" if state in _LIVE_STATES else state), symbols, ""
        elif isinstance(event.get("symbol"), str):
            states = self._symbol_states
            if state in _LIVE_STATES:
                states.pop(event["symbol"], None)
            else:
                states[event["symbol"]] = state
            shown, stale, detail = self._summary()
        else:  # the provider's own state: every row
            self._source_state = "live" if state in _LIVE_STATES else state
            shown, stale, detail = self._summary()
        try:
            self.set_status(shown, stale, detail or str(event.get("detail") or ""))
        except BadRequest:
            pass

    def _summary(self) -> tuple[str, list[str] | None, str]:
        """What the status line says and which rows dim, from the provider's state and each
        symbol's: a provider that is down dims everything."""
        if self._source_state != "live":
            return self._source_state, None, ""
        states = self._symbol_states
        if not states:
            return "live", None, ""
        worst = "stale" if "stale" in states.values() else next(iter(states.values()))
        names = sorted(states)
        listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        return worst, names, f"{len(names)} {worst}: {listed}"

    # ------------------------------------------------------------------ helpers

    def _merge(self, rows: Iterable[Mapping[str, Any]]) -> dict[Hashable, dict[str, Any]]:
        buffer = UpdateBuffer()
        buffer.add((self._checked_key(row), row) for row in rows)
        return buffer.drain()[0]

    def _checked_key(self, row: Any) -> Hashable:
        if not isinstance(row, Mapping):
            raise BadRequest(f"a row must be a dict of fields, got {row!r:.80}")
        for name in self.key_fields:
            if name not in row or row[name] is None:
                raise BadRequest(
                    f"row {dict(row)!r:.120} has no {name!r}; this grid's rows are keyed by "
                    f"{', '.join(self.key_fields)}"
                )
        try:
            return self._key_of(row)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"row {dict(row)!r:.120}: bad row id: {exc}") from None

