"""Gap-free candle streams: the bars a stream missed during an interruption, fetched from history.

After a provider restart (a crash, SIGKILL), an upstream socket drop, a scheduled disconnect or a
stale spell, a candle stream resumes with a bar later than the last one its subscribers got. The
missing bars - and the final version of the bar that was open when the stream broke off - are in
the source's history. :class:`Backfill` fetches them and has them delivered *in order, before*
the live bars that revealed the hole, which are held meanwhile. Subscribers see every bar once
in its final version (the open bar's earlier versions are replaced, as always for candles), and
can tell filled bars by their ``backfilled: true`` field.

When is there a hole? With ``t0`` the newest bar a stream delivered (its open bar) and the
incoming bars after it (:func:`missing_span`):

* after an **interruption** of the stream (the hub says so: the provider process restarted or
  reported trouble, or the stream went stale), any later bar means ``[t0, first later bar)`` is
  fetched: ``t0``'s final version may have been lost with the interruption, and bars between;
* without one, a later bar that is not the next one (``> next_bar(t0)``) means the bars between
  are fetched (``[next_bar(t0), first later bar)``). A source whose history has nothing there
  is *sparse* (Polygon has no bar for a minute without trades): such holes of that stream are
  not fetched again, only those after interruptions.

A hole longer than ``max_bars`` bars is filled with its newest ``max_bars`` and the rest is
reported as missing. If the fetch fails, the held bars are delivered anyway (live data never
waits on a broken history) and an ``error`` event names the span that stays missing.

Everything runs on the hub's event loop; at most ``concurrency`` fetches per source run at once.
The client's reconnect logic (:mod:`nbfeed.client.remote`) uses :func:`missing_span` too, so a
notebook fills the holes of its own websocket reconnects by the same rule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..intervals import BAR_INTERVALS, interval_ms, next_bar
from ..timeutil import ms_to_iso

log = logging.getLogger("nbfeed.hub")

StreamKey = tuple[str, str, str]
Span = tuple[int, int]


@dataclass(frozen=True)
class BackfillRules:
    """How holes are filled (see the module docstring)."""

    #: The newest bars fetched for one hole; older ones are reported missing.
    max_bars: int = 5_000
    #: History requests in flight at once per source.
    concurrency: int = 4


def missing_span(last_time: int | None, times: Iterable[int], interval: str, *,
                 interrupted: bool) -> Span | None:
    """The span of bars to fetch before delivering bars starting at ``times``, or None.

    ``last_time`` is the newest bar already delivered (None: nothing yet, nothing to fill).
    After an interruption the span starts at ``last_time`` (its final version may be missing);
    otherwise only bars strictly between it and the first later bar are missing. Times at or
    before ``last_time`` (updates of the open bar, replays) never make a hole.
    """
    if last_time is None:
        return None
    later = sorted({t for t in times if t > last_time})
    if not later:
        return None
    first = later[0]
    if interrupted and last_time not in set(times):
        return (last_time, first)
    after = next_bar(last_time, interval)
    if first > after:
        return (after, first)
    return None


def gap_event(key: StreamKey, span: Span, error: BaseException) -> dict:
    """The ``error`` event telling a stream's subscribers that ``span`` stays missing."""
    return {"type": "error", "code": getattr(error, "code", "upstream"),
            "message": f"{key[0]}/{key[1]}/{key[2]}: could not backfill {ms_to_iso(span[0])} .. "
                       f"{ms_to_iso(span[1])}: {error}",
            "source": key[0], "symbol": key[1], "interval": key[2], "gap": [span[0], span[1]]}


@dataclass(eq=False)
class _Fill:
    span: Span
    interrupted: bool
    held: dict[Any, dict] = field(default_factory=dict)  # live rows by bar time, newest version
    task: asyncio.Task | None = None


Fetch = Callable[[str, str, str, int, int, int | None], Awaitable[list[dict]]]
Filled = Callable[[StreamKey, list[dict], list[dict], Exception | None, Span], None]


class Backfill:
    """Finds holes in candle streams and fills them (see the module docstring).

    ``fetch(source, symbol, interval, start, end, count)`` is the hub's history; ``filled(key,
    bars, held, error, span)`` is called on the loop when a fill ends: ``bars`` to deliver
    first (marked ``backfilled``), then the ``held`` live rows, in time order; ``error`` when
    the fetch failed (``bars`` is then empty).
    """

    def __init__(self, rules: BackfillRules | None = None, *, fetch: Fetch,
                 filled: Filled) -> None:
        self.rules = rules or BackfillRules()
        self._fetch = fetch
        self._filled = filled
        self._fills: dict[StreamKey, _Fill] = {}
        self._interrupted: set[StreamKey] = set()
        self._sparse: set[StreamKey] = set()
        self._gates: dict[str, asyncio.Semaphore] = {}
        #: Holes filled so far (for tests and monitoring).
        self.fills = 0

    def interrupt(self, keys: Iterable[StreamKey]) -> None:
        """These streams were interrupted: their next later bar opens a fill from their last."""
        self._interrupted.update(keys)

    def forget(self, key: StreamKey) -> None:
        """The stream is gone (last subscriber left): drop what we knew of it."""
        self._interrupted.discard(key)
        self._sparse.discard(key)
        fill = self._fills.pop(key, None)
        if fill is not None and fill.task is not None:
            fill.task.cancel()

    def filling(self, key: StreamKey) -> bool:
        return key in self._fills

    def holds(self, key: StreamKey, last_time: int | None, rows: list[dict]) -> bool:
        """Whether the hub must hold ``rows`` (a fill runs or starts now for ``key``) instead
        of delivering them. ``last_time`` is the stream's newest delivered bar."""
        fill = self._fills.get(key)
        if fill is not None:
            _hold(fill, rows)
            return True
        if last_time is None or key[2] not in BAR_INTERVALS:
            return False  # nothing delivered yet, or not a live candle stream (a replay...)
        newest = rows[-1].get("time")
        if newest == last_time and rows[0].get("time") == newest:
            self._interrupted.discard(key)  # the hot path: the open bar moved on, nothing lost
            return False
        times = [t for t in (r.get("time") for r in rows) if isinstance(t, int)]
        interrupted = key in self._interrupted
        span = missing_span(last_time, times, key[2], interrupted=interrupted)
        if span is None:
            if last_time is not None and any(t >= last_time for t in times):
                self._interrupted.discard(key)  # the stream went on: nothing was lost
            return False
        self._interrupted.discard(key)
        if not interrupted and key in self._sparse:
            return False  # quiet spells of a sparse source are not holes
        fill = self._fills[key] = _Fill(span, interrupted)
        _hold(fill, rows)
        fill.task = asyncio.ensure_future(self._run(key, fill))
        return True

    async def _run(self, key: StreamKey, fill: _Fill) -> None:
        start, end = fill.span
        bars: list[dict] = []
        error: Exception | None = None
        count = None
        if (end - start) // interval_ms(key[2]) > self.rules.max_bars:
            count = self.rules.max_bars
        gate = self._gates.get(key[0])
        if gate is None:
            gate = self._gates[key[0]] = asyncio.Semaphore(self.rules.concurrency)
        try:
            async with gate:
                bars = await self._fetch(key[0], key[1], key[2], start, end, count)
            bars = sorted((b for b in bars if start <= b.get("time", start - 1) < end),
                          key=lambda b: b["time"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the provider's history failed: deliver the live rows anyway
            error, bars = exc, []
            log.warning("could not backfill %s/%s/%s %s..%s: %s", *key, ms_to_iso(start),
                        ms_to_iso(end), exc)
        if self._fills.get(key) is not fill:
            return  # forgotten meanwhile
        del self._fills[key]
        if error is None and not fill.interrupted and not bars:
            self._sparse.add(key)  # nothing between: a quiet spell, not a lost one
        if error is None and count is not None and len(bars) >= count:
            error = LookupError(f"the hole held more than {count} bars; the newest {count} "
                                "were filled")
        self.fills += 1
        held = [fill.held[t] for t in sorted(fill.held)]
        self._filled(key, bars, held, error, fill.span)


def _hold(fill: _Fill, rows: list[dict]) -> None:
    for row in rows:
        fill.held[row.get("time")] = row


__all__ = ["Backfill", "BackfillRules", "gap_event", "missing_span"]
