"""History requests: one type, one set of rules, checked once where a request comes in.

:func:`history_request` reads what a caller wrote - names, an interval, times in any form
:func:`nbfeed.timeutil.to_ms` reads, a count - and returns a frozen :class:`HistoryRequest` that
holds only checked names and ints. ``Hub.history`` builds it; ``HistoryCache.get`` takes it and
checks nothing again. The notebook client checks the interval and count early with
:func:`bar_interval` and :func:`bar_count`, the same rules and limits.

The rules, each refused with a :mod:`nbfeed.errors` exception naming the value:

* ``source`` and ``symbol``: non-blank strings of at most :data:`MAX_NAME_CHARS` characters
  (``BadRequest``). Whether the source runs and lists the symbol is the hub's question.
* ``interval``: a bar interval; ``tick`` and unknown names raise ``BadInterval``.
* ``start``/``end``: epoch ms inside years 1900..2999 (``BadRequest``); ``start`` before ``end``,
  or before now when ``end`` is open. ``end=None`` stays open: it means "now" when served.
* ``count``: a whole number from 1 to :data:`MAX_HISTORY_BARS` (``BadRequest``, above it
  ``LimitExceeded``); the newest ``count`` bars. Without ``start`` and ``count`` the request is
  for the newest :data:`DEFAULT_HISTORY_BARS` bars.
* a ``start``..``end`` span without ``count`` may hold at most :data:`MAX_HISTORY_BARS` bars
  (``LimitExceeded``, saying to narrow it or pass ``count``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from .. import timeutil
from ..errors import BadInterval, BadRequest, LimitExceeded, shown
from ..intervals import BAR_INTERVALS, INTERVALS, ceil_bar, floor_bar, interval_ms

MAX_HISTORY_BARS = 1_000_000
"""Most bars one request may ask for (``count``, or the bars a start/end span can hold)."""
DEFAULT_HISTORY_BARS = 500
"""Bars a request gets when it gives neither ``start`` nor ``count``."""
MAX_NAME_CHARS = 200
"""Longest source or symbol name a request may carry."""
MIN_TIME_MS = -2_208_988_800_000
"""1900-01-01: the earliest time a request or a stored bar may carry (safe for calendars)."""
MAX_TIME_MS = 32_503_680_000_000
"""3000-01-01: every time a request or a stored bar carries is before it."""


@dataclass(frozen=True)
class HistoryRequest:
    """A checked history request: bars of ``(source, symbol, interval)`` that start in
    ``[start, end)`` (epoch ms; ``None`` = unbounded start / up to now), the newest ``count``
    of them (``None`` = all bars of the span)."""

    source: str
    symbol: str
    interval: str
    start: int | None
    end: int | None
    count: int | None


def history_request(source: Any, symbol: Any, interval: Any, start: Any = None,
                    end: Any = None, count: Any = None, *,
                    now_ms: int | None = None) -> HistoryRequest:
    """Check a history request as a caller wrote it (see the module rules).

    ``now_ms`` is the clock the rules about an open ``end`` use (default: now).
    """
    source = check_name(source, "source")
    symbol = check_name(symbol, "symbol")
    interval = bar_interval(interval)
    start_ms = None if start is None else time_ms(start, "start")
    end_ms = None if end is None else time_ms(end, "end")
    count = bar_count(count)
    if start_ms is None:
        if count is None:
            count = DEFAULT_HISTORY_BARS
    else:
        until = end_ms
        if until is None:
            until = timeutil.now_ms() if now_ms is None else now_ms
        if start_ms >= until:
            raise BadRequest(f"start {timeutil.ms_to_iso(start_ms)} must be before end "
                             f"{timeutil.ms_to_iso(until)}{' (now)' if end_ms is None else ''}")
        if count is None:
            _check_span(floor_bar(start_ms, interval), ceil_bar(until, interval), interval)
    return HistoryRequest(source, symbol, interval, start_ms, end_ms, count)


def check_name(value: Any, what: str) -> str:
    """A source or symbol name: a non-blank string of at most MAX_NAME_CHARS characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise BadRequest(f"{what} must be a non-empty string of at most {MAX_NAME_CHARS} "
                         f"characters, got {shown(value)}")
    return value


def bar_interval(value: Any) -> str:
    """A bar interval; ``tick`` (quotes are not kept) and unknown names raise BadInterval."""
    if isinstance(value, str) and value in BAR_INTERVALS:
        return value
    if isinstance(value, str) and value in INTERVALS:
        raise BadInterval(f"interval {value!r} has no history (quotes are not kept); use a "
                          f"bar interval: {', '.join(BAR_INTERVALS)}")
    raise BadInterval(f"unknown interval {shown(value, 40)}; bar intervals: "
                      f"{', '.join(BAR_INTERVALS)}")


def bar_count(value: Any) -> int | None:
    """``None`` or a whole number of bars from 1 to MAX_HISTORY_BARS."""
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise BadRequest(f"count must be a positive whole number, got {shown(value, 40)} "
                         f"({type(value).__name__})")
    count = int(value)
    if count <= 0:
        raise BadRequest(f"count must be a positive whole number, got {count}")
    if count > MAX_HISTORY_BARS:
        raise LimitExceeded(f"count {count} is more than the limit of {MAX_HISTORY_BARS} bars "
                            "per request")
    return count


def time_ms(value: Any, what: str) -> int:
    """A time in any form :func:`~nbfeed.timeutil.to_ms` reads, inside years 1900..2999."""
    ms = timeutil.to_ms(value, what)
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        raise BadRequest(f"{what}: {shown(value, 40)} is outside the supported years 1900..2999")
    return ms


def _check_span(start: int, end: int, interval: str) -> None:
    bars = (end - start) // interval_ms(interval)
    if bars > MAX_HISTORY_BARS:
        raise LimitExceeded(
            f"{timeutil.ms_to_iso(start)} .. {timeutil.ms_to_iso(end)} holds about {bars} "
            f"{interval} bars, more than the limit of {MAX_HISTORY_BARS} per request; narrow "
            "the span or pass count")
