"""Making recordings for tests with the real writer (its thread, its files), fast.

:func:`write_recording` feeds batches with chosen receive times straight into a
:class:`~nbfeed.recorder.recorder.Recorder`'s box - what the hub does, minus the wait - so a test
gets a "30 s recording" in a fraction of a second, written by exactly the code that records live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbfeed.recorder.layout import Layout
from nbfeed.recorder.limits import make_limits
from nbfeed.recorder.recorder import Recorder


@dataclass
class Sent:
    """A batch as the hub would hand it over: ``source``, ``symbol``, ``interval``, ``rows``."""

    source: str
    symbol: str
    interval: str
    rows: list[dict]


def quote_rows(symbol: str, start_ms: int, n: int, step_ms: int = 100,
               price: float = 100.0) -> list[dict]:
    """``n`` quote rows of ``symbol``, ``step_ms`` apart, with values that are not round."""
    return [{"time": start_ms + i * step_ms, "symbol": symbol,
             "price": price + i * 0.01 + 1 / 3, "bid": price + i * 0.01 - 0.005,
             "ask": price + i * 0.01 + 0.005, "volume": 1000.0 + 7 * i} for i in range(n)]


def settle(recorder: Recorder, timeout: float = 30.0) -> None:
    """Return once everything put into the box so far is on disk (two more flushes)."""
    n = recorder.flushes
    recorder.box.ready.set()
    assert recorder.wait_flushed(n, timeout), "the writer did not flush"
    recorder.box.ready.set()
    assert recorder.wait_flushed(n + 1, timeout), "the writer did not flush"


def write_recording(home: str | Path, name: str, sent: list[tuple[Sent, int]], *,
                    flush_each: bool = False, merge_parts: int = 60, **limits: Any) -> Recorder:
    """Record ``(batch, received_us)`` pairs as recording ``name`` and stop it.

    ``flush_each`` makes one part file per batch (to test merging and multi-file reads).
    """
    streams: dict[tuple[str, str], set[str]] = {}
    for batch, _ in sent:
        streams.setdefault((batch.source, batch.interval), set()).add(batch.symbol)
    recorder = Recorder(Layout(home), name,
                        [{"source": s, "symbols": sorted(syms), "interval": iv}
                         for (s, iv), syms in streams.items()],
                        make_limits(**limits), flush_interval=0.05, merge_parts=merge_parts)
    recorder.start()
    for batch, received_us in sent:
        recorder.box.put_batch(batch, received_us=received_us)
        if flush_each:
            settle(recorder)
    recorder.stop()
    assert recorder.done.is_set()
    return recorder


def spread(batches: list[Sent], start_us: int, seconds: float) -> list[tuple[Sent, int]]:
    """Give ``batches`` receive times evenly over ``seconds`` from ``start_us``."""
    step = int(seconds * 1_000_000 / max(1, len(batches) - 1))
    return [(b, start_us + i * step) for i, b in enumerate(batches)]


def now_us() -> int:
    return time.time_ns() // 1000
