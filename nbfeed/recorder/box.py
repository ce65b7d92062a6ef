"""The recorder's inbox at the hub: bounded, never conflating, never blocking, never silent.

Live subscribers get a conflating outbox (a slow reader sees the newest values). A recording
must keep every row instead, so the hub hands a recorder's subscription this box: the hub's event
loop appends each batch it fans out (one lock and one append: it never waits for the disk), and
the recorder's writer thread drains it about once a second.

If the writer ever falls behind by more than ``max_rows`` rows (a disk that stalls, a machine
that is out of CPU), further batches are *dropped and counted*, never conflated: a :class:`Gap`
marker takes their place in the queue, so the writer knows exactly where in the recording rows
are missing, how many, of which streams and when; the manifest lists the gaps and the recording
shows ``lost_rows``. Consecutive drops extend one gap, so gaps cost no memory to speak of.

The box has the interface of the hub's outbox (``put_batch``, ``put_event``, ``take``,
``pending_rows``, ``conflated_rows``, ``close``), so a subscription can carry it in place of one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .schema import Batch

DEFAULT_MAX_ROWS = 500_000
#: The writer is woken early once this many rows wait: a busy stream is written in small,
#: frequent parts (about 4 a second at 100k rows/s) instead of one burst a second, which keeps
#: the work the writer does at once - and the hub's waits behind it - short.
WAKE_ROWS = 25_000
MAX_EVENTS = 200


class Gap:
    """Rows the box had to drop, between the rows before and after it in the queue."""

    __slots__ = ("first_received_us", "last_received_us", "rows", "streams")

    def __init__(self, received_us: int) -> None:
        self.first_received_us = received_us
        self.last_received_us = received_us
        self.rows = 0
        self.streams: dict[str, int] = {}

    def add(self, stream: str, rows: int, received_us: int) -> None:
        self.rows += rows
        self.last_received_us = received_us
        self.streams[stream] = self.streams.get(stream, 0) + rows


class RecorderBox:
    """See the module docstring. ``put_*`` run on the hub's loop; ``drain`` on the writer."""

    conflated_rows = 0  # by design: a recorder's box never conflates

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS, wake_rows: int = WAKE_ROWS,
                 clock_us: Callable[[], int] | None = None) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.max_rows = max_rows
        self.wake_rows = wake_rows
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self._queue: deque[Batch | Gap] = deque()
        self._events: deque[tuple[int, dict]] = deque(maxlen=MAX_EVENTS)
        self._rows = 0
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self.closed = False
        self.lost_rows = 0
        self.delivered_rows = 0
        self.on_ready: Callable[[], None] | None = None  # outbox interface; unused

    # ---- hub side (event loop) ------------------------------------------------------------

    def put_batch(self, batch: Any, received_us: int | None = None) -> None:
        """Queue a batch (anything with ``source, symbol, interval, rows``); never blocks."""
        if self.closed:
            return
        n = len(batch.rows)
        if not n:
            return
        now = self._clock_us() if received_us is None else received_us
        with self._lock:
            if self._rows + n > self.max_rows:
                last = self._queue[-1] if self._queue else None
                gap = last if isinstance(last, Gap) else None
                if gap is None:
                    gap = Gap(now)
                    self._queue.append(gap)
                gap.add(f"{batch.source}/{batch.symbol}/{batch.interval}", n, now)
                self.lost_rows += n
                return
            self._queue.append(Batch(batch.source, batch.symbol, batch.interval, batch.rows,
                                     now))
            self._rows += n
            wake = self._rows >= self.wake_rows
        if wake:
            self.ready.set()

    def put_event(self, event: dict) -> None:
        """Keep a status/error event (provider restarting, stream failed) for the manifest."""
        if not self.closed:
            with self._lock:
                self._events.append((self._clock_us(), dict(event)))
            if event.get("type") == "error":
                self.ready.set()

    # ---- writer side (its thread) ---------------------------------------------------------

    def drain(self) -> tuple[list[Batch | Gap], list[tuple[int, dict]]]:
        """Everything queued (batches and gaps in arrival order) and the events since last."""
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            events = list(self._events)
            self._events.clear()
            self.delivered_rows += self._rows
            self._rows = 0
            self.ready.clear()
        return items, events

    def close(self) -> None:
        """No more batches are accepted (the subscription ended); wakes the writer."""
        self.closed = True
        self.ready.set()

    # ---- the hub outbox's interface -------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        return self._rows

    def __len__(self) -> int:
        return self._rows

    def take(self) -> list[Any]:
        """Nothing for a reader of the subscription: the recorder drains the box itself."""
        return []

    async def get(self) -> list[Any]:
        raise EOFError("a recorder's box is drained by its writer, not iterated")
