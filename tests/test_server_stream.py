"""The websocket ``nbfeed/api/stream`` (wire protocol v1) against a real server and providers."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import WireClient
from tests.server_test_providers import read_calls


@pytest.fixture
def calls_log(tmp_path):
    return tmp_path / "calls.jsonl"


@pytest.fixture
def nbfeed_config(tmp_path, calls_log):
    return {"home": str(tmp_path / "nbfeed-home"),
            "providers": ["simulated", "counting=tests.server_test_providers:CountingProvider"],
            "provider_options": {"simulated": {"rate": 50},
                                 "counting": {"log": str(calls_log), "rate": 200}},
            "request_timeout": 2.0, "max_subscriptions_per_client": 50}


async def wait_for(pred, timeout=20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)  # polling a file written by another process


def updates(frames, rid):
    return [r for f in frames if f["type"] == "data_update" and f["id"] == rid for r in f["rows"]]


async def test_subscribe_init_then_updates(nbfeed_server, jp_ws_fetch):
    ws = await WireClient.open(jp_ws_fetch)
    init = await ws.request({"type": "subscribe", "id": "q1", "source": "simulated",
                             "symbols": ["AAPL", "MSFT"], "interval": "tick"})
    assert init["type"] == "data_init" and isinstance(init["rows"], list)
    seen = set()
    while seen != {"AAPL", "MSFT"}:
        frame = await ws.until(lambda f: f["type"] == "data_update")
        assert frame["id"] == "q1"
        for row in frame["rows"]:
            assert {"time", "symbol", "price", "bid", "ask", "change"} <= set(row)
            seen.add(row["symbol"])
    ws.close()


async def test_many_subscriptions_on_one_socket_and_unsubscribe(nbfeed_server, jp_ws_fetch):
    ws = await WireClient.open(jp_ws_fetch)
    for rid, syms, iv in (("a", ["AAPL"], "tick"), ("b", ["MSFT", "GOOGL"], "tick"),
                          ("c", ["AAPL"], "1m")):
        reply = await ws.request({"type": "subscribe", "id": rid, "source": "simulated",
                                  "symbols": syms, "interval": iv})
        assert reply["type"] == "data_init"
    got: dict[str, set] = {"a": set(), "b": set(), "c": set()}
    while not all(got.values()) or got["b"] != {"MSFT", "GOOGL"}:
        frame = await ws.until(lambda f: f["type"] == "data_update")
        got[frame["id"]].update(r["symbol"] for r in frame["rows"])
    assert got["a"] == {"AAPL"} and got["c"] == {"AAPL"}
    bar = updates(ws.frames, "c")[-1]
    assert {"open", "high", "low", "close", "volume"} <= set(bar)

    reply = await ws.request({"type": "unsubscribe", "id": "a"})
    assert reply == {"type": "unsubscribed", "id": "a"}
    mark = len(ws.frames)
    # Data keeps flowing for b and c, never again for a.
    for _ in range(10):
        await ws.until(lambda f: f["type"] == "data_update")
    assert not updates(ws.frames[mark:], "a")
    assert updates(ws.frames[mark:], "b")
    ws.close()


async def test_two_sockets_one_upstream_stream_and_release(nbfeed_server, jp_ws_fetch,
                                                          calls_log):
    ws1 = await WireClient.open(jp_ws_fetch)
    ws2 = await WireClient.open(jp_ws_fetch)
    for ws in (ws1, ws2):
        await ws.request({"type": "subscribe", "id": "x", "source": "counting",
                          "symbols": ["A"], "interval": "tick"})
        await ws.until(lambda f: f["type"] == "data_update")
    starts = [c for c in read_calls(calls_log) if c[0] == "start_streaming"]
    assert starts == [["start_streaming", "A", "tick"]]

    ws1.close()  # a socket that goes away releases what it held...
    await asyncio.sleep(0.5)
    assert not [c for c in read_calls(calls_log) if c[0] == "on_close"]  # ws2 still holds it
    await ws2.until(lambda f: f["type"] == "data_update")
    ws2.close()
    await wait_for(lambda: [c for c in read_calls(calls_log) if c[0] == "on_close"])
    assert [c for c in read_calls(calls_log) if c[0] == "on_close"] == [["on_close", "A", "tick"]]


async def test_search_and_history_over_socket(nbfeed_server, jp_ws_fetch):
    ws = await WireClient.open(jp_ws_fetch)
    reply = await ws.request({"type": "search", "id": "s1", "query": "apple"})
    assert reply["type"] == "search" and reply["results"][0]["name"] == "AAPL"
    reply = await ws.request({"type": "history", "id": "h1", "source": "simulated",
                              "symbol": "AAPL", "interval": "5m", "count": 12})
    assert reply["type"] == "history" and len(reply["rows"]) == 12
    # A provider that never answers: an error within the timeout, not a hang.
    reply = await ws.request({"type": "history", "id": "h2", "source": "counting",
                              "symbol": "D", "interval": "1m", "count": 5}, timeout=20)
    assert reply["type"] == "error" and reply["code"] == "upstream"
    assert "did not answer" in reply["message"]
    reply = await ws.request({"type": "ping", "id": "p"})
    assert reply["type"] == "pong"
    ws.close()


@pytest.mark.parametrize(
    ("message", "code", "named"),
    [
        ("not json at all", "bad_request", "JSON"),
        ("[1, 2, 3]", "bad_request", "object"),
        ('"just a string"', "bad_request", "object"),
        ({"id": "z"}, "bad_request", "None"),
        ({"type": "launch_missiles", "id": "z"}, "bad_request", "launch_missiles"),
        ({"type": "subscribe", "id": "z", "source": "nope", "symbols": ["AAPL"]},
         "unknown_source", "nope"),
        ({"type": "subscribe", "id": "z", "source": "simulated", "symbols": ["NOPE"]},
         "unknown_symbol", "NOPE"),
        ({"type": "subscribe", "id": "z", "source": "simulated", "symbols": ["AAPL"],
          "interval": "2s"}, "bad_interval", "2s"),
        ({"type": "subscribe", "id": "z", "source": "simulated", "symbols": "AAPL",
          "interval": 5}, "bad_interval", "5"),
        ({"type": "subscribe", "id": "z", "source": "simulated", "symbols": [1, 2]},
         "bad_request", "symbols"),
        ({"type": "subscribe", "source": "simulated", "symbols": ["AAPL"]}, "bad_request", "id"),
        ({"type": "subscribe", "id": {"x": 1}, "source": "simulated", "symbols": ["AAPL"]},
         "bad_request", "id"),
        ({"type": "unsubscribe", "id": "never"}, "bad_request", "never"),
        ({"type": "history", "id": "z", "source": "simulated", "symbol": "AAPL",
          "interval": "1m", "start": "soon"}, "bad_request", "soon"),
        ({"type": "history", "id": "z", "source": "simulated", "symbol": "AAPL",
          "interval": "1m", "count": -3}, "bad_request", "count"),
        ({"type": "search", "id": "z", "query": ["x"]}, "bad_request", "query"),
    ],
)
async def test_bad_messages_get_named_errors_and_socket_survives(nbfeed_server, jp_ws_fetch,
                                                                 message, code, named):
    ws = await WireClient.open(jp_ws_fetch)
    await ws.send(message)
    err = await ws.until(lambda f: f["type"] == "error")
    assert err["code"] == code and named in err["message"], err
    # The same socket still works afterwards.
    reply = await ws.request({"type": "subscribe", "id": "ok", "source": "simulated",
                              "symbols": ["AAPL"]})
    assert reply["type"] == "data_init"
    ws.close()


async def test_oversized_frame_and_subscription_flood(nbfeed_server, jp_ws_fetch):
    ws = await WireClient.open(jp_ws_fetch)
    await ws.send(json.dumps({"type": "search", "id": "big", "query": "x" * 10_000_000}))
    err = await ws.until(lambda f: f["type"] == "error")
    assert err["code"] == "limit" and "bytes" in err["message"]

    # 10,000 subscriptions from one client: the configured limit (50 here) answers the rest.
    for i in range(10_000):
        await ws.send({"type": "subscribe", "id": f"s{i}", "source": "simulated",
                       "symbols": ["AAPL"]})
    inits = errors = 0
    while inits + errors < 10_000:
        frame = await ws.recv()
        if frame["type"] == "data_init":
            inits += 1
        elif frame["type"] == "error":
            assert frame["code"] == "limit"
            errors += 1
    assert inits == 50 and errors == 9_950
    hub = nbfeed_server.hub
    assert hub.stats()["streams"] == 1  # fifty subscriptions of AAPL: one upstream stream

    other = await WireClient.open(jp_ws_fetch)  # everyone else keeps working
    await other.request({"type": "subscribe", "id": "q", "source": "simulated",
                         "symbols": ["MSFT"]})
    await other.until(lambda f: f["type"] == "data_update")
    ws.close()
    other.close()


class TestStalledReader:
    @pytest.fixture
    def nbfeed_config(self, tmp_path, calls_log):
        return {"home": str(tmp_path / "nbfeed-home"),
                "providers": ["simulated",
                              "counting=tests.server_test_providers:CountingProvider"],
                "provider_options": {"simulated": {"rate": 50},
                                     "counting": {"log": str(calls_log), "rate": 1000}},
                "max_pending_rows": 200}

    async def test_client_that_never_reads_stays_bounded(self, nbfeed_server, jp_ws_fetch):
        """A stalled reader's rows conflate in a bounded outbox; a healthy client is unaffected."""
        import gc
        import socket

        from nbfeed.server_ext.stream_handler import StreamHandler

        slow = await WireClient.open(jp_ws_fetch)
        await slow.request({"type": "subscribe", "id": "flood", "source": "counting",
                            "symbols": ["A", "B", "C"]})
        # Stop reading on the client, and shrink the server's send buffer for this socket, so
        # its writes back up within a second instead of filling megabytes of kernel buffers.
        client_stream = slow.conn.protocol.stream
        client_stream.io_loop.remove_handler(client_stream.socket)
        handler = next(h for h in gc.get_objects() if isinstance(h, StreamHandler)
                       and h.session is not None and "flood" in h.session.subscriptions)
        server_stream = handler.ws_connection.stream
        server_stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        flood = handler.session.subscriptions["flood"]

        fast = await WireClient.open(jp_ws_fetch)
        await fast.request({"type": "subscribe", "id": "f", "source": "simulated",
                            "symbols": ["AAPL"]})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while flood.conflated_rows == 0:  # the stall is reached...
            assert loop.time() < deadline, "the stalled client's outbox never conflated"
            await fast.until(lambda f: f["type"] == "data_update")
        for _ in range(20):  # ...and stays bounded while the healthy client keeps receiving
            await fast.until(lambda f: f["type"] == "data_update")
            assert flood.pending_rows <= flood.max_pending_rows + 3
            buffered = server_stream._total_write_index - server_stream._total_write_done_index
            assert buffered < 1_000_000
        fast.close()
        slow.close()


async def test_provider_killed_streams_resume_with_status_events(nbfeed_server, jp_ws_fetch):
    import os
    import signal

    hub = nbfeed_server.hub
    ws = await WireClient.open(jp_ws_fetch)
    await ws.request({"type": "subscribe", "id": "q", "source": "counting", "symbols": ["B"]})
    await ws.until(lambda f: f["type"] == "data_update")
    pid = next(p["pid"] for p in hub.providers_info() if p["name"] == "counting")
    os.kill(pid, signal.SIGKILL)
    down = await ws.until(lambda f: f["type"] == "status" and f["state"] == "restarting")
    assert down["source"] == "counting" and "restarting" in down["detail"]
    await ws.until(lambda f: f["type"] == "status" and f["state"] == "running", timeout=60)
    frame = await ws.until(lambda f: f["type"] == "data_update", timeout=60)
    assert frame["id"] == "q" and frame["rows"][0]["symbol"] == "B"
    assert frame["rows"][0]["seq"] < 100  # a fresh process: its counter started again
    new_pid = next(p["pid"] for p in hub.providers_info() if p["name"] == "counting")
    assert new_pid != pid
    ws.close()
