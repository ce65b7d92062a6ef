"""Faults a reliability harness found, reproduced against a real Jupyter server and providers.

Each scenario runs with a *bystander*: a second client on another provider's stream, whose
longest silence must stay under a second whatever the fault does to the rest.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import time

import pytest

from tests.providers_for_faults import WireBystander
from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import WireClient, fetch_json


def server_handler(session_has):
    """The server side (StreamHandler) of the socket whose session holds subscription id
    ``session_has``: the server runs in this process, so the test can reach it."""
    from nbfeed.server_ext.stream_handler import StreamHandler

    return next(h for h in gc.get_objects() if isinstance(h, StreamHandler)
                and h.session is not None and session_has in h.session.subscriptions)


@pytest.fixture
def calls_log(tmp_path):
    return tmp_path / "calls.jsonl"


class TestBackedUpSocketChurn:
    """Fault 2: a client reads nothing for 3 s on a 20k rows/s stream, then unsubscribes one
    subscription while the socket is backed up. The pump looked the id up after an await, died
    of a KeyError (logged at DEBUG) and every other subscription of the socket went silent."""

    @pytest.fixture
    def nbfeed_config(self, tmp_path, calls_log):
        return {"home": str(tmp_path / "nbfeed-home"),
                "providers": ["simulated",
                              "counting=tests.server_test_providers:CountingProvider"],
                "provider_options": {"simulated": {"rate": 20_000},
                                     "counting": {"log": str(calls_log), "rate": 50}}}

    async def test_unsubscribing_while_backed_up_never_silences_the_others(
            self, nbfeed_server, jp_ws_fetch, caplog):
        bystander = await WireBystander.open(jp_ws_fetch)
        ws = await WireClient.open(jp_ws_fetch)
        await ws.request({"type": "subscribe", "id": "keep", "source": "simulated",
                          "symbols": ["AAPL"]})
        handler = server_handler("keep")
        # A small kernel buffer, so the socket backs up within the pause, not after megabytes.
        handler.ws_connection.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                                       4096)
        for round_ in range(3):
            ids = [f"r{round_}-{n}" for n in range(5)]
            for n, rid in enumerate(ids):
                await ws.request({"type": "subscribe", "id": rid, "source": "simulated",
                                  "symbols": [["MSFT", "GOOGL", "AMZN", "NVDA", "META"][n]]})
            await asyncio.sleep(3)  # reading nothing: the server's writes back up
            await ws.send({"type": "unsubscribe", "id": ids[-1]})
            for rid in ids[:-1]:
                await ws.send({"type": "unsubscribe", "id": rid})
            last = ids[-2]  # the last unsubscribe sent
            await ws.until(lambda f, last=last: f.get("type") == "unsubscribed"
                           and f["id"] == last, timeout=60)
            ws.frames.clear()
            # Every subscription still held keeps delivering.
            await ws.until(lambda f: f["type"] == "data_update" and f["id"] == "keep",
                           timeout=20)
        late = time.monotonic()
        while time.monotonic() - late < 2:
            frame = await ws.until(lambda f: f["type"] == "data_update")
            assert frame["id"] == "keep"
        assert not [r for r in caplog.records if r.name.startswith("nbfeed")
                    and r.levelname in ("ERROR", "CRITICAL")]
        assert bystander.max_gap() < 1.0, f"bystander silent for {bystander.max_gap():.2f} s"
        bystander.close()
        ws.close()


class TestHungProvider:
    """Fault 1: with a provider SIGSTOPped, subscribe/unsubscribe churn to it (300 frames in
    5 s) stopped every other client for 20 s (pipe writes on the event loop), REST still said
    ``running`` and its subscribers got no status event."""

    @pytest.fixture
    def nbfeed_config(self, tmp_path, calls_log):
        return {"home": str(tmp_path / "nbfeed-home"),
                "providers": ["simulated",
                              "counting=tests.server_test_providers:CountingProvider"],
                "provider_options": {"simulated": {"rate": 50},
                                     "counting": {"log": str(calls_log), "rate": 2000}},
                "heartbeat_interval": 0.5, "stall_timeout": 2.0, "stall_restart_after": 0.0,
                "request_timeout": 20.0}

    async def test_a_stopped_provider_under_churn_blocks_nobody_and_is_reported(
            self, nbfeed_server, jp_ws_fetch, jp_fetch):
        bystander = await WireBystander.open(jp_ws_fetch, "simulated", "AAPL")
        watcher = await WireClient.open(jp_ws_fetch)
        await watcher.request({"type": "subscribe", "id": "w", "source": "counting",
                               "symbols": ["A"]})
        await watcher.until(lambda f: f["type"] == "data_update")
        pid = next(p["pid"] for p in nbfeed_server.hub.providers_info()
                   if p["name"] == "counting")
        churn = await WireClient.open(jp_ws_fetch)
        os.kill(pid, signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            for n in range(150):  # 300 frames in 5 s
                await churn.send({"type": "subscribe", "id": f"c{n}", "source": "counting",
                                  "symbols": ["B"]})
                await churn.send({"type": "unsubscribe", "id": f"c{n}"})
                await asyncio.sleep(5 / 150)
            event = await watcher.until(lambda f: f["type"] == "status"
                                        and f["state"] == "stalled", timeout=20)
            detected = time.monotonic() - stopped
            assert event["source"] == "counting" and "heartbeat" in event["detail"]
            _, body = await fetch_json(jp_fetch, "nbfeed", "api", "providers")
            status = next(p for p in body["providers"] if p["name"] == "counting")
            assert status["status"] == "stalled"
            asked = time.monotonic()
            reply = await churn.request({"type": "history", "id": "h", "source": "counting",
                                         "symbol": "A", "interval": "1m", "count": 5})
            assert reply["code"] == "upstream" and "stalled" in reply["message"]
            assert time.monotonic() - asked < 1.0  # not the 20 s request timeout
            asked = time.monotonic()
            await fetch_json(jp_fetch, "api", "status")  # Jupyter's own: took 20 s
            assert time.monotonic() - asked < 1.0
            assert detected < 10
            assert bystander.max_gap() < 1.0, f"bystander silent {bystander.max_gap():.2f} s"
        finally:
            os.kill(pid, signal.SIGCONT)
        await watcher.until(lambda f: f["type"] == "status" and f["state"] == "running",
                            timeout=20)
        await watcher.until(lambda f: f["type"] == "data_update", timeout=20)
        assert bystander.max_gap() < 1.0
        for client in (watcher, churn):
            client.close()
        bystander.close()
