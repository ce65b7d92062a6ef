"""The rows of a LiveGrid: keyed storage, frozen columns, change directions, a rolling window.

:class:`GridTable` is plain Python and numpy - no widgets, no threads; the grid serialises
access with its own lock. Rows are kept in arrival order, one Python list per field (floats
for numbers and epoch-ms times, objects for text) with a key -> position map: applying a
coalesced batch costs O(changed cells) of single-cell work, where lists beat numpy. Per row
the table also keeps a ``uid`` (never reused, so the browser can follow a row across sorts
and evictions) and a ``version`` that grows whenever one of its cells changes: the viewport
compares versions to send only rows that changed. Change directions (+1 rose, -1 fell) and
their times live in numpy arrays, read whole when a frame is built.

Semantics:

- a row key seen for the first time appends a row (no direction: nothing changed yet);
- a live cell takes the newest value; a frozen cell (``live=False``) keeps the first value it
  got and ignores the rest; key fields never change;
- a flashing cell whose value rose gets direction +1, fell -1 (or the sign of the column's
  ``flash_sign`` field), stamped with the time; :meth:`flash_state` reports it for
  ``flash_s`` seconds, the browser draws the fade;
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

log = logging.getLogger(__name__)

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
        self.columns = [c for c in columns if c.kind != "age"]  # age is counted in the browser
        self.key_fields = tuple(key_fields)
        self.max_rows = max_rows
        self.flash_s = flash_s
        self.fields = [c.field for c in self.columns]
        self._numeric = {c.field for c in self.columns if c.kind != "text"}
        self._time = {c.field for c in self.columns if c.kind == "time"}
        # Fields an update may write (key fields are set once, when the row appears).
        self._kind = {
            c.field: _TEXT if c.kind == "text" else _TIME if c.kind == "time" else _NUMBER
            for c in self.columns if c.field not in self.key_fields
        }
        self._frozen = {c.field for c in self.columns if not c.live}
        self.flash_fields = [c.field for c in self.columns if c.flash]
        self._flash_sign = {c.field: c.flash_sign for c in self.columns if c.flash and c.flash_sign}
        self._n = 0
        self._keys: list[Hashable] = []
        self._pos: dict[Hashable, int] = {}
        # Plain lists, not numpy arrays: the hot loop reads and writes single cells, where lists
        # are several times faster; frames read only the rows they send.
        self._data: dict[str, list[Any]] = {c.field: [] for c in self.columns}
        self._capacity = 64
        self._uid = np.zeros(self._capacity, np.int64)
        self._version = np.zeros(self._capacity, np.int64)
        self._next_uid = 1
        self._dir: dict[str, np.ndarray] = {
            f: np.zeros(self._capacity, np.int8) for f in self.flash_fields
        }
        self._at: dict[str, np.ndarray] = {
            f: np.zeros(self._capacity, np.float64) for f in self.flash_fields
        }
        self._warned: set[str] = set()
        self.version = 0  # grows with every change: "has anything changed since"

    # ------------------------------------------------------------------ updates

    def __len__(self) -> int:
        return self._n

    def apply(self, updates: Mapping[Hashable, Mapping[str, Any]], now: float) -> bool:
        """Apply coalesced rows (key -> fields); returns True if any cell changed."""
        changed = False
        data, kinds, frozen, flashing = self._data, self._kind, self._frozen, self._dir
        for key, fields in updates.items():
            pos = self._pos.get(key)
            new_row = pos is None
            if new_row:
                pos = self._append(key)
                changed = True
            row_changed = False
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
                row_changed = True
                if not new_row and not old_missing and name in flashing:
                    if flashed is None:
                        flashed = []
                    flashed.append((name, old, value))
            if row_changed or new_row:
                changed = True
                self._version[pos] += 1  # (the array may have grown in _append)
            if flashed:
                self._stamp(pos, flashed, now)
        if self._n > self.max_rows:
            self._evict(self._n - self.max_rows)
        if changed:
            self.version += 1
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

    def directions_since(self, positions: np.ndarray, since: float) -> dict[str, np.ndarray]:
        """Per flashing field, the direction of cells at ``positions`` changed after ``since``
        (0 where the cell did not change): what the browser should flash in this frame."""
        out = {}
        for name in self.flash_fields:
            d = self._dir[name][positions]
            out[name] = np.where(self._at[name][positions] > since, d, 0).astype(np.int8)
        return out

    # ------------------------------------------------------------------ reads

    def cells(self, name: str, positions: Sequence[int]) -> list[Any]:
        """One field's values at storage ``positions``."""
        col = self._data[name]
        return [col[i] for i in positions]

    def array(self, name: str) -> np.ndarray:
        """One field's values for every row (float64 for numbers, object for text)."""
        values = self._data[name]
        if name in self._numeric:
            return np.array(values, dtype=np.float64)
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    @property
    def uids(self) -> np.ndarray:
        return self._uid[: self._n]

    @property
    def versions(self) -> np.ndarray:
        return self._version[: self._n]

    def key_at(self, pos: int) -> Hashable:
        return self._keys[pos]

    def position_of_uid(self, uid: int) -> int | None:
        found = np.flatnonzero(self._uid[: self._n] == uid)
        return int(found[0]) if len(found) else None

    def row(self, pos: int) -> dict[str, Any]:
        """One row by field name (times as epoch ms, missing numbers as None)."""
        out: dict[str, Any] = {}
        for name in self.fields:
            v = self._data[name][pos]
            if name in self._numeric:
                v = None if v != v else (int(v) if name in self._time else v)
            out[name] = v
        return out

    def frame(self) -> pd.DataFrame:
        """All fields by field name, indexed by row key, arrival order; times as UTC datetimes."""
        cols = {}
        for col in self.columns:
            if col.field in self.key_fields:
                continue
            arr = self.array(col.field)
            cols[col.field] = _as_datetime(arr) if col.field in self._time else arr
        return pd.DataFrame(cols, index=self.index())

    def index(self) -> pd.Index:
        """The row keys as a pandas index (times as UTC datetimes)."""
        if len(self.key_fields) == 1:
            index = pd.Index(self._keys, name=self.key_fields[0])
            if self.key_fields[0] in self._time:
                index = pd.DatetimeIndex(_as_datetime(np.array(self._keys, np.float64)),
                                         name=index.name)
            return index
        index = pd.MultiIndex.from_tuples(self._keys, names=list(self.key_fields))
        if self._keys:
            levels = [
                _as_datetime(np.array(index.get_level_values(i), np.float64))
                if name in self._time else index.get_level_values(i)
                for i, name in enumerate(self.key_fields)
            ]
            index = pd.MultiIndex.from_arrays(levels, names=list(self.key_fields))
        return index

    def flash_state(self, now: float) -> pd.DataFrame:
        """Highlight direction per flashing column changed within ``flash_s``: +1, -1, 0."""
        cols = {}
        for name in self.flash_fields:
            d = self._dir[name][: self._n]
            fresh = now - self._at[name][: self._n] < self.flash_s
            cols[name] = np.where(fresh, d, 0).astype(np.int8)
        return pd.DataFrame(cols, index=self.index())

    # ------------------------------------------------------------------ internals

    def _append(self, key: Hashable) -> int:
        pos = self._n
        if pos == self._capacity:
            self._grow()
        self._n += 1
        self._keys.append(key)
        self._pos[key] = pos
        self._uid[pos] = self._next_uid
        self._next_uid += 1
        self._version[pos] = 0
        for name, col in self._data.items():
            col.append(math.nan if name in self._numeric else None)
        parts = key if len(self.key_fields) > 1 else (key,)
        for name, part in zip(self.key_fields, parts):
            if name in self._data:
                self._data[name][pos] = float(part) if name in self._numeric else part
        return pos

    def _arrays(self) -> list[dict[str, np.ndarray]]:
        return [self._dir, self._at, {"uid": self._uid, "version": self._version}]

    def _grow(self) -> None:
        cap = self._capacity * 2
        stores = self._arrays()
        for store in stores:
            for name, arr in store.items():
                bigger = np.zeros(cap, arr.dtype)
                bigger[: self._capacity] = arr
                store[name] = bigger
        self._uid, self._version = stores[2]["uid"], stores[2]["version"]
        self._capacity = cap

    def _evict(self, count: int) -> None:
        """Drop the ``count`` oldest rows (O(rows), only when the window is full)."""
        n = self._n
        for col in self._data.values():
            del col[:count]
        for store in self._arrays():
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
