"""Per-subscriber bounded, conflating outboxes and the batches they carry.

A provider's rows reach the hub as one :class:`StreamBatch` per ``(source, symbol, interval)``
per burst, holding the provider's columns. The same batch object goes to every subscriber of
that stream; its dicts are built only if a subscriber asks for them, once, and its JSON is
computed at most once (:meth:`StreamBatch.json_rows`), however many sockets write it.

Each subscriber owns an :class:`Outbox`. While the subscriber keeps up, it receives every batch,
in order. When it falls behind and more than ``max_rows`` rows are waiting, the outbox
*conflates*: quote rows keep only the newest row per symbol (a one-row slice of the columns,
no dicts built), candle rows the newest version of each bar (and at most ``max_rows`` bars,
newest kept). Memory therefore stays bounded by the number of distinct rows, never by the
upstream rate, and a slow subscriber never slows the others (putting into an outbox never
blocks or awaits). ``conflated_rows`` counts what was merged away.

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

from ..columns import Columns
from ..jsonfast import dumpb

MAX_EVENTS = 256


class StreamBatch:
    """Rows of one stream published in one burst, shared by every subscriber: read-only.

    A batch holds its rows in one of two forms and gives the other on demand, built once and
    shared: :attr:`columns` (a :class:`~nbfeed.columns.Columns`, how rows arrive from a provider
    process: :meth:`from_columns`) and :attr:`rows` (dicts, how the hub builds batches itself,
    ``StreamBatch(source, symbol, interval, rows)``, and what row consumers read). ``len()`` is
    the row count and never builds rows.
    """

    __slots__ = ("_columns", "_json", "_last", "_rows", "interval", "source", "symbol")

    def __init__(self, source: str, symbol: str, interval: str, rows: list[dict]) -> None:
        self.source = source
        self.symbol = symbol
        self.interval = interval
        self._rows: list[dict] | None = rows
        self._columns: Columns | None = None
        self._json: bytes | None = None
        self._last: dict | None = None

    @classmethod
    def from_columns(cls, source: str, symbol: str, interval: str,
                     columns: Columns) -> StreamBatch:
        """A batch of rows that came as columns; its :attr:`rows` are built on first use."""
        batch = cls.__new__(cls)
        batch.source, batch.symbol, batch.interval = source, symbol, interval
        batch._rows, batch._columns = None, columns
        batch._json = batch._last = None
        return batch

    @property
    def rows(self) -> list[dict]:
        """The rows as dicts (built from the columns once, then shared): read-only."""
        rows = self._rows
        if rows is None:
            assert self._columns is not None
            rows = self._rows = self._columns.rows()
        return rows

    @property
    def columns(self) -> Columns:
        """The rows as :class:`~nbfeed.columns.Columns` (the provider's own when the batch came
        as columns; else built from the rows once). Raises :class:`~nbfeed.columns.BadRows`
        for rows that break the column rules, which only rows built outside a provider process
        can (a provider's are checked by ``publish``)."""
        columns = self._columns
        if columns is None:
            columns = self._columns = Columns.from_rows(self.rows, self.symbol)
        return columns

    @property
    def columnar(self) -> bool:
        """Whether the batch came as columns (its rows are not built until someone asks)."""
        return self._columns is not None and self._rows is None

    def last_row(self) -> dict:
        """The newest row (IndexError for an empty batch) without building the others; the
        same dict on every call."""
        last = self._last
        if last is None:
            rows = self._rows
            last = self._last = rows[-1] if rows is not None else self.columns.row(-1)
        return last

    def __len__(self) -> int:
        rows = self._rows
        return len(rows) if rows is not None else len(self._columns)  # type: ignore[arg-type]

    def json_rows(self) -> bytes:
        """The rows as a UTF-8 JSON array fragment without brackets (NaN/inf become null),
        computed once however many subscribers write it."""
        if self._json is None:
            self._json = dumpb(self.rows)[1:-1]
        return self._json

    def __repr__(self) -> str:
        return (f"StreamBatch({self.source}/{self.symbol}/{self.interval}, "
                f"{len(self)} rows{', columnar' if self.columnar else ''})")


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
        self._rows += len(batch)
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
        # Quotes keep the newest row of their newest batch (sliced from its columns when it
        # came as columns, so no rows are built for what is thrown away); candles are merged
        # as rows, keyed by bar time.
        merged: dict[tuple[str, str, str], dict[Any, dict] | StreamBatch | None] = {}
        before = self._rows
        for batch in self._batches:
            key = (batch.source, batch.symbol, batch.interval)
            if batch.interval == "tick":
                if len(batch) or key not in merged:
                    merged[key] = batch if len(batch) else None
                continue
            rows = merged.get(key)
            if not isinstance(rows, dict):
                rows = merged[key] = {}
            for row in batch.rows:
                rows[row.get("time")] = row
        self._batches.clear()
        total = 0
        per_stream_cap = max(1, self.max_rows // max(1, len(merged)))
        for (source, symbol, interval), kept in merged.items():
            if kept is None:
                out = StreamBatch(source, symbol, interval, [])
            elif isinstance(kept, StreamBatch):
                if kept.columnar:
                    n = len(kept)
                    out = StreamBatch.from_columns(source, symbol, interval,
                                                   kept.columns.slice(n - 1, n))
                else:
                    out = StreamBatch(source, symbol, interval, [kept.last_row()])
            else:
                values = sorted(kept.values(), key=lambda r: r.get("time") or 0)
                if len(values) > per_stream_cap:
                    values = values[-per_stream_cap:]
                out = StreamBatch(source, symbol, interval, values)
            self._batches.append(out)
            total += len(out)
        self._rows = total
        self.conflated_rows += before - total
