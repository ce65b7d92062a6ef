"""Hostile input against a real server: absurd dates, deep nesting, lone surrogates, huge values.

Every one is answered with a 4xx or an ``error`` frame naming the field, the socket stays open,
nothing is logged as an error (no traceback), and the rest of the server is not affected: a
bystander stream keeps flowing and widgets.json keeps answering.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from nbfeed.errors import BadRequest, shown
from nbfeed.jsonfast import dumpb, loads
from nbfeed.openbb.entries import build_entry, check_rows
from nbfeed.timeutil import to_ms
from tests.providers_for_faults import WireBystander
from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import WireClient, fetch_json

WS = ("nbfeed", "workspace")
ORIGIN = "https://pro.openbb.co"
DEEP_5K = "[" * 5_000 + "]" * 5_000
DEEP_100K = "[" * 100_000 + "]" * 100_000


def nested(depth: int) -> str:
    """JSON text of a list nested ``depth`` levels (within what a JSON parser accepts)."""
    return "[" * depth + "]" * depth


@pytest.fixture
def nbfeed_config(tmp_path):
    return {"home": str(tmp_path / "nbfeed-home"), "providers": ["simulated", "csv"],
            "provider_options": {"simulated": {"rate": 50}}}


@pytest.fixture
def server_errors(caplog):
    """Records the server logged at ERROR or with a traceback (its tests must leave none)."""
    caplog.set_level(logging.DEBUG)

    def found() -> list[str]:
        return [f"{r.name}: {r.getMessage()[:200]}" for r in caplog.records
                if r.levelno >= logging.ERROR or r.exc_info]
    return found


# ---- the rules, without a server ------------------------------------------------------------


@pytest.mark.parametrize("text", ["now-99999999y", "$currentDate-99999999M", "now+99999999y"])
def test_relative_dates_beyond_the_calendar_name_the_field(text):
    with pytest.raises(BadRequest, match=r"start: .* outside the years"):
        to_ms(text, "start")


@pytest.mark.parametrize(("doc", "named"), [
    ('{"type": "subscribe", "id": "\\ud800"}', "id"),
    ('{"rows": [{"a": 1}, {"name": "x\\udfffy"}]}', "rows[1].name"),
    (b'{"symbol": "\xed\xa0\x80"}', "symbol"),
    (DEEP_5K, "nesting deeper than 1024"),
    (DEEP_100K, "nesting deeper than 1024"),
])
def test_json_input_refusals_say_where(doc, named):
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        loads(doc)


def test_output_never_fails_on_a_lone_surrogate():
    assert loads(dumpb({"a": "x\ud800", "\udc00": ["ok"]})) == {"a": "x\ufffd",
                                                               "\ufffd": ["ok"]}


def test_echoed_values_are_short_whatever_they_are():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    for value in (deep, "x" * 100_000, {"k": list(range(10**5))}, "\ud800" * 50):
        assert len(shown(value)) <= 80


@pytest.mark.parametrize(("body", "named"), [
    ({"id": "t", "name": "bad \ud800", "columns": [{"field": "a"}]}, "name"),
    ({"id": "t", "name": "T", "columns": [{"field": "a", "headerName": "\udc00"}]},
     "columns[0].headerName"),
    ({"id": "t", "name": "T", "description": "x\ud800", "columns": [{"field": "a"}]},
     "description"),
])
def test_published_definitions_refuse_lone_surrogates(body, named):
    with pytest.raises(BadRequest, match=named.replace("[", r"\[").replace("]", r"\]")):
        build_entry(body)


def test_published_rows_refuse_lone_surrogates():
    with pytest.raises(BadRequest, match=r"rows\[1\]\.name"):
        check_rows([{"name": "ok"}, {"name": "x\ud800"}])
    with pytest.raises(BadRequest, match=r"rows\[0\]"):
        check_rows([{"\ud800": 1}])


# ---- REST -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "status", "named"), [
    ({"start": "now-99999999y"}, 400, "start"),
    ({"end": "now+99999999y"}, 400, "end"),
    ({"start": "-99999999999999999999999"}, 400, "start"),
    ({"count": str(10**30)}, 429, "count"),
    ({"symbol": b"\xed\xa0\x80"}, 400, "symbol"),
    ({"symbol": "x" * 10_000}, 400, "symbol"),
    ({"interval": nested(1000)}, 400, "interval"),
])
async def test_rest_history_names_the_bad_field(nbfeed_server, jp_fetch, jp_ws_fetch,
                                                server_errors, params, status, named):
    bystander = await WireBystander.open(jp_ws_fetch, "simulated", "MSFT")
    query = {"source": "simulated", "symbol": "AAPL", "interval": "1d", **params}
    _, reply = await fetch_json(jp_fetch, "nbfeed", "api", "history", params=query,
                                expect=status)
    assert named in reply["detail"] and len(reply["detail"]) < 400, reply
    await fetch_json(jp_fetch, "nbfeed", "api", "history", params={
        "source": "simulated", "symbol": "AAPL", "interval": "1d", "count": "5"})
    assert server_errors() == []
    assert bystander.max_gap() < 1.0
    bystander.close()


@pytest.mark.parametrize("body", [DEEP_5K, DEEP_100K, '{"name": "\\ud800", "kind": "builtin"}',
                                  b'{"name": "\xed\xa0\x80"}'])
async def test_rest_json_bodies_are_refused_by_name(nbfeed_server, jp_fetch, jp_ws_fetch,
                                                    server_errors, body):
    bystander = await WireBystander.open(jp_ws_fetch, "simulated", "MSFT")
    _, reply = await fetch_json(jp_fetch, "nbfeed", "api", "providers", method="POST",
                                body=body, expect=400)
    assert "body" in reply["detail"], reply
    assert server_errors() == []
    assert bystander.max_gap() < 1.0
    bystander.close()


async def test_workspace_endpoints_name_the_bad_field(nbfeed_server, jp_fetch, jp_ws_fetch,
                                                      server_errors):
    bystander = await WireBystander.open(jp_ws_fetch, "simulated", "MSFT")
    for parts, params, named in (
            (("history", "simulated"), {"symbol": "AAPL", "start": "now-99999999y"}, "start"),
            (("chart", "simulated"), {"symbol": "AAPL", "end": "now+99999999y"}, "end"),
            (("history", "simulated"), {"symbol": "AAPL", "start": "0001-01-01"}, "start"),
            (("quotes", "simulated"), {"symbol": b"\xed\xa0\x80"}, "symbol"),
            (("symbols",), {"query": b"\xed\xa0\x80"}, "query")):
        _, reply = await fetch_json(jp_fetch, *WS, *parts, params=params, expect=400)
        assert named in reply["detail"], (parts, params, reply)
    assert server_errors() == []
    assert bystander.max_gap() < 1.0
    bystander.close()


async def test_a_hostile_published_table_poisons_nothing(nbfeed_server, jp_fetch, jp_ws_fetch,
                                                         server_errors):
    bystander = await WireBystander.open(jp_ws_fetch, "simulated", "MSFT")
    def api(method, *parts, body, expect):
        kw = {"method": method, "body": body if isinstance(body, (str, bytes))
              else json.dumps(body), "allow_nonstandard_methods": True}
        return fetch_json(jp_fetch, *WS, "api", *parts, expect=expect, **kw)

    good = {"id": "ok", "name": "Fine", "columns": [{"field": "a", "headerName": "A"}],
            "rows": [{"a": "text"}]}
    await api("POST", "widgets", body=good, expect=200)
    columns = '"columns": [{"field": "a"}]'
    for body, named in (
            ('{"id": "bad", "name": "\\ud800", ' + columns + "}", "name"),
            ('{"id": "bad\\ud800", "name": "B", ' + columns + "}", "id"),
            ('{"id": "bad", "name": "B", ' + columns + ', "rows": [{"a": "\\udc01"}]}',
             "rows[0].a"),
            (DEEP_5K, "nesting"), (DEEP_100K, "nesting")):
        _, reply = await api("POST", "widgets", body=body, expect=400)
        assert named in reply["detail"], (body[:80], reply)
    _, reply = await api("PUT", "widgets", "ok", "rows", body='{"rows": [{"a": "\\ud800"}]}',
                         expect=400)
    assert "rows[0].a" in reply["detail"]
    # The Workspace backend still works for everyone.
    _, widgets = await fetch_json(jp_fetch, *WS, "widgets.json")
    assert "nbfeed_nb_ok" in widgets and "nbfeed_nb_bad" not in widgets
    await fetch_json(jp_fetch, *WS, "apps.json")
    _, rows = await fetch_json(jp_fetch, *WS, "published", "ok")
    assert rows == [{"a": "text"}]
    assert server_errors() == []
    assert bystander.max_gap() < 1.0
    bystander.close()


async def test_one_bad_string_that_got_in_cannot_break_widgets_json(nbfeed_server, jp_fetch,
                                                                     server_errors):
    """Defence in depth: even a table that bypassed validation (stored directly) leaves
    widgets.json answering, without that table."""
    store = nbfeed_server.workspace_backend.published
    item = store.put({"id": "sneaky", "name": "S", "rows": [],
                      "columns": [{"field": "a", "headerName": "A"}]})
    item.entry["name"] = "bad \ud800"
    item.rows = [{"a": "\ud800"}]
    _, widgets = await fetch_json(jp_fetch, *WS, "widgets.json")
    assert "nbfeed_nb_sneaky" not in widgets and "nbfeed_quotes_simulated" in widgets
    await fetch_json(jp_fetch, *WS, "apps.json")
    _, rows = await fetch_json(jp_fetch, *WS, "published", "sneaky")
    assert rows == [{"a": "\ufffd"}]
    assert [e for e in server_errors() if "sneaky" not in e] == []


class TestCSVFolder:
    @pytest.fixture
    def nbfeed_config(self, tmp_path):
        folder = tmp_path / "private-data-folder"
        folder.mkdir()
        (folder / "GONE.csv").write_text("time,open,high,low,close,volume\n"
                                         "2026-01-05,1,2,0.5,1.5,10\n")
        return {"home": str(tmp_path / "nbfeed-home"), "providers": ["csv"],
                "csv_dir": str(folder)}

    async def test_csv_errors_do_not_reveal_the_server_folder(self, nbfeed_server, jp_fetch,
                                                              tmp_path):
        folder = tmp_path / "private-data-folder"
        (folder / "GONE.csv").unlink()  # listed in the catalog, gone from the disk
        _, reply = await fetch_json(jp_fetch, "nbfeed", "api", "history", params={
            "source": "csv", "symbol": "GONE", "interval": "1d"}, expect=404)
        assert "GONE" in reply["detail"]
        assert str(tmp_path) not in reply["detail"], reply
        _, body = await fetch_json(jp_fetch, "nbfeed", "api", "providers")
        csv = next(p for p in body["providers"] if p["name"] == "csv")
        assert str(tmp_path) not in csv["detail"], csv


# ---- wire protocol socket -------------------------------------------------------------------


@pytest.mark.parametrize(("message", "code", "named"), [
    ({"type": "history", "id": "h", "source": "simulated", "symbol": "AAPL", "interval": "1d",
      "start": "now-99999999y"}, "bad_request", "start"),
    ({"type": "history", "id": "h", "source": "simulated", "symbol": "AAPL", "interval": "1d",
      "start": -10**30}, "bad_request", "start"),
    (DEEP_5K, "bad_request", "nesting"),
    (DEEP_100K, "bad_request", "nesting"),
    ('{"type": "subscribe", "id": "\\ud800", "source": "simulated", "symbols": ["AAPL"]}',
     "bad_request", "id"),
    ('{"type": "subscribe", "id": "s", "source": "simulated", "symbols": ["\\ud800"]}',
     "bad_request", "symbols[0]"),
    ('{"type": "search", "id": "s", "query": "\\udfff"}', "bad_request", "query"),
    ({"type": "subscribe", "id": "s", "source": "x" * 100_000, "symbols": ["AAPL"]},
     "unknown_source", "unknown source"),
    ({"type": "subscribe", "id": "s", "source": "simulated", "symbols": ["AAPL"],
      "interval": nested(1000)}, "bad_interval", "interval"),
    ({"type": "subscribe", "id": "s", "source": nested(1000), "symbols": ["AAPL"]},
     "unknown_source", "source"),
    ({"type": "history", "id": "h", "source": "simulated", "symbol": nested(1000),
      "interval": "1d"}, "bad_request", "symbol"),
])
async def test_socket_errors_name_the_field_and_the_socket_stays_open(
        nbfeed_server, jp_ws_fetch, server_errors, message, code, named):
    if isinstance(message, dict):
        text = json.dumps(message)
        for _key, value in message.items():  # nested(...) values go in as JSON, not strings
            if isinstance(value, str) and value.startswith("[["):
                text = text.replace(json.dumps(value), value)
    else:
        text = message
    bystander = await WireBystander.open(jp_ws_fetch, "simulated", "MSFT")
    ws = await WireClient.open(jp_ws_fetch)
    await ws.send(text)
    err = await ws.until(lambda f: f["type"] == "error")
    assert err["code"] == code and named in err["message"], err
    assert len(err["message"]) < 400
    reply = await ws.request({"type": "subscribe", "id": "after", "source": "simulated",
                              "symbols": ["AAPL"]})
    assert reply["type"] == "data_init"
    await ws.until(lambda f: f["type"] == "data_update")
    assert server_errors() == []
    assert bystander.max_gap() < 1.0
    bystander.close()
    ws.close()


async def test_live_grid_socket_ignores_hostile_params_and_keeps_serving(
        nbfeed_server, jp_fetch, jp_ws_fetch, jp_http_port, jp_base_url, server_errors):
    bystander = await WireBystander.open(jp_ws_fetch, "simulated", "MSFT")
    _, widgets = await fetch_json(jp_fetch, *WS, "widgets.json")
    endpoint = widgets["nbfeed_quotes_simulated"]["wsEndpoint"]
    url = f"ws://127.0.0.1:{jp_http_port}{jp_base_url}nbfeed/workspace/{endpoint}"
    ws = await websocket_connect(HTTPRequest(url, headers={"Origin": ORIGIN}),
                                 max_message_size=64 * 1024 * 1024)
    for message in (DEEP_5K, '{"params": {"symbol": ' + nested(1000) + "}}",
                    '{"params": {"symbol": "\\ud800"}}',
                    '{"params": {"symbol": ["A", ' + nested(500) + "]}}",
                    '{"type": "params", "params": ' + nested(900) + "}"):
        await ws.write_message(message)
    await ws.write_message('{"type": "params", "params": {"symbol": "AAPL"}}')
    started = time.monotonic()
    while True:
        frame = await asyncio.wait_for(ws.read_message(), 20)
        assert frame is not None, "the live grid socket closed"
        if json.loads(frame) and json.loads(frame)[0]["symbol"] == "AAPL":
            break
        assert time.monotonic() - started < 20
    ws.close()
    assert server_errors() == []
    assert bystander.max_gap() < 1.0
    bystander.close()
