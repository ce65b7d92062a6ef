"""Bar intervals: the names nbfeed accepts, their lengths, and bar alignment in UTC.

Times are epoch milliseconds (UTC) everywhere in nbfeed's engine. Fixed intervals align to
multiples of their length since the epoch (so ``4h`` bars start at 00:00, 04:00, ... UTC), ``1d`` at
UTC midnight, ``3d`` at every third UTC midnight counted from 1970-01-01 (epoch multiples of three
days, as Binance's ``3d`` klines: 2024-01-03, 2024-01-06, ...), ``1w`` on Monday 00:00 UTC (as
exchanges do) and ``1M`` on the first of the month.
``tick`` is not a bar: it names quote/trade streams whose rows are updated in place.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timezone

from .errors import BadInterval, shown

TICK = "tick"
BAR_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                 "1d", "3d", "1w", "1M")
INTERVALS = (*BAR_INTERVALS, TICK)

_S, _M, _H, _D = 1000, 60_000, 3_600_000, 86_400_000
_FIXED_MS = {
    "1s": _S, "1m": _M, "3m": 3 * _M, "5m": 5 * _M, "15m": 15 * _M, "30m": 30 * _M,
    "1h": _H, "2h": 2 * _H, "4h": 4 * _H, "6h": 6 * _H, "8h": 8 * _H, "12h": 12 * _H,
    "1d": _D, "3d": 3 * _D, "1w": 7 * _D,
}
# 1970-01-01 was a Thursday; Monday-aligned weeks start 3 days "earlier" in the modulo.
_WEEK_OFFSET = 4 * _D
_MONTH_APPROX_MS = 30 * _D


def check_interval(interval: object, supported: tuple[str, ...] | list[str] | None = None) -> str:
    """Return ``interval`` if it is valid (and in ``supported`` when given), else raise BadInterval.

    The message lists what would be accepted, so a user can fix the call without docs.
    """
    allowed = tuple(supported) if supported is not None else INTERVALS
    if not isinstance(interval, str) or interval not in allowed:
        if isinstance(interval, str) and interval in INTERVALS:
            raise BadInterval(
                f"interval {interval!r} is not supported here; supported: {', '.join(allowed)}"
            )
        raise BadInterval(f"unknown interval {shown(interval, 40)}; valid intervals: "
                          f"{', '.join(allowed)}")
    return interval


def is_bar(interval: str) -> bool:
    """True for candle intervals, False for ``tick``."""
    return interval != TICK


def interval_ms(interval: str) -> int:
    """Nominal length in ms (``1M`` counts 30 days); use :func:`next_bar` for exact bar ends."""
    if interval == "1M":
        return _MONTH_APPROX_MS
    try:
        return _FIXED_MS[interval]
    except KeyError:
        raise BadInterval(f"interval {interval!r} has no bar length") from None


def floor_bar(ms: int, interval: str) -> int:
    """Start time of the bar of ``interval`` that contains ``ms``."""
    if interval == "1M":
        d = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
        return _month_start_ms(d.year, d.month)
    if interval == "1w":
        return ms - ((ms - _WEEK_OFFSET) % _FIXED_MS["1w"])
    step = interval_ms(interval)
    return ms - (ms % step)


def next_bar(ms: int, interval: str) -> int:
    """Start time of the bar after the one that contains ``ms``."""
    start = floor_bar(ms, interval)
    if interval == "1M":
        d = datetime.fromtimestamp(start / 1000, tz=timezone.utc)
        year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return _month_start_ms(year, month)
    return start + interval_ms(interval)


def prev_bar(ms: int, interval: str) -> int:
    """Start time of the bar before the one that contains ``ms``."""
    return floor_bar(floor_bar(ms, interval) - 1, interval)


def ceil_bar(ms: int, interval: str) -> int:
    """Start time of the first bar of ``interval`` that starts at or after ``ms``."""
    start = floor_bar(ms, interval)
    return start if start == ms else next_bar(ms, interval)


def shift_bars(bar: int, interval: str, n: int) -> int:
    """Start time of the bar ``n`` bars after the bar starting at ``bar`` (before it when ``n``
    is negative). ``1M`` steps calendar months; its results stay within years 1..9999 (a shift
    past either end stops there), so absurd counts cannot overflow a datetime."""
    if interval != "1M":
        return bar + n * interval_ms(interval)
    d = datetime.fromtimestamp(bar / 1000, tz=timezone.utc)
    months = min(max(d.year * 12 + d.month - 1 + n, 12), 9999 * 12 + 11)
    year, month = divmod(months, 12)
    return _month_start_ms(year, month + 1)


def bar_starts(start: int, end: int, interval: str) -> list[int]:
    """Start times of every bar that begins in ``[start, end)`` (start aligned up)."""
    t = floor_bar(start, interval)
    if t < start:
        t = next_bar(t, interval)
    out = []
    while t < end:
        out.append(t)
        t = next_bar(t, interval)
    return out


def _month_start_ms(year: int, month: int) -> int:
    return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000
