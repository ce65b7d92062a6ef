"""The simulated provider: deterministic for a seed, live bars that continue history, quotes,
and the rate option - in its own process behind a hub, and as a plain object."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from nbfeed.errors import BadInterval, BadRequest, UnknownSymbol
from nbfeed.intervals import floor_bar
from nbfeed.providers.dataset import validate_entries
from nbfeed.providers.registry import ProviderSpec
from nbfeed.providers.simulated import SimulatedProvider
from nbfeed.timeutil import now_ms, to_ms
from tests.providers_for_tests import Received, receive

QUOTE_FIELDS = {"time", "symbol", "price", "prev_close", "change", "change_percent", "volume",
                "bid", "ask"}
OHLCV = ("open", "high", "low", "close", "volume")


def simulated(**options) -> ProviderSpec:
    return ProviderSpec("simulated", SimulatedProvider, options)


@pytest.fixture
def sim():
    """Factory of in-process SimulatedProvider objects (init run); their threads stop after."""
    made: list[SimulatedProvider] = []

    def make(**options) -> SimulatedProvider:
        provider = SimulatedProvider(**options)
        provider.init()
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.stopping.set()


def assert_bars_are_consistent(bars: list[dict]) -> None:
    for prev, bar in zip(bars, bars[1:]):
        assert bar["open"] == prev["close"], (prev, bar)  # each bar opens where the last closed
    for bar in bars:
        assert bar["low"] <= min(bar["open"], bar["close"]) <= max(bar["open"], bar["close"]) \
            <= bar["high"]
        assert bar["volume"] >= 0


@pytest.mark.asyncio
async def test_the_same_seed_gives_the_same_history_in_two_hubs(start_hub):
    first, second = await asyncio.gather(start_hub(simulated(seed=11)),
                                         start_hub(simulated(seed=11)))
    span = {"start": "2024-01-02T00:00:00Z", "end": "2024-01-05T00:00:00Z"}
    a, b = await asyncio.gather(first.history("simulated", "AAPL", "1h", **span),
                                second.history("simulated", "AAPL", "1h", **span))
    assert len(a) == 72 and a == b
    assert a[0]["time"] == to_ms(span["start"]) and a[-1]["time"] == to_ms(span["end"]) - 3600_000
    assert_bars_are_consistent(a)
    daily = await first.history("simulated", "BTC-USD", "1d", count=30)
    assert len(daily) == 30 and daily[-1]["time"] == floor_bar(now_ms(), "1d")
    assert_bars_are_consistent(daily)


def test_seed_and_symbol_choose_the_path(sim):
    start, end = to_ms("2024-01-02"), to_ms("2024-01-03")
    a = sim(seed=1).get_history("AAPL", "1h", start, end, None)
    assert a == sim(seed=1).get_history("AAPL", "1h", start, end, None)
    assert a != sim(seed=2).get_history("AAPL", "1h", start, end, None)
    assert [r["close"] for r in a] != [r["close"] for r in
                                       sim(seed=1).get_history("MSFT", "1h", start, end, None)]
    month = sim(seed=1).get_history("EURUSD", "1M", to_ms("2023-01-01"), to_ms("2024-01-01"),
                                    None)
    assert len(month) == 12 and month[1]["time"] == to_ms("2023-02-01")
    assert_bars_are_consistent(month)
    assert 0.5 < month[0]["close"] < 2.0  # FX rates stay near their base


@pytest.mark.asyncio
async def test_live_bars_continue_history_and_a_completed_bar_equals_history(start_hub, sim):
    hub = await start_hub(simulated(seed=11, rate=20))
    sub = await hub.subscribe("simulated", ["AAPL"], "1s")
    got = await receive(sub, lambda r: len({row["time"] for row in r.rows}) >= 3,
                        "live rows spanning three 1 s bars", timeout=20)
    by_bar: dict[int, list[dict]] = {}
    for row in got.rows:
        by_bar.setdefault(row["time"], []).append(row)
    times = sorted(by_bar)
    completed, following = times[-2], times[-1]
    final = by_bar[completed][-1]
    reference = sim(seed=11)
    (expected,) = reference.get_history("AAPL", "1s", completed, completed + 1000, None)
    assert final == expected  # the last live version of a bar is the history bar
    assert by_bar[following][0]["open"] == final["close"]
    for row in by_bar[completed]:  # the open bar never runs outside the final bar's range
        assert expected["low"] <= row["low"] and row["high"] <= expected["high"]
        assert row["open"] == expected["open"]
    (cached,) = await hub.history("simulated", "AAPL", "1s", start=completed,
                                  end=completed + 1000)
    assert cached == expected


@pytest.mark.asyncio
async def test_quotes_carry_every_quote_field(start_hub):
    hub = await start_hub(simulated(rate=20))
    sub = await hub.subscribe("simulated", ["AAPL", "EURUSD"], "tick")
    got = await receive(sub, lambda r: {"AAPL", "EURUSD"} <= {row["symbol"] for row in r.rows},
                        "quotes of both symbols")
    for row in got.rows:
        assert set(row) == QUOTE_FIELDS
        assert row["bid"] < row["price"] < row["ask"]
        assert row["change"] == pytest.approx(row["price"] - row["prev_close"], abs=1e-3)
        assert row["change_percent"] == pytest.approx(
            100 * row["change"] / row["prev_close"], abs=1e-3)
        assert abs(row["time"] - now_ms()) < 60_000
    snapshot = {row["symbol"] for row in sub.snapshot()}
    assert snapshot == {"AAPL", "EURUSD"}


@pytest.mark.asyncio
async def test_the_rate_option_is_respected_roughly(start_hub):
    rates = (10, 1000)
    hubs = await asyncio.gather(*(start_hub(simulated(rate=rate)) for rate in rates))

    async def measured(hub) -> float:
        sub = await hub.subscribe("simulated", ["MSFT"], "tick")
        first = await receive(sub, lambda r: r.rows, "the first quote")
        t0 = first.rows[0]["time"]
        window = 1500
        got = await receive(sub, lambda r: r.rows and r.rows[-1]["time"] >= t0 + window,
                            f"{window} ms of quotes", into=Received())
        return sum(1 for row in got.rows if row["time"] <= t0 + window) * 1000 / window

    for rate, seen in zip(rates, await asyncio.gather(*(measured(h) for h in hubs))):
        assert 0.5 * rate <= seen <= 1.5 * rate, (rate, seen)


def test_unknown_symbols_intervals_and_options_are_refused_by_name(sim):
    provider = sim()
    with pytest.raises(UnknownSymbol, match="'NOPE'"):
        provider.get_history("NOPE", "1d", None, None, 5)
    with pytest.raises(BadInterval, match="'tick'"):
        provider.get_history("AAPL", "tick", None, None, 5)
    with pytest.raises(BadInterval, match="'7m'"):
        provider.subscribe("AAPL", "7m")
    for rate in ("fast", 0, -1, 10**7):
        with pytest.raises(BadRequest, match="rate"):
            sim(rate=rate)


def test_dataset_is_valid_and_can_grow_for_benchmarks(sim):
    entries = validate_entries("simulated", sim(universe_size=5, symbols=["ZZZ"]).get_dataset())
    names = {e["name"] for e in entries}
    assert {"AAPL", "BTC-USD", "EURUSD", "ZZZ", "SIM00000", "SIM00004"} <= names
    assert all("tick" in e["intervals"] and "1m" in e["intervals"] for e in entries)


def test_every_symbol_has_its_own_volume_spread_and_volatility(sim):
    """The simulator looks like a market: no two symbols share a running volume, and each
    asset class trades at its own scale (stocks in cents, FX in pips, crypto most volatile)."""
    provider = sim(seed=7)
    t = np.asarray([to_ms("2026-03-04T15:30:00Z")])
    quotes = {sym: provider.quotes(sym, t)[0] for sym in provider.universe}
    volumes = [q["volume"] for q in quotes.values()]
    assert len(set(volumes)) == len(volumes), "two symbols share the same running volume"
    # Independent series, not one curve scaled: the volume ratio of two stocks moves over a day.
    later = np.asarray([to_ms("2026-03-04T20:00:00Z")])
    ratio_then = quotes["GOOGL"]["volume"] / quotes["NVDA"]["volume"]
    ratio_later = (provider.quotes("GOOGL", later)[0]["volume"]
                   / provider.quotes("NVDA", later)[0]["volume"])
    assert abs(ratio_then / ratio_later - 1) > 0.01
    for sym, q in quotes.items():
        assert q["bid"] < q["price"] < q["ask"], q
        decimals = 3 if sym == "USDJPY" else 5 if sym in ("EURUSD", "GBPUSD", "EURGBP") else 2
        for field in ("price", "bid", "ask"):
            assert round(q[field], decimals) == q[field], (sym, field, q[field])
    eur = quotes["EURUSD"]
    assert 0.00002 <= eur["ask"] - eur["bid"] <= 0.0005  # a fraction of a pip to a few pips

    def daily_vol(sym: str) -> float:
        closes = np.asarray([b["close"] for b in provider.get_history(
            sym, "1d", to_ms("2024-01-01"), to_ms("2025-01-01"), None)])
        return float(np.diff(np.log(closes)).std())

    fx, stock, crypto = daily_vol("EURUSD"), daily_vol("AAPL"), daily_vol("BTC-USD")
    assert fx < stock < crypto, (fx, stock, crypto)
    assert 0.001 < fx < 0.01 and 0.005 < stock < 0.05 and 0.02 < crypto < 0.1


def test_volume_adds_up_across_intervals_and_quotes(sim):
    provider = sim(seed=3)
    day = to_ms("2026-03-04T00:00:00Z")
    at = day + 13 * 3_600_000 + 17 * 60_000  # 13:17 UTC
    minutes = provider.get_history("MSFT", "1m", day, at, None)
    (quote,) = provider.quotes("MSFT", np.asarray([at]))
    assert sum(b["volume"] for b in minutes) == quote["volume"]
    hours = provider.get_history("MSFT", "1h", day, day + 86_400_000, None)
    (daily,) = provider.get_history("MSFT", "1d", day, day + 86_400_000, None)
    assert sum(b["volume"] for b in hours) == daily["volume"] > 0
    busy = [b["volume"] for b in hours]
    assert max(busy) > 1.5 * min(busy)  # an intraday profile, not a flat line
    seconds = provider.get_history("MSFT", "1s", at - 60_000, at, None)
    assert sum(b["volume"] for b in seconds) == minutes[-1]["volume"]
    assert len({b["volume"] for b in seconds}) > 30  # bursty seconds, not one even rate


def test_the_seed_decides_the_volume_series(sim):
    t = np.asarray([to_ms("2026-03-04T15:30:00Z")])
    a, b, c = sim(seed=1), sim(seed=1), sim(seed=2)
    assert a.quotes("AAPL", t) == b.quotes("AAPL", t)
    assert a.quotes("AAPL", t)[0]["volume"] != c.quotes("AAPL", t)[0]["volume"]
