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
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Callable
from typing import Any

MAX_EVENTS = 256


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class StreamBatch:
    """Rows of one stream published in one burst. Treat ``rows`` as read-only: it is shared."""

    __slots__ = ("_json", "interval", "rows", "source", "symbol")

    def __init__(self, source: str, symbol: str, interval: str, rows: list[dict]) -> None:
        self.source = source
        self.symbol = symbol
        self.interval = interval
        self.rows = rows
        self._json: str | None = None

    def json_rows(self) -> str:
        """The rows as a JSON array fragment without brackets (NaN/inf become null), cached."""
        if self._json is None:
            try:
                text = json.dumps(self.rows, separators=(",", ":"), allow_nan=False)
            except ValueError:
                text = json.dumps([{k: _clean(v) for k, v in r.items()} for r in self.rows],
                                  separators=(",", ":"))
            except TypeError:
                text = json.dumps(self.rows, separators=(",", ":"), default=str)
            self._json = text[1:-1]
        return self._json

    def __repr__(self) -> str:
        return (f"StreamBatch({self.source}/{self.symbol}/{self.interval}, "
                f"{len(self.rows)} rows)")


class Outbox:
    """A bounded, conflating queue of StreamBatch objects and event dicts for one subscriber.

    Event dicts (``status``, ``error``) are kept apart, at most ``MAX_EVENTS`` of them (oldest
    dropped), and delivered before data. Not thread-safe: use it on the hub's event loop.
    """

    def __init__(self, max_rows: int = 10_000, on_ready: Callable[[], None] | None = None) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.max_rows = max_rows
        self.on_ready = on_ready
        self._batches: deque[StreamBatch] = deque()
        self._events: deque[dict] = deque(maxlen=MAX_EVENTS)
        self._rows = 0
        self._waiter: asyncio.Future | None = None
        self.closed = False
        self.conflated_rows = 0
        self.delivered_rows = 0

    def __len__(self) -> int:
        return self._rows + len(self._events)

    @property
    def pending_rows(self) -> int:
        return self._rows

    def put_batch(self, batch: StreamBatch) -> None:
        if self.closed:
            return
        self._batches.append(batch)
        self._rows += len(batch.rows)
        if self._rows > self.max_rows:
            self._conflate()
        self._wake()

    def put_event(self, event: dict) -> None:
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
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self.on_ready is not None:
            self.on_ready()

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
