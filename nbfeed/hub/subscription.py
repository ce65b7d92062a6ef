"""A subscriber's handle on one or more live streams of the hub, and the only door to its outbox.

The hub puts (:meth:`Subscription.put_batch`, :meth:`Subscription.put_event`); a session reads
(:meth:`~Subscription.take` when told :attr:`~Subscription.on_ready`, :meth:`~Subscription.get`,
``async for``, or :meth:`~Subscription.on_batch`). Nothing else reaches the :class:`Outbox`
behind it. The subscription knows its hub only through the two callables it is given, so this
module imports nothing of the hub.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from .outbox import Outbox, StreamBatch
from .tasks import background

log = logging.getLogger("nbfeed.hub")

_ids = itertools.count(1)

StreamKey = tuple[str, str, str]


class Subscription:
    """Live rows of ``symbols`` from ``source`` at ``interval``, delivered through an outbox.

    Read it as an async iterator (each step yields a list of items: :class:`StreamBatch` objects
    and ``status``/``error`` event dicts), with :meth:`get`, with :meth:`take` when
    :attr:`on_ready` fires, or hand a callback to :meth:`on_batch`. A subscriber that reads
    slowly gets conflated rows, never unbounded memory (see :mod:`.outbox`). :meth:`close`
    releases every stream (``release(self)``); the last subscriber of a stream leaving stops it
    at the provider. ``snapshot(keys)`` answers :meth:`snapshot`.

    Not thread-safe: use it on the hub's event loop.
    """

    def __init__(self, source: str, symbols: Iterable[str], interval: str,
                 max_pending_rows: int, *, release: Callable[[Subscription], None],
                 snapshot: Callable[[list[StreamKey]], list[dict]], box: Any = None,
                 session: str | None = None, options: dict | None = None,
                 session_state: dict | None = None) -> None:
        self.id = next(_ids)
        self.source = source
        self.symbols = list(symbols)
        self.interval = interval
        #: A per-subscriber stream of a source with subscription options (see hub.sessions):
        #: its id, the options it was opened with and the provider's answer (e.g. a replay's
        #: span and speed).
        self.session = session
        self.options = dict(options or {})
        self.session_state = dict(session_state or {})
        self.closed = False
        # A recorder passes its own never-conflating box (nbfeed.recorder.box), which has the
        # outbox's interface.
        self._outbox: Any = box if box is not None else Outbox(max_pending_rows)
        self._release = release
        self._snapshot = snapshot
        self._pump: asyncio.Task | None = None

    @property
    def keys(self) -> list[StreamKey]:
        """``(source, symbol, interval)`` of every stream of this subscription (a session's
        interval carries its tag, ``"1m@s3"``: see :mod:`.sessions`)."""
        interval = self.interval if self.session is None else f"{self.interval}@{self.session}"
        return [(self.source, s, interval) for s in self.symbols]

    def snapshot(self) -> list[dict]:
        """The latest known rows of every stream (quotes: the current row; candles: the last
        bars seen live). Empty for a stream that has not published yet. Shared: read-only."""
        return self._snapshot(self.keys)

    # ---- the hub's side -------------------------------------------------------------------

    def put_batch(self, batch: StreamBatch) -> None:
        """Queue one burst of rows. Never blocks; conflates when the reader is behind; ignored
        once closed."""
        self._outbox.put_batch(batch)

    def put_event(self, event: dict) -> None:
        """Queue a ``status`` or ``error`` event (delivered before data; the oldest are dropped
        beyond a few hundred). Ignored once closed."""
        self._outbox.put_event(event)

    # ---- the reader's side ----------------------------------------------------------------

    @property
    def on_ready(self) -> Callable[[], None] | None:
        """Called (on the hub's loop, from within the put) whenever something is queued: a
        cue to :meth:`take`. Keep it cheap; it must not raise."""
        return self._outbox.on_ready

    @on_ready.setter
    def on_ready(self, callback: Callable[[], None] | None) -> None:
        self._outbox.on_ready = callback

    @property
    def pending(self) -> int:
        """Rows plus events waiting to be taken (0: nothing to do)."""
        return len(self._outbox)

    @property
    def pending_rows(self) -> int:
        """Rows waiting to be taken."""
        return self._outbox.pending_rows

    @property
    def max_pending_rows(self) -> int:
        """Rows that may wait before the outbox conflates."""
        return self._outbox.max_rows

    @property
    def conflated_rows(self) -> int:
        """Rows merged away so far because this subscriber was behind."""
        return self._outbox.conflated_rows

    @property
    def delivered_rows(self) -> int:
        """Rows taken so far."""
        return self._outbox.delivered_rows

    def take(self) -> list[Any]:
        """Everything waiting (events first, then batches in arrival order), at once; empty
        when nothing waits."""
        return self._outbox.take()

    async def get(self) -> list[Any]:
        """Wait until something is waiting, then :meth:`take` it. Raises ``EOFError`` once the
        subscription is closed and nothing is left."""
        return await self._outbox.get()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[Any]:
        try:
            return await self._outbox.get()
        except EOFError:
            raise StopAsyncIteration from None

    def on_batch(self, callback: Callable[[list[Any]], Any]) -> None:
        """Call ``callback(items)`` on the hub's loop for every delivery (sync or async).

        A callback that raises is logged and does not stop the delivery.
        """
        if self._pump is not None:
            raise RuntimeError("this subscription already has a callback")

        async def pump() -> None:
            async for items in self:
                try:
                    result = callback(items)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("subscription callback raised")

        self._pump = background(pump(), f"callback delivery of {self!r}")

    async def close(self) -> None:
        """Release every stream of this subscription. Safe to call twice; readers waiting in
        :meth:`get` or ``async for`` end once what is queued has been read."""
        if self.closed:
            return
        self.closed = True
        self._release(self)
        self._outbox.close()
        if self._pump is not None and self._pump is not asyncio.current_task():
            self._pump.cancel()

    def __repr__(self) -> str:
        return (f"<Subscription {self.id} {self.source} {','.join(self.symbols[:5])}"
                f"{'...' if len(self.symbols) > 5 else ''} {self.interval}>")
