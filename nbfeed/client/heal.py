"""A remote stream healing after its own websocket reconnects: the bars it missed, from history.

When a notebook's websocket to its Jupyter server drops (the server restarted, the network
blinked), :class:`~nbfeed.client.remote.RemoteFeed` reconnects and subscribes again; the server
answers with its current bars. Bars that ended while the socket was down, and the final version of
the bar that was open when it dropped, never reach the notebook that way. A :class:`Heal` per
subscription fills them, by the hub's own rule (:func:`nbfeed.hub.backfill.missing_span`, as
after an interruption): for each symbol, the first rows after the reconnect decide the span;
rows of that symbol wait while its bars are fetched from the server's ``history`` and are
delivered after them, in order. Rows older than the newest bar the notebook already has are
dropped (they are final there already: no duplicates). Filled bars carry ``backfilled: True``.

Failure behaviour: if the history request fails, the waiting rows are delivered anyway and the
stream gets an ``error`` event naming the span that stays missing. Runs on the feed's socket
loop; nothing here blocks it (fetches are tasks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..hub.backfill import BackfillRules, gap_event, missing_span
from ..intervals import interval_ms
from ..timeutil import ms_to_iso
from .stream import Stream

log = logging.getLogger("nbfeed.client")

FetchBars = Callable[[str, int, int, int | None], Awaitable[list[dict]]]


class Heal:
    """Fills one subscription's holes after one reconnect (see the module docstring).

    ``fetch(symbol, start, end, count)`` returns the server's bars of ``[start, end)`` (the
    newest ``count`` of them when ``count`` is not None: a hole longer than the hub's
    ``BackfillRules.max_bars`` is filled with its newest bars, as the hub does).
    """

    def __init__(self, stream: Stream, fetch: FetchBars) -> None:
        self.stream = stream
        self._fetch = fetch
        # symbol -> newest bar the notebook had when the socket dropped
        self._last: dict[str, int] = {}
        for symbol in stream.symbols:
            newest = stream.newest_time(symbol)
            if newest is not None:
                self._last[symbol] = newest
        self._held: dict[str, dict[Any, dict]] = {}  # symbol -> rows waiting for its fill
        self._tasks: set[asyncio.Task] = set()

    @property
    def done(self) -> bool:
        """Every symbol has been decided and filled: the stream flows as usual."""
        return not self._last and not self._held

    def rows(self, rows: list[dict]) -> None:
        """Rows from the server after the reconnect: deliver, drop or hold them."""
        now: list[dict] = []
        by_symbol: dict[str, list[dict]] = {}
        for row in rows:
            by_symbol.setdefault(row.get("symbol"), []).append(row)
        for symbol, group in by_symbol.items():
            held = self._held.get(symbol)
            if held is not None:  # its fill is running
                for row in group:
                    held[row.get("time")] = row
                continue
            last = self._last.pop(symbol, None)
            if last is None:
                now.extend(group)
                continue
            fresh = [r for r in group if isinstance(r.get("time"), int) and r["time"] >= last]
            span = missing_span(last, [r["time"] for r in fresh], self.stream.interval,
                                interrupted=True)
            if span is None:
                now.extend(fresh)
                continue
            self._held[symbol] = {r["time"]: r for r in fresh}
            task = asyncio.ensure_future(self._fill(symbol, span))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if now:
            self.stream._push(now)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _fill(self, symbol: str, span: tuple[int, int]) -> None:
        start, end = span
        limit = BackfillRules().max_bars
        count = limit if (end - start) // interval_ms(self.stream.interval) > limit else None
        try:
            bars = await self._fetch(symbol, start, end, count)
            bars = sorted((b for b in bars if start <= b.get("time", start - 1) < end),
                          key=lambda b: b["time"])
            if bars:
                self.stream._push([{**b, "symbol": b.get("symbol", symbol),
                                    "backfilled": True} for b in bars])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("nbfeed: could not backfill %s %s %s..%s after a reconnect: %s",
                        symbol, self.stream.interval, ms_to_iso(start), ms_to_iso(end), exc)
            self.stream._push_event(gap_event(
                (self.stream.source, symbol, self.stream.interval), span, exc))
        finally:
            held = self._held.pop(symbol, {})
            if held:
                self.stream._push([held[t] for t in sorted(held)])
