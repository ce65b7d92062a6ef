"""The history cache: historical bars kept in SQLite, fetched from providers only where missing.

``HistoryCache`` answers ``get(source, symbol, interval, start, end, count, fetch)`` from a local
store and calls ``fetch(start_ms, end_ms)`` (the provider) once per *missing* half-open span,
including holes in the middle of what it already holds. It records, per series
``(source, symbol, interval)``, the spans it holds completely; a fetch that returns nothing still
marks its span complete (a closed market is known to be empty and is not asked again).

Rules that shape every answer:

- Spans are aligned to bars: ``start`` down to its bar, ``end`` up, so the answer holds every bar
  that overlaps ``[start, end)``, in time order, without duplicates. ``end=None`` means now.
- The bar containing "now" is still open: it is stored so it can be shown, but its span is never
  marked complete, so every request that reaches it re-fetches that tail. Bars that start after
  the open bar cannot exist yet: they are neither fetched, stored nor marked complete.
- ``count`` keeps the newest ``count`` bars. Without ``start`` the cache looks back ``count`` bars
  from ``end``; when that span holds fewer bars (nights, weekends) it makes at most one more fetch
  reaching back three times as far (at least four days) and then returns what it has.
- Concurrent requests share upstream calls: a missing span that overlaps a fetch in flight for
  the same series waits for it instead of asking again. If ``fetch`` raises, every request waiting
  on it gets that exception and nothing is marked complete, so the next request asks again.
- ``fetch`` must return every bar of the span it was asked for (providers paginate upstream): the
  span is marked complete as soon as it returns. A row that is not a dict, has no integer epoch-ms
  ``time``, or has a non-numeric field makes the whole answer invalid: ``UpstreamError`` names
  the row and the problem and nothing of it is stored. Rows outside the span are stored but do
  not count as coverage.
- Live bars (``add_live_bars``) are upserted; a bar is final once a later bar arrived or its end
  has passed. Final bars of a run received without gaps extend the complete coverage only when
  the run starts inside or at the end of already-complete coverage: subscribing at 12:00 does not
  make 9:00-12:00 complete. The newest, still-open live bar is kept in memory (merged into
  answers) and written when it becomes final or on ``close()``, so a tick costs a dict update;
  a fetched bar for the same time replaces it (the stream may have stopped mid-bar).

Storage: one SQLite file (WAL), kept by ``nbfeed.hub.bar_store.BarStore`` (bars packed in
blocks, row checking, schema; see its docstring). Numbers in the five OHLCV fields of a plain
OHLCV row come back as floats; any other field comes back exactly as stored. Rows without
``symbol`` get the requested one. The file is a cache: an unknown schema version is dropped and
rebuilt.

Threads: SQLite work for fetched spans and reads runs in worker threads (``asyncio.to_thread``);
the store serializes it on its own locks and splits big writes into short transactions so a live
write never waits long. ``add_live_bars`` and ``coverage`` are synchronous (final live bars are
written at once) and must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import numbers
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .. import timeutil
from ..errors import BadInterval, BadRequest, LimitExceeded, UpstreamError
from ..intervals import (
    BAR_INTERVALS,
    INTERVALS,
    ceil_bar,
    floor_bar,
    interval_ms,
    next_bar,
    shift_bars,
)
from . import spans
from .bar_store import (
    BLOCK_BARS,
    MAX_TIME_MS,
    MIN_TIME_MS,
    BarStore,
    MalformedBar,
    Record,
    Row,
    bar_record,
    parse_fetched,
    record_row,
)
from .spans import Span

log = logging.getLogger(__name__)

Fetch = Callable[[int, int], Awaitable[list[Row]] | list[Row]]

MAX_ROWS = 1_000_000
"""Most bars one request may ask for (``count``, or the bars a start/end span can hold)."""
DEFAULT_COUNT = 500
"""Bars returned when a request gives neither ``start`` nor ``count``."""

_WIDEN_FACTOR = 3
_WIDEN_MIN_MS = 4 * 86_400_000  # a long weekend, so one widening reaches the last trading day


# --------------------------------------------------------------------------- requests


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise BadRequest(
            f"{what}: expected a non-empty string of at most 256 characters, got {value!r:.80}"
        )
    return value


def _check_bar_interval(interval: Any) -> str:
    if interval not in BAR_INTERVALS or not isinstance(interval, str):
        if isinstance(interval, str) and interval in INTERVALS:
            raise BadInterval(
                f"interval {interval!r} has no history (quotes are not cached); "
                f"use a bar interval: {', '.join(BAR_INTERVALS)}"
            )
        raise BadInterval(
            f"unknown interval {interval!r:.40}; bar intervals: {', '.join(BAR_INTERVALS)}"
        )
    return interval


def _time_arg(value: Any, what: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        ms = int(value)  # ints are epoch ms here, whatever their size
    else:
        ms = timeutil.to_ms(value, what)
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        raise BadRequest(f"{what}: {value!r:.40} is outside the supported years 1900..2999")
    return ms


@dataclass(eq=False)
class _Flight:
    """A fetch in progress for one span; everyone needing part of the span awaits ``task``."""

    span: Span
    task: asyncio.Task | None = None


@dataclass(eq=False)
class _Series:
    """What the cache knows of one (source, symbol, interval) in this process."""

    id: int
    symbol: str
    interval: str
    block_ms: int
    coverage: list[Span]
    flights: list[_Flight] = field(default_factory=list)
    pending: dict[int, Record] = field(default_factory=dict)  # live bars not yet written
    run_start: int | None = None  # first bar of the live run received without gaps
    run_last: int | None = None  # newest bar of that run


def _flight_done(series: _Series, flight: _Flight, task: asyncio.Task) -> None:
    # Normally the fetch removed itself already; a task cancelled before it ever ran did not.
    if flight in series.flights:
        series.flights.remove(flight)
    # Waiters get the exception; this only keeps asyncio quiet when every waiter went away.
    if not task.cancelled():
        task.exception()


class HistoryCache:
    """Coverage-aware cache of historical bars in a SQLite file (or ``":memory:"``).

    See the module docstring for the rules. ``max_rows`` caps the bars one request may want
    (``LimitExceeded`` beyond it); ``default_count`` is used when neither start nor count is given.
    """

    def __init__(
        self, path: str | Path, *, max_rows: int = MAX_ROWS, default_count: int = DEFAULT_COUNT
    ) -> None:
        self._store = BarStore(path)
        self.path = self._store.path
        self.max_rows = max_rows
        self.default_count = default_count
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"HistoryCache({self.path!r})"

    # ------------------------------------------------------------------ public API

    async def get(
        self,
        source: str,
        symbol: str,
        interval: str,
        start: Any,
        end: Any,
        count: Any,
        fetch: Fetch,
        now_ms: int | None = None,
    ) -> list[Row]:
        """Bars of ``(source, symbol, interval)`` overlapping ``[start, end)``, fetching gaps.

        Raises BadRequest/BadInterval/LimitExceeded for bad arguments (naming the value),
        UpstreamError for a malformed fetch answer, and whatever ``fetch`` raises.
        """
        self._check_open()
        key = (
            _check_name(source, "source"),
            _check_name(symbol, "symbol"),
            _check_bar_interval(interval),
        )
        if not callable(fetch):
            raise TypeError(f"fetch must be an async callable (start_ms, end_ms), got {fetch!r}")
        now = timeutil.now_ms() if now_ms is None else _time_arg(now_ms, "now_ms")
        start_ms = None if start is None else _time_arg(start, "start")
        end_ms = now if end is None else _time_arg(end, "end")
        count = self._count_arg(count)
        if start_ms is not None and start_ms >= end_ms:
            raise BadRequest(
                f"start {timeutil.ms_to_iso(start_ms)} must be before end "
                f"{timeutil.ms_to_iso(end_ms)}{' (now)' if end is None else ''}"
            )
        end_bar = ceil_bar(end_ms, interval)
        if start_ms is None and count is None:
            count = self.default_count
        series = await self._open_series(key)
        if count is None:
            window = (floor_bar(start_ms, interval), end_bar)
            self._check_span_size(window, interval)
            await self._ensure(series, window, fetch, now)
            return await self._read(series, window, None)
        lower = MIN_TIME_MS if start_ms is None else floor_bar(start_ms, interval)
        first = max(lower, shift_bars(end_bar, interval, -count))
        await self._ensure(series, (first, end_bar), fetch, now)
        rows = await self._read(series, (first, end_bar), count)
        if len(rows) < count and first > lower:
            # One widened look further back (closed markets), then settle for what exists.
            reach = max(_WIDEN_FACTOR * (end_bar - first), _WIDEN_MIN_MS)
            wider = max(lower, floor_bar(max(MIN_TIME_MS, first - reach), interval))
            await self._ensure(series, (wider, first), fetch, now)
            rows = await self._read(series, (wider, end_bar), count)
        return rows

    def add_live_bars(
        self,
        source: str,
        symbol: str,
        interval: str,
        rows: Iterable[Row] | Row,
        now_ms: int | None = None,
    ) -> int:
        """Upsert bars of a subscribed stream; returns how many rows were usable.

        Malformed rows are skipped with a warning (a live stream must not stop for one bad bar).
        Final bars are written at once; the open bar waits in memory until it is final.
        """
        self._check_open()
        key = (
            _check_name(source, "source"),
            _check_name(symbol, "symbol"),
            _check_bar_interval(interval),
        )
        now = timeutil.now_ms() if now_ms is None else _time_arg(now_ms, "now_ms")
        series = self._series.get(key) or self._new_series(key, *self._store.load_series(*key))
        if isinstance(rows, dict):
            rows = [rows]
        elif isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
            raise BadRequest(
                f"live bars: expected a row dict or a list of them, got {type(rows).__name__}"
            )
        records: dict[int, Record] = {}
        problems = []
        for i, row in enumerate(rows):
            try:
                rec = bar_record(row, series.symbol)
            except MalformedBar as exc:
                problems.append(f"row {i}: {exc}")
                continue
            records[rec[0]] = rec
        if problems:
            log.warning(
                "%s/%s/%s: skipped %d malformed live bar(s), first: %s",
                *key,
                len(problems),
                problems[0],
            )
        if not records:
            return 0
        series.pending.update(records)
        newest = max(series.pending)
        final = [t for t in series.pending if t < newest or next_bar(t, interval) <= now]
        if final:
            self._store.write_bars(series.id, series.block_ms, [series.pending[t] for t in final])
            for t in final:
                del series.pending[t]
        self._follow_live_run(series, sorted(records), now)
        return len(records)

    def coverage(self, source: str, symbol: str, interval: str) -> list[Span]:
        """The spans of a series stored as complete, ``[(start_ms, end_ms), ...]``."""
        self._check_open()
        return self._store.coverage(source, symbol, _check_bar_interval(interval))

    def close(self) -> None:
        """Write pending live bars and close the database; later calls raise RuntimeError.

        Fetches still in flight fail when they try to store; close after the hub stopped."""
        if self._closed:
            return
        self._closed = True
        try:
            for series in self._series.values():
                # A bar inside complete coverage came from the provider after this one.
                keep = [
                    rec
                    for t, rec in series.pending.items()
                    if not any(s <= t < e for s, e in series.coverage)
                ]
                if keep:
                    self._store.write_bars(series.id, series.block_ms, keep)
                    series.pending.clear()
        finally:
            self._store.close()

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _count_arg(self, count: Any) -> int | None:
        if count is None:
            return None
        if not isinstance(count, numbers.Integral) or isinstance(count, bool):
            raise BadRequest(
                f"count: expected a positive integer, got {count!r:.40} ({type(count).__name__})"
            )
        if count <= 0:
            raise BadRequest(f"count: expected a positive integer, got {count}")
        if count > self.max_rows:
            raise LimitExceeded(
                f"count {count} is more than the limit of {self.max_rows} bars per request"
            )
        return int(count)

    def _check_span_size(self, window: Span, interval: str) -> None:
        bars = (window[1] - window[0]) // interval_ms(interval)
        if bars > self.max_rows:
            raise LimitExceeded(
                f"{timeutil.ms_to_iso(window[0])} .. {timeutil.ms_to_iso(window[1])} holds about "
                f"{bars} {interval} bars, more than the limit of {self.max_rows} per request; "
                "narrow the span or pass count"
            )

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
        waits = [f.task for f in series.flights if any(spans.overlaps(f.span, m) for m in missing)]
        for span in spans.subtract_all(missing, [f.span for f in series.flights]):
            flight = _Flight(span)
            flight.task = asyncio.get_running_loop().create_task(
                self._fetch_span(series, flight, fetch, now)
            )
            flight.task.add_done_callback(partial(_flight_done, series, flight))
            series.flights.append(flight)
            waits.append(flight.task)
        for task in waits:
            # shield: a caller that gives up must not cancel a fetch others are waiting for.
            await asyncio.shield(task)

    async def _fetch_span(self, series: _Series, flight: _Flight, fetch: Fetch, now: int) -> None:
        start, end = flight.span
        try:
            result = fetch(start, end)
            if inspect.isawaitable(result):
                result = await result
            complete_end = min(end, floor_bar(now, series.interval))
            complete = (start, complete_end) if start < complete_end else None
            merged, answered = await asyncio.to_thread(
                self._store_fetched,
                series,
                result,
                flight.span,
                next_bar(now, series.interval),
                complete,
                set(series.pending),
            )
            if merged is not None:
                series.coverage = spans.add(series.coverage, merged)
            # The provider's bar supersedes a live bar still waiting in memory (e.g. the last
            # bar of a stream that stopped mid-bar); a live bar it did not return is kept.
            for t in answered:
                series.pending.pop(t, None)
        finally:
            if flight in series.flights:
                series.flights.remove(flight)

    def _store_fetched(
        self,
        series: _Series,
        result: Any,
        span: Span,
        not_after: int,
        complete: Span | None,
        pending: set[int],
    ) -> tuple[Span | None, list[int]]:
        """Validate, store and mark complete (worker thread); returns the merged complete span
        and which of the ``pending`` live bar times the answer contained."""
        try:
            records = parse_fetched(result, series.symbol, not_after)
        except MalformedBar as exc:
            raise UpstreamError(
                f"history for {series.symbol} {series.interval} "
                f"[{timeutil.ms_to_iso(span[0])}, {timeutil.ms_to_iso(span[1])}): malformed "
                f"answer from the provider: {exc}"
            ) from None
        if records:
            self._store.write_bars(series.id, series.block_ms, records)
        merged = None if complete is None else self._store.add_coverage(series.id, complete)
        return merged, [rec[0] for rec in records if rec[0] in pending] if pending else []

    async def _read(self, series: _Series, window: Span, count: int | None) -> list[Row]:
        pending = [series.pending[t] for t in sorted(series.pending) if window[0] <= t < window[1]]
        rows = await asyncio.to_thread(
            self._store.read, series.id, series.symbol, series.block_ms, window[0], window[1], count
        )
        for rec in pending:  # the open live bar(s): usually appended at the end
            i = bisect_left(rows, rec[0], key=_row_time_key)
            row = record_row(rec, series.symbol)
            if i < len(rows) and rows[i]["time"] == rec[0]:
                rows[i] = row
            else:
                rows.insert(i, row)
        if count is not None and len(rows) > count:
            del rows[: len(rows) - count]
        return rows

    def _follow_live_run(self, series: _Series, times: list[int], now: int) -> None:
        """Track the run of live bars received without gaps; extend coverage with its final
        bars where complete coverage already reaches the run's first bar."""
        interval = series.interval
        for t in times:
            if series.run_last is None or t > next_bar(series.run_last, interval):
                if series.run_start is not None and series.run_last is not None:
                    # A later bar exists, so the old run is final up to its end.
                    self._extend_coverage_live(
                        series, series.run_start, next_bar(series.run_last, interval), now
                    )
                series.run_start = series.run_last = t  # first bar, or after a gap: a new run
            elif t > series.run_last:
                series.run_last = t
        if series.run_start is not None and series.run_last is not None:
            last_end = next_bar(series.run_last, interval)
            self._extend_coverage_live(
                series, series.run_start, last_end if last_end <= now else series.run_last, now
            )

    def _extend_coverage_live(self, series: _Series, start: int, end: int, now: int) -> None:
        end = min(end, floor_bar(now, series.interval))  # never the open bar
        base = spans.touching(series.coverage, start)
        if end <= start or base is None or base[1] >= end:
            return  # nothing final, nothing complete to extend, or nothing new
        merged = self._store.add_coverage(series.id, (start, end))
        series.coverage = spans.add(series.coverage, merged)


def _row_time_key(row: Row) -> int:
    return row["time"]
