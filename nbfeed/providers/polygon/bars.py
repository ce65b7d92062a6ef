"""Live candles of any interval built from Polygon's per-second aggregates.

Polygon streams one aggregate per second (``A``, ``XAS``, ``CAS``); nbfeed serves every bar
interval from them, one :class:`BarBuilder` per (ticker, interval). Volume is summed from each
second's own ``v`` (never the day's running ``av``), and a repeated second replaces its earlier
copy instead of adding to it, so replays after a reconnect and REST seeding that overlaps the
live feed do not double-count.

Failure behaviour: none of its own - pure bookkeeping, no I/O, not thread-safe (the provider
holds its lock around every call). A second older than the bar being built is ignored.
"""

from __future__ import annotations

from ...intervals import floor_bar


class BarBuilder:
    """Builds one stream's candles (one ticker, one interval) from per-second aggregates.

    Aggregates may arrive late, out of order or twice (a reconnect replays, REST seeding overlaps
    the live feed): each second counts once - a repeat replaces its earlier copy - open is the
    earliest second's, close the latest's. Volume is the sum of the seconds' ``v``.
    """

    RECENT_MS = 300_000  # seconds remembered for de-duplication

    def __init__(self, symbol: str, interval: str) -> None:
        self.symbol = symbol
        self.interval = interval
        self.start: int | None = None
        self._seconds: dict[int, tuple[float, float, float, float, float]] = {}
        self.o = self.h = self.low = self.c = self.v = 0.0
        self._first = self._last = 0

    def add(self, s: int, o: float, h: float, low: float, c: float, v: float) -> dict | None:
        """Fold in the aggregate of the second starting at ``s``; return the bar row it changed
        (``None`` for a second of an earlier, finished bar)."""
        start = floor_bar(s, self.interval)
        if self.start is None or start > self.start:
            self.start, self._seconds = start, {}
            self.o, self.h, self.low, self.c, self.v = o, h, low, c, 0.0
            self._first = self._last = s
        elif start < self.start:
            return None
        previous = self._seconds.get(s)
        if previous is not None:
            self.v -= previous[4]
            if previous[1] >= self.h or previous[2] <= self.low:
                # the replaced second may have set the extreme: recompute from what we hold
                self._seconds[s] = (o, h, low, c, v)
                self.h = max(x[1] for x in self._seconds.values())
                self.low = min(x[2] for x in self._seconds.values())
        self._seconds[s] = (o, h, low, c, v)
        self.v += v
        self.h, self.low = max(self.h, h), min(self.low, low)
        if s <= self._first:
            self._first, self.o = s, o
        if s >= self._last:
            self._last, self.c = s, c
        if len(self._seconds) > 400:
            cutoff = self._last - self.RECENT_MS
            self._seconds = {k: x for k, x in self._seconds.items() if k >= cutoff}
        return self.row()

    def row(self) -> dict:
        return {"time": self.start, "symbol": self.symbol, "open": self.o, "high": self.h,
                "low": self.low, "close": self.c, "volume": self.v}
