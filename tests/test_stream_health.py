"""Staleness is visible, and streams heal, wherever they are read: a hub subscription, a websocket
client of a real Jupyter server, a notebook's Stream (embedded, and remote across a cut link).

The upstreams are the local fakes (Binance cut for a few seconds; Polygon with its market
closed), the providers run in their own processes, and the notebook side reaches the server
through a TCP proxy whose link is really cut (tests/netcut.py).
"""

from __future__ import annotations

import asyncio
import time

import pytest

import nbfeed
from nbfeed.intervals import floor_bar
from nbfeed.providers.registry import ProviderSpec
from tests.fakes import FakeBinance, FakePolygon
from tests.gapfree_helpers import BarLog, compare_bars
from tests.netcut import NetCut
from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import WireClient

POLYGON = "nbfeed.providers.polygon:PolygonProvider"
SECOND = 1000


@pytest.fixture
def fb():
    with FakeBinance() as fake:
        yield fake


@pytest.fixture
def nbfeed_config(tmp_path, fb):
    return {"home": str(tmp_path / "nbfeed-home"), "providers": ["simulated", "binance"],
            "provider_options": {"simulated": {"rate": 8},
                                 "binance": {"rest_url": fb.rest_url, "ws_url": fb.ws_url}}}


# ---- a closed market is not a dead feed ----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_closed_market_is_reported_closed_not_stale(start_hub):
    with FakePolygon() as fp:
        fp.markets_open["stocks"] = False
        hub = await start_hub(ProviderSpec("polygon", POLYGON, {
            "api_key": "test-key", "rest_url": fp.rest_url, "ws_url": fp.ws_url,
            "market_status_every": 0.5, "seed_bars": False}))
        stocks = await hub.subscribe("polygon", ["AAPL"], "tick")
        crypto = await hub.subscribe("polygon", ["X:BTCUSD"], "tick")
        log, other = BarLog.start(stocks), BarLog.start(crypto)
        try:
            closed = await log.wait(lambda g: g.stream_events("closed"), "AAPL reported closed")
            assert "US market closed (polygon market status)" in closed[0][1]["detail"]
            await asyncio.sleep(hub.config.staleness.min_silence + 3)
            assert log.stream_events("stale") == []  # silent, not dead
            assert [r for _, r in log.snapshot() if "price" in r] == []  # no trades, only the
            # previous close from REST
            assert hub.health.state(("polygon", "AAPL", "tick")) == "closed"
            assert other.stream_events() == [] and other.rows  # crypto trades on
            late = await hub.subscribe("polygon", ["AAPL"], "tick")  # learns it at once
            assert (await late.get())[0]["state"] == "closed"
            await late.close()

            fp.markets_open["stocks"] = True
            opened = await log.wait(lambda g: g.stream_events("live"), "AAPL live again")
            await log.wait(lambda g: [r for t, r in g.snapshot() if t > opened[0][0]
                                      and "price" in r], "AAPL trades again")
        finally:
            log.stop()
            other.stop()
            await stocks.close()
            await crypto.close()


# ---- a websocket client of the Jupyter server ----------------------------------------------------


async def test_websocket_subscriber_sees_stale_then_live_and_the_filled_bars(
        nbfeed_server, jp_ws_fetch, fb):
    ws = await WireClient.open(jp_ws_fetch)
    await ws.request({"type": "subscribe", "id": "k", "source": "binance",
                      "symbols": ["BTCUSDT"], "interval": "1s"})
    for _ in range(10):  # long enough for the stream to learn its cadence (~0.1 s here)
        await ws.until(lambda f: f["type"] == "data_update" and f["rows"])
    cut_at = time.monotonic()
    # Well beyond the stale threshold (2 s at least), so a loaded machine cannot hide it.
    back_at = await asyncio.to_thread(fb.cut_sockets, 6.0)
    stale = await ws.until(lambda f: f["type"] == "status" and f.get("state") == "stale")
    stale_at = time.monotonic()
    assert (stale["source"], stale["symbol"], stale["interval"]) == ("binance", "BTCUSDT", "1s")
    assert stale["age"] >= 2.0 and "no data for" in stale["detail"]
    live = await ws.until(lambda f: f["type"] == "status" and f.get("state") == "live"
                          and f.get("symbol") == "BTCUSDT")
    assert live["age"] < 1.0
    filled = await ws.until(lambda f: f["type"] == "data_update"
                            and any(r.get("backfilled") for r in f["rows"]))
    times = [r["time"] for r in filled["rows"]]
    assert times == sorted(times)
    assert time.monotonic() - back_at < 10
    print(f"\nwebsocket: stale {stale_at - cut_at:.2f} s after the cut")
    ws.close()


# ---- a notebook's streams ------------------------------------------------------------------------


def test_an_embedded_streams_status_and_age_follow_its_health(tmp_path, fb):
    feed = nbfeed.connect(embedded=True, home=str(tmp_path / "home"), providers=[
        ProviderSpec("binance", "nbfeed.providers.binance:BinanceProvider",
                     {"rest_url": fb.rest_url, "ws_url": fb.ws_url})])
    try:
        stream = feed.subscribe("binance", ["ETHUSDT", "SOLUSDT"], "1s")
        assert stream.status == "waiting" and stream.age is None
        log = BarLog()
        stream.on_update(log.add_rows)
        stream.on_event(log.add_event)
        log.wait_sync(lambda g: {r["symbol"] for _, r in g.snapshot()} == {"ETHUSDT", "SOLUSDT"},
                      "rows of both symbols")
        assert stream.status == "live" and stream.age < 1.0
        assert stream.statuses == {"ETHUSDT": "live", "SOLUSDT": "live"}
        # Longer than the longest silence that may still count as live (4 expected gaps of a
        # 1s stream that has not learned its cadence yet), so the stream must go stale.
        fb.cut_sockets(8.0)
        log.wait_sync(lambda g: stream.status == "stale", "the stream stale")
        assert stream.statuses == {"ETHUSDT": "stale", "SOLUSDT": "stale"}
        assert stream.age >= 2.0 and all(a >= 2.0 for a in stream.ages.values())
        log.wait_sync(lambda g: stream.status == "live", "the stream live again", timeout=20)
        # The first rows back may be the backfilled bars of the outage (old times); live ones
        # follow and the age drops to the cadence's.
        log.wait_sync(lambda g: stream.age is not None and stream.age < 1.5, "fresh rows again",
                      timeout=15)
        states = [e["state"] for _, e in log.stream_events() if e["symbol"] == "ETHUSDT"]
        assert states == ["stale", "live"]
        stream.close()
        assert stream.status == "unsubscribed"
    finally:
        feed.close()


async def test_a_notebooks_reconnect_heals_its_bars_and_reports_its_status(
        nbfeed_server, jp_serverapp, jp_base_url):
    token = jp_serverapp.identity_provider.token

    def notebook() -> dict:
        with NetCut(jp_serverapp.port) as link:
            feed = nbfeed.connect(f"http://127.0.0.1:{link.port}{jp_base_url}", token=token)
            try:
                stream = feed.subscribe("simulated", ["AAPL"], "1s")
                log = BarLog()
                stream.on_update(log.add_rows)
                stream.on_event(log.add_event)
                log.wait_sync(lambda g: len(g.bars()) >= 3, "three 1s bars")
                back_at = link.cut(3.0)
                log.wait_sync(lambda g: g.source_events("restarting"), "the connection lost")
                assert stream.status == "restarting"
                log.wait_sync(lambda g: g.first_live_after(back_at), "live bars after the cut",
                              timeout=30)
                first_live = next(r["time"] for t, r in log.snapshot()
                                  if t > back_at and not r.get("backfilled"))
                log.wait_sync(lambda g: max(g.bars()) >= first_live + 2 * SECOND,
                              "bars after the reconnect")
                assert stream.status == "live"
                stream.close()
                times = sorted(log.bars())
                first, last = times[0], times[-1]
                history = feed._history("simulated", "AAPL", "1s", first, last, None)
            finally:
                feed.close()
        received = {t: r for t, r in log.bars().items() if t < last}
        return {"log": log, "received": received, "history": history, "back_at": back_at}

    got = await asyncio.to_thread(notebook)
    log = got["log"]
    result = compare_bars(got["received"], got["history"])
    assert result.exact, result
    assert log.times_out_of_order() == []
    assert len(log.backfilled()) >= 2  # the seconds the link was down came from history
    resume = log.first_live_after(got["back_at"]) - got["back_at"]
    print(f"\nnotebook reconnect: {len(log.backfilled())} bars backfilled; live again "
          f"{resume:.2f} s after the link was back")
    assert resume < 5.0
    assert floor_bar  # bars are aligned by the hub's intervals


def test_a_livegrid_dims_the_rows_of_a_stale_stream_and_a_chart_marks_its_last_bar(tmp_path, fb):
    """What a user sees: the grid's status line says which symbols went stale and their rows
    dim; the chart marks its last bar; both come back to live with the first fresh row."""
    feed = nbfeed.connect(embedded=True, home=str(tmp_path / "home"), providers=[
        ProviderSpec("binance", "nbfeed.providers.binance:BinanceProvider",
                     {"rest_url": fb.rest_url, "ws_url": fb.ws_url})])
    try:
        stream = feed.subscribe("binance", ["ETHUSDT", "SOLUSDT"], "1s")
        grid = nbfeed.LiveGrid(stream, columns=["symbol", "time", "close", "age"])
        chart = nbfeed.LiveChart(stream)
        log = BarLog()
        stream.on_update(log.add_rows)
        stream.on_event(log.add_event)
        log.wait_sync(lambda g: stream.status == "live", "the stream live")
        assert grid._status["state"] == "live" and chart._stale == ""
        fb.cut_sockets(8.0)  # beyond the 4 s a 1s stream that has not learned its cadence waits
        # The provider says its connection dropped (every row dims), then each symbol's stream
        # goes stale; the grid and the chart say so until fresh rows arrive.
        log.wait_sync(lambda g: stream.status == "stale", "the stream stale")
        status = grid._status
        assert status["state"] in ("degraded", "stale"), status
        assert status["symbols"] in (None, ["ETHUSDT", "SOLUSDT"]), status
        assert status["detail"], status  # the status line says why
        log.wait_sync(lambda g: chart._stale in ("degraded", "stale"),
                      "the chart marks its last bar")
        log.wait_sync(lambda g: grid._status.get("state") == "live" and chart._stale == "",
                      "the grid and the chart live again", timeout=20)
        grid.close()
        chart.close()
        stream.close()
    finally:
        feed.close()
