"""REST endpoints of the extension against a real Jupyter server and provider process."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import pytest
from tornado.httpclient import HTTPClientError

from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import fetch_json

API = ("nbfeed", "api")


async def test_providers_lists_running_simulated(nbfeed_server, jp_fetch):
    _, data = await fetch_json(jp_fetch, *API, "providers")
    loaded = [p for p in data["providers"] if p["loaded"]]
    (sim,) = loaded
    assert sim["name"] == "simulated" and sim["status"] == "running"
    assert sim["datasets"] >= 40
    others = {p["name"]: p for p in data["providers"] if not p["loaded"]}
    assert {"csv", "binance", "polygon"} <= set(others)
    assert others["binance"]["status"] == "not loaded"
    assert "c.NBFeed.providers" in others["binance"]["enable"]


async def test_a_provider_known_by_name_is_turned_on_from_a_notebook(nbfeed_server, jp_fetch):
    body = json.dumps({"name": "csv", "kind": "builtin"})
    resp = await jp_fetch(*API, "providers", method="POST", body=body)
    assert json.loads(resp.body)["provider"]["status"] == "running"
    _, data = await fetch_json(jp_fetch, *API, "symbols", params={"source": "csv", "q": ""})
    assert data["results"]
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(*API, "providers", method="POST",
                       body=json.dumps({"name": "nosuch", "kind": "builtin"}))
    assert err.value.code == 404 and b"nosuch" in err.value.response.body


async def test_symbols_ranked_and_filtered(nbfeed_server, jp_fetch):
    _, data = await fetch_json(jp_fetch, *API, "symbols", params={"q": "apple"})
    assert data["results"][0]["name"] == "AAPL"
    _, data = await fetch_json(jp_fetch, *API, "symbols", params={"q": "aapl", "limit": "1"})
    assert [r["name"] for r in data["results"]] == ["AAPL"]
    _, data = await fetch_json(jp_fetch, *API, "symbols",
                               params={"category": "Crypto", "limit": "50"})
    assert {r["name"] for r in data["results"]} == {"BTC-USD", "ETH-USD", "SOL-USD"}
    _, data = await fetch_json(jp_fetch, *API, "symbols", params={"q": "x", "theme": "dark"})
    assert isinstance(data["results"], list)  # unknown parameters are ignored


async def test_history_json_and_csv(nbfeed_server, jp_fetch):
    params = {"source": "simulated", "symbol": "AAPL", "interval": "1m", "count": "30"}
    _, data = await fetch_json(jp_fetch, *API, "history", params=params)
    times = [r["time"] for r in data["rows"]]
    assert len(times) == 30 and times == sorted(times)
    assert all(b - a == 60_000 for a, b in zip(times, times[1:]))
    assert {"open", "high", "low", "close", "volume"} <= set(data["rows"][0])

    _, text = await fetch_json(jp_fetch, *API, "history", params={**params, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 30
    assert datetime.fromisoformat(rows[0]["time"].replace("Z", "+00:00")).tzinfo is not None
    assert float(rows[0]["close"]) == data["rows"][0]["close"]  # a finished bar; the last moves


async def test_history_in_every_format_says_the_same_bars(nbfeed_server, jp_fetch,
                                                          monkeypatch):
    """3 days of 1m bars (more than one written piece): JSON, CSV and the Arrow stream the
    notebook reads carry the same bars, and the Arrow answer is the same DataFrame as JSON's."""
    import pandas as pd
    import pyarrow as pa

    from nbfeed.client.frames import history_frame
    from nbfeed.columns_io import read_arrow
    from nbfeed.server_ext import handlers

    params = {"source": "simulated", "symbol": "MSFT", "interval": "1m",
              "end": "2026-03-06T00:00:00Z", "count": str(3 * 1440)}
    monkeypatch.setattr(handlers, "HISTORY_PIECE_ROWS", 1000)  # five pieces
    _, data = await fetch_json(jp_fetch, *API, "history", params=params)
    _, text = await fetch_json(jp_fetch, *API, "history", params={**params, "format": "csv"})
    resp = await jp_fetch(*API, "history", params={**params, "format": "arrow"})
    rows = data["rows"]
    assert (data["source"], data["symbol"], data["interval"]) == ("simulated", "MSFT", "1m")
    assert len(rows) == 3 * 1440
    assert rows[-1]["time"] == 1772755200000 - 60_000
    assert resp.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(resp.body).read_all()  # any Arrow reader takes it
    assert table.num_rows == len(rows) and table.column("time").to_pylist()[-1] == rows[-1]["time"]
    pd.testing.assert_frame_equal(history_frame(read_arrow(resp.body)), history_frame(rows))
    lines = list(csv.DictReader(io.StringIO(text)))
    assert len(lines) == len(rows)
    assert [float(line["close"]) for line in lines] == [r["close"] for r in rows]


async def test_an_empty_history_answer_keeps_its_content_type(nbfeed_server, jp_fetch):
    """An empty answer (what a replay's chart gets before its clock has moved) is never flushed
    before the handler finishes; it must still say what it is (Jupyter's API handlers stamp
    JSON on every answer), or the notebook client refuses the Arrow stream and a browser saves
    the CSV as JSON."""
    params = {"source": "simulated", "symbol": "MSFT", "interval": "1m",
              "start": "2030-01-01T00:00:00Z", "end": "2030-01-01T00:10:00Z"}  # none yet
    for fmt, expected in [("csv", "text/csv; charset=utf-8"),
                          ("arrow", "application/vnd.apache.arrow.stream"),
                          ("json", "application/json")]:
        resp = await jp_fetch(*API, "history", params={**params, "format": fmt})
        assert resp.headers["Content-Type"] == expected, fmt
    with pytest.raises(HTTPClientError) as err:  # an error stays JSON, whatever was asked
        await jp_fetch(*API, "history", params={**params, "format": "csv", "count": "-1"})
    assert err.value.code == 400
    assert err.value.response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("params", "status", "named"),
    [
        ({"symbol": "AAPL", "interval": "1m"}, 400, "source"),
        ({"source": "simulated", "interval": "1m"}, 400, "symbol"),
        ({"source": "nope", "symbol": "AAPL", "interval": "1m"}, 404, "nope"),
        ({"source": "simulated", "symbol": "ZZZZ", "interval": "1m"}, 404, "ZZZZ"),
        ({"source": "simulated", "symbol": "AAPL", "interval": "7m"}, 400, "7m"),
        ({"source": "simulated", "symbol": "AAPL", "interval": "tick"}, 400, "tick"),
        ({"source": "simulated", "symbol": "AAPL", "interval": "1m", "start": "yesterday-ish"},
         400, "yesterday-ish"),
        ({"source": "simulated", "symbol": "AAPL", "interval": "1m",
          "start": "2026-01-02", "end": "2026-01-01"}, 400, "start"),
        ({"source": "simulated", "symbol": "AAPL", "interval": "1m", "count": "0"}, 400, "count"),
        ({"source": "simulated", "symbol": "AAPL", "interval": "1m", "count": "ten"}, 400, "count"),
        ({"source": "simulated", "symbol": "AAPL", "interval": "1m", "count": "999999999"},
         429, "count"),
        ({"source": "simulated", "symbol": "AAPL", "interval": "1m", "format": "xml"},
         400, "format"),
        ({"source": "simulated", "symbol": "A" * 5000, "interval": "1m"}, 400, "symbol"),
    ],
)
async def test_history_bad_input_is_named(nbfeed_server, jp_fetch, params, status, named):
    _, data = await fetch_json(jp_fetch, *API, "history", params=params, expect=status)
    assert named in data["detail"]
    # ...and the server keeps serving.
    await fetch_json(jp_fetch, *API, "providers")


@pytest.mark.parametrize("query", ['"', "*", "AND OR NOT", "NEAR(", "a" * 999, "\x00", "😀 btc",
                                   "'; DROP TABLE symbols; --"])
async def test_symbols_hostile_queries(nbfeed_server, jp_fetch, query):
    try:
        resp = await jp_fetch(*API, "symbols", params={"q": query})
    except HTTPClientError as err:  # a clear 400 is acceptable; a 500 never is
        assert err.code == 400, err
        assert json.loads(err.response.body)["detail"]
    else:
        assert isinstance(json.loads(resp.body)["results"], list)
    await fetch_json(jp_fetch, *API, "providers")


async def test_symbols_bad_limit(nbfeed_server, jp_fetch):
    _, data = await fetch_json(jp_fetch, *API, "symbols", params={"limit": "lots"}, expect=400)
    assert "limit" in data["detail"]
    _, data = await fetch_json(jp_fetch, *API, "symbols", params={"source": "nope"}, expect=404)
    assert "nope" in data["detail"]


@pytest.mark.parametrize("endpoint", ["providers", "symbols", "history"])
async def test_no_credentials_is_403_and_no_data(nbfeed_server, http_server_client, jp_base_url,
                                               endpoint):
    url = f"{jp_base_url}nbfeed/api/{endpoint}?source=simulated&symbol=AAPL&interval=1m"
    resp = await http_server_client.fetch(url, raise_error=False)
    assert resp.code == 403
    assert b"AAPL" not in resp.body and b"simulated" not in resp.body
    resp = await http_server_client.fetch(url, raise_error=False,
                                          headers={"Authorization": "token wrong"})
    assert resp.code == 403


async def test_token_as_query_parameter(nbfeed_server, http_server_client, jp_base_url,
                                        jp_serverapp):
    token = jp_serverapp.identity_provider.token
    resp = await http_server_client.fetch(f"{jp_base_url}nbfeed/api/providers?token={token}")
    assert resp.code == 200 and b"simulated" in resp.body


class TestUnderJupyterHubPrefix:
    @pytest.fixture
    def jp_base_url(self):
        return "/user/alice/"

    async def test_endpoints_live_under_base_url(self, nbfeed_server, jp_fetch,
                                                 http_server_client):
        _, data = await fetch_json(jp_fetch, *API, "providers")
        assert data["providers"][0]["name"] == "simulated"
        resp = await http_server_client.fetch("/nbfeed/api/providers", raise_error=False)
        assert resp.code == 404


def test_extension_limits_default_to_the_engines_and_configured_ones_reach_it():
    from nbfeed.hub import HubConfig
    from nbfeed.hub.wire import WireLimits
    from nbfeed.server_ext.app import NBFeed

    app = NBFeed(providers=["simulated"])
    assert app.wire_limits() == WireLimits()
    engine, served = HubConfig(), app.hub_config()
    for name in ("request_timeout", "idle_timeout", "max_pending_rows",
                 "max_symbols_per_subscription"):
        assert getattr(served, name) == getattr(engine, name), name
    app = NBFeed(providers=["simulated"], max_pending_rows=7, flush_hz=4.0,
                 max_subscriptions_per_client=3, request_timeout=5.0)
    limits = app.wire_limits()
    assert (limits.max_pending_rows, limits.min_flush_interval, limits.max_subscriptions) == (
        7, 0.25, 3)
    assert (app.hub_config().max_pending_rows, app.hub_config().request_timeout) == (7, 5.0)
    assert [spec.name for spec in app.hub_config().providers] == ["simulated"]
