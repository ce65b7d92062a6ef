"""Per-subscriber bounded, conflating outboxes and the batches they carry.

A provider's rows reach the hub as one :class:`StreamBatch` per ``(source, symbol, interval)``
per burst. The same batch object goes to every subscriber of that stream, and its JSON is
computed at most once (:meth:`StreamBatch.json_rows`), however many sockets write it.

Each subscriber owns an :class:`Outbox`. While the subscriber keeps up, it receives every batch,
in order. When it falls behind and more than ``max_rows`` rows are waiting, the outbox
*conflates*: quote rows keep only the newest row per symbol, candle rows the newest version of
each bar (and at most ``max_rows`` bars, newest kept). Memory therefore stays bounded by the
number of distinct rows, never by the upstream rate, and a slow subscriber never slows the others
(putting into an outbox never blocks or awaits). ``conflated_rows`` counts what was merged away.

"Behind" is judged once the burst being delivered has been handed out: on an event loop the
check runs in a callback queued after the wake-ups of the readers, so a reader that was waiting
takes the whole burst first, however large it is (a busy provider's bursts can exceed
``max_rows``), while one that is still busy is conflated. Between the put and that check a box
may briefly hold one burst beyond ``max_rows``; those batches are shared with every other
subscriber, not copies. Without a running loop the check is immediate.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ..jsonfast import dumpb

MAX_EVENTS = 256


class StreamBatch:
    """Rows of one stream published in one burst. Treat ``rows`` as read-only: it is shared."""

    __slots__ = ("_json", "interval", "rows", "source", "symbol")

    def __init__(self, source: str, symbol: str, interval: str, rows: list[dict]) -> None:
        self.source = source
        self.symbol = symbol
        self.interval = interval
        self.rows = rows
        self._json: bytes | None = None

    def json_rows(self) -> bytes:
        """The rows as a UTF-8 JSON array fragment without brackets (NaN/inf become null),
        computed once however many subscribers write it."""
        if self._json is None:
            self._json = dumpb(self.rows)[1:-1]
        return self._json

    def __repr__(self) -> str:
        return (f"StreamBatch({self.source}/{self.symbol}/{self.interval}, "
                f"{len(self.rows)} rows)")


class Outbox:
    """A bounded, conflating queue of StreamBatch objects and event dicts for one subscriber.

    Event dicts (``status``, ``error``) are kept apart, at most ``MAX_EVENTS`` of them (oldest
    dropped), and delivered before data. ``on_ready``, when set, is called after every put (a
    reader's cue to :meth:`take`). Not thread-safe: use it on the hub's event loop.
    """

    def __init__(self, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.max_rows = max_rows
        self.on_ready: Callable[[], None] | None = None
        self._batches: deque[StreamBatch] = deque()
        self._events: deque[dict] = deque(maxlen=MAX_EVENTS)
        self._rows = 0
        self._waiter: asyncio.Future | None = None
        self.closed = False
        self.conflated_rows = 0
        self.delivered_rows = 0
        self._check_queued = False

    def __len__(self) -> int:
        return self._rows + len(self._events)

    @property
    def pending_rows(self) -> int:
        """Rows waiting (events not counted)."""
        return self._rows

    def put_batch(self, batch: StreamBatch) -> None:
        """Queue a batch (shared, not copied). Never blocks or awaits; conflates when the reader
        is behind (see the module docstring); ignored once closed."""
        if self.closed:
            return
        self._batches.append(batch)
        self._rows += len(batch.rows)
        self._wake()  # first, so a waiting reader's wake-up is queued before the check
        if self._rows > self.max_rows and not self._check_queued:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._conflate()
                return
            self._check_queued = True
            loop.call_soon(self._conflate_if_behind)

    def put_event(self, event: dict) -> None:
        """Queue an event dict (at most ``MAX_EVENTS``, oldest dropped); ignored once closed."""
        if self.closed:
            return
        self._events.append(event)
        self._wake()

    def take(self) -> list[Any]:
        """Everything waiting (events first, then batches in arrival order); empties the box."""
        items: list[Any] = list(self._events)
        self._events.clear()
        items.extend(self._batches)
        self._batches.clear()
        self.delivered_rows += self._rows
        self._rows = 0
        return items

    async def get(self) -> list[Any]:
        """Wait until something is waiting, then :meth:`take` it. Raises EOFError once closed
        and empty."""
        while not self._rows and not self._events:
            if self.closed:
                raise EOFError("outbox closed")
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.take()

    def close(self) -> None:
        """Refuse further puts and wake a waiting reader; what is queued can still be taken."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self.on_ready is not None:
            self.on_ready()

    def _conflate_if_behind(self) -> None:
        self._check_queued = False
        if self._rows > self.max_rows:
            self._conflate()

    def _conflate(self) -> None:
        merged: dict[tuple[str, str, str], dict[Any, dict]] = {}
        before = self._rows
        for batch in self._batches:
            key = (batch.source, batch.symbol, batch.interval)
            rows = merged.get(key)
            if rows is None:
                rows = merged[key] = {}
            if batch.interval == "tick":
                if batch.rows:
                    rows[None] = batch.rows[-1]
            else:
                for row in batch.rows:
                    rows[row.get("time")] = row
        self._batches.clear()
        total = 0
        per_stream_cap = max(1, self.max_rows // max(1, len(merged)))
        for (source, symbol, interval), rows in merged.items():
            values = list(rows.values())
            if interval != "tick":
                values.sort(key=lambda r: r.get("time") or 0)
                if len(values) > per_stream_cap:
                    values = values[-per_stream_cap:]
            self._batches.append(StreamBatch(source, symbol, interval, values))
            total += len(values)
        self._rows = total
        self.conflated_rows += before - total
