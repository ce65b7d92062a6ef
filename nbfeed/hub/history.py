"""The history cache: historical bars kept in SQLite, fetched from providers only where missing.

``HistoryCache.get(request, fetch)`` answers a checked :class:`~nbfeed.hub.requests.HistoryRequest`
from a local store and calls ``fetch`` (the provider) only for what it does not hold: once per
*missing* half-open span, including holes in the middle of what it already holds. It records,
per series ``(source, symbol, interval)``, the spans it holds completely; a fetch that returns
nothing still marks its span complete (a closed market is known to be empty and is not asked
again). ``fetch(start, end, count)`` asks either for every bar of ``[start, end)`` (``count`` is
``None``) or for the newest ``count`` bars before ``end`` (``start`` is ``None``).

Rules that shape every answer:

- Spans are aligned to bars: ``start`` down to its bar, ``end`` up, so the answer holds every bar
  that overlaps ``[start, end)``, in time order, without duplicates. An open ``end`` means now.
- The bar containing "now" is still open: it is stored so it can be shown, but its span is never
  marked complete, so every request that reaches it re-fetches that tail. Bars that start after
  the open bar cannot exist yet: they are neither fetched, stored nor marked complete.
- ``count`` keeps the newest ``count`` bars. Without ``start`` the cache looks back ``count`` bars
  from ``end``. When that span holds fewer bars (nights, weekends, a source whose data ended long
  ago) and what it holds complete right before them does not make up the rest, it asks the
  provider once for the newest missing bars before that complete stretch; those bars are checked
  and stored like any other, and from the oldest of them up the stretch is complete, so the same
  request is answered from the store next time. An answer with fewer bars than asked proves
  nothing about older bars: the next such request asks again.
- Big asks go upstream in pieces of at most ``fetch_bars`` bars (default :data:`FETCH_BARS`),
  one at a time, each stored and marked complete as it arrives: neither the provider nor the
  cache ever holds more than one piece of an answer, whatever its size, and a request that stops
  half-way keeps the pieces it got.
- Concurrent requests share upstream calls: a missing span that overlaps a fetch in flight for
  the same series waits for it instead of asking again (identical "newest bars before" asks are
  shared too). A request that gives up (cancelled, timed out) leaves a shared fetch running for
  the others; once nobody waits for a fetch any more it is cancelled, so the provider is asked
  for no further pieces (and the piece in flight is cancelled: see
  :meth:`nbfeed.hub.process.ProviderProcess.request`). If ``fetch`` raises, every request
  waiting on it gets that exception and the span is not marked complete, so the next request
  asks again.
- ``fetch`` must return every bar of the span it was asked for (providers paginate upstream): the
  span is marked complete as soon as it returns. A row that is not a dict, has no integer epoch-ms
  ``time``, or has a non-numeric field makes the whole answer invalid: ``UpstreamError`` names
  the row and the problem and nothing of it is stored. Rows outside the span are stored but do
  not count as coverage. ``fetch`` may answer with row dicts or :class:`~nbfeed.columns.Columns`
  (what provider processes send).
- Live bars (``add_live_bars``) come from the hub, which alone decides when a live bar is final
  (a later bar of the stream arrived): the cache is handed final bars only, and writes them at
  once. Final bars of a run received without gaps extend the complete coverage only when the run
  starts inside or at the end of already-complete coverage: subscribing at 12:00 does not make
  9:00-12:00 complete. Coverage never reaches into the bar containing now.

Storage: one SQLite file (WAL), kept by ``nbfeed.hub.bar_store.BarStore`` (bars packed in
columnar blocks, row checking, schema; see its docstring). Answers are
:class:`~nbfeed.columns.Columns` read straight from those blocks (``.rows()`` gives dicts to
those who want them). Numbers in the five OHLCV fields come back as floats; any other field
comes back exactly as stored. Rows without ``symbol`` get the requested one. The file is a
cache: an unknown schema version is dropped and rebuilt.

Threads: SQLite work for fetched spans and reads runs in worker threads (``asyncio.to_thread``);
the store serializes it on its own locks and splits big writes into short transactions so a live
write never waits long. ``add_live_bars`` and ``coverage`` are synchronous (live bars are written
at once) and must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import timeutil
from ..columns import Columns
from ..errors import BadRequest, UpstreamError
from ..intervals import ceil_bar, floor_bar, interval_ms, next_bar, shift_bars
from . import spans
from .bar_store import BLOCK_BARS, BarStore, MalformedBar, Row, bar_columns, parse_fetched
from .requests import MIN_TIME_MS, HistoryRequest, bar_interval, check_name
from .spans import Span

log = logging.getLogger(__name__)

Answer = list[Row] | Columns
Fetch = Callable[[int | None, int, int | None], Awaitable[Answer] | Answer]
"""``fetch(start, end, count)``: every bar of ``[start, end)`` (``count`` None), or the newest
``count`` bars before ``end`` (``start`` None). A coroutine function or a plain function."""

FETCH_BARS = 50_000
"""Most bars one upstream call is asked for; bigger asks go in pieces of this size."""


@dataclass(eq=False)
class _Flight:
    """A fetch in progress; everyone needing part of it awaits ``task``. ``waiters`` counts
    them: the last one to give up cancels the fetch."""

    span: Span
    task: asyncio.Task | None = None
    waiters: int = 0


@dataclass(eq=False)
class _Series:
    """What the cache knows of one (source, symbol, interval) in this process."""

    id: int
    symbol: str
    interval: str
    block_ms: int
    coverage: list[Span]
    flights: list[_Flight] = field(default_factory=list)
    # "newest bars before" asks in flight, by (before, count): identical ones share one task
    newest: dict[tuple[int, int], _Flight] = field(default_factory=dict)
    run_start: int | None = None  # first bar of the live run received without gaps
    run_last: int | None = None  # newest bar of that run


def _flight_done(series: _Series, flight: _Flight, task: asyncio.Task) -> None:
    # Normally the fetch removed itself already; a task cancelled before it ever ran did not.
    if flight in series.flights:
        series.flights.remove(flight)
    _quiet(task)


def _newest_done(series: _Series, key: tuple[int, int], task: asyncio.Task) -> None:
    series.newest.pop(key, None)
    _quiet(task)


async def _await_shared(flights: list[_Flight]) -> None:
    """Wait for every flight's task; a caller that gives up never cancels a task others still
    wait for (shield), but the last waiter to leave cancels a task nobody needs any more."""
    for flight in flights:
        flight.waiters += 1
    try:
        for flight in flights:
            assert flight.task is not None
            await asyncio.shield(flight.task)
    finally:
        for flight in flights:
            flight.waiters -= 1
            if flight.waiters == 0 and flight.task is not None and not flight.task.done():
                flight.task.cancel()


def _quiet(task: asyncio.Task) -> None:
    # Waiters get the exception; this only keeps asyncio quiet when every waiter went away.
    if not task.cancelled():
        task.exception()


class HistoryCache:
    """Coverage-aware cache of historical bars in a SQLite file (or ``":memory:"``).

    See the module docstring for the rules; requests come checked
    (:func:`~nbfeed.hub.requests.history_request`), so the cache checks only what providers and
    streams hand it.
    """

    def __init__(self, path: str | Path, *, fetch_bars: int = FETCH_BARS) -> None:
        if fetch_bars < 1:
            raise ValueError(f"fetch_bars must be at least 1, got {fetch_bars}")
        #: Most bars one upstream call is asked for.
        self.fetch_bars = fetch_bars
        self._store = BarStore(path)
        self.path = self._store.path
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"HistoryCache({self.path!r})"

    # ------------------------------------------------------------------ public API

    async def get(
        self, request: HistoryRequest, fetch: Fetch, *, now_ms: int | None = None
    ) -> Columns:
        """Bars of the request's series overlapping ``[start, end)``, fetching what is missing.

        ``now_ms`` stands in for the clock (tests). Raises UpstreamError for a malformed fetch
        answer, and whatever ``fetch`` raises.
        """
        self._check_open()
        if not callable(fetch):
            raise TypeError(f"fetch must be a callable (start, end, count), got {fetch!r}")
        now = timeutil.now_ms() if now_ms is None else now_ms
        interval = request.interval
        end_bar = ceil_bar(now if request.end is None else request.end, interval)
        series = await self._open_series((request.source, request.symbol, interval))
        count = request.count
        if count is None:
            if request.start is None:
                raise BadRequest("a history request without count needs a start")
            window = (floor_bar(request.start, interval), end_bar)
            await self._ensure(series, window, fetch, now)
            return await self._read(series, window, None)
        lower = MIN_TIME_MS if request.start is None else floor_bar(request.start, interval)
        first = max(lower, shift_bars(end_bar, interval, -count))
        await self._ensure(series, (first, end_bar), fetch, now)
        rows = await self._read(series, (first, end_bar), count)
        if len(rows) == count or first <= lower:
            return rows
        # Short: reach back over what is known complete before the window, then ask once for
        # the newest bars before that (nights, weekends, data that ended long ago).
        known = spans.touching(series.coverage, first)
        before = max(lower, known[0]) if known is not None else first
        if before < first:
            rows = await self._read(series, (before, end_bar), count)
        if len(rows) < count and before > lower:
            await self._fetch_newest(series, before, count - len(rows), fetch, now)
            rows = await self._read(series, (lower, end_bar), count)
        return rows

    def add_live_bars(
        self,
        source: str,
        symbol: str,
        interval: str,
        rows: Iterable[Row] | Row | Columns,
        now_ms: int | None = None,
    ) -> int:
        """Store final bars of a subscribed stream; returns how many rows were usable.

        The caller (the hub) decides which bars are final. Malformed rows are skipped with a
        warning (a live stream must not stop for one bad bar).
        """
        self._check_open()
        key = (check_name(source, "source"), check_name(symbol, "symbol"), bar_interval(interval))
        now = timeutil.now_ms() if now_ms is None else now_ms
        series = self._series.get(key) or self._new_series(key, *self._store.load_series(*key))
        if isinstance(rows, dict):
            rows = [rows]
        elif isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
            raise BadRequest(
                f"live bars: expected a row dict or a list of them, got {type(rows).__name__}"
            )
        try:
            bars = bar_columns(rows if isinstance(rows, Columns) else list(rows), series.symbol)
        except MalformedBar:
            bars = self._usable_bars(key, series.symbol, rows)
        if not len(bars):
            return 0
        self._store.write_bars(series.id, series.block_ms, bars)
        times = np.unique(bars.time).tolist()
        self._follow_live_run(series, times, now)
        return len(times)

    @staticmethod
    def _usable_bars(key: tuple[str, str, str], symbol: str, rows: Iterable) -> Columns:
        """The good rows of a live batch with bad ones; each bad one is named in a warning."""
        good, problems = [], []
        for i, row in enumerate(rows):
            try:
                bar_columns([row], symbol)
            except MalformedBar as exc:
                problems.append(f"row {i}: {str(exc).removeprefix('row 0: ')}")
                continue
            good.append(row)
        log.warning(
            "%s/%s/%s: skipped %d malformed live bar(s), first: %s",
            *key,
            len(problems),
            problems[0] if problems else "?",
        )
        return bar_columns(good, symbol)

    def coverage(self, source: str, symbol: str, interval: str) -> list[Span]:
        """The spans of a series stored as complete, ``[(start_ms, end_ms), ...]``."""
        self._check_open()
        return self._store.coverage(source, symbol, bar_interval(interval))

    def close(self) -> None:
        """Close the database; later calls raise RuntimeError.

        Fetches still in flight fail when they try to store; close after the hub stopped."""
        if self._closed:
            return
        self._closed = True
        self._store.close()

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _new_series(self, key: tuple[str, str, str], sid: int, coverage: list[Span]) -> _Series:
        series = _Series(
            sid, key[1], key[2], interval_ms(key[2]) * BLOCK_BARS, spans.normalize(coverage)
        )
        return self._series.setdefault(key, series)

    async def _open_series(self, key: tuple[str, str, str]) -> _Series:
        series = self._series.get(key)
        if series is None:
            sid, coverage = await asyncio.to_thread(self._store.load_series, *key)
            series = self._new_series(key, sid, coverage)
        return series

    async def _ensure(self, series: _Series, window: Span, fetch: Fetch, now: int) -> None:
        """Make ``window`` present in the store: fetch what is missing, join fetches in flight."""
        start, end = window[0], min(window[1], next_bar(now, series.interval))
        if start >= end:
            return
        missing = spans.subtract((start, end), series.coverage)
        if not missing:
            return
        waits = [
            f
            for f in series.flights
            if f.task is not None and any(spans.overlaps(f.span, m) for m in missing)
        ]
        for span in spans.subtract_all(missing, [f.span for f in series.flights]):
            flight = _Flight(span)
            task = asyncio.get_running_loop().create_task(
                self._fetch_span(series, flight, fetch, now)
            )
            flight.task = task
            task.add_done_callback(partial(_flight_done, series, flight))
            series.flights.append(flight)
            waits.append(flight)
        await _await_shared(waits)

    async def _fetch_span(self, series: _Series, flight: _Flight, fetch: Fetch, now: int) -> None:
        """Fetch ``flight.span`` piece by piece (at most ``fetch_bars`` bars each, one at a
        time), storing and marking each piece complete as it arrives."""
        start, end = flight.span
        try:
            for a, b in self._pieces(series.interval, start, end):
                result = await _call(fetch, a, b, None)
                complete_end = min(b, floor_bar(now, series.interval))
                complete = (a, complete_end) if a < complete_end else None
                merged = await asyncio.to_thread(
                    self._store_fetched, series, result, (a, b),
                    next_bar(now, series.interval), complete,
                )
                del result  # one piece in memory at a time
                if merged is not None:
                    series.coverage = spans.add(series.coverage, merged)
        finally:
            if flight in series.flights:
                series.flights.remove(flight)

    def _pieces(self, interval: str, start: int, end: int) -> list[Span]:
        """``[start, end)`` cut into spans of at most ``fetch_bars`` bars."""
        pieces = []
        while start < end:
            stop = min(end, shift_bars(start, interval, self.fetch_bars))
            pieces.append((start, stop))
            start = stop
        return pieces

    async def _fetch_newest(
        self, series: _Series, before: int, count: int, fetch: Fetch, now: int
    ) -> None:
        """Ask for the newest ``count`` bars before ``before``, store them and mark complete the
        stretch from the oldest of them to ``before``; identical asks in flight share one call."""
        key = (before, count)
        flight = series.newest.get(key)
        if flight is None:
            flight = _Flight((MIN_TIME_MS, before))
            flight.task = asyncio.get_running_loop().create_task(
                self._newest_task(series, before, count, fetch, now)
            )
            series.newest[key] = flight
            flight.task.add_done_callback(partial(_newest_done, series, key))
        await _await_shared([flight])

    async def _newest_task(
        self, series: _Series, before: int, count: int, fetch: Fetch, now: int
    ) -> None:
        """Ask in pieces of at most ``fetch_bars``, each for the newest bars before the oldest
        one received so far, until ``count`` bars came or a piece came short (no more)."""
        not_after = next_bar(now, series.interval)
        end = min(before, floor_bar(now, series.interval))
        until = before
        while count > 0:
            ask = min(count, self.fetch_bars)
            result = await _call(fetch, None, until, ask)

            def store(result: Any = result, until: int = until) -> tuple[int, int | None]:
                bars = self._store_records(series, result, (MIN_TIME_MS, until), not_after)
                older = bars.time[bars.time < until]
                if not len(older):
                    return 0, None
                oldest = int(older.min())
                if oldest < end:
                    merged = self._store.add_coverage(series.id, (oldest, end))
                    series.coverage = spans.add(series.coverage, merged)
                return len(older), oldest

            got, oldest = await asyncio.to_thread(store)
            del result
            if oldest is None or got < ask:
                return  # nothing (more) before: that proves nothing about older bars
            count -= got
            until = oldest

    def _store_fetched(
        self, series: _Series, result: Any, span: Span, not_after: int, complete: Span | None
    ) -> Span | None:
        """Validate, store and mark complete (worker thread); returns the merged complete span."""
        self._store_records(series, result, span, not_after)
        return None if complete is None else self._store.add_coverage(series.id, complete)

    def _store_records(
        self, series: _Series, result: Any, span: Span, not_after: int
    ) -> Columns:
        """Validate a fetch answer and store its bars (worker thread)."""
        try:
            bars = parse_fetched(result, series.symbol, not_after)
        except MalformedBar as exc:
            raise UpstreamError(
                f"history for {series.symbol} {series.interval} "
                f"[{timeutil.ms_to_iso(span[0])}, {timeutil.ms_to_iso(span[1])}): malformed "
                f"answer from the provider: {exc}"
            ) from None
        if len(bars):
            self._store.write_bars(series.id, series.block_ms, bars)
        return bars

    async def _read(self, series: _Series, window: Span, count: int | None) -> Columns:
        return await asyncio.to_thread(
            self._store.read, series.id, series.symbol, series.block_ms, window[0], window[1], count
        )

    def _follow_live_run(self, series: _Series, times: list[int], now: int) -> None:
        """Track the run of live bars received without gaps; extend coverage with it where
        complete coverage already reaches the run's first bar."""
        interval = series.interval
        for t in times:
            if series.run_last is None or t > next_bar(series.run_last, interval):
                if series.run_start is not None and series.run_last is not None:
                    # A gap: the old run ends here.
                    self._extend_coverage_live(
                        series, series.run_start, next_bar(series.run_last, interval), now
                    )
                series.run_start = series.run_last = t  # first bar, or after a gap: a new run
            elif t > series.run_last:
                series.run_last = t
        if series.run_start is not None and series.run_last is not None:
            self._extend_coverage_live(
                series, series.run_start, next_bar(series.run_last, interval), now
            )

    def _extend_coverage_live(self, series: _Series, start: int, end: int, now: int) -> None:
        end = min(end, floor_bar(now, series.interval))  # never the open bar
        base = spans.touching(series.coverage, start)
        if end <= start or base is None or base[1] >= end:
            return  # nothing final, nothing complete to extend, or nothing new
        merged = self._store.add_coverage(series.id, (start, end))
        series.coverage = spans.add(series.coverage, merged)


async def _call(fetch: Fetch, start: int | None, end: int, count: int | None) -> Any:
    result = fetch(start, end, count)
    if inspect.isawaitable(result):
        result = await result
    return result
