"""The biggest history requests (issue 13, fault 7): asked upstream in pieces with bounded memory
on both sides, late replies dropped unread, cancelled requests stopping the provider's work, and
other clients of the same provider served throughout.

The provider is :class:`tests.server_test_providers.BigHistoryProvider`, which logs every
``get_history`` call (what was asked, when, how many bars it answered) to a file, so each test
can assert what the provider was made to do.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from nbfeed.errors import UpstreamError, UpstreamTimeout
from nbfeed.providers.registry import ProviderSpec
from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import WireClient
from tests.server_test_providers import UNPICKLED, read_calls

MIN = 60_000
END = 1_772_755_200_000  # 2026-03-06T00:00Z: in the past, so every bar is final
BIG = "tests.server_test_providers:BigHistoryProvider"


def asked(log, symbol: str | None = None) -> list[dict]:
    """The provider's get_history calls (of ``symbol``): bars asked for, when asked, when
    answered."""
    out: list[dict] = []
    for call in read_calls(log):
        if symbol is not None and call[1] != symbol:
            continue
        if call[0] == "asked":
            start, end, count, at = call[2:]
            bars = count if start is None else (end - start) // MIN
            out.append({"bars": bars, "asked": at, "answered": None})
        elif call[0] == "answered":
            waiting = [c for c in out if c["answered"] is None]
            if waiting:
                waiting[0]["answered"] = call[3]
    return out


def peak_mb(pid: int) -> float:
    """The highest resident memory process ``pid`` ever had, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


class Bystander:
    """Reads another stream of the same provider and notes when each update arrived."""

    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.arrivals: list[float] = []
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, jp_ws_fetch, source: str, symbol: str) -> Bystander:
        client = await WireClient.open(jp_ws_fetch)
        await client.request({"type": "subscribe", "id": "by", "source": source,
                              "symbols": [symbol]})
        self = cls(client)
        while not self.arrivals:
            await asyncio.sleep(0.05)
        return self

    async def _read(self) -> None:
        while True:
            text = await self.client.conn.read_message()
            if text is None:
                return
            if '"data_update"' in text:
                self.arrivals.append(time.monotonic())

    def max_gap(self, since: float, until: float) -> float:
        times = [since, *(t for t in self.arrivals if since <= t <= until), until]
        return max(b - a for a, b in zip(times, times[1:]))

    def close(self) -> None:
        self._task.cancel()
        self.client.close()


class TestABigRequestThroughTheServer:
    @pytest.fixture
    def log(self, tmp_path):
        return tmp_path / "history-calls.jsonl"

    @pytest.fixture
    def nbfeed_config(self, tmp_path, log):
        return {"home": str(tmp_path / "nbfeed-home"), "providers": [f"big={BIG}"],
                "provider_options": {"big": {"log": str(log), "rate": 50,
                                             "delays": {"OTHER": 2.0}}},
                "history_fetch_bars": 50_000}

    async def test_300k_bars_come_in_pieces_while_a_bystander_keeps_flowing(
            self, nbfeed_server, jp_fetch, jp_ws_fetch, log):
        bystander = await Bystander.open(jp_ws_fetch, "big", "OTHER")
        started = time.monotonic()
        resp = await jp_fetch("nbfeed", "api", "history", request_timeout=300, params={
            "source": "big", "symbol": "BIG", "interval": "1m", "end": str(END),
            "count": "300000"})
        ended = time.monotonic()
        rows = json.loads(resp.body)["rows"]
        assert len(rows) == 300_000
        assert rows[0]["time"] == END - 300_000 * MIN and rows[-1]["time"] == END - MIN
        assert all(b["time"] - a["time"] == MIN for a, b in zip(rows, rows[1:]))
        calls = asked(log)
        # Six pieces of at most 50k bars, one at a time: neither process ever held more.
        assert [c["bars"] for c in calls] == [50_000] * 6
        assert all(b["asked"] >= a["answered"] for a, b in zip(calls, calls[1:]))
        assert bystander.max_gap(started, ended) < 1.0, \
            f"the bystander was silent for {bystander.max_gap(started, ended):.2f} s"
        # The provider never held more than a piece: its peak memory stays far below what
        # 300k bars as rows take (~400 MB before the fix).
        pid = next(p["pid"] for p in nbfeed_server.hub.providers_info() if p["name"] == "big")
        peak = peak_mb(pid)
        assert peak < 200, f"the provider peaked at {peak:.0f} MB"
        bystander.close()

    async def test_a_client_that_goes_away_stops_the_providers_work(
            self, nbfeed_server, jp_fetch, jp_ws_fetch, log):
        nbfeed_server.hub.cache.fetch_bars = 1_000  # 2 s per piece of OTHER: 200 s in all
        bystander = await Bystander.open(jp_ws_fetch, "big", "BIG")
        started = time.monotonic()
        with pytest.raises((HTTPClientError, TimeoutError, asyncio.TimeoutError)):
            await jp_fetch("nbfeed", "api", "history", request_timeout=1.0, params={
                "source": "big", "symbol": "OTHER", "interval": "1m", "end": str(END),
                "count": "100000"})
        await asyncio.sleep(4.5)  # two pieces' worth, and the one in progress ends
        calls = asked(log)
        assert calls and all(c["bars"] <= 1_000 for c in calls), calls
        assert len(calls) == 1, calls  # the piece in progress was the last one asked
        assert bystander.max_gap(started, time.monotonic()) < 1.0
        bystander.close()


@pytest.fixture
def log(tmp_path):
    return tmp_path / "history-calls.jsonl"


async def test_a_reply_after_its_timeout_is_dropped_unread(start_hub, log, monkeypatch):
    """The provider answers OTHER after the hub gave up (and, here, was never told to cancel):
    the reply reaches the hub and is dropped without being unpickled."""
    hub = await start_hub(ProviderSpec("big", BIG, {"log": str(log), "delays": {"OTHER": 3.0},
                                                    "probe": ["OTHER", "BIG"]}),
                          request_timeout=1.5)
    UNPICKLED.clear()
    # In time: unpickled (and refused: a probe is not a number).
    with pytest.raises(UpstreamError, match="probe"):
        await hub.history("big", "BIG", "1m", end=END, count=10)
    assert len(UNPICKLED) == 1
    UNPICKLED.clear()
    proc = hub._processes["big"]
    monkeypatch.setattr(proc, "_cancel", lambda req_id: None, raising=False)
    with pytest.raises(UpstreamTimeout):
        await hub.history("big", "OTHER", "1m", end=END, count=10)
    deadline = time.monotonic() + 30
    while not [c for c in asked(log, "OTHER") if c["answered"]]:
        assert time.monotonic() < deadline, "the provider never answered"
        await asyncio.sleep(0.05)
    # Replies arrive in order: once this one is in, the late one has been handled before it.
    hub.config.request_timeout = 30
    monkeypatch.undo()
    with pytest.raises(UpstreamError, match="probe"):
        await hub.history("big", "BIG", "1m", end=END - 600 * MIN, count=10)
    assert len(UNPICKLED) == 1 and UNPICKLED[0].startswith("BIG "), UNPICKLED


async def test_a_cancelled_request_stops_the_providers_work(start_hub, log):
    hub = await start_hub(ProviderSpec("big", BIG, {"log": str(log), "delay": 0.3}))
    hub.cache.fetch_bars = 1_000
    task = asyncio.ensure_future(hub.history("big", "BIG", "1m", end=END, count=20_000))
    deadline = time.monotonic() + 30
    while len(asked(log)) < 2:
        assert time.monotonic() < deadline, "the provider was never asked twice"
        await asyncio.sleep(0.02)
    task.cancel()
    cancelled_at = time.time()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(1.5)  # five pieces' worth
    calls = asked(log)
    assert all(c["bars"] <= 1_000 for c in calls), calls
    assert not [c for c in calls if c["asked"] > cancelled_at], calls
    # The piece that was in progress was cancelled too: the next request asks afresh for it.
    first = await hub.history("big", "BIG", "1m", start=END - 2 * MIN, end=END)
    assert [r["time"] for r in first] == [END - 2 * MIN, END - MIN]


async def test_a_caller_that_gives_up_leaves_a_shared_fetch_to_the_others(start_hub, log):
    hub = await start_hub(ProviderSpec("big", BIG, {"log": str(log), "delay": 0.2}))
    hub.cache.fetch_bars = 1_000
    quitter = asyncio.ensure_future(hub.history("big", "BIG", "1m", end=END, count=3_000))
    stayer = asyncio.ensure_future(hub.history("big", "BIG", "1m", end=END, count=3_000))
    while not asked(log):
        await asyncio.sleep(0.02)
    quitter.cancel()
    rows = await asyncio.wait_for(stayer, 60)
    assert len(rows) == 3_000
    assert [c["bars"] for c in asked(log)] == [1_000] * 3
