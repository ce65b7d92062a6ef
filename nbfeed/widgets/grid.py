"""``nbfeed.LiveGrid``: a live ipydatagrid whose cells flash green/red, at a bounded message rate.

Usage::

    grid = nbfeed.LiveGrid("simulated", ["AAPL", "MSFT"], interval="tick")
    grid = nbfeed.LiveGrid(stream, columns=["symbol", "price", {"field": "volume", "live": False}])
    grid = nbfeed.LiveGrid(columns=["symbol", "price"])   # fed by hand: grid.update(rows)

Design (the measurements behind it are in the team's GRID.md notes):

- **Widget**: a subclass of ipydatagrid's ``StreamingDataGrid``. The kernel keeps the table; the
  browser holds only the rows it draws and asks for them (``data-request``); sort and filter run
  in pandas here. Nothing ever re-sends the whole frame or rebuilds the browser's model, so
  scroll position, selection, sort and filter survive updates. ``DataGrid`` was rejected: its
  only partial updates are one message per cell or per row.
- **Coalescing**: upstream rows (from any thread) land in an :class:`UpdateBuffer` - latest value
  per (row, field) - and a :class:`FlushLoop` thread applies them at most ``flush_hz`` times a
  second (default 10), whatever the upstream rate.
- **Messages per flush**: at most one data message - the rows of the browser's last requested
  viewport that changed since the page was last sent them, pushed as an ipydatagrid
  ``data-reply`` (every column; none if nothing visible changed), so the screen updates even
  while a cell is running and the kernel cannot answer requests. About once a second that
  message is a ``tick`` instead, which makes every view re-request its own viewport (a second
  view scrolled elsewhere, or a view opened while the kernel was busy), and the viewport rows
  follow on the next flush. A ``_row_count`` state update is added only when the number of rows
  changes. Answers to the browser's own requests (scrolling, sorting) come on top, one per
  request. At 10 Hz that is ~1% of Jupyter's IOPub limit (1,000 msg/s), so the user's own
  output is never dropped.
- **Highlights**: the table stamps each changed cell with a direction and a time; the kernel
  sends the fade (strong, weak, gone over ``flash_ms``) because the browser has no timer-driven
  repaint. See :mod:`.grid_style` for the encoding and how its helper column is hidden.
- **Candles**: rows keyed by (symbol, time): the open bar updates in place, a new time appends,
  and ``max_rows`` bounds the rolling window.

What survives updates (read in ipydatagrid 1.4 and Lumino's DataGrid, not seen in a browser):
pushed rows only overwrite cached cells; a row-count change gives the browser's existing view a
new count, and Lumino's reset handling then only adds or removes row sections and clamps the
scroll position and the selections - it keeps both. Selections are positions: under an active
sort a selected row can move away from the highlighted position. ipydatagrid's own
``StreamingDataGrid`` also hands every ``data-request`` to ``DataGrid``'s message handler, which
raises ``KeyError: 'event_type'`` (a traceback per scroll in the kernel log); LiveGrid answers
those requests itself and never passes them on. Known wrinkle: ipydatagrid's filter dialog
takes the first custom message after its value-list request as the answer; if a push arrives
first, the list stays empty until the dialog is reopened.

Failure behaviour: a flush that raises is logged and the grid keeps going; rows without the row
id raise :class:`BadRequest` in the caller's thread (the stream's callback); a value that is not
a number shows blank, with one warning per field. ``close()`` stops the flush thread, closes a
subscription the grid opened itself and closes the widget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from ipydatagrid import StreamingDataGrid
from traitlets import observe

from ..errors import BadRequest
from ..intervals import is_bar
from .coalesce import FlushLoop, UpdateBuffer
from .grid_columns import Column, default_column_names, parse_columns, standard_fields
from .grid_inputs import (
    check_bool,
    check_flash_ms,
    check_flush_hz,
    check_max_rows,
    frame_rows,
    is_index,
    key_fields_for,
    key_function,
    latest_rows,
    resolve_stream,
    stream_interval,
)
from .grid_style import STYLE_COLUMN, STYLE_COLUMN_WIDTH, StyleLayout, renderers
from .grid_table import GridTable

log = logging.getLogger(__name__)

_MAX_REQUEST_ROWS = 10_000  # one browser viewport is ~50 rows; anything huge is not a viewport


class LiveGrid(StreamingDataGrid):
    """A live grid of a stream's rows, keyed by ``row_id``, updated in place.

    Parameters
    ----------
    stream:
        A stream (anything with ``on_update(callback)``, ``interval``, ``latest``, ``close()``),
        or a source name - then ``symbols`` and ``interval`` are passed to
        ``nbfeed.connect().subscribe(...)`` and the grid closes that subscription on
        :meth:`close` - or None to feed the grid with :meth:`update`.
    columns:
        Field names, :class:`~nbfeed.widgets.grid_columns.Column` objects, nbfeed dicts or
        Workspace ``columnsDefs`` entries (mapping in :mod:`.grid_columns`). Default: the
        stream's fields.
    row_id:
        Field (or fields) identifying a row. Candle streams add ``time``: one row per bar.
    flash_ms:
        How long a changed cell stays highlighted (strong for the first half, weak after).
    flush_hz:
        Most flushes (screen updates) per second, 0 < flush_hz <= 60.
    max_rows:
        Rolling window: beyond it the oldest rows are dropped (default 1,000 for candles,
        10,000 otherwise).
    newest_first:
        Show the newest row at the top (follow-newest for appended candles).
    **grid_options:
        Passed to ipydatagrid (``selection_mode``, ``layout``, ``column_widths``...).
    """

    def __init__(
        self,
        stream: Any = None,
        symbols: str | Sequence[str] | None = None,
        *,
        interval: str | None = None,
        columns: Iterable[str | Mapping[str, Any] | Column] | None = None,
        row_id: str | Sequence[str] = "symbol",
        flash_ms: float = 800,
        flush_hz: float = 10.0,
        max_rows: int | None = None,
        newest_first: bool = False,
        **grid_options: Any,
    ) -> None:
        self._ready = False
        self._closed = False
        self.flush_hz = check_flush_hz(flush_hz)
        self.flash_ms = check_flash_ms(flash_ms)
        self.newest_first = check_bool(newest_first, "newest_first")
        if max_rows is not None:
            check_max_rows(max_rows)
        stream, self._owns_stream = resolve_stream(stream, symbols, interval)
        self.stream = stream
        try:
            self._setup(stream, interval, columns, row_id, max_rows, grid_options)
        except BaseException:
            # Nothing may outlive a failed construction: rows still arriving are dropped and a
            # subscription opened for this grid is closed.
            self._closed = True
            self._detach()
            raise

    def _setup(
        self,
        stream: Any,
        interval: str | None,
        columns: Iterable[str | Mapping[str, Any] | Column] | None,
        row_id: str | Sequence[str],
        max_rows: int | None,
        grid_options: dict[str, Any],
    ) -> None:
        self.interval = stream_interval(stream, interval)
        bar = is_bar(self.interval)
        self.key_fields = key_fields_for(row_id, bar)
        self.max_rows = max_rows if max_rows is not None else (1_000 if bar else 10_000)

        # Listen before reading the snapshot, so no row falls between the two: rows arriving
        # now wait in the buffer and are applied on top of the snapshot.
        self._key_of = key_function(self.key_fields)
        self._buffer = UpdateBuffer()
        self._loop = FlushLoop(self._flush, self.flush_hz, name=f"nbfeed-grid-{id(self):x}")
        self.stats = {"rows_received": 0, "flushes": 0, "pushes": 0, "ticks": 0, "replies": 0}
        if stream is not None:
            stream.on_update(self.update)

        latest = latest_rows(stream)
        latest_cols = list(latest[0].keys()) if latest else []
        known = None
        if stream is not None:
            known = set(standard_fields(bar)) | set(latest_cols)
            known |= set(getattr(stream, "fields", ()) or ())
        specs = columns if columns is not None else default_column_names(bar, latest_cols)
        self.columns_spec = parse_columns(
            specs, key_fields=self.key_fields, known_fields=known,
            time_fmt="%Y-%m-%d %H:%M" if bar else "%H:%M:%S",
        )
        if self.flash_ms == 0:  # highlights off: no style column at all
            self.columns_spec = [replace(c, flash=False) for c in self.columns_spec]
        self._headers = {c.field: c.header for c in self.columns_spec if not c.hide}
        self._layout = StyleLayout(self.columns_spec)

        self._lock = threading.RLock()
        self._flushed = threading.Condition()
        self._applied = 0
        self._table = GridTable(
            self.columns_spec, self.key_fields, max_rows=self.max_rows,
            flash_s=self.flash_ms / 1000.0,
        )
        self._range: tuple[int, int] | None = None
        # What the page was last sent for that range (first row, rows): pushes send the diff.
        self._page: tuple[int, pd.DataFrame] | None = None
        self._last_tick = 0.0
        self._next_step: float | None = None
        self._repush = False
        self._bad_transforms: set[str] = set()
        if latest:
            self._table.apply(self._merge(latest), time.monotonic())
        self._base_view = self._table.view(self._layout, time.monotonic(), self.newest_first)
        self._view = self._base_view

        widths = {c.header: c.width for c in self.columns_spec if not c.hide and c.width}
        if self._layout:
            widths[STYLE_COLUMN] = STYLE_COLUMN_WIDTH
        widths.update(grid_options.pop("column_widths", {}) or {})
        cell_renderers = renderers(self.columns_spec, self._layout)
        cell_renderers.update(grid_options.pop("renderers", {}) or {})
        grid_options.setdefault("header_visibility", "column")  # the row index means nothing
        grid_options.setdefault("base_column_size", 80)  # 64 px truncates "Symbol", "Volume"
        super().__init__(
            self._base_view.copy(), renderers=cell_renderers, column_widths=widths,
            **grid_options,
        )
        self._ready = True
        self._loop.start()

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
        self._buffer.add(keyed)
        self._loop.poke()

    def wait(self, predicate: Callable[[LiveGrid], bool] | None = None,
             timeout: float = 5.0) -> bool:
        """Block until every row given so far is on screen and ``predicate(grid)`` holds.

        The predicate is re-checked after each flush. Returns False on timeout. For scripts
        and tests ("wait until the highlight has faded"); never needed in normal use.
        """
        target = self._buffer.sequence
        deadline = time.monotonic() + timeout
        with self._flushed:
            while not (self._applied >= target and (predicate is None or predicate(self))):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._flushed.wait(remaining)
        return True

    @property
    def data(self) -> pd.DataFrame:
        """The current rows by field name, indexed by row id (times as UTC datetimes)."""
        return self.frame()

    @data.setter
    def data(self, dataframe: pd.DataFrame) -> None:
        if getattr(self, "_ready", False):
            raise AttributeError("LiveGrid.data follows its stream; feed rows with grid.update()")
        StreamingDataGrid.data.fset(self, dataframe)  # ipydatagrid's schema set-up, once

    def frame(self) -> pd.DataFrame:
        """The current rows by field name, indexed by row id, in arrival order."""
        with self._lock:
            return self._table.frame()

    def flash_state(self) -> pd.DataFrame:
        """Highlight now on screen per flashing column: +1 green (rose), -1 red (fell), 0 none."""
        with self._lock:
            return self._table.flash_state()

    def get_visible_data(self) -> pd.DataFrame:
        """The rows as the browser orders them (sort/filter applied), under their headers."""
        with self._lock:
            return self._view.drop(columns=[STYLE_COLUMN], errors="ignore").copy()

    def transform(self, transforms: list[dict]) -> None:
        """Sort/filter like ipydatagrid; ``column`` may be a header or a field name."""
        if not isinstance(transforms, list):
            raise BadRequest(f"transforms must be a list of dicts, got {transforms!r:.80}")
        mapped = []
        for t in transforms:
            if not isinstance(t, Mapping) or t.get("type") not in ("sort", "filter"):
                raise BadRequest(
                    f"a transform is a dict with type 'sort' or 'filter', got {t!r:.80}"
                )
            t = dict(t)
            column = t.get("column")
            t["column"] = self._headers.get(column, column)
            if t["column"] not in self._headers.values():
                raise BadRequest(
                    f"transform column {column!r} is not shown in this grid; columns: "
                    f"{', '.join(self._headers.values())}"
                )
            mapped.append(t)
        super().transform(mapped)

    def close(self) -> None:
        """Stop updating: stop the flush thread, close an owned subscription, close the widget."""
        state = self.__dict__
        if not state.get("_ready"):
            # Never finished construction (its own cleanup ran) or ipywidgets' __del__ on it.
            self._closed = True
            try:
                super().close()
            except Exception:
                pass
            return
        if not self._closed:
            self._closed = True
            self._loop.stop()
            self._detach()
            with self._flushed:
                self._flushed.notify_all()
        super().close()

    def _detach(self) -> None:
        """Stop listening to the stream; close it if this grid opened it."""
        stream = self.stream
        if stream is None:
            return
        off = getattr(stream, "off_update", None)
        try:
            if callable(off):
                off(self.update)
            if self._owns_stream:
                stream.close()
        except Exception:
            log.exception("detaching the grid from its stream failed")

    # ------------------------------------------------------------------ flushing

    def _flush(self) -> float | None:
        updates, sequence = self._buffer.drain()
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return None
            changed = self._table.apply(updates, now) if updates else False
            stepped = self._next_step is not None and now >= self._next_step
            self._table.expire_flashes(now)
            if changed or stepped:
                self._base_view = self._table.view(self._layout, now, self.newest_first)
                self._view = self._transformed(self._base_view)
                self._publish()
            elif self._repush and self._range is not None:
                self._repush = False
                self._push_viewport()
            self._next_step = self._table.next_flash_step(now)
            wake_at = self._next_step
            if self._repush:
                # A tick took this flush's place: push the viewport on the next one, so the
                # page ends on the latest values even while the kernel is too busy to answer.
                soon = now + 1.0 / self.flush_hz
                wake_at = soon if wake_at is None else min(wake_at, soon)
            self.stats["flushes"] += 1
        with self._flushed:
            self._applied = sequence
            self._flushed.notify_all()
        return wake_at

    def _publish(self) -> None:
        """Tell the browser: the rows of its viewport, or (about once a second) a tick."""
        n = len(self._view)
        if n != self._row_count:
            self._row_count = n
        now = time.monotonic()
        if now - self._last_tick >= 1.0:
            self._last_tick = now
            self._repush = self._range is not None
            self.stats["ticks"] += 1
            self.tick()
        elif self._range is not None:
            self._push_viewport()

    def _push_viewport(self) -> None:
        """Send the viewport rows that differ from what the page was last sent, if any.

        The browser repaints every cell of a reply (Lumino blits each cell), so an unchanged
        viewport sends nothing and a changed one only its span of changed rows.
        """
        r1, r2 = self._range
        view = self._view
        r2 = min(r2, len(view) - 1)
        if r2 < r1:
            return
        part = view.iloc[r1 : r2 + 1]
        lo, hi = r1, r2
        last = self._page
        if last is not None and last[0] == r1 and list(last[1].columns) == list(part.columns) \
                and len(last[1]) == len(part):
            changed = np.flatnonzero(_differing_rows(last[1], part))
            if not len(changed):
                return
            lo, hi = r1 + int(changed[0]), r1 + int(changed[-1])
        self._send_rows(lo, hi)
        self._page = (r1, part)
        self.stats["pushes"] += 1

    def _send_rows(self, r1: int, r2: int) -> bool:
        view = self._view
        r2 = min(r2, len(view) - 1)
        if r2 < r1:
            return False
        serialized, buffers = self._serialize_helper(view.iloc[r1 : r2 + 1].copy())
        # Every column, whatever was asked: flash expressions read the style column, which must
        # reach the browser even when it is scrolled out of view.
        self.send(
            {"event_type": "data-reply", "value": serialized, "r1": r1, "r2": r2,
             "c1": 0, "c2": len(view.columns) - 1},
            buffers,
        )
        return True

    def _transformed(self, base: pd.DataFrame) -> pd.DataFrame:
        frame = base
        for t in self._transforms:
            try:
                if t.get("type") == "sort":
                    # Stable, so equal values keep their order from one flush to the next.
                    frame = frame.sort_values(
                        by=[t["column"]], ascending=not t.get("desc", False), kind="stable"
                    )
                else:
                    frame = self._apply_frontend_transforms([t], frame)
            except Exception as exc:
                # Once per transform: this runs on every flush.
                if repr(t) not in self._bad_transforms:
                    self._bad_transforms.add(repr(t))
                    log.warning("LiveGrid: ignoring transform %r: %s", t, exc)
        return frame

    # ------------------------------------------------------------------ browser messages

    def _handle_custom_msg(self, content: Any, buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "data-request":
            self._on_data_request(content)
        elif kind == "unique-values-request":
            self._on_unique_values(content)
        elif isinstance(content, dict) and content.get("event_type") == "cell-changed":
            log.warning("LiveGrid is read-only; an edit from the browser was ignored")
        else:
            super()._handle_custom_msg(content, buffers)

    def _handle_comm_msg(self, *args: Any) -> None:
        """Replaces StreamingDataGrid's handler: requests are answered in _handle_custom_msg."""

    def _on_data_request(self, content: Mapping[str, Any]) -> None:
        r1, r2 = content.get("r1"), content.get("r2")
        if not (is_index(r1) and is_index(r2) and r1 <= r2 <= r1 + _MAX_REQUEST_ROWS):
            log.warning("LiveGrid: ignoring a malformed data-request %r", dict(content))
            return
        with self._lock:
            self._range = (r1, r2)
            if self._send_rows(r1, r2):
                self.stats["replies"] += 1
                self._page = (r1, self._view.iloc[r1 : r2 + 1])

    def _on_unique_values(self, content: Mapping[str, Any]) -> None:
        column = content.get("column")
        with self._lock:
            if not isinstance(column, str) or column not in self._base_view.columns:
                log.warning("LiveGrid: ignoring unique-values-request for %r", column)
                return
            values = pd.DataFrame(self._base_view[column].drop_duplicates())
            serialized, buffers = self._serialize_helper(values)
            self.send(
                {"event_type": "unique-values-reply", "column": column, "value": serialized},
                buffers,
            )

    @observe("_transforms")
    def _on_transforms_changed(self, change: Mapping[str, Any]) -> None:
        """Sort/filter changed (browser or Python): re-order in pandas, let views re-pull."""
        if not getattr(self, "_ready", False):
            return
        with self._lock:
            self._view = self._transformed(self._base_view)
            if len(self._view) != self._row_count:
                self._row_count = len(self._view)
            self.tick()

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


def _differing_rows(old: pd.DataFrame, new: pd.DataFrame) -> np.ndarray:
    """Row positions where two same-shaped frames differ (a missing value equals a missing one)."""
    out = old.index.to_numpy() != new.index.to_numpy()
    for name in new.columns:
        a, b = old[name].to_numpy(), new[name].to_numpy()
        out |= (a != b) & ~(pd.isna(a) & pd.isna(b))
    return out
