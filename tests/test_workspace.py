"""The Workspace backend: generated widgets.json/apps.json, the validator, publishing from a
notebook, the live grid session, capability rotation and hostile input - against a real server.

The browser-like end-to-end journey lives in tests/test_workspace_client.py.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math

import pandas as pd
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

import nbfeed.workspace as nbws
from nbfeed.errors import BadRequest, LimitExceeded
from nbfeed.openbb.entries import build_entry, check_rows
from nbfeed.openbb.schema import apps_problems, widgets_problems
from nbfeed.runtime_file import ENV_INFO
from nbfeed.server_ext.workspace.live import LiveGridSession, params_of
from nbfeed.server_ext.workspace.quotes import LIVE_FIELDS, parse_symbols, quote_values
from nbfeed.server_ext.workspace.widgets import SourceView, build_apps, build_widgets
from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import fetch_json

WS = ("nbfeed", "workspace")
ORIGIN = "https://pro.openbb.co"


def _entries(n: int, *, intervals: list[str], type: str = "candlestick") -> list[dict]:
    return [{"source": "s", "name": f"SYM{i:03d}", "name_label": f"Company {i}", "type": type,
             "categories": ["Stocks"], "intervals": intervals} for i in range(n)]


def _views() -> list[SourceView]:
    small = SourceView("simulated", count=5, live=_entries(5, intervals=["1m", "1d", "tick"]),
                       bars=_entries(5, intervals=["1m", "1d", "tick"]),
                       intervals=["1m", "1d"], chart="candlestick")
    big = SourceView("big.feed-2", count=300, live=_entries(300, intervals=["tick"],
                                                            type="quote"))
    line = SourceView("rates", count=3, bars=_entries(3, intervals=["1d"], type="line"),
                      intervals=["1d"], chart="line")
    return [small, big, line]


PUBLISHED = dict([(lambda e: ("nbfeed_nb_movers", e[1]))(build_entry({
    "id": "movers", "name": "Movers", "refetchInterval": 5000,
    "columns": [{"field": "symbol", "headerName": "Symbol", "cellDataType": "text"},
                {"field": "move", "headerName": "Move %", "cellDataType": "number"}]}))])


@pytest.mark.parametrize("prefix", ["", "a%40b/nbfeed/workspace/"])
def test_generated_widgets_and_apps_are_what_workspace_accepts(prefix):
    views = _views()
    widgets = build_widgets(views, "CAP", prefix, PUBLISHED)
    assert widgets_problems(widgets) == []
    apps = build_apps(views, widgets)
    assert apps_problems(apps, widgets) == []

    grid = widgets["nbfeed_quotes_simulated"]
    assert grid["type"] == "live_grid" and grid["data"]["wsRowIdColumn"] == "symbol"
    assert grid["wsEndpoint"] == f"{prefix}ws/CAP/quotes/simulated"
    cols = {c["field"]: c for c in grid["data"]["table"]["columnsDefs"]}
    assert cols["price"]["renderFn"] == "showCellChange"
    assert cols["price"]["renderFnParams"]["colorValueKey"] == "change"
    assert cols["change"]["renderFn"] == cols["change_percent"]["renderFn"] == "greenRed"
    assert cols["volume"]["enableCellChangeWs"] is False
    (symbol,) = grid["params"]
    assert symbol["multiSelect"] and symbol["value"] == [f"SYM{i:03d}" for i in range(5)]
    assert len(symbol["options"]) == 5  # small catalog: inline options
    # A large catalog: an endpoint param instead of 300 inline options.
    big = widgets["nbfeed_quotes_big_feed_2"]["params"][0]
    assert big["type"] == "endpoint" and "options" not in big
    assert big["optionsEndpoint"] == f"{prefix}options/big.feed-2/live"
    assert "nbfeed_history_big_feed_2" not in widgets  # quotes only, no bars

    hist = {p["paramName"]: p for p in widgets["nbfeed_history_simulated"]["params"]}
    assert hist["interval"]["value"] == "1d" and hist["start"]["value"].startswith("$current")
    assert "nbfeed_quotes_rates" not in widgets  # bars only
    assert widgets["nbfeed_chart_rates"]["description"].startswith("Line")
    assert widgets["nbfeed_nb_movers"]["endpoint"] == f"{prefix}published/movers"
    for widget in widgets.values():
        assert widget["endpoint"].startswith(prefix)
    layout_ids = {item["i"] for tab in apps[0]["tabs"].values() for item in tab["layout"]}
    assert {"nbfeed_quotes_simulated", "nbfeed_chart_simulated", "nbfeed_nb_movers"} \
        <= layout_ids


def _valid() -> dict:
    return build_widgets(_views()[:1], "CAP")


@pytest.mark.parametrize(("mutate", "named"), [
    (lambda w: w["nbfeed_quotes_simulated"].update(type="grid"), "type 'grid'"),
    (lambda w: w["nbfeed_quotes_simulated"].pop("endpoint"), "missing required 'endpoint'"),
    (lambda w: w["nbfeed_quotes_simulated"].pop("wsEndpoint"), "needs wsEndpoint"),
    (lambda w: w["nbfeed_quotes_simulated"]["gridData"].update(w=41), "gridData.w"),
    (lambda w: w["nbfeed_symbols"].update(refetchInterval=500), "refetchInterval"),
    (lambda w: w["nbfeed_quotes_simulated"]["data"]["table"]["columnsDefs"][2].update(
        renderFn="flash"), "renderFn flash"),
    (lambda w: w["nbfeed_quotes_simulated"]["data"]["table"]["columnsDefs"][2].update(
        renderFnParams={"colorValueKey": "delta"}), "colorValueKey 'delta'"),
    (lambda w: w["nbfeed_quotes_simulated"]["data"]["table"]["columnsDefs"][3].update(
        cellDataType="money"), "cellDataType 'money'"),
    (lambda w: w["nbfeed_quotes_simulated"]["data"]["table"]["columnsDefs"][3].update(
        decimalPlaces=9), "decimalPlaces"),
    (lambda w: w["nbfeed_quotes_simulated"]["data"]["table"]["columnsDefs"][7].update(
        enableCellChangeWS=False), "unknown key(s) enableCellChangeWS"),
    (lambda w: w["nbfeed_quotes_simulated"]["data"].update(wsRowIdColumn="ticker"),
     "wsRowIdColumn 'ticker'"),
    (lambda w: w["nbfeed_history_simulated"]["params"][2].update(value="yesterday"),
     "date value 'yesterday'"),
    (lambda w: w["nbfeed_history_simulated"]["params"][1].update(type="dropdown"),
     "type 'dropdown'"),
    (lambda w: w["nbfeed_history_simulated"]["params"][0].update(type="endpoint"),
     "missing required 'optionsEndpoint'"),
    (lambda w: w["nbfeed_history_simulated"]["params"].append({"paramName": "symbol",
                                                                "type": "text"}),
     "paramName 'symbol' appears twice"),
])
def test_validator_names_what_workspace_would_reject(mutate, named):
    widgets = _valid()
    assert widgets_problems(widgets) == []
    mutate(widgets)
    problems = widgets_problems(widgets)
    assert any(named in p for p in problems), problems


def test_apps_validator_checks_layout_against_widgets():
    widgets = _valid()
    apps = build_apps(_views()[:1], widgets)
    bad = copy.deepcopy(apps)
    tab = bad[0]["tabs"]["source-simulated"]
    tab["layout"][0]["i"] = "nbfeed_gone"
    tab["layout"][1]["x"] = 30
    tab["layout"][2]["groups"] = ["Group 9"]
    tab["layout"][2]["state"] = {"params": {"ticker": "AAPL"}}
    bad[0]["groups"][0]["name"] = "symbol-group"
    problems = "\n".join(apps_problems(bad, widgets))
    for named in ("'nbfeed_gone' is not in widgets.json", "x + w exceeds", "'Group 9'",
                  "state.params ticker", "look like 'Group 1'"):
        assert named in problems


def test_symbol_params_and_socket_messages():
    assert parse_symbols("AAPL, MSFT,,AAPL") == ["AAPL", "MSFT"]
    assert parse_symbols(["AAPL", "MSFT,TSLA"]) == ["AAPL", "MSFT", "TSLA"]
    assert parse_symbols("") == [] and parse_symbols(None) == []
    for bad in (42, {"a": 1}, [None], [["A"]]):
        with pytest.raises(BadRequest, match="symbol"):
            parse_symbols(bad)
    with pytest.raises(LimitExceeded, match="201 symbols"):
        parse_symbols([f"S{i}" for i in range(201)])

    assert params_of('{"type": "params", "params": {"symbol": "A"}}') == {"symbol": "A"}
    assert params_of('{"params": {"symbol": ["A"]}}') == {"symbol": ["A"]}
    assert params_of('{"symbol": "A"}') == {"symbol": "A"}
    for junk in ("nope", "[]", "null", '"params"', '{"type": "ping"}', '{"params": 3}',
                 '{"type": "params"}', b"\x00\x01", "{" * 100_000):
        assert params_of(junk) is None


def test_quote_rows_derive_missing_fields():
    assert quote_values({"price": 11.0, "prev_close": 10.0}) == {
        "price": 11.0, "change": 1.0, "change_percent": pytest.approx(10.0), "bid": None,
        "ask": None, "volume": None}
    assert quote_values({"close": 5, "change": float("nan"), "volume": True})["price"] == 5.0
    assert quote_values({"close": 5, "change": float("nan")})["change"] is None


@pytest.mark.parametrize(("body", "named"), [
    ({"id": "../etc", "name": "x", "columns": []}, "widget id"),
    ({"id": "ok", "name": "", "columns": [{"field": "a", "headerName": "A"}]}, "name"),
    ({"id": "ok", "name": "x", "columns": []}, "columns"),
    ({"id": "ok", "name": "x", "columns": [{"field": "a.b", "headerName": "A"}]}, "'a.b'"),
    ({"id": "ok", "name": "x", "columns": [{"field": "a", "headerName": "A",
                                            "cellDataType": "money"}]}, "money"),
    ({"id": "ok", "name": "x", "columns": [{"field": "a", "headerName": "A"}],
      "refetchInterval": 10}, "refetchInterval"),
    ({"id": "ok", "name": "x", "columns": [{"field": "a", "headerName": "A"}],
      "gridData": {"w": 99, "h": 5}}, "gridData.w"),
    ({"id": "ok", "name": "x", "columns": [{"field": "a", "headerName": "A"}],
      "script": "alert(1)"}, "unknown field(s) script"),
    ("not an object", "JSON object"),
])
def test_published_definitions_are_validated(body, named):
    with pytest.raises(BadRequest) as err:
        build_entry(body)
    assert named in str(err.value)


def test_published_rows_are_flat_json_scalars():
    assert check_rows([{"a": 1.0, "b": float("inf"), "c": None}]) == [
        {"a": 1.0, "b": None, "c": None}]
    for rows, named in (([{"a": {"nested": 1}}], "rows[0].a"), ([3], "rows[0]"),
                        ({"a": 1}, "list of objects"), ([{1: 2}], "field names")):
        with pytest.raises(BadRequest, match=named.replace("[", r"\[").replace("]", r"\]")):
            check_rows(rows)
    with pytest.raises(LimitExceeded, match="10001 rows"):
        check_rows([{}] * 10_001)


def test_dataframe_to_table():
    idx = pd.date_range("2026-01-01", periods=3, freq="D", tz="UTC", name="day")
    df = pd.DataFrame({"close price": [1.5, math.nan, 3.0], "up": [True, False, True],
                       "sym.bol": ["A", "B", None], "n": [1, 2, 3]}, index=idx)
    columns, rows = nbws.to_table(df)
    assert [(c["field"], c["headerName"], c["cellDataType"]) for c in columns] == [
        ("day", "day", "date"), ("close_price", "close price", "number"),
        ("up", "up", "boolean"), ("sym_bol", "sym.bol", "text"), ("n", "n", "number")]
    assert rows[0] == {"day": "2026-01-01T00:00:00+00:00", "close_price": 1.5, "up": True,
                       "sym_bol": "A", "n": 1}
    assert rows[1]["close_price"] is None and rows[2]["sym_bol"] is None
    json.dumps(rows, allow_nan=False)
    with pytest.raises(BadRequest, match="DataFrame or a list of dicts"):
        nbws.to_table(42)


def test_notebook_widget_without_a_server_stays_local(monkeypatch):
    monkeypatch.delenv(ENV_INFO, raising=False)
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    nbws.configure()

    @nbws.widget(every=5)
    def top_movers():
        """Biggest movers today."""
        return pd.DataFrame({"symbol": ["A", "B"], "move": [1.5, -2.0]})

    assert "embedded" in top_movers.status
    assert top_movers.entry["description"] == "Biggest movers today."
    assert top_movers.entry["refetchInterval"] == 5000
    assert top_movers().shape == (2, 2)  # still the function
    assert widgets_problems({top_movers.widget_id: top_movers.entry}) == []
    with pytest.raises(BadRequest, match="every"):
        nbws.widget(lambda: [], every=0.01)


# ---- against a real server ------------------------------------------------------------------


async def _api(jp_fetch, method, *parts, body=None, expect=200):
    kw = {"method": method, "allow_nonstandard_methods": True}
    if body is not None:
        kw["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return await fetch_json(jp_fetch, *WS, "api", *parts, expect=expect, **kw)


async def test_publish_from_a_notebook_reaches_widgets_json(nbfeed_server, jp_fetch,
                                                            monkeypatch):
    # The start hook wrote nbfeed's runtime file and exported its path, as kernels see it.
    assert nbws.publish_target() is not None
    nbws.configure()
    calls = {"n": 0}

    def positions():
        calls["n"] += 1
        return pd.DataFrame({"symbol": ["AAPL", "MSFT"], "qty": [10, calls["n"]]})

    item = await asyncio.to_thread(nbws.widget, positions, name="My positions")
    assert item.status.startswith("published as nbfeed_nb_positions (2 rows)")

    _, widgets = await fetch_json(jp_fetch, *WS, "widgets.json")
    assert widgets_problems(widgets) == []
    entry = widgets["nbfeed_nb_positions"]
    assert entry["name"] == "My positions" and entry["endpoint"] == "published/positions"
    _, apps = await fetch_json(jp_fetch, *WS, "apps.json")
    assert apps_problems(apps, widgets) == []
    assert apps[0]["tabs"]["notebook"]["layout"][0]["i"] == "nbfeed_nb_positions"
    _, rows = await fetch_json(jp_fetch, *WS, "published", "positions")
    assert rows == [{"symbol": "AAPL", "qty": 10}, {"symbol": "MSFT", "qty": 1}]

    await asyncio.to_thread(item.refresh)
    _, rows = await fetch_json(jp_fetch, *WS, "published", "positions")
    assert rows[1]["qty"] == 2

    # Periodic refresh (a worker thread here; between cells on the kernel's loop in Jupyter).
    await asyncio.to_thread(item.start, 1.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while rows[1]["qty"] < 4:
        assert loop.time() < deadline, (item.status, item.last_error)
        await asyncio.sleep(0.2)  # polling what Workspace would poll
        _, rows = await fetch_json(jp_fetch, *WS, "published", "positions")
    item.stop()

    # The server restarted meanwhile (forgot the table): a refresh publishes it again.
    nbfeed_server.workspace_backend.published.remove("positions")
    await asyncio.to_thread(item.refresh)
    await fetch_json(jp_fetch, *WS, "published", "positions")

    await asyncio.to_thread(item.unpublish)
    _, widgets = await fetch_json(jp_fetch, *WS, "widgets.json")
    assert "nbfeed_nb_positions" not in widgets
    await fetch_json(jp_fetch, *WS, "published", "positions", expect=404)


async def test_publish_api_refuses_hostile_input(nbfeed_server, jp_fetch):
    good = {"id": "t1", "name": "T", "columns": [{"field": "a", "headerName": "A"}],
            "rows": [{"a": 1}]}
    _, reply = await _api(jp_fetch, "POST", "widgets", body=good)
    assert reply["widget_id"] == "nbfeed_nb_t1"
    for body, status, named in (
            ("{not json", 400, "not valid JSON"),
            ([1, 2], 400, "JSON object"),
            ({**good, "rows": [{"a": {"b": 1}}]}, 400, "rows[0].a"),
            ({**good, "columns": [{"field": "a", "headerName": "A", "renderFn": "eval"}]},
             400, "renderFn eval"),
            ({**good, "id": "x" * 65}, 400, "widget id")):
        _, reply = await _api(jp_fetch, "POST", "widgets", body=body, expect=status)
        assert named in reply["detail"]
    _, reply = await _api(jp_fetch, "PUT", "widgets", "nope", "rows", body={"rows": []},
                          expect=404)
    assert "'nope'" in reply["detail"]
    _, reply = await _api(jp_fetch, "PUT", "widgets", "t1", "rows", body={"data": []},
                          expect=400)
    _, widgets = await fetch_json(jp_fetch, *WS, "widgets.json")
    assert widgets_problems(widgets) == []  # nothing invalid got in
    # Unauthenticated: 401 with a detail saying how to authenticate.
    _, reply = await fetch_json(jp_fetch, *WS, "api", "widgets", method="POST",
                                body=json.dumps(good), headers={"Authorization": ""},
                                expect=401)
    assert "token" in reply["detail"]


async def test_data_endpoints_name_bad_values(nbfeed_server, jp_fetch):
    for parts, params, status, named in (
            (("quotes", "simulated"), {"symbol": "AAPL,ZZZZ"}, 404, "ZZZZ"),
            (("quotes", "nope"), {"symbol": "AAPL"}, 404, "nope"),
            (("quotes", "simulated"), {"symbol": ",".join(f"S{i}" for i in range(300))}, 429,
             "limit"),
            (("history", "simulated"), {"interval": "1d"}, 400, "'symbol'"),
            (("history", "simulated"), {"symbol": "AAPL", "interval": "7m"}, 400, "7m"),
            (("history", "simulated"), {"symbol": "AAPL", "start": "soon"}, 400, "start"),
            (("history", "simulated"), {"symbol": "AAPL", "limit": "0"}, 400, "'limit'"),
            (("symbols",), {"source": "nope"}, 404, "nope"),
            (("chart", "simulated"), {"symbol": "AAPL", "start": "2100-01-01",
                                      "end": "2100-01-31"}, 404, "no 1d bars")):
        _, reply = await fetch_json(jp_fetch, *WS, *parts, params=params, expect=status)
        assert named in reply["detail"]
    _, rows = await fetch_json(jp_fetch, *WS, "quotes", "simulated", params={"symbol": ""})
    assert rows == []
    # An end date is inclusive; dates may be written as Workspace does.
    _, rows = await fetch_json(jp_fetch, *WS, "history", "simulated", params={
        "symbol": "AAPL", "interval": "1d", "start": "2026-01-05", "end": "2026-01-09"})
    assert [r["date"][:10] for r in rows] == ["2026-01-05", "2026-01-06", "2026-01-07",
                                              "2026-01-08", "2026-01-09"]
    _, options = await fetch_json(jp_fetch, *WS, "options", "simulated", "live")
    assert {"label": "AAPL - Apple Inc.", "value": "AAPL"} in options
    _, providers = await fetch_json(jp_fetch, *WS, "providers")
    assert providers[0]["name"] == "simulated" and providers[0]["status"] == "running"


async def test_live_session_throttles_replaces_and_unsubscribes(nbfeed_server):
    hub = nbfeed_server.hub
    frames: list[list[dict]] = []
    got = asyncio.Event()

    def send(frame: bytes):
        frames.append(json.loads(frame))
        got.set()
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    session = LiveGridSession(hub, "simulated", send, min_interval=0.1)
    loop = asyncio.get_running_loop()

    async def frames_for(symbols: set[str], n: int) -> list[list[dict]]:
        start = len(frames)
        deadline = loop.time() + 20
        while len(frames) - start < n:
            got.clear()
            await asyncio.wait_for(got.wait(), deadline - loop.time())
        return frames[start:]

    await session.receive(json.dumps({"type": "params", "params": {"symbol": "AAPL,MSFT"}}))
    t0 = loop.time()
    batch = await frames_for({"AAPL", "MSFT"}, 12)
    elapsed = loop.time() - t0
    # At most 10 frames/s (+1 for the immediate first frame), however fast the source ticks.
    assert len(batch) <= elapsed / 0.1 + 2
    for frame in batch:
        ids = [r["symbol"] for r in frame]
        assert len(ids) == len(set(ids)) and set(ids) <= {"AAPL", "MSFT"}
        assert all(set(r) == {"symbol", *LIVE_FIELDS} for r in frame)

    await session.receive('{"params": {"symbol": ["ETH-USD", "NOPE"]}}')
    assert session.symbols == ["ETH-USD"]
    assert all({r["symbol"] for r in f} == {"ETH-USD"} for f in await frames_for({"x"}, 3))

    for junk in ("{", "[1]", '{"params": {"symbol": {"a": 1}}}'):
        await session.receive(junk)
    assert session.ignored == 3 and session.symbols == ["ETH-USD"]

    await session.receive('{"type": "params", "params": {"symbol": ""}}')
    assert session.sub is None and hub.stats()["subscriptions"] == 0
    await session.close()


async def test_rotating_the_capability_revokes_sockets(nbfeed_server, jp_fetch, jp_http_port,
                                                       jp_base_url):
    _, widgets = await fetch_json(jp_fetch, *WS, "widgets.json")
    old = widgets["nbfeed_quotes_simulated"]["wsEndpoint"]
    url = f"ws://127.0.0.1:{jp_http_port}{jp_base_url}nbfeed/workspace/"
    ws = await websocket_connect(HTTPRequest(url + old, headers={"Origin": ORIGIN}))
    await ws.write_message('{"type": "params", "params": {"symbol": "AAPL"}}')
    first = await asyncio.wait_for(ws.read_message(), 20)
    # A text frame (the grid parses it as JSON text), holding the live fields of AAPL.
    assert isinstance(first, str) and json.loads(first)[0]["symbol"] == "AAPL"

    _, reply = await _api(jp_fetch, "POST", "rotate", body="")
    assert reply["closed_sockets"] == 1
    while await asyncio.wait_for(ws.read_message(), 20) is not None:
        pass  # frames in flight, then the close
    assert ws.close_code == 1008
    with pytest.raises(Exception) as err:
        await websocket_connect(HTTPRequest(url + old, headers={"Origin": ORIGIN}))
    assert getattr(err.value, "code", None) == 403

    _, widgets = await fetch_json(jp_fetch, *WS, "widgets.json")
    new = widgets["nbfeed_quotes_simulated"]["wsEndpoint"]
    assert new != old
    ws = await websocket_connect(HTTPRequest(url + new, headers={"Origin": ORIGIN}))
    ws.close()
