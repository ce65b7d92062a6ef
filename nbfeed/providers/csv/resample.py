"""Coarser bars from a file's own bars: which rows make whole bars, and how columns combine.

A file is served at its own interval and at every coarser interval whose bars are whole numbers
of its bars (see :func:`~nbfeed.providers.csv.times.coarser_intervals`). Candle columns combine
as exchanges do - open first, high max, low min, close last, volume sum (missing volume counts
as 0) - and every line column keeps its last value. ``high``/``low`` skip missing values; a bar
whose rows all miss a value keeps it missing. Pure numpy over sorted arrays: no state, no I/O.
"""

from __future__ import annotations

import numpy as np

from ...intervals import ceil_bar, floor_bar, interval_ms, shift_bars
from .parse import Layout

_CANDLE_RULES = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def whole_bar_rows(times: np.ndarray, interval: str, start: int | None, end: int | None,
                   count: int | None, first: int | None) -> tuple[int, int]:
    """The row range ``[lo, hi)`` of sorted ``times`` holding exactly the ``interval`` bars
    that start in ``[start, end)``; only the newest ``count`` or the oldest ``first`` of them."""
    # Rows in [ceil(start), ceil(end)) are exactly the rows of the bars starting in [start, end).
    lo = 0 if start is None else int(np.searchsorted(times, ceil_bar(start, interval)))
    hi = len(times) if end is None else int(np.searchsorted(times, ceil_bar(end, interval)))
    if lo >= hi:
        return lo, lo
    if count is not None:
        oldest = shift_bars(floor_bar(int(times[hi - 1]), interval), interval, 1 - count)
        lo = max(lo, int(np.searchsorted(times, oldest)))
    if first is not None:
        after = shift_bars(floor_bar(int(times[lo]), interval), interval, first)
        hi = min(hi, int(np.searchsorted(times, after)))
    return lo, max(lo, hi)


def resample(times: np.ndarray, values: np.ndarray, layout: Layout,
             interval: str) -> tuple[np.ndarray, np.ndarray]:
    """Bar start times and combined values of the ``interval`` bars the sorted rows fall in."""
    keys = floor_many(times, interval)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)] - 1
    out = np.empty((len(starts), values.shape[1]))
    for k, name in enumerate(layout.fields):
        rule = _CANDLE_RULES.get(name, "last") if layout.kind == "candlestick" else "last"
        col = values[:, k]
        if rule == "first":
            out[:, k] = col[starts]
        elif rule == "last":
            out[:, k] = col[ends]
        elif rule == "max":
            out[:, k] = np.fmax.reduceat(col, starts)
        elif rule == "min":
            out[:, k] = np.fmin.reduceat(col, starts)
        else:
            out[:, k] = np.add.reduceat(np.nan_to_num(col), starts)
    return keys[starts], out


def floor_many(times: np.ndarray, interval: str) -> np.ndarray:
    """Vectorized :func:`nbfeed.intervals.floor_bar`."""
    if interval == "1M":
        months = times.astype("datetime64[ms]").astype("datetime64[M]")
        return months.astype("datetime64[ms]").astype(np.int64)
    step = interval_ms(interval)
    if interval == "1w":
        offset = floor_bar(0, "1w")  # Monday alignment, as nbfeed.intervals defines it
        return times - ((times - offset) % step)
    return times - (times % step)
