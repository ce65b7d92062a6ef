"""What the gap-free tests and benchmarks share: a log of everything a subscriber received, and the
exact comparison of the bars it holds for a span with the bars of ``history()``.

``BarLog`` reads a hub :class:`~nbfeed.hub.Subscription` (``BarLog.start(sub)``) or is fed rows by
hand (``add_rows``/``add_event``, e.g. from a notebook ``Stream``'s callbacks). Every row and
event is stamped with ``time.monotonic()`` on arrival, so resume times and staleness delays are
measured from what the subscriber saw.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OHLCV = ("open", "high", "low", "close", "volume")


@dataclass
class BarLog:
    """Rows and events in arrival order, each with its arrival time (monotonic seconds)."""

    rows: list[tuple[float, dict]] = field(default_factory=list)
    events: list[tuple[float, dict]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _task: asyncio.Task | None = None

    @classmethod
    def start(cls, sub: Any) -> BarLog:
        """Log every delivery of a hub subscription (on the running loop) until stopped."""
        log = cls()

        async def read() -> None:
            while True:
                try:
                    items = await sub.get()
                except EOFError:
                    return
                for item in items:
                    if isinstance(item, dict):
                        log.add_event(item)
                    else:
                        log.add_rows(item.rows)

        log._task = asyncio.ensure_future(read())
        return log

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def add_rows(self, rows: list[dict]) -> None:
        now = time.monotonic()
        with self.lock:
            self.rows.extend((now, dict(r)) for r in rows)

    def add_event(self, event: dict) -> None:
        with self.lock:
            self.events.append((time.monotonic(), dict(event)))

    # ---- reading ----------------------------------------------------------------------------

    def snapshot(self) -> list[tuple[float, dict]]:
        with self.lock:
            return list(self.rows)

    def bars(self) -> dict[int, dict]:
        """The newest version of each bar received, by bar time."""
        out: dict[int, dict] = {}
        for _, row in self.snapshot():
            out[row["time"]] = row
        return out

    def times_out_of_order(self) -> list[int]:
        """Bars received after a later bar had been received: duplicates or disorder."""
        newest, late = None, []
        for _, row in self.snapshot():
            t = row["time"]
            if newest is not None and t < newest:
                late.append(t)
            newest = t if newest is None else max(newest, t)
        return late

    def backfilled(self) -> list[dict]:
        return [row for _, row in self.snapshot() if row.get("backfilled")]

    def stream_events(self, state: str | None = None) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, e) for t, e in self.events if e.get("type") == "status"
                    and "symbol" in e and state in (None, e.get("state"))]

    def source_events(self, state: str | None = None) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, e) for t, e in self.events if e.get("type") == "status"
                    and "symbol" not in e and state in (None, e.get("state"))]

    def first_live_after(self, moment: float) -> float | None:
        """Arrival time of the first row that is not backfilled, received after ``moment``."""
        return next((t for t, row in self.snapshot()
                     if t > moment and not row.get("backfilled")), None)

    async def wait(self, predicate: Callable[[BarLog], Any], what: str,
                   timeout: float = 30.0) -> Any:
        """Poll ``predicate(self)`` (cheap) until it holds; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                     f"{len(self.rows)} rows, last events "
                                     f"{[e for _, e in self.events[-4:]]}")
            await asyncio.sleep(0.05)

    def wait_sync(self, predicate: Callable[[BarLog], Any], what: str,
                  timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                     f"{len(self.rows)} rows")
            time.sleep(0.05)


@dataclass
class Comparison:
    """Received bars of a span against the bars ``history()`` returns for it."""

    missing: list[int]
    extra: list[int]
    different: list[tuple[int, str, Any, Any]]
    compared: int

    @property
    def exact(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def __str__(self) -> str:
        return (f"{self.compared} bars compared: missing {self.missing[:5]}, extra "
                f"{self.extra[:5]}, different {self.different[:5]}")


def compare_bars(received: dict[int, dict], expected: list[dict],
                 fields: tuple[str, ...] = OHLCV) -> Comparison:
    """Every bar of ``expected`` must be in ``received`` with equal ``fields``, and nothing
    else (NaN equals NaN: a field missing on both sides)."""
    want = {row["time"]: row for row in expected}
    missing = sorted(set(want) - set(received))
    extra = sorted(set(received) - set(want))
    different = []
    for t in sorted(set(want) & set(received)):
        for name in fields:
            a, b = received[t].get(name), want[t].get(name)
            if not _same(a, b):
                different.append((t, name, a, b))
    return Comparison(missing, extra, different, len(want))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
