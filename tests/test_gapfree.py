"""Streams that heal without gaps: after a SIGKILL of a provider and a cut of its upstream socket,
the bars a subscriber received for the whole span equal ``history()`` for it - none missing,
none duplicated, in order - and live bars resume within seconds; silence is reported as stale.

Real provider processes behind a real hub: the ``simulated`` provider (deterministic: its live
bars, once final, equal its history) and ``binance`` against the local fake Binance (cut for a
few seconds here; ``bench/gapfree.py`` runs the full 30 s cut and reports the figures).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from nbfeed.hub.backfill import missing_span
from nbfeed.hub.staleness import StalenessRules, StreamHealth
from nbfeed.intervals import floor_bar
from nbfeed.providers.registry import ProviderSpec
from nbfeed.providers.simulated import SimulatedProvider
from tests.fakes import FakeBinance
from tests.gapfree_helpers import BarLog, compare_bars
from tests.providers_for_tests import history_bar, read_calls

SIMULATED = "nbfeed.providers.simulated:SimulatedProvider"
BINANCE = "nbfeed.providers.binance:BinanceProvider"
SECOND, MINUTE = 1000, 60_000


def pid_of(hub, name: str) -> int:
    return next(p["pid"] for p in hub.providers_info() if p["name"] == name)


def final_span(log: BarLog) -> tuple[int, int]:
    """From the first bar received to the newest one (still open: not compared)."""
    times = sorted(log.bars())
    return times[0], times[-1]


# ---- the rule ------------------------------------------------------------------------------------


def test_a_hole_is_the_bars_after_the_last_delivered_one_for_every_interval():
    for interval, step in (("1s", SECOND), ("1m", MINUTE), ("1h", 3_600_000),
                           ("1d", 86_400_000), ("3d", 3 * 86_400_000), ("1w", 7 * 86_400_000)):
        t = floor_bar(1_704_100_000_000, interval)  # a bar start of that interval
        nxt, later = t + step, t + 3 * step
        assert missing_span(t, [t], interval, interrupted=True) is None  # the open bar goes on
        assert missing_span(t, [nxt], interval, interrupted=False) is None  # the next bar
        assert missing_span(t, [nxt], interval, interrupted=True) == (t, nxt)  # t's final lost
        assert missing_span(t, [later], interval, interrupted=False) == (nxt, later)
        assert missing_span(t, [later, nxt], interval, interrupted=False) is None
        assert missing_span(t, [t, later], interval, interrupted=True) == (nxt, later)
        assert missing_span(t, [t - step], interval, interrupted=True) is None  # a replay
        assert missing_span(None, [later], interval, interrupted=True) is None  # first rows
    jan, apr = 1_704_067_200_000, 1_711_929_600_000  # calendar months: Feb and Mar are missing
    assert missing_span(jan, [apr], "1M", interrupted=False) == (1_706_745_600_000, apr)
    assert missing_span(jan, [1_706_745_600_000], "1M", interrupted=False) is None


def test_stream_health_learns_cadence_and_reports_stale_live_and_closed():
    now = [0.0]
    events: list[tuple[tuple, dict]] = []
    health = StreamHealth(StalenessRules(factor=4, min_silence=2, initial_gap=5, learn_from=4),
                          emit=lambda key, event: events.append((key, event)),
                          clock=lambda: now[0])
    quotes, bars = ("p", "AAA", "tick"), ("p", "AAA", "1s")
    health.track(quotes)
    health.track(bars)
    for i in range(1, 11):  # quotes every 0.1 s, bars every 0.2 s
        now[0] += 0.1
        health.saw_rows(quotes)
        if i % 2 == 0:
            health.saw_rows(bars)
    assert health.expected_gap(quotes) == pytest.approx(0.1)
    assert health.expected_gap(bars) <= 1.0  # never more than the bar interval
    now[0] += 1.9
    health.check()
    assert events == []  # 1.9 s of silence: under min_silence
    now[0] += 0.2
    health.check()
    assert [(k[2], e["state"], e["age"]) for k, e in events] == [("tick", "stale", 2.1),
                                                                 ("1s", "stale", 2.1)]
    assert "no data for 2.1 s" in events[0][1]["detail"]
    health.saw_rows(quotes)
    assert (events[-1][0], events[-1][1]["state"]) == (quotes, "live")
    health.market("p", ["AAA"], "closed", "market closed until 09:30")
    assert [e["state"] for k, e in events[-2:]] == ["closed", "closed"]
    now[0] += 3600
    health.check()
    assert events[-1][1]["state"] == "closed"  # an hour of silence while closed: not stale
    health.market("p", None, "open", "market open")
    assert [e["state"] for k, e in events[-2:]] == ["live", "live"]
    now[0] += 1.5
    health.check()
    assert events[-1][1]["state"] == "live"  # silence counts from the opening
    now[0] += 3
    health.check()
    assert events[-1][1]["state"] == "stale"
    late = ("p", "BBB", "tick")
    health.market("p", ["BBB"], "closed", "closed")
    health.track(late)  # subscribed while its market is closed
    assert health.state(late) == "closed" and health.status(late)["detail"] == "closed"


# ---- SIGKILL of a provider -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sigkill_mid_stream_then_the_bars_received_equal_history(start_hub):
    # The restart waits 2 s (backoff), so the stream misses bars, not just an update.
    hub = await start_hub(ProviderSpec("simulated", SIMULATED, {"rate": 8}), backoff_base=2.0)
    sub = await hub.subscribe("simulated", ["MSFT"], "1s")
    log = BarLog.start(sub)
    try:
        await log.wait(lambda g: len(g.bars()) >= 4, "four 1s bars before the kill")
        old = pid_of(hub, "simulated")
        os.kill(old, signal.SIGKILL)
        back = await log.wait(lambda g: g.source_events("running"), "the provider running again")
        resumed_at = back[-1][0]
        await log.wait(lambda g: g.first_live_after(resumed_at), "live bars after the restart")
        first_live = next(r["time"] for t, r in log.snapshot() if t > resumed_at
                          and not r.get("backfilled"))
        await log.wait(lambda g: max(g.bars()) >= first_live + 3 * SECOND, "three more bars")
    finally:
        log.stop()
        await sub.close()
    assert pid_of(hub, "simulated") != old

    first, last = final_span(log)
    received = {t: row for t, row in log.bars().items() if t < last}
    history = await hub.history("simulated", "MSFT", "1s", start=first, end=last)
    result = compare_bars(received, history)
    assert result.exact, result
    assert log.times_out_of_order() == []  # in order, no duplicates
    filled = log.backfilled()
    assert filled, "the restart left a hole that was filled"
    # The provider's own deterministic history (no cache in between) agrees too.
    truth = SimulatedProvider(rate=8)
    truth.init()
    try:
        assert compare_bars(received, truth.get_history("MSFT", "1s", first, last, None)).exact
    finally:
        truth.stopping.set()
    resume = log.first_live_after(resumed_at) - resumed_at
    print(f"\nSIGKILL: {len(filled)} bars backfilled; live again {resume:.2f} s after the "
          f"provider was back")
    assert resume < 5.0


# ---- a cut of the upstream socket ----------------------------------------------------------------


LONG_CUT = pytest.param(30.0, marks=[pytest.mark.slow, pytest.mark.skipif(
    not os.environ.get("NBFEED_LONG_CUTS"),
    reason="the 30 s cut runs with NBFEED_LONG_CUTS=1 (and in bench/gapfree.py)")])


@pytest.mark.asyncio
@pytest.mark.parametrize("cut", [3.0, LONG_CUT])
async def test_upstream_cut_then_the_bars_received_equal_history(start_hub, cut):
    with FakeBinance() as fb:
        hub = await start_hub(ProviderSpec("binance", BINANCE, {
            "rest_url": fb.rest_url, "ws_url": fb.ws_url}))
        sub = await hub.subscribe("binance", ["ETHUSDT"], "1s")
        log = BarLog.start(sub)
        try:
            await log.wait(lambda g: len(g.bars()) >= 3, "three 1s bars before the cut")
            cut_at = time.monotonic()
            back_at = await asyncio.to_thread(fb.cut_sockets, cut)
            stale = await log.wait(lambda g: g.stream_events("stale"), "the stream marked stale")
            await log.wait(lambda g: g.first_live_after(back_at), "live bars after the cut")
            live = await log.wait(lambda g: [e for t, e in g.stream_events("live")
                                             if t > stale[0][0]], "the stream live again")
            assert live
            await log.wait(lambda g: max(g.bars()) >= floor_bar(int(time.time() * 1000), "1s")
                           and len([t for t, _ in g.snapshot() if t > back_at]) > 20,
                           "bars after the cut")
        finally:
            log.stop()
            await sub.close()
        first, last = final_span(log)
        received = {t: row for t, row in log.bars().items() if t < last}
        history = await hub.history("binance", "ETHUSDT", "1s", start=first, end=last)
        now = int(time.time() * 1000)
        vendor = [{"time": k[0], "open": float(k[1]), "high": float(k[2]), "low": float(k[3]),
                   "close": float(k[4]), "volume": float(k[5])}
                  for k in fb.klines("ETHUSDT", "1s", first, last - 1, 1000, now)]
    result = compare_bars(received, history, ("open", "high", "low", "close", "volume",
                                              "quote_volume", "trades", "closed"))
    assert result.exact, result
    assert compare_bars(received, vendor).exact  # what the exchange itself says
    assert log.times_out_of_order() == []
    filled = log.backfilled()
    assert len(filled) >= cut - 1  # the seconds of the cut came from history
    detect = stale[0][0] - cut_at
    resume = log.first_live_after(back_at) - back_at
    print(f"\ncut {cut:g} s: stale after {detect:.2f} s, {len(filled)} bars backfilled, live "
          f"again {resume:.2f} s after the upstream was back")
    assert resume < 5.0


# ---- what happens around a fill --------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failed_fill_delivers_live_bars_and_names_the_missing_span(start_hub):
    """If history cannot be had, live bars still go on, the missing span is named in an error
    event, and the bar open before the hole never reaches the cache as final."""
    t = floor_bar(int(time.time() * 1000), "1m") - 10 * MINUTE
    partial = {**history_bar("DOWN", "1m", t), "close": 1.0}
    later = history_bar("DOWN", "1m", t + 3 * MINUTE)
    hub = await start_hub(ProviderSpec("nohist", "tests.providers_for_tests:NoHistoryProvider", {
        "symbols": ["DOWN"], "live": [partial, later], "pause": 0.5}))
    sub = await hub.subscribe("nohist", ["DOWN"], "1m")
    log = BarLog.start(sub)
    try:
        errors = await log.wait(lambda g: [e for _, e in g.events if e.get("type") == "error"],
                                "the error naming the missing span")
        await log.wait(lambda g: t + 3 * MINUTE in g.bars(), "the live bar after the hole")
    finally:
        log.stop()
        await sub.close()
    assert errors[0]["gap"] == [t + MINUTE, t + 3 * MINUTE]
    assert "could not backfill" in errors[0]["message"] and "DOWN" in errors[0]["message"]
    assert "history backend is down" in errors[0]["message"]
    assert [t for _, r in log.snapshot() for t in [r["time"]]] == [t, t + 3 * MINUTE]
    assert hub.cache.coverage("nohist", "DOWN", "1m") == []  # the partial bar is not final


@pytest.mark.asyncio
async def test_sparse_sources_are_not_asked_again_for_quiet_spells(start_hub, call_record):
    """A gap without an interruption is asked once; if history has nothing there (a source
    with no bar for a minute without trades) the stream's later quiet spells are not asked."""
    t = floor_bar(int(time.time() * 1000), "1m") - 30 * MINUTE
    sparse = [history_bar("SPARSE", "1m", t), history_bar("SPARSE", "1m", t + 5 * MINUTE),
              history_bar("SPARSE", "1m", t + 9 * MINUTE)]
    hub = await start_hub(ProviderSpec("rec", "tests.providers_for_tests:SparseProvider", {
        "record": str(call_record), "symbols": ["SPARSE"], "live": sparse, "pause": 0.5,
        "bars": [b["time"] for b in sparse]}))
    sub = await hub.subscribe("rec", ["SPARSE"], "1m")
    log = BarLog.start(sub)
    try:
        await log.wait(lambda g: t + 9 * MINUTE in g.bars(), "the three sparse bars")
    finally:
        log.stop()
        await sub.close()
    asked = [c["args"][2:4] for c in read_calls(call_record, "get_history")]
    assert asked == [[t + MINUTE, t + 5 * MINUTE]]  # the first quiet spell only
    assert [r["time"] for _, r in log.snapshot()] == [b["time"] for b in sparse]
    assert log.backfilled() == []
