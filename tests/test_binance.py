"""The Binance provider against a local fake Binance: the same code that talks to the real API.

First the client pieces in this process (paging, stitching, rate limits, combined streams), then
the real provider class in its own process behind a hub, as users run it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from nbfeed.errors import BadRequest, LimitExceeded, UnknownSymbol, UpstreamError
from nbfeed.providers.binance import BinanceProvider, BinanceREST, CombinedStreams
from nbfeed.providers.registry import ProviderSpec
from tests.fakes import FakeBinance
from tests.providers_for_tests import Received, receive

JAN_2024 = 1704067200000  # 2024-01-01T00:00:00Z
MINUTE = 60_000
BINANCE = "nbfeed.providers.binance:BinanceProvider"


@pytest.fixture
def fb():
    with FakeBinance() as fake:
        yield fake


def fake_closes(fake: FakeBinance, symbol: str, interval: str, times: list[int]) -> list[float]:
    now = int(time.time() * 1000)
    return [float(fake.kline_row(symbol, interval, t, now)[4]) for t in times]


class Collector:
    """Events from a CombinedStreams, with a way to wait for the ones we want."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, dict]] = []
        self.cond = threading.Condition()

    def __call__(self, stream: str, data: dict) -> None:
        with self.cond:
            self.events.append((time.time(), stream, data))
            self.cond.notify_all()

    def wait_streams(self, streams: set[str], after: float = 0.0, timeout: float = 15.0) -> None:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: streams <= {s for t, s, _ in self.events if t > after}, timeout)
        missing = streams - {s for t, s, _ in self.events if t > after}
        assert ok, f"no events after {after:.2f} from {sorted(missing)}"


# ---- REST: catalog and history -------------------------------------------------------------------


def test_symbols_are_spot_symbols_that_trade_now(fb):
    rest = BinanceREST(fb.rest_url)
    names = [s["symbol"] for s in rest.spot_symbols()]
    # no BREAK, no non-spot; the UTF-8 symbol of Binance's testnet is listed like any other
    assert names == ["BNBBTC", "BTCUSDT", "ETHBTC", "ETHUSDT", "SOLUSDT", "这是测试币456"]
    assert [s["symbol"] for s in rest.spot_symbols(["btc"])] == ["BNBBTC", "ETHBTC"]
    assert fb.requests_to("/api/v3/exchangeInfo")[0].query["permissions"] == "SPOT"


def test_history_is_stitched_from_1000_bar_pages_without_duplicates_or_gaps(fb):
    rest = BinanceREST(fb.rest_url)
    end = JAN_2024 + 2500 * MINUTE
    bars = rest.klines("BTCUSDT", "1m", start=JAN_2024, end=end)
    times = [b["time"] for b in bars]
    assert times == list(range(JAN_2024, end, MINUTE))
    assert [b["close"] for b in bars] == fake_closes(fb, "BTCUSDT", "1m", times)
    pages = fb.requests_to("/api/v3/klines")
    assert [p.query["limit"] for p in pages] == ["1000"] * 3
    assert [int(p.query["startTime"]) for p in pages] == [
        JAN_2024, JAN_2024 + 999 * MINUTE + 1, JAN_2024 + 1999 * MINUTE + 1]

    # newest `count` bars before `end`, paged backwards
    hours = rest.klines("ETHUSDT", "1h", end=JAN_2024, count=2100)
    assert [b["time"] for b in hours] == [JAN_2024 - (2100 - i) * 3_600_000 for i in range(2100)]
    # count together with start: never before start
    few = rest.klines("ETHUSDT", "1d", start=JAN_2024 - 3 * 86_400_000, end=JAN_2024, count=10)
    assert [b["time"] for b in few] == [JAN_2024 - (3 - i) * 86_400_000 for i in range(3)]
    # nothing before a symbol's listing (SOL listed 2020-08-11)
    sol = rest.klines("SOLUSDT", "1w", start=0, end=1598918400000)
    assert sol[0]["time"] == 1597017600000  # Monday 2020-08-10, the week SOL was listed
    assert set(sol[0]) == {"time", "symbol", "open", "high", "low", "close", "volume",
                           "quote_volume", "trades", "closed"}


def test_history_refuses_unknown_symbols_and_oversized_spans(fb):
    rest = BinanceREST(fb.rest_url, max_history_bars=1500)
    with pytest.raises(UnknownSymbol, match="NOPEUSDT"):
        rest.klines("NOPEUSDT", "1m", count=5)
    with pytest.raises(LimitExceeded, match="1500"):
        rest.klines("BTCUSDT", "1m", start=JAN_2024, end=JAN_2024 + 5000 * MINUTE)
    with pytest.raises(LimitExceeded, match="count 2000"):
        rest.klines("BTCUSDT", "1m", count=2000)


def test_bad_options_are_refused_by_name_when_the_provider_starts(fb):
    for bad, words in (({"max_history_bars": 0}, "binance option max_history_bars: expected a "
                                                 "positive whole number, got 0"),
                       ({"max_wait": "soon"}, "binance option max_wait: expected a positive "
                                              "number, got 'soon'"),
                       ({"rest_url": 42}, "option 'rest_url' must be a URL string, got 42")):
        with pytest.raises(BadRequest, match=words):
            BinanceProvider(ws_url=fb.ws_url, **bad).init()


def test_no_request_goes_out_before_retry_after_has_passed(fb):
    rest = BinanceREST(fb.rest_url)
    fb.set_rate_limit(retry_after=1.2, count=1, status=429)
    bars = rest.klines("BTCUSDT", "1h", start=JAN_2024, end=JAN_2024 + 5 * 3_600_000)
    assert len(bars) == 5
    limited, retried = fb.requests_to("/api/v3/klines")
    assert limited.status == 429 and retried.status == 200
    assert retried.time - limited.time >= 1.2


def test_a_long_ban_fails_fast_naming_the_wait_and_holds_every_request(fb):
    rest = BinanceREST(fb.rest_url, max_wait=5)
    fb.set_rate_limit(retry_after=120, count=1, status=418)
    with pytest.raises(UpstreamError, match=r"418.*allowed again in 1[12]\d s"):
        rest.klines("BTCUSDT", "1h", count=3)
    before = len(fb.requests)
    with pytest.raises(UpstreamError, match="rate limited"):
        rest.spot_symbols()
    assert len(fb.requests) == before  # the ban holds back other calls too, without asking


def test_used_weight_headers_keep_requests_under_the_limit():
    # 40 weight per 2 s window: exchangeInfo (20) + 11 kline pages (2 each) cannot fit in one.
    with FakeBinance(weight_limit=40, weight_window=(2, "S")) as fake:
        rest = BinanceREST(fake.rest_url)
        rest.spot_symbols()
        assert rest.budget.limits == {"2s": 40}
        bars = rest.klines("BTCUSDT", "1m", end=JAN_2024, count=10_500)
        assert len(bars) == 10_500
        assert fake.weight_rejections == 0  # waited for the window instead of hitting 429
        windows = {int(r.time // 2) for r in fake.requests}
        assert len(windows) >= 2


def test_malformed_json_is_retried_then_reported(fb):
    rest = BinanceREST(fb.rest_url)
    rest.http.backoff = 0.05  # keep the retries quick
    fb.fail_next("malformed", count=1)
    assert len(rest.klines("BTCUSDT", "1d", count=2)) == 2
    fb.fail_next("malformed", count=10)
    with pytest.raises(UpstreamError, match="malformed JSON"):
        rest.klines("BTCUSDT", "1d", count=2)


# ---- combined streams ----------------------------------------------------------------------------


def test_streams_share_combined_connections_and_resume_after_a_drop(fb):
    got = Collector()
    streams = {f"{s}@{k}" for s in ("btcusdt", "ethusdt", "solusdt")
               for k in ("kline_1m", "ticker", "bookTicker")}
    pool = CombinedStreams(fb.ws_url, got, max_streams_per_connection=4)
    try:
        pool.add(sorted(streams))
        got.wait_streams(streams)
        assert len(fb.open_sockets()) == math.ceil(len(streams) / 4)  # not one per stream
        assert set().union(*fb.subscriptions()) == streams
        assert all(s.path == "/stream" for s in fb.sockets)

        dropped = time.time()
        assert fb.drop_sockets() == 3
        got.wait_streams(streams, after=dropped + 0.3)
        assert set().union(*fb.subscriptions()) == streams  # resubscribed by itself

        pool.remove([s for s in streams if s.startswith("ethusdt")])
        fb.wait_for(lambda: set().union(*fb.subscriptions()) ==
                    {s for s in streams if not s.startswith("ethusdt")}, what="unsubscribe")
    finally:
        pool.close()


def test_server_close_and_shutdown_notice_lead_to_a_fresh_connection(fb):
    got = Collector()
    pool = CombinedStreams(fb.ws_url, got)
    try:
        pool.add(["btcusdt@bookTicker"])
        got.wait_streams({"btcusdt@bookTicker"})
        fb.close_sockets(1001, "24 hour limit")
        fb.wait_for(lambda: len(fb.open_sockets()) == 1 and len(fb.sockets) == 2,
                    what="a reconnect after the server closed")
        fb.announce_shutdown()
        fb.wait_for(lambda: len(fb.sockets) == 3 and len(fb.open_sockets()) == 1,
                    what="a reconnect after serverShutdown")
        pool.reconnect(["btcusdt@bookTicker"])  # what no_update does for a silent stream
        fb.wait_for(lambda: len(fb.sockets) == 4 and len(fb.open_sockets()) == 1,
                    what="a reconnect on request")
        after = time.time()
        got.wait_streams({"btcusdt@bookTicker"}, after=after)
        fb.send_raw("{this is not json")
        got.wait_streams({"btcusdt@bookTicker"}, after=time.time())
        assert pool.malformed == 1
    finally:
        pool.close()


def test_subscribe_messages_are_paced_under_binance_message_limit(fb):
    got = Collector()
    pool = CombinedStreams(fb.ws_url, got, params_per_message=2)
    symbols = [s for s in fb.symbols if s not in ("LUNAUSDT", "BTCUPUSDT", "这是测试币456")]
    wanted = {f"{s.lower()}@kline_{i}" for s in symbols for i in ("1m", "5m", "1h")}
    try:
        pool.add(["btcusdt@bookTicker"])
        fb.wait_for(lambda: fb.open_sockets(), what="the first connection")
        pool.add(sorted(wanted))  # 15 streams -> 8 SUBSCRIBE messages, more than 5 a second
        fb.wait_for(lambda: set().union(*fb.subscriptions()) >= wanted, timeout=20,
                    what="all 15 streams subscribed")
        assert len(fb.sockets) == 1, [s.close_reason for s in fb.sockets]  # never cut off
        assert len(fb.sockets[0].received) == 8
    finally:
        pool.close()


# ---- the provider in its own process, behind a hub -----------------------------------------------


def info(hub) -> dict:
    return next(p for p in hub.providers_info() if p["name"] == "binance")


async def drain(sub) -> None:
    """Discard what a subscription has queued (the outbox hands over everything at once)."""
    try:
        await asyncio.wait_for(sub.get(), 0.2)
    except asyncio.TimeoutError:
        pass


@pytest.mark.asyncio
async def test_provider_process_fills_catalog_serves_history_and_streams_live(start_hub, fb):
    hub = await start_hub(ProviderSpec("binance", BINANCE, {"rest_url": fb.rest_url,
                                                            "ws_url": fb.ws_url}))
    assert info(hub)["status"] == "running"
    listed = {e["name"] for e in await hub.search("", source="binance", limit=50)}
    assert listed == {"BNBBTC", "BTCUSDT", "ETHBTC", "ETHUSDT", "SOLUSDT", "这是测试币456"}

    end = JAN_2024 + 2500 * MINUTE
    bars = await hub.history("binance", "BTCUSDT", "1m", start=JAN_2024, end=end)
    times = [b["time"] for b in bars]
    assert times == list(range(JAN_2024, end, MINUTE))
    assert [b["close"] for b in bars] == fake_closes(fb, "BTCUSDT", "1m", times)
    assert len(fb.requests_to("/api/v3/klines")) == 3

    symbols = {"BTCUSDT", "ETHUSDT"}
    candles = await hub.subscribe("binance", sorted(symbols), "1m")
    quotes = await hub.subscribe("binance", sorted(symbols), "tick")
    got = await receive(candles, lambda r: {x["symbol"] for x in r.rows} == symbols,
                        "live 1m bars of both symbols")
    bar = got.rows[-1]
    assert bar["time"] % MINUTE == 0 and bar["low"] <= bar["close"] <= bar["high"]
    assert bar["volume"] > 0
    ticks = await receive(quotes, lambda r: {x["symbol"] for x in r.rows if "price" in x
                                             and "bid" in x} == symbols, "quotes")
    quote = [x for x in ticks.rows if "price" in x and "bid" in x][-1]
    assert quote["bid"] < quote["ask"]
    assert quote["change"] == pytest.approx(quote["price"] - quote["prev_close"], rel=1e-6)
    assert {"change_percent", "volume"} <= set(quote)
    assert len(fb.open_sockets()) == 1  # 6 streams, 2 subscriptions, one connection
    assert fb.subscriptions() == [{"btcusdt@kline_1m", "ethusdt@kline_1m", "btcusdt@ticker",
                                   "ethusdt@ticker", "btcusdt@bookTicker",
                                   "ethusdt@bookTicker"}]

    dropped_ms = int(time.time() * 1000)
    fb.drop_sockets()
    await asyncio.to_thread(fb.wait_for, lambda: len(fb.sockets) == 2 and fb.open_sockets(),
                            15, "the provider to reconnect")
    await drain(candles)  # bars queued before the drop do not count
    await receive(candles, lambda r: {x["symbol"] for x in r.rows} == symbols,
                  "1m bars after the drop", into=Received())
    await receive(quotes, lambda r: {x["symbol"] for x in r.rows if x["time"] > dropped_ms}
                  == symbols, "quotes newer than the drop", into=Received())
    assert len(fb.subscriptions()[0]) == 6  # resubscribed, nobody asked

    await candles.close()
    await asyncio.to_thread(fb.wait_for, lambda: fb.subscriptions() == [
        {"btcusdt@ticker", "ethusdt@ticker", "btcusdt@bookTicker", "ethusdt@bookTicker"}],
        15, "kline streams to be unsubscribed")
    await quotes.close()


@pytest.mark.asyncio
async def test_provider_process_reads_urls_from_the_environment_and_honours_retry_after(
        start_hub, fb, monkeypatch):
    monkeypatch.setenv("NBFEED_BINANCE_REST_URL", fb.rest_url)
    monkeypatch.setenv("NBFEED_BINANCE_WS_URL", fb.ws_url)
    hub = await start_hub(ProviderSpec("binance", BINANCE, {}))
    assert info(hub)["datasets"] == 6  # the catalog came from the fake

    fb.set_rate_limit(retry_after=1.5, count=1)
    asked = time.time()
    bars = await hub.history("binance", "ETHUSDT", "1h", start=JAN_2024,
                             end=JAN_2024 + 24 * 3_600_000)
    assert len(bars) == 24
    limited, retried = [r for r in fb.requests_to("/api/v3/klines") if r.time >= asked][:2]
    assert limited.status == 429 and retried.status == 200
    assert retried.time - limited.time >= 1.5

    with pytest.raises(Exception, match="NOPE"):
        await hub.history("binance", "NOPEUSDT", "1h", count=5)
