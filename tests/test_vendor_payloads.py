"""The vendors as they really are: UTF-8 symbols, fields a vendor does not send, fields users rely
on, next_url links to the vendor's own host, plans without per-second aggregates, 3d bars.

Each fact is shaped into the fakes (tests/fakes, see their docstrings for what is recorded and
what is a guess) and checked here against the real provider code, in this process and behind a
hub in its own process.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from nbfeed.errors import BadInterval, UnknownSymbol
from nbfeed.jsonfast import dumpb
from nbfeed.providers.binance import BinanceProvider, BinanceREST, CombinedStreams, kline_row
from nbfeed.providers.polygon import PolygonProvider, PolygonREST
from nbfeed.providers.registry import ProviderSpec
from tests.fakes import FakeBinance, FakePolygon
from tests.providers_for_tests import receive

JAN_2024 = 1704067200000
MINUTE, DAY = 60_000, 86_400_000
UTF8 = "这是测试币456"  # listed by Binance's spot testnet since 2025-12-18
BINANCE = "nbfeed.providers.binance:BinanceProvider"


@pytest.fixture
def fb():
    with FakeBinance() as fake:
        yield fake


def binance_in_process(fb: FakeBinance) -> BinanceProvider:
    p = BinanceProvider(rest_url=fb.rest_url, ws_url=fb.ws_url)
    p.init()
    return p


# ---- Binance ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_binance_serves_the_utf8_symbol_it_lists_in_history_and_live(start_hub, fb):
    hub = await start_hub(ProviderSpec("binance", BINANCE, {"rest_url": fb.rest_url,
                                                            "ws_url": fb.ws_url}))
    listed = {e["name"]: e for e in await hub.search(UTF8, source="binance")}
    assert UTF8 in listed and listed[UTF8]["name_label"] == "这是测试币 / 456"

    bars = await hub.history("binance", UTF8, "1h", start=JAN_2024, end=JAN_2024 + 5 * 3_600_000)
    assert [b["time"] for b in bars] == [JAN_2024 + i * 3_600_000 for i in range(5)]
    assert {b["symbol"] for b in bars} == {UTF8}
    asked = fb.requests_to("/api/v3/klines")[-1]
    assert asked.query["symbol"] == UTF8  # percent-encoded on the wire, decoded by the server

    candles = await hub.subscribe("binance", [UTF8], "1m")
    quotes = await hub.subscribe("binance", [UTF8], "tick")
    got = await receive(candles, lambda r: r.rows, "live 1m bars of the UTF-8 symbol")
    assert got.rows[-1]["symbol"] == UTF8 and got.rows[-1]["time"] % MINUTE == 0
    ticks = await receive(quotes, lambda r: any("bid" in x and "price" in x for x in r.rows),
                          "quotes of the UTF-8 symbol")
    assert ticks.rows[-1]["symbol"] == UTF8
    streams = set().union(*fb.subscriptions())
    assert {f"{UTF8}@kline_1m", f"{UTF8}@ticker", f"{UTF8}@bookTicker"} <= streams
    await candles.close()
    await quotes.close()


@pytest.mark.parametrize("hostile", [
    "BTC/USDT", "btc@usdt", "BTC USDT", "BTC%2FUSDT", "BTC?x=1", "BTC#1", "../BTCUSDT",
    "BTC\nUSDT", "BTC\x00", "\ud800BTC", "B" * 51, "", "BTC&symbol=ETHBTC", "BTC\u200bUSDT",
])
def test_binance_refuses_symbols_that_could_break_a_url_or_a_stream_name(fb, hostile):
    p = binance_in_process(fb)
    try:
        with pytest.raises(UnknownSymbol, match="letters and digits") as caught:
            p.get_history(hostile, "1m", None, None, 5)
        with pytest.raises(UnknownSymbol, match="letters and digits"):
            p.subscribe(hostile, "1m")
        dumpb({"message": str(caught.value)})  # the message itself is safe to send as JSON
        assert fb.requests_to("/api/v3/klines") == []  # nothing reached Binance
        assert fb.sockets == []
    finally:
        p.stopping.set()


def test_binance_names_a_symbol_it_does_not_list_and_suggests_the_upper_case_one(fb):
    p = binance_in_process(fb)
    try:
        with pytest.raises(UnknownSymbol, match=r"no spot symbol 'btcusdt' trading now; did you "
                                                r"mean 'BTCUSDT'\?"):
            p.get_history("btcusdt", "1m", None, None, 5)
        with pytest.raises(UnknownSymbol, match="no spot symbol 'NOPEUSDT'"):
            p.subscribe("NOPEUSDT", "1m")
    finally:
        p.stopping.set()


def test_binance_rows_keep_closed_quote_volume_trades_and_the_tickers_vwap(fb):
    rest = BinanceREST(fb.rest_url)
    now = int(time.time() * 1000)
    bars = rest.klines("BTCUSDT", "1m", count=3)
    raw = fb.klines("BTCUSDT", "1m", None, now, 3, now)
    assert [b["time"] for b in bars] == [k[0] for k in raw]
    closed = slice(0, 2)  # the open bar moves on between the two reads
    assert [b["quote_volume"] for b in bars][closed] == [float(k[7]) for k in raw][closed]
    assert [b["trades"] for b in bars][closed] == [k[8] for k in raw][closed]
    assert [b["closed"] for b in bars] == [True, True, False]  # the newest bar is still open

    got: list[tuple[str, dict]] = []
    pool = CombinedStreams(fb.ws_url, lambda stream, data: got.append((stream, data)))
    try:
        pool.add(["ethusdt@kline_1s"])
        fb.wait_for(lambda: any(d["k"]["x"] for _, d in got if "k" in d), timeout=15,
                    what="a closed 1s kline")
    finally:
        pool.close()
    rows = [kline_row(d)[2] for _, d in got]
    final = next(r for r in rows if r["closed"])
    assert any(not r["closed"] for r in rows)  # updates of the open bar say so
    same_bar = next(d["k"] for _, d in got if d["k"]["t"] == final["time"] and d["k"]["x"])
    assert (final["quote_volume"], final["trades"]) == (float(same_bar["q"]), same_bar["n"])

    p = binance_in_process(fb)
    try:
        p.subscribe("SOLUSDT", "tick")
        fb.wait_for(lambda: any("vwap" in r and "bid" in r for r in p.published),
                    what="a quote with its vwap")
        quote = next(r for r in reversed(p.published) if "vwap" in r)
        ticker = fb.last_event["solusdt@ticker"]
        assert quote["vwap"] > 0 and isinstance(quote["vwap"], float)
        assert float(ticker["w"]) > 0
    finally:
        p.stopping.set()


def test_binance_3d_klines_open_on_epoch_multiples_of_three_days(fb):
    p = binance_in_process(fb)
    try:
        bars = p.get_history("ETHUSDT", "3d", JAN_2024, JAN_2024 + 30 * DAY, None)
    finally:
        p.stopping.set()
    assert [b["time"] % (3 * DAY) for b in bars] == [0] * 10
    assert bars[0]["time"] == 1704240000000  # 2024-01-03: the first 3d bar starting in January
    assert fb.requests_to("/api/v3/klines")[0].query["interval"] == "3d"


# ---- Polygon ------------------------------------------------------------------------------------


def test_polygon_index_aggregates_have_no_volume_and_stocks_keep_vwap_and_trades():
    with FakePolygon() as fp:
        rest = PolygonREST("test-key", fp.rest_url)
        spx = rest.aggs("I:SPX", "1m", JAN_2024, JAN_2024 + 5 * MINUTE, None)
        assert len(spx) == 5
        assert all(math.isnan(b["volume"]) for b in spx)  # missing, not 0.0
        assert all("vwap" not in b and "trades" not in b for b in spx)
        assert b'"volume":null' in dumpb(spx[0])  # null on the wire

        aapl = rest.aggs("AAPL", "1m", JAN_2024, JAN_2024 + 3 * MINUTE, None)
        now = int(time.time() * 1000)
        raw = [fp.agg("AAPL", t, t + MINUTE, True, now) for t in range(JAN_2024, JAN_2024 +
                                                                       3 * MINUTE, MINUTE)]
        assert [b["vwap"] for b in aapl] == [a["vw"] for a in raw]
        assert [b["trades"] for b in aapl] == [a["n"] for a in raw]

        p = PolygonProvider(api_key="test-key", rest_url=fp.rest_url, ws_url=fp.ws_url,
                            seed_bars=False, market_status=False)
        p.init()
        try:
            p.subscribe("I:SPX", "1m")
            fp.wait_for(lambda: any(r.get("symbol") == "I:SPX" for r in p.published),
                        what="live index bars")
            live = [r for r in p.published if r["symbol"] == "I:SPX"][-1]
            assert math.isnan(live["volume"]) and "vwap" not in live
        finally:
            p.stopping.set()


def test_polygon_3d_bars_merge_daily_aggregates_on_the_three_day_grid():
    with FakePolygon() as fp:
        rest = PolygonREST("test-key", fp.rest_url)
        bars = rest.aggs("X:BTCUSD", "3d", 1704240000000, 1704240000000 + 9 * DAY, None)
        days = rest.aggs("X:BTCUSD", "1d", 1704240000000, 1704240000000 + 9 * DAY, None)
    assert [b["time"] for b in bars] == [1704240000000 + i * 3 * DAY for i in range(3)]
    for bar, group in zip(bars, (days[0:3], days[3:6], days[6:9]), strict=True):
        assert bar["open"] == group[0]["open"] and bar["close"] == group[-1]["close"]
        assert bar["high"] == max(d["high"] for d in group)
        assert bar["volume"] == pytest.approx(sum(d["volume"] for d in group))
        assert bar["trades"] == sum(d["trades"] for d in group)
        assert bar["vwap"] == pytest.approx(sum(d["vwap"] * d["volume"] for d in group)
                                            / bar["volume"])


def test_polygon_next_url_to_its_own_host_is_followed_on_the_configured_gateway():
    secret = "sk-gateway-4711"
    with FakePolygon(api_keys={secret: {"stocks"}}, page_cap=40,
                     path_prefix="/gateway/polygon") as fp:
        rest = PolygonREST(secret, fp.rest_url)  # http://127.0.0.1:PORT/gateway/polygon
        bars = rest.aggs("MSFT", "1m", JAN_2024, JAN_2024 + 100 * MINUTE, None)
        assert [b["time"] for b in bars] == list(range(JAN_2024, JAN_2024 + 100 * MINUTE,
                                                       MINUTE))
        asked = fp.requests_to("/gateway/polygon/v2/aggs/ticker/MSFT/")
        assert len(asked) == 3 and all(r.status == 200 for r in asked)
        assert "cursor" in asked[1].query  # the vendor's next_url, followed on the gateway
        assert all(r.headers["Authorization"] == f"Bearer {secret}" for r in fp.requests)
        assert all(r.path.startswith("/gateway/polygon/") for r in fp.requests)
    # A link to any host that is not the configured one keeps only its path and query.
    assert rest.on_configured_host("https://api.polygon.io/v2/aggs/x?cursor=abc") == \
        "/v2/aggs/x?cursor=abc"
    assert rest.on_configured_host("https://evil.example:8443/v3/reference/tickers?a=1") == \
        "/v3/reference/tickers?a=1"
    own = f"{fp.http_url}/gateway/polygon/v2/aggs/x?cursor=abc"
    assert rest.on_configured_host(own) == own


@pytest.mark.parametrize("refusal", ["not authorized", "not authorized to access {channel}"])
def test_polygon_plan_without_per_second_aggregates_falls_back_to_minute_ones(refusal):
    with FakePolygon(second_aggregates=set(), refusal_message=refusal) as fp:
        p = PolygonProvider(api_key="test-key", rest_url=fp.rest_url, ws_url=fp.ws_url,
                            seed_bars=False, market_status=False)
        p.init()
        try:
            p.subscribe("AAPL", "5m")
            p.subscribe("X:BTCUSD", "1m")
            p.subscribe("AAPL", "tick")
            fp.wait_for(lambda: sorted(map(sorted, fp.subscriptions())) == [
                ["AM.AAPL", "Q.AAPL", "T.AAPL"], ["XA.BTC-USD"]], what="minute channels")
            refused = [json.loads(m) for s in fp.sockets for m in s.received
                       if '"subscribe"' in m]
            assert any("A.AAPL" in m["params"].split(",") for m in refused)  # tried first
            assert p.minute_clusters == {"stocks", "crypto"}
            with pytest.raises(BadInterval, match="1s bars need per-second aggregates"):
                p.subscribe("MSFT", "1s")

            # Minute aggregates (their recorded shape) build the bars of every interval >= 1m.
            sample = fp.messages["events"]["AM"]
            start = JAN_2024 + 10 * MINUTE
            p._on_events("stocks", [dict(sample, s=start + i * MINUTE, e=start + (i + 1) * MINUTE,
                                         v=100.0 * (i + 1), o=10.0 + i, c=10.5 + i,
                                         h=11.0 + i, l=9.5 + i) for i in range(3)])
            five = [r for r in p.published if r["symbol"] == "AAPL" and "open" in r][-1]
            assert five["time"] == start and five["volume"] == 600.0
            assert (five["open"], five["close"], five["high"]) == (10.0, 12.5, 13.0)
            assert p._status == ("running", "")  # a coarser feed, not a failure
        finally:
            p.stopping.set()
