"""The Polygon provider against a local fake Polygon: the same code that talks to the real API.

Bars built from second aggregates, REST paging, channel reference counting, then the real
provider class in its own process behind a hub: catalog, history, live data, reconnects and an
auth failure that shows as the provider's status while everything else keeps running.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from nbfeed.errors import BadRequest, UnknownSymbol, UpstreamError
from nbfeed.providers._http import RestClient
from nbfeed.providers.polygon import (
    BarBuilder,
    PolygonAuthError,
    PolygonProvider,
    PolygonREST,
    bar_time,
    ws_name,
)
from nbfeed.providers.registry import ProviderSpec
from tests.fakes import FakePolygon
from tests.providers_for_tests import Received, receive, wait_until

JAN_2024 = 1704067200000  # Monday 2024-01-01T00:00:00Z
MINUTE = 60_000
POLYGON = "nbfeed.providers.polygon:PolygonProvider"
KEYS = {"k": {"stocks", "crypto"}}


@pytest.fixture
def fp():
    with FakePolygon(api_keys=dict(KEYS), page_cap=200) as fake:
        yield fake


@pytest.fixture
def provider(fp):
    """A PolygonProvider in this process (rows land in ``.published``), stopped afterwards."""
    made = []

    def make(**options) -> PolygonProvider:
        options = {"api_key": "k", "rest_url": fp.rest_url, "ws_url": fp.ws_url, **options}
        p = PolygonProvider(**options)
        p.init()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stopping.set()


# ---- bars from second aggregates -----------------------------------------------------------------


def test_bars_count_each_seconds_volume_once_and_keep_intervals_apart():
    one, five = BarBuilder("AAPL", "1m"), BarBuilder("AAPL", "5m")
    t0 = JAN_2024 + 5 * MINUTE + 57_000  # 00:05:57
    seconds = [  # (start, o, h, l, c, v); 00:06:00 opens a new 1m bar inside the same 5m bar
        (t0, 10.0, 10.5, 9.9, 10.2, 100.0),
        (t0 + 1000, 10.2, 10.6, 10.1, 10.4, 50.0),
        (t0 + 3000, 10.4, 10.8, 10.3, 10.7, 30.0),
        (t0 + 2000, 10.4, 10.5, 10.2, 10.3, 20.0),  # 00:05:59, late: after 00:06:00
        (t0 + 3000, 10.4, 10.9, 10.3, 10.75, 35.0),  # 00:06:00 again, corrected
    ]
    rows = {}
    for s, *values in seconds:
        for builder in (one, five):
            row = builder.add(s, *values)
            if row is not None:
                rows[(builder.interval, row["time"])] = row
    # the 1m bar 00:05 was finished when its late second came; the 5m bar still takes it
    assert rows[("1m", JAN_2024 + 5 * MINUTE)]["volume"] == 150.0
    assert rows[("1m", JAN_2024 + 6 * MINUTE)] == {
        "time": JAN_2024 + 6 * MINUTE, "symbol": "AAPL", "open": 10.4, "high": 10.9,
        "low": 10.3, "close": 10.75, "volume": 35.0}
    assert rows[("5m", JAN_2024 + 5 * MINUTE)] == {
        "time": JAN_2024 + 5 * MINUTE, "symbol": "AAPL", "open": 10.0, "high": 10.9,
        "low": 9.9, "close": 10.75, "volume": 205.0}
    assert one.add(t0, 1, 1, 1, 1, 999.0) is None  # a second of a finished bar changes nothing
    assert one.row()["volume"] == 35.0


def test_polygon_bar_times_and_websocket_names_map_onto_nbfeed():
    assert bar_time(1704171600000, "1d") == 1704153600000  # 2024-01-02 05:00Z -> 00:00Z
    assert bar_time(1704603600000, "1w") == 1704672000000  # Sunday 01-07 05:00Z -> Monday 01-08
    assert bar_time(1706763600000, "1M") == 1706745600000  # 2024-02-01 05:00Z -> 00:00Z
    assert ws_name("X:BTCUSD") == "BTC-USD"
    assert ws_name("C:EURUSD") == "EUR/USD"
    assert ws_name("X:USDTUSD", {"base_currency_symbol": "USDT", "currency_symbol": "USD"}) \
        == "USDT-USD"
    assert ws_name("I:SPX") == "I:SPX" and ws_name("BRK.A") == "BRK.A"


# ---- REST --------------------------------------------------------------------------------------


def test_tickers_follow_next_url_and_the_key_travels_only_in_a_header():
    secret = "sk-secret-4711"
    with FakePolygon(api_keys={secret: {"stocks"}}, page_cap=3) as fake:
        rest = PolygonREST(secret, fake.rest_url)
        tickers = [t["ticker"] for t in rest.tickers("stocks")]
        assert tickers == ["AAPL", "AMZN", "JPM", "MSFT", "NVDA", "SPY", "TSLA"]
        asked = fake.requests_to("/v3/reference/tickers")
        assert len(asked) == 3
        assert all(r.headers["Authorization"] == f"Bearer {secret}" for r in asked)
        assert all(secret not in r.path + repr(r.query) for r in asked)
        with pytest.raises(PolygonAuthError, match="Unknown API Key"):
            PolygonREST("wrong", fake.rest_url).tickers("stocks")
    client = RestClient("https://api.polygon.io", name="polygon")
    with pytest.raises(UpstreamError, match=r"another host: https://evil\.example"):
        client.url_for("https://evil.example/v3/reference/tickers?cursor=x")


def test_history_pages_are_stitched_onto_the_nbfeed_grid(fp):
    rest = PolygonREST("k", fp.rest_url)
    end = JAN_2024 + 1000 * MINUTE
    bars = rest.aggs("MSFT", "1m", JAN_2024, end, None)
    assert [b["time"] for b in bars] == list(range(JAN_2024, end, MINUTE))
    now = int(time.time() * 1000)
    assert [b["close"] for b in bars] == [fp.agg("MSFT", t, t + MINUTE, True, now)["c"]
                                         for t in range(JAN_2024, end, MINUTE)]
    assert len(fp.requests_to("/v2/aggs")) == 6  # 1001 bars (from one bar early) / 200 a page

    days = rest.aggs("AAPL", "1d", JAN_2024, JAN_2024 + 10 * 86_400_000, None)
    assert [d["time"] for d in days] == [JAN_2024 + i * 86_400_000 for i in range(10)]
    weeks = rest.aggs("AAPL", "1w", JAN_2024, JAN_2024 + 28 * 86_400_000, None)
    assert [time.gmtime(w["time"] / 1000).tm_wday for w in weeks] == [0, 0, 0, 0]  # Mondays
    newest = rest.aggs("X:BTCUSD", "5m", None, JAN_2024, 30)
    assert [b["time"] for b in newest] == [JAN_2024 - (30 - i) * 5 * MINUTE for i in range(30)]
    assert fp.requests_to("/v2/aggs")[-1].query["sort"] == "desc"

    split_day = 1598486400000  # 2020-08-27, before AAPL's 4:1 split
    adjusted = rest.aggs("AAPL", "1d", split_day, split_day + 86_400_000, None)[0]["close"]
    raw = PolygonREST("k", fp.rest_url, adjusted=False).aggs(
        "AAPL", "1d", split_day, split_day + 86_400_000, None)[0]["close"]
    assert raw == pytest.approx(4 * adjusted, rel=1e-6)


# ---- live, in this process -----------------------------------------------------------------------


def test_unsubscribing_one_interval_never_cuts_another(fp, provider):
    p = provider(seed_bars=False)
    p.subscribe("AAPL", "1m")
    p.subscribe("AAPL", "5m")
    p.subscribe("AAPL", "tick")
    everything = {"A.AAPL", "T.AAPL", "Q.AAPL"}
    fp.wait_for(lambda: fp.subscriptions() == [everything], what="three channels")
    p.unsubscribe("AAPL", "1m")
    p.unsubscribe("AAPL", "tick")
    fp.wait_for(lambda: fp.subscriptions() == [{"A.AAPL"}], what="trades and quotes to go")
    mark = len(p.published)
    fp.wait_for(lambda: any(r.get("open") for r in p.published[mark:]), what="5m bars")
    assert all(r["time"] % (5 * MINUTE) == 0 for r in p.published[mark:] if "open" in r)
    p.unsubscribe("AAPL", "5m")
    fp.wait_for(lambda: not fp.open_sockets(), what="the idle socket to close")


def test_live_bars_count_replayed_seconds_once(fp, provider):
    fp.repeat_aggregates = True  # every per-second aggregate arrives twice
    p = provider(seed_bars=False)
    p.subscribe("AAPL", "1m")
    fp.wait_for(lambda: len({r["volume"] for r in p.published}) >= 3, what="3 bar updates")
    p.unsubscribe("AAPL", "1m")
    sent = {}
    for ev in fp.events_sent:
        if ev["ev"] == "A":
            sent[ev["s"]] = ev["v"]  # one value per second, however often it was sent
    sums = set()
    for bar in {r["time"] for r in p.published}:
        total = 0.0
        for s in sorted(t for t in sent if bar <= t < bar + MINUTE):
            total += sent[s]
            sums.add(total)
    assert [r for r in p.published if r["volume"] not in sums] == []
    assert max(r["volume"] for r in p.published) < 2_000  # never the day's running total


def test_first_live_bar_is_completed_from_rest_second_aggregates(fp, provider):
    p = provider()
    p.subscribe("MSFT", "1h")  # an hour bar: the seconds before we subscribed are many
    subscribed = int(time.time() * 1000)
    bar = subscribed - subscribed % (60 * MINUTE)
    first_second = fp.agg("MSFT", bar, bar + 1000, True, subscribed)

    def seeded():
        return [r for r in p.published if r["time"] == bar and r["open"] == first_second["o"]]

    if subscribed - bar >= 2000:  # the bar began before we subscribed: REST fills the start
        rows = fp.wait_for(seeded, what="the first bar completed from REST")
        assert fp.requests_to("/v2/aggs/ticker/MSFT/range/1/second/")
        assert rows[-1]["volume"] >= sum(fp.agg("MSFT", s, s + 1000, True, subscribed)["v"]
                                         for s in range(bar, subscribed - 1000, 1000))


def test_forex_and_index_channels_feed_quotes_and_bars():
    with FakePolygon() as fake:  # the default key has every market
        p = PolygonProvider(api_key="test-key", rest_url=fake.rest_url, ws_url=fake.ws_url,
                            seed_bars=False)
        p.init()
        try:
            p.get_dataset()
            for symbol, interval in (("C:EURUSD", "tick"), ("C:EURUSD", "1m"),
                                     ("I:SPX", "tick"), ("I:SPX", "5m")):
                p.subscribe(symbol, interval)
            fake.wait_for(lambda: sorted(map(sorted, fake.subscriptions())) == [
                ["A.I:SPX", "V.I:SPX"], ["C.EUR/USD", "CAS.EUR/USD"]], what="channels")

            def latest(symbol: str, field: str) -> dict | None:
                return next((r for r in reversed(p.published)
                             if r["symbol"] == symbol and field in r), None)

            fake.wait_for(lambda: all(latest(s, f) for s in ("C:EURUSD", "I:SPX")
                                      for f in ("price", "open")), what="quotes and bars")
            fx = latest("C:EURUSD", "price")
            assert fx["bid"] < fx["price"] < fx["ask"]
            assert latest("I:SPX", "open")["time"] % (5 * MINUTE) == 0
        finally:
            p.stopping.set()


def test_configuration_feed_urls_and_missing_key(fp, monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    monkeypatch.setenv("NBFEED_POLYGON_REST_URL", fp.rest_url)
    monkeypatch.setenv("NBFEED_POLYGON_DELAYED_WS_URL", fp.delayed_ws_url)
    p = PolygonProvider(feed="delayed", markets=["stocks", "crypto"])
    p.init()
    try:
        assert (p.rest_url, p.ws_url) == (fp.rest_url, fp.delayed_ws_url)
        p.subscribe("X:BTCUSD", "tick")
        fp.wait_for(lambda: any(r.get("bid") for r in p.published), what="delayed quotes")
        assert {c.data["feed"] for c in fp.connections("crypto")} == {"delayed"}
        with pytest.raises(UnknownSymbol, match=r"'C:EURUSD' is in market 'fx'"):
            p.subscribe("C:EURUSD", "tick")
        with pytest.raises(UnknownSymbol, match=r"look like 'AAPL'"):
            p.subscribe("AAPL; DROP TABLE", "1m")
        with pytest.raises(UnknownSymbol, match="no active ticker 'ZZZZ'"):
            p.subscribe("ZZZZ", "1m")
    finally:
        p.stopping.set()
    monkeypatch.delenv("POLYGON_API_KEY")
    with pytest.raises(PolygonAuthError, match="POLYGON_API_KEY"):
        PolygonProvider().init()
    # A bad option is refused by name when the provider starts (it then shows as failed).
    for bad, words in (({"seed_bars": "false"}, "polygon option seed_bars: expected true or false"),
                       ({"request_timeout": -1}, "polygon option request_timeout: expected a "
                                                 "positive number, got -1")):
        with pytest.raises(BadRequest, match=words):
            PolygonProvider(api_key="k", rest_url=fp.rest_url, **bad).init()


# ---- the provider in its own process, behind a hub -----------------------------------------------


def info(hub, name: str) -> dict:
    return next(p for p in hub.providers_info() if p["name"] == name)


async def drain(sub) -> None:
    """Discard what a subscription has queued (the outbox hands over everything at once)."""
    try:
        await asyncio.wait_for(sub.get(), 0.2)
    except asyncio.TimeoutError:
        pass


@pytest.mark.asyncio
async def test_provider_process_catalog_history_live_and_resume(start_hub, fp):
    hub = await start_hub(ProviderSpec("polygon", POLYGON, {
        "api_key": "k", "rest_url": fp.rest_url, "ws_url": fp.ws_url}))
    assert info(hub, "polygon")["status"] == "running"
    listed = {e["name"] for e in await hub.search("", source="polygon", limit=100)}
    assert listed == {"AAPL", "AMZN", "JPM", "MSFT", "NVDA", "SPY", "TSLA", "X:BTCUSD",
                      "X:ETHUSD"}  # fx and indices are not in this key's plan

    end = JAN_2024 + 500 * MINUTE
    bars = await hub.history("polygon", "TSLA", "1m", start=JAN_2024, end=end)
    assert [b["time"] for b in bars] == list(range(JAN_2024, end, MINUTE))
    assert len(fp.requests_to("/v2/aggs/ticker/TSLA/")) == 3  # 200 a page, via next_url

    candles = await hub.subscribe("polygon", ["AAPL", "X:BTCUSD"], "1m")
    quotes = await hub.subscribe("polygon", ["AAPL"], "tick")
    got = await receive(candles, lambda r: {x["symbol"] for x in r.rows} == {"AAPL", "X:BTCUSD"},
                        "live 1m bars of a stock and a crypto pair")
    assert all(x["time"] % MINUTE == 0 and x["low"] <= x["close"] <= x["high"]
               for x in got.rows)
    ticks = await receive(quotes, lambda r: any({"price", "bid", "ask", "prev_close",
                                                 "volume"} <= set(x) for x in r.rows), "quotes")
    quote = ticks.rows[-1]
    assert quote["change"] == pytest.approx(quote["price"] - quote["prev_close"], rel=1e-6)
    assert len(fp.open_sockets()) == 2  # one per cluster (stocks, crypto), shared by streams

    dropped_ms = int(time.time() * 1000)
    fp.drop_sockets()
    await receive(quotes, lambda r: any(x["time"] > dropped_ms + 300 for x in r.rows),
                  "quotes after the drop", into=Received())
    await asyncio.to_thread(  # both clusters resubscribed by themselves
        fp.wait_for, lambda: sorted(map(sorted, fp.subscriptions())) == [
            ["A.AAPL", "Q.AAPL", "T.AAPL"], ["XAS.BTC-USD"]], 15, "resubscription")
    await drain(candles)
    await receive(candles, lambda r: {x["symbol"] for x in r.rows} == {"AAPL", "X:BTCUSD"},
                  "bars after the drop", into=Received())
    await candles.close()
    await quotes.close()


@pytest.mark.asyncio
async def test_auth_failure_is_the_providers_status_and_the_hub_keeps_serving(start_hub, fp):
    options = {"rest_url": fp.rest_url, "ws_url": fp.ws_url, "markets": ["stocks"]}
    hub = await start_hub(
        ProviderSpec("polygon", POLYGON, {"api_key": "k", **options}),
        ProviderSpec("badkey", POLYGON, {"api_key": "not-a-key", **options}),
        ProviderSpec("simulated", "nbfeed.providers.simulated:SimulatedProvider", {"rate": 20}))
    bad = info(hub, "badkey")
    assert bad["status"] == "failed" and "rejected the API key: Unknown API Key" in bad["detail"]
    assert "Unknown API Key" in bad["populate_error"]

    quotes = await hub.subscribe("polygon", ["AAPL"], "tick")
    await receive(quotes, lambda r: r.rows, "AAPL quotes")
    pid = info(hub, "polygon")["pid"]
    fp.revoke_key("k")
    fp.drop_sockets()
    got = await receive(quotes, lambda r: "failed" in r.states("polygon"),
                        "the auth failure as a status event")
    status = [e for e in got.events if e.get("state") == "failed"][-1]
    assert "polygon auth failed on the stocks feed" in status["detail"]
    assert "authentication failed" in status["detail"] and "POLYGON_API_KEY" in status["detail"]
    assert info(hub, "polygon")["status"] == "failed"
    await wait_until(lambda: [c for c in fp.connections("stocks")
                              if c.close_reason == "auth failed"], "the refused reconnect")
    await asyncio.sleep(1.0)  # a refused key must not make the provider hammer the server
    # One refused reconnect (two if a retry was already in flight when the key was revoked).
    assert len([c for c in fp.connections("stocks") if c.close_reason == "auth failed"]) <= 2
    assert (info(hub, "polygon")["pid"], info(hub, "polygon")["restarts"]) == (pid, 0)
    with pytest.raises(UpstreamError, match="rejected the API key"):
        await hub.history("polygon", "AAPL", "1d", count=5)

    fp.call(lambda: fp.api_keys.update(k={"stocks"}))  # the key works again (plan renewed)
    again = await hub.subscribe("polygon", ["MSFT"], "tick")  # a user action retries once
    await receive(again, lambda r: r.rows, "MSFT quotes after the key was fixed")
    await wait_until(lambda: info(hub, "polygon")["status"] == "running", "running again")
    await again.close()

    sim = await hub.subscribe("simulated", ["AAPL"], "tick")
    await receive(sim, lambda r: len(r.rows) >= 2, "simulated quotes: the hub still serves")
    await sim.close()
    await quotes.close()
