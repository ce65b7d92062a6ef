"""The rows of a LiveGrid: keyed storage, frozen columns, change highlights, a rolling window.

:class:`GridTable` is plain Python, numpy and pandas - no widgets, no threads; the grid
serialises access with its own lock. Rows are kept in arrival order, one Python list per field
(floats for numbers and epoch-ms times, objects for text) with a key -> position map: applying
a coalesced batch costs O(changed cells) of single-cell work, where lists beat numpy, and a
snapshot converts each field to an array once. Highlight state (direction, time) lives in numpy
arrays because it is read whole, vectorised, on every flush.

Semantics:

- a row key seen for the first time appends a row (no highlight: nothing changed yet);
- a live cell takes the newest value; a frozen cell (``live=False``) keeps the first value it
  got and ignores the rest; key fields never change;
- a flashing cell whose value rose gets direction +1, fell -1 (or the sign of the column's
  ``flash_sign`` field), stamped with the time; :meth:`flash_codes` turns that into
  strong (first half of ``flash_s``), weak (second half), then nothing - the fade;
- when more than ``max_rows`` rows exist, the oldest arrivals are dropped, so memory stays
  flat under a stream that keeps appending (candles).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..timeutil import to_ms
from .grid_columns import Column
from .grid_style import STYLE_COLUMN, StyleLayout

log = logging.getLogger(__name__)

# Flash codes (0 = calm), as grid_style.StyleLayout.encode expects them.
_UP_STRONG, _UP_WEAK, _DOWN_STRONG, _DOWN_WEAK = 1, 2, 3, 4
_NUMBER, _TIME, _TEXT = 0, 1, 2


class GridTable:
    """Keyed rows with change tracking. Not thread-safe: the owner locks."""

    def __init__(
        self,
        columns: Sequence[Column],
        key_fields: Sequence[str],
        *,
        max_rows: int,
        flash_s: float,
    ) -> None:
        self.columns = list(columns)
        self.key_fields = tuple(key_fields)
        self.max_rows = max_rows
        self.flash_s = flash_s
        self._numeric = {c.field for c in self.columns if c.kind != "text"}
        self._time = {c.field for c in self.columns if c.kind == "time"}
        # Fields an update may write (key fields are set once, when the row appears).
        self._kind = {
            c.field: _TEXT if c.kind == "text" else _TIME if c.kind == "time" else _NUMBER
            for c in self.columns if c.field not in self.key_fields
        }
        self._frozen = {c.field for c in self.columns if not c.live}
        self._flash = [c.field for c in self.columns if c.flash]
        self._flash_sign = {c.field: c.flash_sign for c in self.columns if c.flash and c.flash_sign}
        self._n = 0
        self._keys: list[Hashable] = []
        self._pos: dict[Hashable, int] = {}
        # Plain lists, not numpy arrays: the hot loop reads and writes single cells, where lists
        # are several times faster; snapshots convert once per flush.
        self._data: dict[str, list[Any]] = {c.field: [] for c in self.columns}
        self._capacity = 64
        self._dir: dict[str, np.ndarray] = {
            f: np.zeros(self._capacity, np.int8) for f in self._flash
        }
        self._at: dict[str, np.ndarray] = {
            f: np.zeros(self._capacity, np.float64) for f in self._flash
        }
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ updates

    def __len__(self) -> int:
        return self._n

    def apply(self, updates: Mapping[Hashable, Mapping[str, Any]], now: float) -> bool:
        """Apply coalesced rows (key -> fields); returns True if anything visible changed."""
        changed = False
        data, kinds, frozen, flashing = self._data, self._kind, self._frozen, self._dir
        for key, fields in updates.items():
            pos = self._pos.get(key)
            new_row = pos is None
            if new_row:
                pos = self._append(key)
                changed = True
            flashed: list[tuple[str, float, float]] | None = None
            for name, value in fields.items():
                kind = kinds.get(name)
                if kind is None:
                    continue
                if kind == _NUMBER:
                    tv = type(value)
                    if tv is not float:
                        value = float(value) if tv is int else self._coerce(name, kind, value)
                elif kind == _TIME:
                    if type(value) is not int:
                        value = self._coerce(name, kind, value)
                    value = float(value)
                elif value is not None:
                    value = str(value)
                col = data[name]
                old = col[pos]
                # None is a missing text cell, NaN (not equal to itself) a missing number.
                old_missing = old is None or old != old
                if name in frozen:
                    if not old_missing or value is None or value != value:
                        continue
                elif old == value or (old_missing and (value is None or value != value)):
                    continue
                col[pos] = value
                changed = True
                if not new_row and not old_missing and name in flashing:
                    if flashed is None:
                        flashed = []
                    flashed.append((name, old, value))
            if flashed:
                self._stamp(pos, flashed, now)
        if self._n > self.max_rows:
            self._evict(self._n - self.max_rows)
        return changed

    def _stamp(self, pos: int, flashed: list[tuple[str, Any, Any]], now: float) -> None:
        """Record the direction of each changed flashing cell of one row."""
        for name, old, value in flashed:
            if value is None or value != value:
                direction = 0
            else:
                direction = 1 if value > old else -1
                sign_field = self._flash_sign.get(name)
                if sign_field is not None:
                    s = self._data[sign_field][pos]
                    if s == s and s != 0:
                        direction = 1 if s > 0 else -1
            self._dir[name][pos] = direction
            self._at[name][pos] = now

    def expire_flashes(self, now: float) -> None:
        """Forget highlights older than ``flash_s`` (so :meth:`flash_state` reads calm)."""
        for name in self._flash:
            d = self._dir[name][: self._n]
            old = (d != 0) & (now - self._at[name][: self._n] >= self.flash_s)
            d[old] = 0

    def flash_codes(self, now: float) -> dict[str, np.ndarray]:
        """Per flashing column, a code per row: 0 calm, 1/2 up strong/weak, 3/4 down."""
        out = {}
        half = self.flash_s / 2
        for name in self._flash:
            d = self._dir[name][: self._n]
            age = now - self._at[name][: self._n]
            live = (d != 0) & (age < self.flash_s)
            weak = age >= half
            codes = np.zeros(self._n, np.int8)
            codes[live & (d > 0)] = _UP_STRONG
            codes[live & (d > 0) & weak] = _UP_WEAK
            codes[live & (d < 0)] = _DOWN_STRONG
            codes[live & (d < 0) & weak] = _DOWN_WEAK
            out[name] = codes
        return out

    def next_flash_step(self, now: float) -> float | None:
        """The next instant a highlight changes (strong -> weak, weak -> gone), or None."""
        best = math.inf
        half = self.flash_s / 2
        for name in self._flash:
            d = self._dir[name][: self._n]
            active = d != 0
            if not active.any():
                continue
            at = self._at[name][: self._n][active]
            steps = np.where(now - at < half, at + half, at + self.flash_s)
            best = min(best, float(steps.min()))
        return None if best == math.inf else best

    # ------------------------------------------------------------------ reads

    def frame(self) -> pd.DataFrame:
        """All fields by field name, indexed by row key, arrival order; times as UTC datetimes."""
        cols = {}
        for col in self.columns:
            if col.field in self.key_fields:
                continue
            arr = self._array(col.field)
            cols[col.field] = _as_datetime(arr) if col.field in self._time else arr
        if len(self.key_fields) == 1:
            index = pd.Index(self._keys, name=self.key_fields[0])
            if self.key_fields[0] in self._time:
                index = pd.DatetimeIndex(_as_datetime(np.array(self._keys, np.float64)),
                                         name=index.name)
        else:
            index = pd.MultiIndex.from_tuples(self._keys, names=list(self.key_fields))
            if self._keys:
                levels = [
                    _as_datetime(np.array(index.get_level_values(i), np.float64))
                    if name in self._time else index.get_level_values(i)
                    for i, name in enumerate(self.key_fields)
                ]
                index = pd.MultiIndex.from_arrays(levels, names=list(self.key_fields))
        return pd.DataFrame(cols, index=index)

    def view(self, layout: StyleLayout, now: float, newest_first: bool = False) -> pd.DataFrame:
        """What the browser shows: visible columns under their headers, then the style column.

        A fresh DataFrame (copies), indexed 0..n-1 in display order, safe to keep after updates.
        """
        n = self._n
        cols: dict[str, Any] = {}
        for col in self.columns:
            if not col.hide:
                cols[col.header] = self._array(col.field)
        if layout:
            signs = {s.source: self._array(s.source) for s in layout.slots if s.kind == "sign"}
            cols[STYLE_COLUMN] = layout.encode(n, self.flash_codes(now), signs)
        frame = pd.DataFrame(cols)
        if newest_first:
            frame = frame.iloc[::-1].reset_index(drop=True)
        frame.index.name = "key"
        return frame

    def flash_state(self) -> pd.DataFrame:
        """Current highlight direction per flashing column: +1 rose, -1 fell, 0 calm."""
        cols = {name: self._dir[name][: self._n].copy() for name in self._flash}
        return pd.DataFrame(cols, index=self.frame().index)

    # ------------------------------------------------------------------ internals

    def _array(self, name: str) -> np.ndarray:
        values = self._data[name]
        if name in self._numeric:
            return np.array(values, dtype=np.float64)
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    def _append(self, key: Hashable) -> int:
        pos = self._n
        if pos == self._capacity:
            self._grow()
        self._n += 1
        self._keys.append(key)
        self._pos[key] = pos
        for name, col in self._data.items():
            col.append(math.nan if name in self._numeric else None)
        parts = key if len(self.key_fields) > 1 else (key,)
        for name, part in zip(self.key_fields, parts):
            self._data[name][pos] = float(part) if name in self._numeric else part
        return pos

    def _grow(self) -> None:
        cap = self._capacity * 2
        for store in (self._dir, self._at):
            for name, arr in store.items():
                bigger = np.zeros(cap, arr.dtype)
                bigger[: self._capacity] = arr
                store[name] = bigger
        self._capacity = cap

    def _evict(self, count: int) -> None:
        """Drop the ``count`` oldest rows (O(rows), only when the window is full)."""
        n = self._n
        for col in self._data.values():
            del col[:count]
        for store in (self._dir, self._at):
            for arr in store.values():
                arr[: n - count] = arr[count:n].copy()
                arr[n - count : n] = 0
        self._keys = self._keys[count:]
        self._pos = {k: i for i, k in enumerate(self._keys)}
        self._n = n - count

    def _coerce(self, name: str, kind: int, value: Any) -> float:
        """The slow path: anything that is not already a float (number) or int (time)."""
        if value is None:
            return math.nan
        try:
            if kind == _TIME:
                return float(to_ms(value, name))
            if not isinstance(value, (str, bytes)) or value.strip():
                return float(value)
        except (TypeError, ValueError, OverflowError):
            pass
        if name not in self._warned:
            self._warned.add(name)
            log.warning("LiveGrid: field %r got %r, not a number; showing it blank", name, value)
        return math.nan


def _as_datetime(ms: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(ms, unit="ms", utc=True)
