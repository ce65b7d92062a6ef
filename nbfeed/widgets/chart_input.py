"""Reading LiveChart input: DataFrames and nbfeed rows become (epoch ms, values) for its store.

* :class:`Plan` decides once, from the first data, what the chart plots: candles (open, high,
  low, close, volume) or lines (a ``field``, ``price``/``close``, or every numeric column).
* :func:`frame_times` reads a DataFrame's times (a DatetimeIndex, or a ``time``/``date``/...
  column of datetimes, epoch s/ms/us/ns or strings); :func:`frame_symbol` keeps one symbol's
  rows; :func:`frame_values` checks and extracts the plotted columns, vectorized.
* :func:`row_values` checks one row's plotted fields (the per-row hot path: finite floats pass
  without a call).

Failure behaviour: every check raises :class:`nbfeed.errors.BadRequest` naming the row or column,
the bad value and what is accepted; nothing here keeps state, so the caller decides whether a bad
row aborts the batch (``update()``) or is dropped (rows from a stream).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BadRequest
from ..timeutil import to_ms

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")
OHLC = CANDLE_COLUMNS[:4]
TIME_NAMES = ("time", "date", "timestamp", "datetime")


class RowPlace:
    """``row 3 (time ...)`` for error messages, formatted only when an error is raised."""

    __slots__ = ("i", "t")

    def __init__(self, i: int, t: int) -> None:
        self.i, self.t = i, t

    def __str__(self) -> str:
        return f"row {self.i} (time {self.t})"


def check_number(value: Any, name: str, where: Any, allow_nan: bool = False) -> float:
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


def frame_times(df: pd.DataFrame) -> tuple[np.ndarray, str | None]:
    """Epoch ms of every row and the name of the column they came from (None: the index)."""
    if isinstance(df.index, pd.DatetimeIndex):
        return _datetimes_to_ms(df.index, "the DataFrame's index"), None
    lower = {str(c).lower(): c for c in df.columns}
    name = next((lower[n] for n in TIME_NAMES if n in lower), None)
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


def is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)


class Plan:
    """What the chart plots: ``kind``, the store's columns and the row fields they read."""

    def __init__(self, kind: str, columns: Sequence[str]) -> None:
        self.kind = kind
        self.columns = tuple(columns)

    @classmethod
    def resolve(cls, kind: str, field: str | None, keys: Iterable[str], numeric: Iterable[str],
                what: str, one_series: bool) -> Plan:
        """Decide from the first data's keys; ``one_series``: rows plot price or close only."""
        keys = [str(k) for k in keys]
        lower = {k.lower() for k in keys}
        has_ohlc = all(c in lower for c in OHLC)
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
        numeric = [str(k) for k in numeric if str(k).lower() not in (*TIME_NAMES, "symbol")]
        for preferred in ("price", "close", "value"):
            if preferred in numeric:
                return cls("line", (preferred,) if one_series else numeric)
        if not numeric:
            raise BadRequest(f"{what} has no numeric column to plot ({', '.join(keys) or 'empty'})")
        return cls("line", numeric)


def frame_symbol(df: pd.DataFrame, times: np.ndarray, cols: Sequence[Any],
                 symbol: str | None) -> tuple[pd.DataFrame, np.ndarray, str | None]:
    """Keep one symbol's rows of a DataFrame with a ``symbol`` column (else change nothing).

    Without a ``symbol``, a column holding one symbol adopts it and one holding several raises
    BadRequest. Returns the kept rows, their times and the symbol.
    """
    sym_col = next((c for c in cols if str(c).lower() == "symbol"), None)
    if sym_col is None:
        return df, times, symbol
    symbols = [str(s) for s in pd.unique(df[sym_col].dropna())]
    if symbol is None and len(symbols) > 1:
        raise BadRequest(f"the DataFrame holds several symbols ({', '.join(symbols[:5])})"
                         "; pass symbol= to pick one")
    if symbol is None and len(symbols) == 1:
        symbol = symbols[0]
    if symbol is not None:
        keep = (df[sym_col].astype(str) == symbol).to_numpy()
        df, times = df[keep], times[keep]
    return df, times, symbol


def frame_values(df: pd.DataFrame, times: np.ndarray, cols: Sequence[Any], kind: str,
                 columns: Sequence[str],
                 max_bars: int) -> tuple[np.ndarray, list[list[float | None]]]:
    """The plotted ``columns`` of a DataFrame, sorted by time, newest ``max_bars`` (None = gap)."""
    lower = {str(c).lower(): c for c in cols}
    order = np.argsort(times, kind="stable")
    times = times[order]
    # Keep the last row of each duplicated time, as a live update would.
    last = np.append(times[1:] != times[:-1], True) if len(times) else np.array([], bool)
    times, order = times[last][-max_bars:], order[last][-max_bars:]
    matrix = np.full((len(times), len(columns)), np.nan)
    for k, name in enumerate(columns):
        col = name if name in df.columns else lower.get(name.lower())
        if col is None:
            if kind == "candle" and name == "volume":
                continue
            raise BadRequest(f"the DataFrame has no column {name!r} (the chart plots "
                             f"{', '.join(columns)})")
        if not is_numeric(df[col]):
            raise BadRequest(f"column {col!r} is not numeric (dtype {df[col].dtype})")
        values = df[col].to_numpy(dtype=np.float64, na_value=np.nan)[order]
        gaps_ok = kind == "line" or name == "volume"  # NaN: a gap in a line
        bad = np.isinf(values) | (False if gaps_ok else np.isnan(values))
        if bad.any():
            at = pd.Timestamp(int(times[np.argmax(bad)]), unit="ms", tz="UTC")
            raise BadRequest(f"column {col!r} is {values[np.argmax(bad)]} at {at}; "
                             "expected a finite number")
        matrix[:, k] = values
    return times, [[None if v != v else v for v in row] for row in matrix.tolist()]


def row_values(row: Any, where: RowPlace, kind: str,
               columns: Sequence[str]) -> list[float | None]:
    """The plotted fields of one row, checked; a candle's volume and a line's fields may be
    missing (None), but not every line field at once."""
    if kind == "candle":
        try:
            vals: list[float | None] = [row["open"], row["high"], row["low"], row["close"],
                                        row.get("volume")]
        except KeyError:
            missing = [c for c in OHLC if c not in row]
            raise BadRequest(f"{where} has no {', '.join(missing)} (a candle needs open, "
                             "high, low, close)") from None
        for k, v in enumerate(vals):
            # Finite floats (v - v == 0) pass without a call; a missing volume is allowed.
            if (type(v) is not float or v - v != 0.0) and (k < 4 or v is not None):
                vals[k] = check_number(v, CANDLE_COLUMNS[k], where, allow_nan=k == 4)
        return vals
    vals = [None if row.get(c) is None else check_number(row[c], c, where)
            for c in columns]
    if all(v is None for v in vals):
        raise BadRequest(f"{where} has none of the plotted fields ({', '.join(columns)})")
    return vals
