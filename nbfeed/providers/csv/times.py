"""Times in CSV files: reading time text into epoch ms, and which bar intervals a file serves.

Reading rules (summarized for users in :mod:`nbfeed.providers.csv`): ISO 8601 with or without a
time of day, ``Z`` or an offset; epoch seconds or milliseconds told apart by magnitude (as
:func:`nbfeed.timeutil.number_to_ms`); ``YYYYMMDD``. Naive date-times are in the given timezone
(UTC when None); a date without a time of day is a calendar day and starts at 00:00 UTC whatever
the timezone, so daily bars sit on nbfeed's ``1d`` grid. Ambiguous local times (the repeated hour
when clocks go back) read as the first occurrence; non-existent ones (the skipped hour) move
forward to the next valid time. Everything is vectorized: a column of 500k times is one pandas
call in the common cases. Nothing raises for bad text; callers get an ``ok`` mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...intervals import BAR_INTERVALS, interval_ms
from ...timeutil import datetimes_to_ms

_HAS_TIME = r"\d[T ]\d"
_HAS_OFFSET = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"
_DATE_ONLY = r"\d{4}-\d{2}-\d{2}"


def parse_times(texts: Any, timezone: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Epoch ms and an "ok" mask for a sequence of time strings (see the module rules)."""
    n = len(texts)
    out = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    try:  # the common cases first, each a single vectorized pass: all epoch numbers ...
        values = np.fromiter(map(float, texts), np.float64, n)
    except (ValueError, TypeError):
        pass
    else:
        _epoch(list(texts), values, np.arange(n), out, ok)
        return out, ok
    s = pd.Series(texts, dtype=object).astype(str)
    _iso(s, np.arange(n), timezone, out, ok)  # ... or all ISO 8601
    retry = np.flatnonzero(~ok)
    if len(retry):  # a mixture, or stray whitespace
        r = s.iloc[retry].str.strip()
        num = pd.to_numeric(r, errors="coerce").to_numpy(np.float64)
        is_num = np.isfinite(num)
        _epoch(r.to_numpy()[is_num].tolist(), num[is_num], retry[is_num], out, ok)
        if (~is_num).any():
            _iso(r[~is_num], retry[~is_num], timezone, out, ok)
    return out, ok


def _epoch(texts: list[str], v: np.ndarray, pos: np.ndarray, out: np.ndarray,
           ok: np.ndarray) -> None:
    finite = np.isfinite(v)
    a = np.abs(v)
    ms = np.where(a < 1e11, np.round(v * 1000),
                  np.where(a < 1e14, np.floor(v), np.where(a < 1e17, v // 1000, v // 1e6)))
    out[pos[finite]] = ms[finite].astype(np.int64)
    ok[pos[finite]] = True
    ymd = np.flatnonzero((v >= 18000101) & (v <= 22001231) & (v == np.floor(v)))
    ymd = [j for j in ymd if len(texts[j].strip()) == 8]
    if ymd:  # YYYYMMDD, not epoch seconds in August 1970
        days = pd.to_datetime(pd.Series([texts[j].strip() for j in ymd], dtype=object),
                              format="%Y%m%d", errors="coerce")
        out[pos[ymd]], ok[pos[ymd]] = datetimes_to_ms(days)


def _iso(s: pd.Series, pos: np.ndarray, timezone: str | None, out: np.ndarray,
         ok: np.ndarray) -> None:
    if not timezone:  # naive = UTC, and dates are 00:00 UTC anyway: one pass does it all
        times = pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce")
        out[pos], ok[pos] = datetimes_to_ms(times)
        return
    date_only = s.str.fullmatch(_DATE_ONLY).to_numpy(bool)
    offset = (s.str.contains(_HAS_TIME) & s.str.contains(_HAS_OFFSET)).to_numpy(bool)
    aware = date_only | offset
    if aware.any():
        exact = pd.to_datetime(s[aware], format="ISO8601", utc=True, errors="coerce")
        out[pos[aware]], ok[pos[aware]] = datetimes_to_ms(exact)
    if (~aware).any():
        local = pd.to_datetime(s[~aware], format="ISO8601", errors="coerce")
        local = local.dt.tz_localize(timezone, ambiguous=np.ones(len(local), bool),
                                     nonexistent="shift_forward")
        out[pos[~aware]], ok[pos[~aware]] = datetimes_to_ms(local)


def infer_interval(times: np.ndarray) -> str | None:
    """The bar interval nearest (in ratio) to the median spacing of sorted ``times``."""
    if len(times) < 2:
        return None
    steps = np.diff(times)
    steps = steps[steps > 0]
    if not len(steps):
        return None
    median = float(np.median(steps))
    return min(BAR_INTERVALS, key=lambda iv: abs(np.log(interval_ms(iv) / median)))


def coarser_intervals(native: str) -> list[str]:
    """``native`` and every coarser interval whose bars are whole numbers of native bars."""
    day = interval_ms("1d")
    out = [native]
    for iv in BAR_INTERVALS[BAR_INTERVALS.index(native) + 1:]:
        if iv in ("1w", "1M"):
            if native != "1w" and day % interval_ms(native) == 0:
                out.append(iv)
        elif interval_ms(iv) % interval_ms(native) == 0:
            out.append(iv)
    return out
