"""The fake exchanges speak the real wire formats and fail the way the real services do.

These checks pin the fakes to the public API shapes (the recorded-shape samples in
``tests/fakes/data``), so the provider tests that run against them test the real protocol.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import connect

from tests.fakes import FakeBinance, FakePolygon
from tests.fakes._server import load_sample

JAN_2024 = 1704067200000  # 2024-01-01T00:00:00Z


def recv_json(ws, timeout: float = 5.0):
    return json.loads(ws.recv(timeout=timeout))


def recv_until(ws, predicate, timeout: float = 5.0):
    """Next decoded frame for which ``predicate`` holds (other frames are skipped)."""
    for _ in range(200):
        msg = recv_json(ws, timeout)
        if predicate(msg):
            return msg
    raise AssertionError("no matching frame in 200 frames")


@pytest.fixture(scope="module")
def fb():
    with FakeBinance(weight_limit=1000, weight_window=(1, "S")) as fake:
        yield fake


@pytest.fixture(scope="module")
def fp():
    with FakePolygon(api_keys={"good": {"stocks", "crypto"}, "all": {"stocks", "crypto", "fx",
                                                                      "indices"}},
                     page_cap=3) as fake:
        yield fake


# ---- Binance REST ------------------------------------------------------------------------------


def test_binance_exchange_info_has_the_documented_shape(fb):
    r = httpx.get(f"{fb.rest_url}/api/v3/exchangeInfo")
    assert r.status_code == 200
    body = r.json()
    sample = load_sample("binance_exchange_info.json")
    assert set(body) == set(sample)
    assert {s["symbol"] for s in body["symbols"]} >= {"BTCUSDT", "LUNAUSDT", "BTCUPUSDT"}
    assert all(set(s) == set(sample["symbols"][0]) for s in body["symbols"])
    weight = body["rateLimits"][0]
    assert weight == {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1,
                      "limit": 1000}
    assert int(r.headers["X-MBX-USED-WEIGHT-1S"]) >= 20

    spot = httpx.get(f"{fb.rest_url}/api/v3/exchangeInfo", params={"permissions": "SPOT"}).json()
    assert "BTCUPUSDT" not in {s["symbol"] for s in spot["symbols"]}


def test_binance_klines_are_12_element_arrays_paged_by_time(fb):
    params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": JAN_2024, "limit": 1000}
    rows = httpx.get(f"{fb.rest_url}/api/v3/klines", params=params).json()
    sample = load_sample("binance_klines.json")[0]
    assert len(rows) == 1000
    assert [type(x) for x in rows[0]] == [type(x) for x in sample]
    assert rows[0][0] == JAN_2024 and rows[0][6] == JAN_2024 + 59_999
    assert [r[0] for r in rows] == [JAN_2024 + i * 60_000 for i in range(1000)]
    # endTime alone: the newest `limit` bars ending there; same bars every time (deterministic)
    tail = httpx.get(f"{fb.rest_url}/api/v3/klines", params={
        "symbol": "BTCUSDT", "interval": "1m", "endTime": rows[-1][0], "limit": 5}).json()
    assert tail == rows[-5:]
    # a symbol does not trade before its listing
    early = httpx.get(f"{fb.rest_url}/api/v3/klines", params={
        "symbol": "SOLUSDT", "interval": "1d", "startTime": 0, "limit": 2}).json()
    assert early[0][0] == 1597104000000  # 2020-08-11, SOL's first day


@pytest.mark.parametrize("params, code", [
    ({"symbol": "NOPE", "interval": "1m"}, -1121),
    ({"symbol": "BTCUSDT", "interval": "7m"}, -1120),
    ({"symbol": "BTCUSDT", "interval": "1m", "limit": 5000}, -1130),
    ({"interval": "1m"}, -1102),
    ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "yesterday"}, -1100),
])
def test_binance_bad_requests_get_binance_error_codes(fb, params, code):
    r = httpx.get(f"{fb.rest_url}/api/v3/klines", params=params)
    assert r.status_code == 400
    assert r.json()["code"] == code and r.json()["msg"]


def test_binance_failure_modes_rate_limit_and_malformed(fb):
    fb.set_rate_limit(retry_after=2, count=1, status=418)
    r = httpx.get(f"{fb.rest_url}/api/v3/ping")
    assert r.status_code == 418 and r.headers["Retry-After"] == "2"
    assert r.json()["code"] == -1003
    fb.fail_next("malformed")
    r = httpx.get(f"{fb.rest_url}/api/v3/ping")
    with pytest.raises(ValueError):
        r.json()
    assert httpx.get(f"{fb.rest_url}/api/v3/ping").json() == {}


def test_binance_weight_budget_answers_429_with_retry_after():
    with FakeBinance(weight_limit=4, weight_window=(10, "S")) as fake:
        answers = [httpx.get(f"{fake.rest_url}/api/v3/klines",
                             params={"symbol": "BTCUSDT", "interval": "1h", "limit": 1})
                   for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["X-MBX-USED-WEIGHT-10S"] for a in answers[:2]] == ["2", "4"]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 10
    assert "4 request weight per 10 SECOND" in answers[2].json()["msg"]


# ---- Binance websocket ---------------------------------------------------------------------------


def test_binance_combined_stream_events_match_the_documented_payloads(fb):
    samples = load_sample("binance_ws_events.json")
    with connect(f"{fb.ws_url}/stream?streams=btcusdt@kline_1m/ethusdt@ticker") as ws:
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 7}))
        assert recv_until(ws, lambda m: "id" in m) == {"result": None, "id": 7}
        seen = {}
        while len(seen) < 3:
            msg = recv_json(ws)
            assert set(msg) == {"stream", "data"}
            seen[msg["stream"]] = msg["data"]
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
        listed = recv_until(ws, lambda m: m.get("id") == 8)
        ws.send("{not json")
        error = recv_until(ws, lambda m: "error" in m)
    kline = seen["btcusdt@kline_1m"]
    assert set(kline) == set(samples["kline"]) and set(kline["k"]) == set(samples["kline"]["k"])
    assert kline["k"]["i"] == "1m" and kline["k"]["T"] == kline["k"]["t"] + 59_999
    assert set(seen["ethusdt@ticker"]) == set(samples["24hrTicker"])
    assert seen["ethusdt@ticker"]["e"] == "24hrTicker"
    assert set(seen["btcusdt@bookTicker"]) == set(samples["bookTicker"])
    assert sorted(listed["result"]) == ["btcusdt@bookTicker", "btcusdt@kline_1m",
                                        "ethusdt@ticker"]
    assert error["error"]["code"] == 3


def test_binance_raw_stream_has_no_wrapper_and_too_many_messages_disconnect(fb):
    with connect(f"{fb.ws_url}/ws/btcusdt@bookTicker") as ws:
        event = recv_json(ws)
        assert event["s"] == "BTCUSDT" and "stream" not in event
        with pytest.raises(ConnectionClosed) as closed:
            for i in range(20):
                ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            while True:
                ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1008


def test_binance_dropped_and_closed_sockets(fb):
    with connect(f"{fb.ws_url}/stream?streams=btcusdt@bookTicker") as ws:
        recv_json(ws)
        assert fb.drop_sockets(mid_frame=True) == 1
        with pytest.raises(ConnectionClosedError) as dropped:
            while True:
                ws.recv(timeout=5)
        assert dropped.value.rcvd is None  # no close frame: a cut, not a close
    with connect(f"{fb.ws_url}/stream?streams=btcusdt@bookTicker") as ws:
        recv_json(ws)
        fb.announce_shutdown()
        notice = recv_until(ws, lambda m: "event" in m)
        assert notice["event"]["e"] == "serverShutdown"
        fb.close_sockets(1001, "scheduled disconnect")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1001


# ---- Polygon REST --------------------------------------------------------------------------------


def on_fake(fp, link: str) -> str:
    """A ``next_url`` (a link to Polygon's own host, as the real one) sent to the fake."""
    assert link.startswith("https://api.polygon.io/"), link
    parts = urlsplit(link)
    return f"{fp.rest_url}{parts.path}?{parts.query}"


def test_polygon_tickers_page_with_next_url_and_never_echo_the_key(fp):
    auth = {"Authorization": "Bearer good"}
    url, tickers, pages = f"{fp.rest_url}/v3/reference/tickers", [], []
    params = {"market": "stocks", "limit": 1000}
    while url:
        body = httpx.get(url, params=params, headers=auth).json()
        params = None
        pages.append(body)
        tickers += [t["ticker"] for t in body["results"]]
        url = body.get("next_url") and on_fake(fp, body["next_url"])
    sample = load_sample("polygon_rest_responses.json")["tickers_page"]
    assert all(set(p) == set(sample) for p in pages[:-1])
    assert "next_url" not in pages[-1]
    assert tickers == ["AAPL", "AMZN", "JPM", "MSFT", "NVDA", "SPY", "TSLA"]  # TWTR is inactive
    assert len(pages) == 3
    assert all("good" not in (p.get("next_url") or "") for p in pages)


def test_polygon_rejects_bad_keys_and_unentitled_markets(fp):
    url = f"{fp.rest_url}/v3/reference/tickers"
    unknown = httpx.get(url, params={"apiKey": "nope", "market": "stocks"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "Unknown API Key"
    missing = httpx.get(url, params={"market": "stocks"})
    assert missing.status_code == 401 and "not provided" in missing.json()["error"]
    fx = httpx.get(url, params={"apiKey": "good", "market": "fx"})
    assert fx.status_code == 403 and fx.json()["status"] == "NOT_AUTHORIZED"
    assert httpx.get(url, params={"apiKey": "all", "market": "fx"}).status_code == 200


def test_polygon_aggregates_shape_paging_sessions_and_adjustment(fp):
    auth = {"Authorization": "Bearer good"}
    sample = load_sample("polygon_rest_responses.json")["aggs"]
    first = httpx.get(f"{fp.rest_url}/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-10",
                      params={"adjusted": "true", "sort": "asc", "limit": 50000},
                      headers=auth).json()
    assert set(first) == set(sample)
    assert set(first["results"][0]) == set(sample["results"][0])
    assert first["resultsCount"] == 3  # page_cap
    days = [b["t"] for b in first["results"]]
    assert days[0] == 1704085200000  # 2024-01-01 00:00 New York (05:00 UTC)
    rest = httpx.get(on_fake(fp, first["next_url"]), headers=auth).json()
    assert rest["results"][0]["t"] == days[-1] + 86_400_000
    weeks = httpx.get(f"{fp.rest_url}/v2/aggs/ticker/AAPL/range/1/week/2024-01-01/2024-01-31",
                      headers=auth).json()["results"]
    assert weeks[0]["t"] == 1704603600000  # Sunday 2024-01-07, 00:00 New York

    def close_before_split(adjusted: str) -> float:
        return httpx.get(f"{fp.rest_url}/v2/aggs/ticker/AAPL/range/1/day/2020-08-27/2020-08-27",
                         params={"adjusted": adjusted}, headers=auth).json()["results"][0]["c"]

    assert close_before_split("false") == pytest.approx(4 * close_before_split("true"), rel=1e-6)
    empty = httpx.get(f"{fp.rest_url}/v2/aggs/ticker/ZZZZ/range/1/day/2024-01-01/2024-01-10",
                      headers=auth).json()
    assert empty["resultsCount"] == 0 and "results" not in empty


# ---- Polygon websocket ---------------------------------------------------------------------------


def test_polygon_websocket_auth_subscribe_and_event_shapes(fp):
    messages = load_sample("polygon_ws_messages.json")
    with connect(f"{fp.ws_url}/stocks") as ws:
        assert recv_json(ws) == messages["connected"]
        ws.send(json.dumps({"action": "subscribe", "params": "T.AAPL"}))
        assert recv_json(ws)[0]["message"] == "not authenticated"
        ws.send(json.dumps({"action": "auth", "params": "good"}))
        assert recv_json(ws) == messages["auth_success"]
        ws.send(json.dumps({"action": "subscribe", "params": "A.AAPL,T.AAPL,Q.AAPL"}))
        assert [m["message"] for m in recv_json(ws)] == [
            "subscribed to: A.AAPL", "subscribed to: T.AAPL", "subscribed to: Q.AAPL"]
        seen = {}
        while len(seen) < 3:
            for event in recv_json(ws):
                seen[event["ev"]] = event
        with connect(f"{fp.ws_url}/stocks") as second:
            recv_json(second)
            second.send(json.dumps({"action": "auth", "params": "good"}))
            assert recv_json(second)[0]["status"] == "max_connections"
    for ev in ("A", "T", "Q"):
        assert set(seen[ev]) == set(messages["events"][ev]), ev
    assert seen["A"]["e"] - seen["A"]["s"] == 1000 and seen["A"]["sym"] == "AAPL"


def test_polygon_websocket_auth_failure_then_close(fp):
    with connect(f"{fp.ws_url}/forex") as ws:
        recv_json(ws)
        ws.send(json.dumps({"action": "auth", "params": "good"}))  # no fx entitlement
        assert recv_json(ws)[0]["status"] == "auth_failed"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    with connect(f"{fp.delayed_ws_url}/crypto") as ws:
        recv_json(ws)
        ws.send(json.dumps({"action": "auth", "params": "good"}))
        assert recv_json(ws)[0]["status"] == "auth_success"
        ws.send(json.dumps({"action": "subscribe", "params": "XAS.BTC-USD,XQ.BTC-USD"}))
        recv_json(ws)
        events = recv_until(ws, lambda m: any(e.get("ev") == "XQ" for e in m))
    assert events[-1]["pair"] == "BTC-USD"
    assert fp.connections("crypto")[-1].data["feed"] == "delayed"
