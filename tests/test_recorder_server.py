"""Recording and replay through a real Jupyter server: REST, the websocket protocol, and the
notebook client talking to the server (nbfeed.connect(url))."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pandas as pd
import pytest
from tornado.httpclient import HTTPClientError

import nbfeed
from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import WireClient, fetch_json

API = ("nbfeed", "api")


async def wait_status(jp_fetch, name: str, timeout: float = 60.0) -> dict:
    """Poll the server (another component's state) until the recording has ended."""
    deadline = time.monotonic() + timeout
    while True:
        _, data = await fetch_json(jp_fetch, *API, "recordings", name)
        if data["recording"]["status"] != "recording":
            return data["recording"]
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.1)


async def test_rest_records_lists_describes_exports_and_deletes(nbfeed_server, jp_fetch):
    body = {"source": "simulated", "symbols": ["AAPL", "MSFT"], "interval": ["tick", "1s"],
            "name": "rest-demo", "duration": 1.5}
    resp = await jp_fetch(*API, "recordings", method="POST", body=json.dumps(body))
    assert resp.code == 201
    started = json.loads(resp.body)["recording"]
    assert started["status"] == "recording" and len(started["streams"]) == 2
    info = await wait_status(jp_fetch, "rest-demo")
    assert info["status"] == "finished" and info["rows"] > 0 and info["intervals"] == [
        "1s", "tick"]
    _, listed = await fetch_json(jp_fetch, *API, "recordings")
    assert [r["name"] for r in listed["recordings"]] == ["rest-demo"]

    resp = await jp_fetch(*API, "recordings", "rest-demo", "export", params={"format": "parquet"})
    assert resp.headers["Content-Type"] == "application/vnd.apache.parquet"
    frame = pd.read_parquet(io.BytesIO(resp.body))
    assert len(frame) == info["rows"] and set(frame["interval"]) == {"tick", "1s"}
    resp = await jp_fetch(*API, "recordings", "rest-demo", "export", params={"format": "csv"})
    assert resp.body.decode().splitlines()[0].startswith('"seq","received","interval","time"')

    _, bars = await fetch_json(jp_fetch, *API, "history", params={
        "source": "replay", "symbol": "AAPL", "interval": "1s", "recording": "rest-demo"})
    assert bars["rows"] and {"open", "high", "low", "close"} <= set(bars["rows"][0])

    resp = await jp_fetch(*API, "recordings", "rest-demo", method="DELETE")
    assert resp.code == 204
    await fetch_json(jp_fetch, *API, "recordings", "rest-demo", expect=404)


async def test_rest_refuses_bad_names_bodies_and_unknown_recordings(nbfeed_server, jp_fetch):
    async def post(body, *path) -> tuple[int, dict]:
        try:
            resp = await jp_fetch(*API, "recordings", *path, method="POST",
                                  body=body if isinstance(body, str) else json.dumps(body))
        except HTTPClientError as err:
            resp = err.response
        return resp.code, json.loads(resp.body or b"{}")

    code, data = await post({"source": "simulated", "symbols": ["AAPL"], "name": "../etc"})
    assert code == 400 and "must be 1-64 characters" in data["detail"]
    code, data = await post("{not json")
    assert code == 400 and data["detail"] == "body must be JSON"
    code, data = await post({"source": "nosuch", "symbols": ["AAPL"], "name": "x"})
    assert code == 404 and data["code"] == "unknown_source"
    code, data = await post({"source": "simulated", "symbols": ["NOPE"], "name": "x"})
    assert code == 404 and data["code"] == "unknown_symbol"
    code, data = await post({"source": "simulated", "symbols": ["AAPL"], "name": "x",
                             "max_bytes": "lots"})
    assert code == 400 and "max_bytes must be a whole number" in data["detail"]
    code, data = await post({}, "nope", "stop")
    assert code == 404 and data["code"] == "unknown_recording"
    _, data = await fetch_json(jp_fetch, *API, "recordings", "..%2Fetc", expect=400)
    assert "must be 1-64 characters" in data["detail"]
    _, data = await fetch_json(jp_fetch, *API, "recordings", "nope", "export", expect=404)
    assert "unknown recording 'nope'" in data["detail"]


async def test_a_recording_started_on_a_socket_outlives_it_and_replays_on_another(
        nbfeed_server, jp_ws_fetch, jp_fetch):
    first = await WireClient.open(jp_ws_fetch)
    reply = await first.request({"type": "record", "id": "r1", "source": "simulated",
                                 "symbols": ["AAPL"], "name": "socket-demo", "duration": 1.5})
    assert reply["type"] == "recording" and reply["recording"]["status"] == "recording"
    first.close()  # the notebook went away; the server records on
    info = await wait_status(jp_fetch, "socket-demo")
    assert info["status"] == "finished" and info["rows"] > 10

    ws = await WireClient.open(jp_ws_fetch)
    listed = await ws.request({"type": "recordings", "id": "l1"})
    assert [r["name"] for r in listed["recordings"]] == ["socket-demo"]
    init = await ws.request({"type": "subscribe", "id": "q1", "source": "replay",
                             "symbols": ["AAPL"], "interval": "tick",
                             "options": {"recording": "socket-demo", "speed": 0.5,
                                         "paused": True}})
    assert init["type"] == "data_init" and init["session"]["rows"] == info["rows"]
    assert init["session"]["paused"] is True
    state = await ws.request({"type": "control", "id": "c1", "subscription": "q1",
                              "command": "speed", "args": {"speed": "max"}})
    assert state["state"]["speed"] == "max"
    await ws.send({"type": "control", "subscription": "q1", "command": "resume"})  # one-way
    rows: list[dict] = []
    while len(rows) < info["rows"]:
        frame = await ws.until(lambda f: f.get("type") == "data_update" and f["id"] == "q1")
        rows.extend(frame["rows"])
    assert len(rows) == info["rows"] and all("_rp" not in r for r in rows)
    done = await ws.request({"type": "control", "id": "c2", "subscription": "q1",
                             "command": "state"})
    assert done["state"]["finished"] is True
    bad = await ws.request({"type": "control", "id": "c3", "subscription": "nope",
                            "command": "pause"})
    assert bad["type"] == "error" and "no subscription with id 'nope'" in bad["message"]
    bad = await ws.request({"type": "subscribe", "id": "q2", "source": "simulated",
                            "symbols": ["AAPL"], "options": {"speed": 2}})
    assert bad["type"] == "error" and "takes no subscription options" in bad["message"]
    ws.close()


async def test_the_notebook_client_records_and_replays_through_the_server(
        nbfeed_server, jp_serverapp, jp_base_url, tmp_path):
    url = f"http://127.0.0.1:{jp_serverapp.port}{jp_base_url}"
    token = jp_serverapp.identity_provider.token

    def use_remote() -> None:
        with nbfeed.connect(url, token=token) as feed:
            rec = feed.record("simulated", ["AAPL", "MSFT"], name="remote-demo", duration=1.5)
            info = rec.wait(timeout=60)
            assert info["status"] == "finished" and info["rows"] > 10
            assert "remote-demo" in feed.recordings().index
            recorded = rec.rows()
            assert list(recorded["seq"]) == list(range(1, info["rows"] + 1))

            stream = feed.subscribe("replay", ["AAPL", "MSFT"], recording="remote-demo",
                                    speed="max", paused=True)
            got: list[dict] = []
            stream.on_update(lambda rows: got.extend(dict(r) for r in rows))
            stream.resume()
            assert stream.wait(60)
            stream.close()
            assert [(r["symbol"], r["time"], r["price"]) for r in got] == [
                (s, int(t.value // 10**6), p) for s, t, p in
                zip(recorded["symbol"], recorded["time"], recorded["price"])]
            assert stream.now_ms() == int(recorded["received"].iloc[-1].value // 10**6)

            bars = rec.history("AAPL", "1s")
            assert len(bars) >= 1 and str(bars.index.tz) == "UTC"
            out = rec.export(tmp_path / "remote.parquet")
            assert len(pd.read_parquet(out)) == info["rows"]
            with pytest.raises(nbfeed.NBFeedError, match="unknown recording 'nope'"):
                feed.recording("nope")
            rec.delete()
            assert "remote-demo" not in feed.recordings().index

    await asyncio.to_thread(use_remote)


async def test_a_replay_streams_history_comes_from_the_server_at_any_point_of_the_replay(
        nbfeed_server, jp_serverapp, jp_base_url):
    """What a LiveChart on a replay does first: ask the stream for the bars before its clock -
    none at the start (an empty answer, not an error), some once the replay has moved on."""
    url = f"http://127.0.0.1:{jp_serverapp.port}{jp_base_url}"
    token = jp_serverapp.identity_provider.token

    def use_remote() -> tuple:
        with nbfeed.connect(url, token=token) as feed:
            rec = feed.record("simulated", ["AAPL"], interval=["tick", "1s"], name="warm-up",
                              duration=3.0)
            assert rec.wait(timeout=60)["status"] == "finished"
            stream = feed.subscribe("replay", ["AAPL"], interval="1s", recording="warm-up",
                                    speed="max", paused=True)
            at_start = stream.history()
            stream.resume()
            assert stream.wait(60)
            at_end = stream.history()
            stream.close()
            return at_start, at_end, rec.history("AAPL", "1s")

    at_start, at_end, recorded = await asyncio.to_thread(use_remote)
    assert at_start.empty
    assert len(at_end) >= 2 and str(at_end.index.tz) == "UTC"
    # Finished bars as recorded (the last one stood as it was at the replay's clock).
    done = at_end.iloc[:-1]
    pd.testing.assert_frame_equal(done, recorded.loc[:done.index[-1]])
