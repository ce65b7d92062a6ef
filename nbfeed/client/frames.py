"""Rows -> pandas DataFrames the way notebook users expect them.

Times become a tz-aware UTC ``DatetimeIndex`` named ``time``; numeric fields become float
columns; a single-symbol result drops the redundant ``symbol`` column. History arrives as
:class:`~nbfeed.columns.Columns` and becomes a DataFrame array by array, never row by row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..columns import Columns

_NON_FLOAT = {"symbol", "time", "source", "name", "name_label", "type", "categories",
              "intervals", "outputs"}


def history_frame(bars: Columns | list[dict], symbol: str | None = None) -> pd.DataFrame:
    """Bars (Columns, or row dicts) as a DataFrame indexed by UTC bar start time, float
    columns (a field some bars lack is NaN there)."""
    if not isinstance(bars, Columns):
        bars = Columns.from_rows(bars) if bars else Columns.empty()
    if not len(bars):
        return pd.DataFrame(
            {c: pd.Series(dtype="float64") for c in ("open", "high", "low", "close", "volume")},
            index=pd.DatetimeIndex([], tz="UTC", name="time"))
    index = pd.DatetimeIndex(pd.to_datetime(bars.time, unit="ms", utc=True), name="time")
    data: dict[str, Any] = {}
    symbols = bars.fields.get("symbol")
    if symbols is not None:
        mask = bars.masks.get("symbol")
        if mask is not None:
            symbols = np.where(mask, symbols, bars.symbol)
        if len(set(symbols.tolist())) > 1:
            data["symbol"] = symbols
    for name, arr in bars.fields.items():
        if name == "symbol":
            continue
        mask = bars.masks.get(name)
        if arr.dtype.kind in "fi":
            data[name] = bars.floats(name)
        elif arr.dtype.kind == "b" and mask is None:
            data[name] = arr.copy()
        else:  # flags some bars lack, or values of mixed kinds: as pandas infers them
            values = arr.tolist()
            if mask is not None:
                values = [v if m else np.nan for v, m in zip(values, mask.tolist())]
            data[name] = pd.Series(values, index=index, dtype=object).infer_objects()
    return _floats(pd.DataFrame(data, index=index))


def latest_frame(rows: list[dict]) -> pd.DataFrame:
    """Newest rows per symbol, indexed by symbol, with ``time`` as UTC timestamps."""
    if not rows:
        return pd.DataFrame(index=pd.Index([], name="symbol"))
    df = pd.DataFrame.from_records(rows).set_index("symbol")
    if "time" in df.columns:
        df["time"] = pd.to_datetime(df["time"], unit="ms", utc=True)
    return _floats(df)


def table_frame(rows: list[dict], index: str | None = None) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows)
    if index and index in df.columns:
        df = df.set_index(index)
    return df


def _floats(df: pd.DataFrame) -> pd.DataFrame:
    for col in df.columns:
        if col in _NON_FLOAT:
            continue
        series: Any = df[col]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            df[col] = series.astype("float64")
    return df
