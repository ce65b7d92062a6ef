"""Live candles of any interval built from Polygon's per-second (or per-minute) aggregates.

Polygon streams one aggregate per second (``A``, ``XAS``, ``CAS``) - or, for plans without
those, one per minute (``AM``, ``XA``, ``CA``); nbfeed serves every bar interval the aggregates
fit in from them, one :class:`BarBuilder` per (ticker, interval). Volume is summed from each
aggregate's own ``v`` (never the day's running ``av``), ``vwap`` is the volume-weighted mean of
the aggregates' ``vw``, and a repeated aggregate replaces its earlier copy instead of adding to
it, so replays after a reconnect and REST seeding that overlaps the live feed do not
double-count. An aggregate without ``v`` (indices) makes the bar's volume NaN: missing, not 0.

Failure behaviour: none of its own - pure bookkeeping, no I/O, not thread-safe (the provider
holds its lock around every call). An aggregate older than the bar being built is ignored.
"""

from __future__ import annotations

import math

from ...intervals import floor_bar


class BarBuilder:
    """Builds one stream's candles (one ticker, one interval) from aggregates.

    Aggregates may arrive late, out of order or twice (a reconnect replays, REST seeding overlaps
    the live feed): each aggregate start counts once - a repeat replaces its earlier copy - open
    is the earliest aggregate's, close the latest's. Volume is the sum of the aggregates' ``v``.
    """

    RECENT_MS = 300_000  # aggregates remembered for de-duplication

    def __init__(self, symbol: str, interval: str) -> None:
        self.symbol = symbol
        self.interval = interval
        self.start: int | None = None
        self._seconds: dict[int, tuple[float, float, float, float, float, float]] = {}
        self.o = self.h = self.low = self.c = self.v = 0.0
        self._pv = 0.0  # sum of vw * v over aggregates that have both
        self._pv_volume = 0.0
        self._first = self._last = 0

    def add(self, s: int, o: float, h: float, low: float, c: float, v: float,
            vw: float = math.nan) -> dict | None:
        """Fold in the aggregate starting at ``s``; return the bar row it changed (``None`` for
        an aggregate of an earlier, finished bar)."""
        start = floor_bar(s, self.interval)
        if self.start is None or start > self.start:
            self.start, self._seconds = start, {}
            self.o, self.h, self.low, self.c, self.v = o, h, low, c, 0.0
            self._pv = self._pv_volume = 0.0
            self._first = self._last = s
        elif start < self.start:
            return None
        previous = self._seconds.get(s)
        if previous is not None:
            self._fold(previous, -1.0)
            if previous[1] >= self.h or previous[2] <= self.low:
                # the replaced aggregate may have set the extreme: recompute from what we hold
                self._seconds[s] = (o, h, low, c, v, vw)
                self.h = max(x[1] for x in self._seconds.values())
                self.low = min(x[2] for x in self._seconds.values())
        self._seconds[s] = (o, h, low, c, v, vw)
        self._fold(self._seconds[s], 1.0)
        self.h, self.low = max(self.h, h), min(self.low, low)
        if s <= self._first:
            self._first, self.o = s, o
        if s >= self._last:
            self._last, self.c = s, c
        if len(self._seconds) > 400:
            cutoff = self._last - self.RECENT_MS
            self._seconds = {k: x for k, x in self._seconds.items() if k >= cutoff}
        return self.row()

    def _fold(self, agg: tuple[float, float, float, float, float, float], sign: float) -> None:
        v, vw = agg[4], agg[5]
        self.v += sign * v
        if not (math.isnan(v) or math.isnan(vw)):
            self._pv += sign * vw * v
            self._pv_volume += sign * v

    def row(self) -> dict:
        row = {"time": self.start, "symbol": self.symbol, "open": self.o, "high": self.h,
               "low": self.low, "close": self.c, "volume": self.v}
        if self._pv_volume > 0:
            row["vwap"] = self._pv / self._pv_volume
        return row
