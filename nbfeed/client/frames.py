"""Rows -> pandas DataFrames the way notebook users expect them.

Times become a tz-aware UTC ``DatetimeIndex`` named ``time``; numeric fields become float
columns; a single-symbol result drops the redundant ``symbol`` column.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

_NON_FLOAT = {"symbol", "time", "source", "name", "name_label", "type", "categories",
              "intervals", "outputs"}


def history_frame(rows: list[dict], symbol: str | None = None) -> pd.DataFrame:
    """Bars as a DataFrame indexed by UTC bar start time, float columns."""
    if not rows:
        return pd.DataFrame(
            {c: pd.Series(dtype="float64") for c in ("open", "high", "low", "close", "volume")},
            index=pd.DatetimeIndex([], tz="UTC", name="time"))
    df = pd.DataFrame.from_records(rows)
    df.index = pd.DatetimeIndex(pd.to_datetime(df.pop("time"), unit="ms", utc=True), name="time")
    if "symbol" in df.columns and df["symbol"].nunique() <= 1:
        df = df.drop(columns="symbol")
    return _floats(df)


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
