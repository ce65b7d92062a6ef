"""Rows as columns: one time array and one array per field, built once, read many ways.

A :class:`Columns` holds the rows of one symbol (a live batch of one stream, history bars of one
series) the way numpy and pandas want them: ``time`` (int64 epoch ms), then one array per field
in first-seen order. It is what travels from a provider process to the hub, what the history
cache reads out of SQLite, and what the notebook turns into a DataFrame - without building a
dict per row. Consumers that do want rows (the wire's JSON, the hub's snapshot, the recorder)
ask :meth:`Columns.rows`, which builds them once and shares them (read-only).

The rules, stated once (docs/internals.md "Rows"):

- a row's keys come back exactly: ``time``, ``symbol``, then the fields in first-seen order; a
  field some rows lack is *absent* from those rows (a per-field ``present`` mask), which is
  not the same as a value of ``None`` or NaN;
- a field of floats (or floats and ints) is float64; of ints only, int64 (so ``trades`` stays
  an int); of ``True``/``False`` only, bool; anything else (text, ``None`` mixed in, numbers
  too big for int64) is an object array holding the values as given;
- ``symbol`` is the batch's one symbol (:attr:`Columns.symbol`); rows naming another symbol
  keep theirs in a ``symbol`` field column, and rows without one get the batch's;
- ``time`` must be an integer epoch-ms value (a whole float counts) in every row:
  :class:`BadRows` names the first row that breaks a rule, so does a row that is not a dict or
  a field name that is not a string.

Columns are immutable by convention: slices share memory with their parent, and the cached
rows are shared by every reader. Pickling sends the arrays only (never the cached rows), which
is what makes a batch cheap to move between processes: unpickling is a few ``memcpy``s instead
of one object per value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, overload

import numpy as np

from .jsonfast import dumpb

#: What a missing field is filled with inside its array (the mask says it is absent).
_FILL = {"f": np.nan, "i": 0, "b": False, "O": None}
_ABSENT: Any = object()


class BadRows(ValueError):
    """Rows that cannot become columns; the message names the first bad row and why.

    ``row`` is that row's index; ``time`` is set when the problem is a whole-number time too
    big for int64 epoch ms (callers with their own range name it)."""

    def __init__(self, message: str, row: int = 0, time: int | None = None) -> None:
        super().__init__(message)
        self.row = row
        self.time = time


class Columns:
    """Rows of one symbol as arrays (see the module docstring). Treat as read-only."""

    __slots__ = ("_rows", "fields", "masks", "symbol", "time")

    def __init__(self, time: np.ndarray, fields: Mapping[str, np.ndarray] | None = None, *,
                 symbol: str | None = None,
                 masks: Mapping[str, np.ndarray] | None = None) -> None:
        self.time = time
        #: field name -> array of len(time), in first-seen order (``time``/``symbol`` excluded,
        #: except a ``symbol`` column for rows that name another symbol).
        self.fields: dict[str, np.ndarray] = dict(fields or {})
        #: field name -> bool array, True where the row has the field; only for fields that
        #: some rows lack.
        self.masks: dict[str, np.ndarray] = dict(masks or {})
        self.symbol = symbol
        self._rows: list[dict] | None = None

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def empty(cls, symbol: str | None = None) -> Columns:
        return cls(np.empty(0, dtype=np.int64), symbol=symbol)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], symbol: str | None = None) -> Columns:
        """Columns of row dicts (see the module rules; raises :class:`BadRows`).

        ``symbol`` is the batch's symbol; without it, the first row's. The rows are not kept:
        later changes to them do not show here."""
        if not isinstance(rows, list):
            rows = list(rows)
        n = len(rows)
        if n == 0:
            return cls.empty(symbol)
        first = rows[0]
        if type(first) is not dict:
            _check_dicts(rows)
        if symbol is None:
            symbol = first.get("symbol")
            if symbol is not None and not isinstance(symbol, str):
                raise BadRows(f"row 0: symbol {symbol!r:.60} is not a string")
        names = list(first)
        width = len(names)
        try:
            # The common case: every row has the first row's keys (and no more); transposed
            # in C (itemgetter + zip), which is what a provider process pays per row it sends.
            if width > 1:
                values = dict(zip(names, zip(*map(itemgetter(*names), rows))))
            else:
                values = {k: [r[k] for r in rows] for k in names}
            uniform = set(map(len, rows)) == {width}
        except (KeyError, TypeError, AttributeError):
            uniform = False
        if not uniform:
            _check_dicts(rows)
            names = list(dict.fromkeys(k for r in rows for k in r))
            values = {k: [r.get(k, _ABSENT) for r in rows] for k in names}
        for k in names:
            if type(k) is not str:
                i = next(i for i, r in enumerate(rows) if k in r)
                raise BadRows(f"row {i}: field name {k!r:.60} is not a string")
        times = values.pop("time", None)
        if times is None:
            raise BadRows("row 0: time is missing")
        time = _times(times)
        fields: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        syms = values.pop("symbol", None)
        if syms is not None:
            column = _symbols(syms, symbol)
            if column is not None:
                fields["symbol"], mask = column
                if mask is not None:
                    masks["symbol"] = mask
        for k, vals in values.items():
            fields[k], mask = _column(vals, uniform)
            if mask is not None:
                masks[k] = mask
        return cls(time, fields, symbol=symbol, masks=masks)

    @classmethod
    def concat(cls, parts: Sequence[Columns], symbol: str | None = None) -> Columns:
        """One Columns of ``parts`` in order (fields: the union, in first-seen order)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(symbol)
        if len(parts) == 1 and (symbol is None or parts[0].symbol == symbol):
            return parts[0]
        symbol = symbol if symbol is not None else parts[0].symbol
        names = list(dict.fromkeys(k for p in parts for k in p.fields))
        sizes = [len(p) for p in parts]
        time = np.concatenate([p.time for p in parts])
        fields: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        symbol_parts = [p for p in parts if p.symbol != symbol]
        if symbol_parts and "symbol" not in names:
            names.insert(0, "symbol")
        for name in names:
            arrays, present = [], []
            for p, size in zip(parts, sizes):
                if name in p.fields:
                    arrays.append(p.fields[name])
                    present.append(p.masks.get(name))
                elif name == "symbol" and p.symbol != symbol:
                    arrays.append(object_array([p.symbol] * size))
                    present.append(None)
                else:
                    arrays.append(None)
                    present.append(np.zeros(size, dtype=bool))
            kind = _common_kind([a.dtype for a in arrays if a is not None])
            dtype = _DTYPES[kind]
            filled = [np.full(size, _FILL[kind], dtype=dtype) if a is None else
                      (a if a.dtype == dtype else _cast(a, dtype))
                      for a, size in zip(arrays, sizes)]
            fields[name] = np.concatenate(filled)
            if any(m is not None for m in present):
                masks[name] = np.concatenate([np.ones(size, dtype=bool) if m is None else m
                                              for m, size in zip(present, sizes)])
        return cls(time, fields, symbol=symbol, masks=masks)

    # ---- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.time)

    def __bool__(self) -> bool:
        return len(self.time) > 0

    def __repr__(self) -> str:
        return f"Columns({self.symbol!r}, {len(self)} rows, fields {list(self.fields)})"

    def __getstate__(self) -> tuple:
        return (self.time, self.fields, self.masks, self.symbol)

    def __setstate__(self, state: tuple) -> None:
        self.time, self.fields, self.masks, self.symbol = state
        self._rows = None

    def __eq__(self, other: object) -> bool:
        """Equal to Columns holding the same rows, and to the list of those rows."""
        if isinstance(other, Columns):
            return self.rows() == other.rows()
        if isinstance(other, list):
            return self.rows() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def names(self) -> list[str]:
        """Every key a row may have: ``time``, ``symbol``, then the fields."""
        return ["time", "symbol", *(k for k in self.fields if k != "symbol")]

    def present(self, name: str) -> np.ndarray | None:
        """Where rows have field ``name`` (None: in every row)."""
        return self.masks.get(name)

    def floats(self, name: str) -> np.ndarray:
        """Field ``name`` as float64, NaN where a row lacks it or holds no number."""
        arr = self.fields[name]
        if arr.dtype.kind in "fiub":
            out = arr.astype(np.float64)
        else:
            out = np.array([_to_float(v) for v in arr.tolist()], dtype=np.float64)
        mask = self.masks.get(name)
        if mask is not None:
            out[~mask] = np.nan
        return out

    def rows(self) -> list[dict]:
        """The rows as dicts, built once and shared by every caller: read-only."""
        if self._rows is None:
            self._rows = self._build_rows()
        return self._rows

    def row(self, i: int) -> dict:
        """Row ``i`` (negative counts from the end) as a new dict."""
        if self._rows is not None:
            return self._rows[i]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} of {n}")
        return self.slice(i % n, i % n + 1)._build_rows()[0]

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows())

    @overload
    def __getitem__(self, key: int) -> dict: ...

    @overload
    def __getitem__(self, key: slice) -> Columns: ...

    def __getitem__(self, key: int | slice) -> dict | Columns:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self.take(np.arange(start, stop, step))
            return self.slice(start, stop)
        return self.row(key)

    def slice(self, start: int, stop: int) -> Columns:
        """Rows ``start:stop`` (sharing memory with this one)."""
        return Columns(self.time[start:stop],
                       {k: v[start:stop] for k, v in self.fields.items()},
                       symbol=self.symbol,
                       masks={k: m[start:stop] for k, m in self.masks.items()})

    def take(self, index: np.ndarray) -> Columns:
        """The rows at ``index`` (an int array or a bool mask), in that order."""
        return Columns(self.time[index], {k: v[index] for k, v in self.fields.items()},
                       symbol=self.symbol, masks={k: m[index] for k, m in self.masks.items()})

    def json_rows(self) -> bytes:
        """The rows as a UTF-8 JSON array fragment without brackets (NaN/inf become null);
        empty bytes for no rows. Builds (and keeps) :meth:`rows`."""
        return dumpb(self.rows())[1:-1] if len(self) else b""

    def chunks(self, size: int) -> Iterator[Columns]:
        """Consecutive slices of at most ``size`` rows."""
        for i in range(0, len(self), size):
            yield self.slice(i, i + size)

    def _build_rows(self) -> list[dict]:
        n = len(self)
        if n == 0:
            return []
        names = ["time", "symbol"]
        lists: list[Any] = [self.time.tolist()]
        fields = self.fields
        own = fields.get("symbol")
        if own is None:
            lists.append(repeat(self.symbol, n))
        else:
            values = own.tolist()
            mask = self.masks.get("symbol")
            if mask is not None:
                values = [v if m else self.symbol for v, m in zip(values, mask.tolist())]
            lists.append(values)
        for k, arr in fields.items():
            if k != "symbol":
                names.append(k)
                lists.append(arr.tolist())
        rows = [dict(zip(names, values)) for values in zip(*lists)]
        for k, mask in self.masks.items():
            if k == "symbol":
                continue
            for i in np.flatnonzero(~mask).tolist():
                del rows[i][k]
        return rows


# ---- helpers -------------------------------------------------------------------------------


_DTYPES = {"f": np.dtype(np.float64), "i": np.dtype(np.int64), "b": np.dtype(bool),
           "O": np.dtype(object)}


_PLAIN_NUMBERS = frozenset((int, float))


def _check_dicts(rows: list) -> None:
    for i, row in enumerate(rows):
        if type(row) is not dict and not isinstance(row, Mapping):
            raise BadRows(f"row {i}: expected a dict, got {type(row).__name__}")


def object_array(values: list) -> np.ndarray:
    """``values`` as a 1-d object array (never a nested array, whatever the values are)."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _kind_of(kinds: set) -> str:
    if kinds == {float} or kinds == {int, float}:
        return "f"
    if kinds == {int}:
        return "i"
    if kinds == {bool}:
        return "b"
    if kinds and all(issubclass(k, (numbers.Real, np.number)) and not issubclass(k, bool)
                     and k is not np.bool_ for k in kinds):
        return "i" if all(issubclass(k, (numbers.Integral, np.integer)) for k in kinds) else "f"
    if kinds and all(k is np.bool_ or k is bool for k in kinds):
        return "b"
    return "O"


def _column(values: Sequence, uniform: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """One field's array (and present mask) from its values, ``_ABSENT`` where missing."""
    mask = None
    if not uniform:
        present = [v is not _ABSENT for v in values]
        if not all(present):
            mask = np.array(present, dtype=bool)
            values = [v for v in values if v is not _ABSENT]
    kinds = set(map(type, values))
    kind = _kind_of(kinds)
    arr: np.ndarray
    if kind == "O":
        arr = object_array(values)
    else:
        try:
            if kinds <= _PLAIN_NUMBERS:  # the common case, and the quickest way in
                arr = np.fromiter(values, _DTYPES[kind], len(values))
            else:
                arr = np.array(values, dtype=_DTYPES[kind])
        except (OverflowError, ValueError, TypeError):
            arr = object_array(values)
            kind = "O"
    if mask is not None:
        full = np.full(len(mask), _FILL[kind], dtype=arr.dtype)
        full[mask] = arr
        arr = full
    return arr, mask


def _symbols(values: Sequence, symbol: str | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A ``symbol`` column for rows naming another symbol than the batch's; None when every
    row names the batch's (or none)."""
    if values.count(symbol) == len(values) or all(v == symbol for v in values
                                                  if v is not _ABSENT):
        return None
    for i, v in enumerate(values):
        if v is not _ABSENT and v is not None and not isinstance(v, str):
            raise BadRows(f"row {i}: symbol {v!r:.60} is not a string")
    present = [v is not _ABSENT for v in values]
    mask = None if all(present) else np.array(present, dtype=bool)
    return object_array([symbol if v is _ABSENT else v for v in values]), mask


def _times(values: Sequence) -> np.ndarray:
    """int64 epoch ms of every row; BadRows naming the first row without an integer time."""
    kinds = set(map(type, values))
    if kinds == {int}:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            pass
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if v is _ABSENT or v is None:
            raise BadRows(f"row {i}: time is missing")
        if isinstance(v, bool):
            raise BadRows(f"row {i}: time {v!r} is not an integer epoch-ms time")
        whole = isinstance(v, (numbers.Integral, np.integer)) or (
            isinstance(v, (float, np.floating)) and float(v).is_integer())
        if not whole:
            raise BadRows(f"row {i}: time {v!r:.60} is not an integer epoch-ms time")
        t = int(v)
        if not -(1 << 63) <= t < (1 << 63):
            raise BadRows(f"row {i}: time {t} does not fit int64 epoch ms", i, t)
        out[i] = t
    return out


def _common_kind(dtypes: list[np.dtype]) -> str:
    kinds = {d.kind for d in dtypes}
    if len(kinds) == 1:
        kind = kinds.pop()
        return kind if kind in "fibO" else "O"
    if kinds <= {"f", "i"}:
        return "f"
    return "O"


def _cast(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "O":
        return object_array(arr.tolist())
    return arr.astype(dtype)


def _to_float(value: Any) -> float:
    if isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return math.nan
