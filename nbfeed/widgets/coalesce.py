"""Coalescing between a fast upstream and a slow screen: latest value per cell, bounded flushes.

Both widgets use it: LiveGrid buffers rows in an :class:`UpdateBuffer`, LiveChart merges them
into its bar window; each runs its sends on a :class:`FlushLoop`.

:class:`UpdateBuffer` keeps, per row key, the latest value of every field received since the
last drain; any number of producer threads may add while one consumer drains. Memory is bounded
by rows x fields, never by the upstream rate: 20,000 updates/s to 500 rows hold 500 entries.

:class:`FlushLoop` runs a flush function on its own daemon thread, at most ``hz`` times per
second and only when there is work (new data, or a deadline the flush asked for, such as a
fading highlight). It sleeps without polling in between. A flush that raises is logged and the
loop carries on: one bad batch must not freeze a grid.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)


class UpdateBuffer:
    """Latest fields per row key since the last :meth:`drain`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Hashable, dict[str, Any]] = {}
        self._added = 0  # rows ever added: a sequence number for "flushed up to here"

    def add(self, keyed_rows: Iterable[tuple[Hashable, Mapping[str, Any]]]) -> int:
        """Merge rows into the pending set (later fields win); returns the sequence reached."""
        with self._lock:
            pending = self._pending
            n = 0
            for key, row in keyed_rows:
                n += 1
                current = pending.get(key)
                if current is None:
                    pending[key] = dict(row)
                else:
                    current.update(row)
            self._added += n
            return self._added

    def drain(self) -> tuple[dict[Hashable, dict[str, Any]], int]:
        """Take everything pending (in first-seen key order) and the sequence it covers."""
        with self._lock:
            pending, self._pending = self._pending, {}
            return pending, self._added

    @property
    def sequence(self) -> int:
        """Rows added so far; a drain returning this sequence covers all of them."""
        with self._lock:
            return self._added

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


class RateMeter:
    """Events per second over the last few seconds (the grid's "upd/s"); thread-safe enough:
    counts are added from one producer at a time, read from the flush thread."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self._marks: deque[tuple[float, int]] = deque(maxlen=64)
        self._total = 0

    def count(self, n: int) -> None:
        self._total += n
        self._marks.append((time.monotonic(), self._total))

    def per_second(self, now: float) -> float:
        marks = [m for m in list(self._marks) if now - m[0] <= self.window]
        if len(marks) < 2:
            return 0.0
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        return (n1 - n0) / max(now - t0, t1 - t0, 0.5)


class FlushLoop:
    """Calls ``flush()`` on a daemon thread, never more often than ``hz`` per second.

    ``flush()`` returns the ``time.monotonic()`` instant at which it wants to run again even
    without new data (or None). :meth:`poke` says new data is waiting; the next flush happens
    as soon as the rate bound allows, so a lone update after a quiet spell shows at once.
    """

    def __init__(self, flush: Callable[[], float | None], hz: float, name: str) -> None:
        self._flush = flush
        self.name = name
        self._period = 1.0 / hz
        self._cond = threading.Condition()
        self._poked = False
        self._stopped = False
        self._wake_at: float | None = None
        self.flushes = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """New data is waiting (cheap when already poked: no lock taken)."""
        if self._poked:
            return
        with self._cond:
            self._poked = True
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after its current flush; no flush runs after this returns."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def _run(self) -> None:
        last = -float("inf")
        while True:
            with self._cond:
                while not self._stopped and not self._due():
                    wake_at = self._wake_at
                    timeout = None if wake_at is None else max(0.0, wake_at - time.monotonic())
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                # The rate bound: wait out the rest of the period since the last flush.
                while not self._stopped and time.monotonic() < last + self._period:
                    self._cond.wait(last + self._period - time.monotonic())
                if self._stopped:
                    return
                self._poked = False
            last = time.monotonic()
            try:
                wake_at = self._flush()
            except Exception:
                log.exception("%s: a flush failed; the widget keeps running", self.name)
                wake_at = None
            self.flushes += 1
            with self._cond:
                self._wake_at = wake_at

    def _due(self) -> bool:
        return self._poked or (self._wake_at is not None and time.monotonic() >= self._wake_at)
