"""HistoryCache against real SQLite files: what it fetches, what it serves, what it refuses.

``FakeProvider.fetch`` plays the provider: it answers one span - or the newest ``count`` bars
before a time - with deterministic bars (only during its trading hours, never past its own
clock) and records every call, so each test can assert exactly what the cache asked for: a span
as ``(start, end)``, a "newest bars before" ask as ``(None, end, count)``. Requests are built
with :func:`~nbfeed.hub.requests.history_request`, as the hub builds them.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import sqlite3

import pytest

from nbfeed.errors import BadInterval, BadRequest, LimitExceeded, UpstreamError
from nbfeed.hub import spans
from nbfeed.hub.history import HistoryCache
from nbfeed.hub.requests import history_request
from nbfeed.intervals import bar_starts, floor_bar, next_bar, prev_bar
from nbfeed.providers.csv import SAMPLE_DIR, CSVProvider

pytestmark = pytest.mark.asyncio

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
MONDAY = calendar.timegm((2026, 1, 5, 0, 0, 0)) * 1000  # 2026-01-05 was a Monday


def at(hour: int, minute: int = 0, day: int = 0, second: int = 0) -> int:
    """Epoch ms of ``day`` days after Monday 2026-01-05 at hour:minute:second UTC."""
    return MONDAY + day * DAY + hour * HOUR + minute * MIN + second * 1000


def month(year: int, m: int, day: int = 1) -> int:
    return calendar.timegm((year, m, day, 0, 0, 0)) * 1000


LATER = at(0, day=30)  # a "now" long after every span the tests ask about


class FakeProvider:
    """Deterministic bars for any span; optional trading hours (Monday to Friday), a gate to
    hold fetches open, and an error to raise."""

    def __init__(
        self, interval: str = "1m", hours: range | None = None, symbol: str = "AAPL"
    ) -> None:
        self.interval = interval
        self.hours = hours
        self.symbol = symbol
        self.now = LATER  # the provider never returns bars that have not started yet
        self.version = 0  # bump to make the provider's bars change (an open bar moving)
        self.calls: list[tuple] = []
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.error: Exception | None = None

    def bar(self, t: int) -> dict:
        base = 100 + (t // MIN) % 97 + self.version / 10
        return {
            "time": t,
            "symbol": self.symbol,
            "open": base,
            "high": base + 1.5,
            "low": base - 1.25,
            "close": base + 0.5,
            "volume": float((t // MIN) % 1000),
        }

    def bars(self, start: int, end: int) -> list[dict]:
        end = min(end, next_bar(self.now, self.interval))
        return [self.bar(t) for t in bar_starts(start, end, self.interval) if self.trading(t)]

    def trading(self, t: int) -> bool:
        weekday = ((t - MONDAY) // DAY) % 7
        return self.hours is None or (weekday < 5 and (t % DAY) // HOUR in self.hours)

    def newest(self, end: int, count: int) -> list[dict]:
        """The newest ``count`` trading bars before ``end`` (looking back at most 60 days)."""
        out: list[dict] = []
        t = prev_bar(min(end, next_bar(self.now, self.interval)), self.interval)
        while len(out) < count and t >= end - 60 * DAY:
            if self.trading(t):
                out.append(self.bar(t))
            t = prev_bar(t, self.interval)
        return out[::-1]

    async def fetch(self, start: int | None, end: int, count: int | None) -> list[dict]:
        self.calls.append((start, end) if start is not None else (None, end, count))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.bars(start, end) if start is not None else self.newest(end, count)


def times(rows: list[dict]) -> list[int]:
    return [r["time"] for r in rows]


@pytest.fixture
def cache(tmp_path):
    c = HistoryCache(tmp_path / "history.sqlite")
    yield c
    c.close()


def request(start, end, count=None, now=LATER, symbol="AAPL", interval="1m"):
    return history_request("sim", symbol, interval, start, end, count, now_ms=now)


async def get(cache, provider, start, end, count=None, now=LATER, symbol="AAPL"):
    req = request(start, end, count, now, symbol, provider.interval)
    return await cache.get(req, provider.fetch, now_ms=now)


# ---------------------------------------------------------------- coverage and holes


async def test_a_hole_in_the_middle_is_the_only_span_fetched(cache):
    p = FakeProvider()
    await get(cache, p, at(9), at(10))
    await get(cache, p, at(11), at(12))
    p.calls.clear()

    rows = await get(cache, p, at(9), at(12))

    assert p.calls == [(at(10), at(11))]
    assert rows == p.bars(at(9), at(12))
    assert len(rows) == 180
    assert cache.coverage("sim", "AAPL", "1m") == [(at(9), at(12))]


async def test_a_repeated_request_is_served_from_the_cache_alone(cache):
    p = FakeProvider()
    first = await get(cache, p, at(9), at(12))
    p.calls.clear()

    again = await get(cache, p, at(9), at(12))
    inside = await get(cache, p, at(10, 15), at(10, 45))

    assert p.calls == []
    assert again == first
    assert inside == p.bars(at(10, 15), at(10, 45))


async def test_spans_are_aligned_to_whole_bars(cache):
    p = FakeProvider()
    rows = await get(cache, p, at(9, 0, second=30), at(9, 3, second=1))

    assert p.calls == [(at(9), at(9, 4))]
    assert times(rows) == [at(9), at(9, 1), at(9, 2), at(9, 3)]


async def test_the_cache_survives_a_reopen(tmp_path):
    path = tmp_path / "deep" / "dir" / "history.sqlite"  # parent directories are created
    p = FakeProvider()
    first = HistoryCache(path)
    rows = await get(first, p, at(9), at(12))
    first.close()
    p.calls.clear()

    second = HistoryCache(path)
    try:
        assert await get(second, p, at(9), at(12)) == rows
        assert second.coverage("sim", "AAPL", "1m") == [(at(9), at(12))]
    finally:
        second.close()
    assert p.calls == []


async def test_series_are_kept_apart(cache):
    aapl, msft = FakeProvider(), FakeProvider(symbol="MSFT")
    await get(cache, aapl, at(9), at(10))

    rows = await get(cache, msft, at(9), at(10), symbol="MSFT")

    assert msft.calls == [(at(9), at(10))]
    assert {r["symbol"] for r in rows} == {"MSFT"}
    assert cache.coverage("sim", "AAPL", "5m") == []


async def test_a_closed_market_is_known_empty_and_not_asked_again(cache):
    p = FakeProvider(hours=range(14, 21))
    saturday, monday = at(0, day=5), at(0, day=7)

    assert await get(cache, p, saturday, monday) == []
    assert await get(cache, p, at(12, day=5), at(13, day=6)) == []

    assert p.calls == [(saturday, monday)]
    assert cache.coverage("sim", "AAPL", "1m") == [(saturday, monday)]


async def test_rows_outside_the_fetched_span_do_not_count_as_coverage(cache):
    p = FakeProvider()

    async def generous(start, end, count):  # also sends the hour before the span
        p.calls.append((start, end))
        return p.bars(start - HOUR, end)

    rows = await cache.get(request(at(10), at(11)), generous, now_ms=LATER)
    assert times(rows) == times(p.bars(at(10), at(11)))
    assert cache.coverage("sim", "AAPL", "1m") == [(at(10), at(11))]

    await cache.get(request(at(9), at(11)), generous, now_ms=LATER)
    assert p.calls[-1] == (at(9), at(10))


# ---------------------------------------------------------------- the open bar


async def test_the_open_bar_is_shown_but_refetched_until_it_closes(cache):
    p = FakeProvider()
    p.now = now = at(10, 30, second=20)

    rows = await get(cache, p, at(10), None, now=now)
    assert p.calls == [(at(10), at(10, 31))]
    assert times(rows)[-1] == at(10, 30)  # the open bar is shown
    assert cache.coverage("sim", "AAPL", "1m") == [(at(10), at(10, 30))]

    p.version = 1  # the open bar moved upstream
    rows = await get(cache, p, at(10), None, now=now)
    assert p.calls[1:] == [(at(10, 30), at(10, 31))]  # just the tail
    assert rows[-1] == p.bar(at(10, 30))
    assert rows[:-1] == FakeProvider().bars(at(10), at(10, 30))  # closed bars untouched

    p.now = now = at(10, 32, second=5)
    rows = await get(cache, p, at(10), None, now=now)
    assert p.calls[2:] == [(at(10, 30), at(10, 33))]
    assert times(rows)[-1] == at(10, 32)
    assert cache.coverage("sim", "AAPL", "1m") == [(at(10), at(10, 32))]


async def test_bars_in_the_future_are_neither_fetched_nor_marked_complete(cache):
    p = FakeProvider()
    p.now = now = at(10, 30, second=20)

    rows = await get(cache, p, at(10), at(12), now=now)
    assert p.calls == [(at(10), at(10, 31))]
    assert times(rows)[-1] == at(10, 30)

    assert await get(cache, p, at(11), at(12), now=now) == []
    assert len(p.calls) == 1
    assert cache.coverage("sim", "AAPL", "1m") == [(at(10), at(10, 30))]


# ---------------------------------------------------------------- live bars
# The hub decides when a live bar is final (a later bar of the stream arrived) and hands the cache
# final bars only; these tests play the hub.


async def test_live_bars_land_in_the_cache_and_are_served(cache):
    p = FakeProvider()
    p.now = at(10, 0, second=30)
    await get(cache, p, at(9), None, now=p.now)
    assert cache.coverage("sim", "AAPL", "1m") == [(at(9), at(10))]
    p.calls.clear()

    final = [{**p.bar(at(10, m)), "close": 500.0 + m} for m in range(3)]  # 10:03 is still open
    now = at(10, 3, second=30)
    assert cache.add_live_bars("sim", "AAPL", "1m", final, now_ms=now) == 3

    assert cache.coverage("sim", "AAPL", "1m") == [(at(9), at(10, 3))]
    rows = await get(cache, p, at(9), at(10, 3), now=now)
    assert p.calls == []
    assert rows[-3:] == final

    p.now = now
    rows = await get(cache, p, at(10), None, now=now)  # includes the open bar
    assert p.calls == [(at(10, 3), at(10, 4))]
    assert rows[-1] == p.bar(at(10, 3))  # the provider's answer for the open bar
    assert cache.coverage("sim", "AAPL", "1m") == [(at(9), at(10, 3))]


async def test_live_bars_after_a_gap_do_not_fake_coverage(cache):
    p = FakeProvider()
    now = at(12, 5, second=30)
    cache.add_live_bars("sim", "AAPL", "1m", [p.bar(at(12, m)) for m in range(5)], now_ms=now)
    assert cache.coverage("sim", "AAPL", "1m") == []  # subscribing at 12:00 proves nothing

    await get(cache, p, at(9), at(10), now=now)
    cache.add_live_bars("sim", "AAPL", "1m", [p.bar(at(12, 5))], now_ms=at(12, 6))
    assert cache.coverage("sim", "AAPL", "1m") == [(at(9), at(10))]

    p.calls.clear()
    rows = await get(cache, p, at(9), at(12, 6), now=at(12, 6, second=10))
    assert p.calls == [(at(10), at(12, 6))]
    assert rows == p.bars(at(9), at(12, 6))


async def test_a_contiguous_live_run_extends_coverage_that_reaches_it(cache):
    p = FakeProvider()
    p.now = at(12, 0, second=10)
    await get(cache, p, at(11), None, now=p.now)  # complete up to 12:00, 12:00 open
    assert cache.coverage("sim", "AAPL", "1m") == [(at(11), at(12))]

    for m in range(6):  # each bar handed over once the next one began
        cache.add_live_bars("sim", "AAPL", "1m", [p.bar(at(12, m))], now_ms=at(12, m + 1, 40))
    assert cache.coverage("sim", "AAPL", "1m") == [(at(11), at(12, 6))]

    cache.add_live_bars("sim", "AAPL", "1m", [p.bar(at(12, 9))], now_ms=at(12, 10, second=1))
    assert cache.coverage("sim", "AAPL", "1m") == [(at(11), at(12, 6))]  # a gap: nothing new


async def test_a_fetched_span_replaces_the_live_bars_in_it(tmp_path):
    path = tmp_path / "history.sqlite"
    p = FakeProvider()
    cache = HistoryCache(path)
    odd = {**p.bar(at(10, 3)), "close": -1.0}  # e.g. a stream that missed the bar's last trades
    cache.add_live_bars("sim", "AAPL", "1m", odd, now_ms=at(10, 4, second=30))

    rows = await get(cache, p, at(10), at(11))  # nothing was complete: the span is fetched
    cache.close()

    assert rows == p.bars(at(10), at(11))
    reopened = HistoryCache(path)
    try:
        assert await get(reopened, p, at(10), at(11)) == rows
    finally:
        reopened.close()
    assert p.calls == [(at(10), at(11))]


async def test_malformed_live_bars_are_skipped_with_a_warning(cache, caplog):
    p = FakeProvider()
    bad = [{"symbol": "AAPL", "close": 1.0}, {**p.bar(at(9, 1)), "close": "n/a"}, "junk"]
    with caplog.at_level(logging.WARNING, logger="nbfeed.hub.history"):
        stored = cache.add_live_bars("sim", "AAPL", "1m", [*bad, p.bar(at(9))], now_ms=at(9, 5))

    assert stored == 1
    assert "skipped 3 malformed" in caplog.text and "time is missing" in caplog.text
    rows = await get(cache, p, at(9), at(9, 1), now=at(9, 5))
    assert rows == [p.bar(at(9))]


# ---------------------------------------------------------------- count


async def test_count_only_returns_the_newest_bars_ending_at_end(cache):
    p = FakeProvider()

    rows = await get(cache, p, None, at(12), 10)
    assert p.calls == [(at(11, 50), at(12))]
    assert rows == p.bars(at(11, 50), at(12))

    assert await get(cache, p, None, at(12), 10) == rows
    assert await get(cache, p, None, at(11, 59, second=59), 10) == rows  # 11:59 holds the end
    assert len(p.calls) == 1

    assert await get(cache, p, None, at(12, 0, second=1), 10) == p.bars(at(11, 51), at(12, 1))
    assert p.calls[1:] == [(at(12), at(12, 1))]


async def test_count_reaches_back_once_more_over_a_closed_market(cache):
    p = FakeProvider(hours=range(14, 21))  # 14:00-21:00 UTC trading
    end = at(14, 30, day=1)

    rows = await get(cache, p, None, end, 100)

    # The window of 100 bars before end holds 30 (the market opened at 14:00), so the cache
    # asks once for the 70 newest bars before that window: Monday's close.
    assert p.calls == [(at(12, 50, day=1), end), (None, at(12, 50, day=1), 70)]
    assert rows == (p.bars(at(19, 50), at(21)) + p.bars(at(14, day=1), end))
    assert cache.coverage("sim", "AAPL", "1m") == [(at(19, 50), end)]

    assert await get(cache, p, None, end, 100) == rows
    assert len(p.calls) == 2


async def test_data_that_ended_long_ago_is_fetched_once_then_served_from_the_cache(cache):
    p = FakeProvider()
    p.now = at(11, 59, second=30)  # the provider's data stops here; the request is weeks later
    end = at(0, day=20)

    rows = await get(cache, p, None, end, 50)
    assert rows == p.bars(at(11, 10), at(12))
    assert p.calls == [(at(23, 10, day=19), end), (None, at(23, 10, day=19), 50)]

    assert await get(cache, p, None, end, 50) == rows
    assert await get(cache, p, None, end, 20) == rows[-20:]
    assert len(p.calls) == 2


async def test_the_csv_sample_whose_data_ended_in_2025_is_asked_once(cache):
    """The bundled DEMO-USD.csv (1-minute bars ending on 2025-03-05), read by the real csv
    provider class: the newest bars come from one look back and one "newest bars" ask, are
    stored, and the same request later makes no upstream call at all."""
    provider = CSVProvider(folder=str(SAMPLE_DIR))
    calls = []

    def fetch(start, end, count):
        calls.append((start, end, count))
        return provider.get_history("DEMO-USD", "1m", start, end, count)

    whole = provider.get_history("DEMO-USD", "1m", None, None, None)
    req = history_request("csv", "DEMO-USD", "1m", end="2025-06-01", count=100)

    rows = await cache.get(req, fetch)
    assert rows == whole[-100:] and rows[-1]["time"] == 1_741_132_740_000  # 2025-03-04 23:59
    assert len(calls) == 2 and calls[1][0] is None  # the window, then the newest 100 before it
    assert await cache.get(req, fetch) == rows
    assert len(calls) == 2

    # Up to now: the newest bars are still those; only the bar of now is asked for each time.
    now = history_request("csv", "DEMO-USD", "1m", count=100)
    assert await cache.get(now, fetch) == rows
    asked = len(calls)
    assert await cache.get(now, fetch) == rows
    assert len(calls) == asked + 1 and calls[-1][2] is None  # one span: the open bar


async def test_count_settles_for_fewer_bars_when_there_are_none(cache):
    p = FakeProvider(hours=range(0))  # never trades

    assert await get(cache, p, None, at(12), 50) == []
    assert p.calls == [(at(11, 10), at(12)), (None, at(11, 10), 50)]
    assert await get(cache, p, None, at(12), 50) == []
    # The window is known empty; an empty "newest bars" answer proves nothing about older bars,
    # so that one question is asked again.
    assert p.calls[2:] == [(None, at(11, 10), 50)]


async def test_count_caps_a_span_to_its_newest_bars(cache):
    p = FakeProvider()

    rows = await get(cache, p, at(9), at(12), 5)

    assert p.calls == [(at(11, 55), at(12))]
    assert times(rows) == [at(11, m) for m in range(55, 60)]
    assert await get(cache, p, at(11, 58), at(12), 5) == rows[-2:]


async def test_count_reads_across_storage_blocks(cache):
    p = FakeProvider()
    everything = await get(cache, p, at(0), at(0, day=3))  # 4320 bars, several blocks
    p.calls.clear()

    assert await get(cache, p, None, at(0, day=3), 2500) == everything[-2500:]
    assert await get(cache, p, at(3), at(0, day=3), 4200) == everything[180:]  # fewer exist
    assert p.calls == []


async def test_default_request_is_the_last_500_bars(cache):
    p = FakeProvider()
    p.now = now = at(12, 0, second=1)

    rows = await get(cache, p, None, None, now=now)

    assert len(rows) == 500
    assert times(rows)[-1] == at(12)


# ---------------------------------------------------------------- concurrency and failure


async def test_identical_concurrent_requests_share_one_fetch(cache):
    p = FakeProvider()
    await get(cache, p, at(8), at(9))  # the series is open: both requests plan in one step
    p.calls.clear()
    p.gate = asyncio.Event()

    first = asyncio.create_task(get(cache, p, at(9), at(12)))
    second = asyncio.create_task(get(cache, p, at(9), at(12)))
    inside = asyncio.create_task(get(cache, p, at(10), at(11)))  # covered by the flight
    await asyncio.wait_for(p.started.wait(), 30)
    assert not (first.done() or second.done() or inside.done())
    p.gate.set()

    a, b, c = await asyncio.wait_for(asyncio.gather(first, second, inside), 30)
    assert p.calls == [(at(9), at(12))]
    assert a == b == p.bars(at(9), at(12))
    assert c == p.bars(at(10), at(11))


async def test_a_failed_fetch_fails_every_waiter_and_is_retried_next_time(cache):
    p = FakeProvider()
    await get(cache, p, at(8), at(9))
    p.calls.clear()
    p.gate = asyncio.Event()
    p.error = UpstreamError("simulated: exchange unreachable")

    waiters = [asyncio.create_task(get(cache, p, at(9), at(10))) for _ in range(3)]
    await asyncio.wait_for(p.started.wait(), 30)
    p.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 30)

    assert [type(r) for r in results] == [UpstreamError] * 3
    assert all("exchange unreachable" in str(r) for r in results)
    assert p.calls == [(at(9), at(10))]
    assert cache.coverage("sim", "AAPL", "1m") == [(at(8), at(9))]

    p.error = None
    assert await get(cache, p, at(9), at(10)) == p.bars(at(9), at(10))
    assert p.calls == [(at(9), at(10))] * 2


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_fetch(cache):
    p = FakeProvider()
    await get(cache, p, at(8), at(9))
    p.calls.clear()
    p.gate = asyncio.Event()

    quitter = asyncio.create_task(get(cache, p, at(9), at(10)))
    stayer = asyncio.create_task(get(cache, p, at(9), at(10)))
    await asyncio.wait_for(p.started.wait(), 30)
    quitter.cancel()
    p.gate.set()

    assert await asyncio.wait_for(stayer, 30) == p.bars(at(9), at(10))
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert p.calls == [(at(9), at(10))]


# ---------------------------------------------------------------- what rows look like


async def test_rows_come_back_as_they_were_stored(cache):
    line = [
        {"time": at(9), "symbol": "AAPL", "value": 1.5, "signal": 2},
        {"time": at(9, 1), "value": None},  # no symbol: gets the requested one
        {
            "time": at(9, 2),
            "symbol": "AAPL.O",
            "open": 1,
            "high": 2,
            "low": 0.5,
            "close": 1,
            "volume": 10,
        },
        {
            "time": at(9, 3),
            "symbol": "AAPL",
            "open": 1,
            "high": 2,
            "low": 0,
            "close": 1,
            "volume": 3,
        },
    ]

    async def fetch(start, end, count):
        return line

    rows = await cache.get(request(at(9), at(9, 4)), fetch, now_ms=LATER)

    assert rows == [line[0], {**line[1], "symbol": "AAPL"}, line[2], line[3]]
    assert type(rows[0]["signal"]) is int and rows[2]["symbol"] == "AAPL.O"


async def test_a_plain_function_works_as_fetch(cache):
    p = FakeProvider()
    def fetch(start, end, count):  # not a coroutine
        return p.bars(start, end)

    rows = await cache.get(request(at(9), at(10)), fetch, now_ms=LATER)
    assert rows == p.bars(at(9), at(10))


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([{"symbol": "AAPL", "close": 1.0}], "row 0: time is missing"),
        ([{"time": at(9), "close": "abc"}], "'close' = 'abc' is not a number"),
        ([{"time": "2026-01-05T09:00Z", "close": 1.0}], "is not an integer epoch-ms"),
        ([{"time": at(9), "close": 1.0}, ["not", "a", "dict"]], "row 1: expected a dict, got list"),
        (None, "fetch returned NoneType"),
        ([{"time": 10**19, "close": 1.0}], "outside 1900..3000"),
    ],
)
async def test_a_malformed_answer_is_an_upstream_error_and_nothing_is_kept(cache, answer, message):
    calls = []

    async def fetch(start, end, count):
        calls.append((start, end))
        return answer

    for _ in range(2):
        with pytest.raises(UpstreamError, match="malformed") as info:
            await cache.get(request(at(9), at(10)), fetch, now_ms=LATER)
        assert message in str(info.value)
    assert len(calls) == 2
    assert cache.coverage("sim", "AAPL", "1m") == []


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"start": at(10), "end": at(10)}, BadRequest, "must be before end"),
        ({"start": at(11), "end": at(10)}, BadRequest, "must be before end"),
        ({"start": at(11, day=40), "end": None}, BadRequest, "(now)"),
        ({"count": 0}, BadRequest, "got 0"),
        ({"count": -5}, BadRequest, "-5"),
        ({"count": "10"}, BadRequest, "'10'"),
        ({"count": 1.5}, BadRequest, "1.5"),
        ({"count": True}, BadRequest, "True"),
        ({"count": 1_000_001}, LimitExceeded, "1000001"),
        (
            {"interval": "1s", "start": at(0), "end": at(0, day=30)},
            LimitExceeded,
            "narrow the span",
        ),
        ({"interval": "tick"}, BadInterval, "'tick'"),
        ({"interval": "2m"}, BadInterval, "'2m'"),
        ({"interval": None}, BadInterval, "None"),
        ({"source": ""}, BadRequest, "source"),
        ({"symbol": 42}, BadRequest, "42"),
        ({"symbol": "   "}, BadRequest, "symbol"),
        ({"symbol": "A" * 201}, BadRequest, "200 characters"),
        ({"start": "yesterday-ish"}, BadRequest, "yesterday-ish"),
        ({"end": "3001-01-01T00:00:00Z"}, BadRequest, "end"),
        ({"start": "1850-06-01"}, BadRequest, "1900..2999"),
    ],
)
async def test_bad_requests_are_refused_naming_the_value(kwargs, error, named):
    args = {
        "source": "sim",
        "symbol": "AAPL",
        "interval": "1m",
        "start": at(9),
        "end": at(10),
        "count": None,
        "now_ms": LATER,
        **kwargs,
    }

    with pytest.raises(error) as info:
        history_request(**args)

    assert named in str(info.value)


async def test_a_request_holds_ints_only_and_defaults_to_the_newest_500_bars():
    req = history_request("sim", "AAPL", "1h", "2026-01-05T09:30:00Z", "now", None)
    assert (req.start, type(req.end), req.count) == (at(9, 30), int, None)
    assert history_request("sim", "AAPL", "1h").count == 500
    assert history_request("sim", "AAPL", "1h", start=at(9)).count is None  # the whole span
    assert history_request("sim", "AAPL", "1d", end=1_767_225_600).end == at(0, day=-4)  # s


async def test_bad_live_input_and_a_closed_cache_are_refused(tmp_path):
    cache = HistoryCache(tmp_path / "h.sqlite")
    with pytest.raises(BadInterval, match="'tick'"):
        cache.add_live_bars("sim", "AAPL", "tick", [{"time": at(9), "price": 1.0}])
    with pytest.raises(BadRequest, match="NoneType"):
        cache.add_live_bars("sim", "AAPL", "1m", None)
    with pytest.raises(TypeError, match="fetch"):
        await cache.get(request(at(9), at(10)), "not callable")
    cache.close()
    with pytest.raises(RuntimeError, match="closed"):
        await cache.get(request(at(9), at(10)), FakeProvider().fetch)


async def test_a_file_that_is_not_a_database_is_named(tmp_path):
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not sqlite " * 100)

    with pytest.raises(sqlite3.DatabaseError, match=r"history\.sqlite"):
        HistoryCache(path)


async def test_a_cache_file_from_another_schema_is_rebuilt(tmp_path):
    path = tmp_path / "history.sqlite"
    p = FakeProvider()
    cache = HistoryCache(path)
    await get(cache, p, at(9), at(10))
    cache.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")

    rebuilt = HistoryCache(path)
    try:
        assert rebuilt.coverage("sim", "AAPL", "1m") == []
        assert await get(rebuilt, p, at(9), at(10)) == p.bars(at(9), at(10))
    finally:
        rebuilt.close()
    assert len(p.calls) == 2


# ---------------------------------------------------------------- calendar months


async def test_monthly_bars_follow_the_calendar(cache):
    p = FakeProvider(interval="1M")
    await get(cache, p, month(2025, 1, 15), month(2025, 4))  # start aligns down to Jan 1
    await get(cache, p, month(2025, 6), month(2025, 8))
    p.calls.clear()

    rows = await get(cache, p, month(2025, 1), month(2025, 8))
    assert p.calls == [(month(2025, 4), month(2025, 6))]
    assert times(rows) == [month(2025, m) for m in range(1, 8)]

    rows = await get(cache, p, None, month(2025, 8, 15), 3)  # ends inside August
    assert times(rows) == [month(2025, 6), month(2025, 7), month(2025, 8)]
    assert p.calls[1:] == [(month(2025, 8), month(2025, 9))]

    rows = await get(cache, p, None, month(2025, 3), 14)  # back across a year boundary
    assert p.calls[2:] == [(month(2024, 1), month(2025, 1))]
    assert times(rows)[0] == month(2024, 1) and len(rows) == 14


async def test_the_open_month_is_never_complete(cache):
    p = FakeProvider(interval="1M")
    p.now = now = month(2025, 8, 20)

    await get(cache, p, month(2025, 6), None, now=now)
    await get(cache, p, month(2025, 6), None, now=now)

    assert p.calls == [(month(2025, 6), month(2025, 9)), (month(2025, 8), month(2025, 9))]
    assert cache.coverage("sim", "AAPL", "1M") == [(month(2025, 6), month(2025, 8))]
    assert floor_bar(now, "1M") == month(2025, 8)


# ---------------------------------------------------------------- span arithmetic


async def test_span_arithmetic():
    covered = spans.normalize([(5, 7), (0, 2), (2, 3), (9, 9), (6, 8)])
    assert covered == [(0, 3), (5, 8)]
    assert spans.subtract((0, 10), covered) == [(3, 5), (8, 10)]
    assert spans.subtract((1, 2), covered) == []
    assert spans.subtract_all([(0, 4), (7, 12)], [(3, 8)]) == [(0, 3), (8, 12)]
    assert spans.add(covered, (3, 5)) == [(0, 8)]
    assert spans.touching(covered, 3) == (0, 3) and spans.touching(covered, 4) is None
