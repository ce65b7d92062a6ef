"""A subscriber's handle on one or more live streams of the hub."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .outbox import Outbox

if TYPE_CHECKING:
    from .hub import Hub

_ids = itertools.count(1)


class Subscription:
    """Live rows of ``symbols`` from ``source`` at ``interval``, delivered through an outbox.

    Use it as an async iterator (each step yields a list of items: :class:`StreamBatch`
    objects and ``status``/``error`` event dicts) or hand a callback to :meth:`on_batch`. A
    subscriber that reads slowly gets conflated rows, never unbounded memory. :meth:`close`
    releases every stream; the last subscriber of a stream leaving stops it at the provider.
    """

    def __init__(self, hub: Hub, source: str, symbols: list[str], interval: str,
                 max_pending_rows: int) -> None:
        self.id = next(_ids)
        self.hub = hub
        self.source = source
        self.symbols = list(symbols)
        self.interval = interval
        self.outbox = Outbox(max_pending_rows)
        self.closed = False
        self._pump: asyncio.Task | None = None

    @property
    def keys(self) -> list[tuple[str, str, str]]:
        return [(self.source, s, self.interval) for s in self.symbols]

    def snapshot(self) -> list[dict]:
        """The latest known rows of every stream (quotes: the current row; candles: the last
        bars seen live). Empty for a stream that has not published yet."""
        return self.hub.snapshot(self.keys)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[Any]:
        try:
            return await self.outbox.get()
        except EOFError:
            raise StopAsyncIteration from None

    def on_batch(self, callback: Callable[[list[Any]], Any]) -> None:
        """Call ``callback(items)`` on the hub's loop for every delivery (sync or async).

        A callback that raises is logged and does not stop the delivery.
        """
        if self._pump is not None:
            raise RuntimeError("this subscription already has a callback")

        async def pump() -> None:
            import logging

            async for items in self:
                try:
                    result = callback(items)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logging.getLogger("nbfeed.hub").exception("subscription callback raised")

        self._pump = asyncio.ensure_future(pump())

    async def close(self) -> None:
        """Release every stream of this subscription. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.hub._release(self)
        self.outbox.close()
        if self._pump is not None and self._pump is not asyncio.current_task():
            self._pump.cancel()

    def __repr__(self) -> str:
        return (f"<Subscription {self.id} {self.source} {','.join(self.symbols[:5])}"
                f"{'...' if len(self.symbols) > 5 else ''} {self.interval}>")
