"""The hub with real provider processes: hook order, sharing, failures, restarts, back-pressure,
and refusing bad requests with messages that name the bad value."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from nbfeed.errors import (
    BadInterval,
    BadRequest,
    LimitExceeded,
    UnknownSource,
    UnknownSymbol,
    UpstreamError,
    UpstreamTimeout,
)
from nbfeed.intervals import floor_bar
from nbfeed.providers.registry import ProviderSpec
from nbfeed.timeutil import now_ms
from tests.providers_for_tests import (
    CounterProvider,
    FaultyProvider,
    InitFailsProvider,
    Received,
    RecordingCSVProvider,
    RecordingProvider,
    ScriptedBarsProvider,
    history_bar,
    read_calls,
    receive,
    wait_until,
)

FAULTY_SYMBOLS = ["OK", "FAILX", "HANGX", "DEGRADEX"]
MINUTE = 60_000
STREAM_HOOKS = ("start_streaming", "subscribe", "on_close", "unsubscribe")


def info(hub, name: str) -> dict:
    return next(p for p in hub.providers_info() if p["name"] == name)


@pytest.mark.asyncio
async def test_hooks_run_in_the_documented_order_and_two_subscribers_share_one_stream(
        start_hub, call_record):
    hub = await start_hub(ProviderSpec("rec", RecordingProvider,
                                       {"record": str(call_record), "period": 0.02}))
    first = await hub.subscribe("rec", ["AAA"], "tick")
    second = await hub.subscribe("rec", "AAA", "tick")
    for sub in (first, second):
        got = await receive(sub, lambda r: len(r.rows) >= 2, "rows of rec/AAA/tick")
        assert {row["symbol"] for row in got.rows} == {"AAA"}
    await first.close()
    # Hub -> provider messages are handled in order on one control thread: once a later stream
    # is live, an on_close sent for the first close would already have run.
    probe = await hub.subscribe("rec", ["BBB"], "1m")
    await receive(probe, lambda r: r.rows, "rows of rec/BBB/1m")
    assert not read_calls(call_record, "on_close"), "on_close ran while a subscriber remained"

    end = floor_bar(now_ms(), "1m")
    bars = await hub.history("rec", "AAA", "1m", start=end - 10 * 60_000, end=end)
    assert bars == [history_bar("AAA", "1m", end - (10 - i) * 60_000) for i in range(10)]

    await second.close()
    await probe.close()
    await wait_until(lambda: len(read_calls(call_record, "unsubscribe")) == 2,
                     "both streams to be closed at the provider")

    calls = read_calls(call_record)
    client = hub.client_id
    assert [c["hook"] for c in calls[:2]] == ["init", "get_dataset"]
    assert calls[0]["thread"] == "MainThread"
    assert "worker" in calls[1]["thread"]
    assert [(c["hook"], c["args"]) for c in calls if c["hook"] in STREAM_HOOKS] == [
        ("start_streaming", [client, "AAA", "tick"]), ("subscribe", ["AAA", "tick"]),
        ("start_streaming", [client, "BBB", "1m"]), ("subscribe", ["BBB", "1m"]),
        ("on_close", [client, "AAA", "tick"]), ("unsubscribe", ["AAA", "tick"]),
        ("on_close", [client, "BBB", "1m"]), ("unsubscribe", ["BBB", "1m"]),
    ]
    stream_threads = {c["thread"] for c in calls if c["hook"] in STREAM_HOOKS}
    assert len(stream_threads) == 1 and "control" in stream_threads.pop()
    (history,) = read_calls(call_record, "get_history")
    symbol, interval, start, stop, count = history["args"]
    assert (symbol, interval, count) == ("AAA", "1m", None)
    assert start <= end - 10 * 60_000 and stop >= end  # epoch ms covering what was asked
    assert "worker" in history["thread"]
    pids = {c["pid"] for c in calls}
    assert pids == {info(hub, "rec")["pid"]} and os.getpid() not in pids


@pytest.mark.asyncio
async def test_start_streaming_that_raises_errors_that_stream_only(start_hub):
    hub = await start_hub(ProviderSpec("faulty", FaultyProvider, {"symbols": FAULTY_SYMBOLS}))
    bad = await hub.subscribe("faulty", ["FAILX"], "tick")
    good = await hub.subscribe("faulty", ["OK"], "tick")

    got = await receive(bad, lambda r: r.errors(), "the error of faulty/FAILX")
    (error,) = got.errors()
    assert error["code"] == "upstream"
    assert "FAILX" in error["message"] and "upstream refused to stream FAILX" in error["message"]
    await receive(good, lambda r: len(r.rows) >= 3, "rows of faulty/OK while FAILX failed")

    mixed = await hub.subscribe("faulty", ["FAILX", "OK"], "tick")
    got = await receive(mixed, lambda r: r.errors() and r.rows, "an error and rows")
    assert {row["symbol"] for row in got.rows} == {"OK"}
    assert info(hub, "faulty")["status"] == "running"


@pytest.mark.asyncio
async def test_get_history_that_raises_errors_that_request_only(start_hub):
    hub = await start_hub(ProviderSpec("faulty", FaultyProvider, {"symbols": FAULTY_SYMBOLS}))
    with pytest.raises(UpstreamError, match="history backend is down for FAILX"):
        await hub.history("faulty", "FAILX", "1m", count=5)
    assert len(await hub.history("faulty", "OK", "1m", count=5)) == 5
    with pytest.raises(UpstreamError, match="FAILX"):  # a failure is not cached as "empty"
        await hub.history("faulty", "FAILX", "1m", count=5)


@pytest.mark.asyncio
async def test_unanswered_history_request_times_out_and_others_are_still_served(start_hub):
    hub = await start_hub(ProviderSpec("faulty", FaultyProvider, {"symbols": FAULTY_SYMBOLS}),
                          request_timeout=1.0)
    with pytest.raises(UpstreamTimeout) as caught:
        await asyncio.wait_for(hub.history("faulty", "HANGX", "1m", count=5), 15)
    assert "'faulty'" in str(caught.value) and "history" in str(caught.value)
    assert caught.value.code == "upstream"
    assert len(await hub.history("faulty", "OK", "1m", count=3)) == 3


@pytest.mark.asyncio
async def test_killed_provider_is_restarted_and_its_streams_resume(start_hub, call_record):
    hub = await start_hub(ProviderSpec("faulty", FaultyProvider,
                                       {"symbols": FAULTY_SYMBOLS, "record": str(call_record),
                                        "period": 0.02}))
    sub = await hub.subscribe("faulty", ["OK"], "tick")
    before = await receive(sub, lambda r: len(r.rows) >= 5, "rows before the kill")
    last_seq = before.rows[-1]["seq"]  # each process numbers its rows from 0
    old_pid = info(hub, "faulty")["pid"]
    stuck = asyncio.ensure_future(hub.history("faulty", "HANGX", "1m", count=5))
    await wait_until(lambda: read_calls(call_record, "get_history"), "the history request")

    os.kill(old_pid, signal.SIGKILL)

    # A request in flight fails at once with the reason, not after its 30 s timeout.
    with pytest.raises(UpstreamError, match="exited") as caught:
        await asyncio.wait_for(stuck, 15)
    assert not isinstance(caught.value, UpstreamTimeout)
    got = await receive(sub, lambda r: "running" in r.states()
                        and any(row["seq"] < last_seq for row in r.rows),
                        "status running again and rows from the restarted process")
    states = got.states("faulty")
    assert states[0] == "restarting" and states[-1] == "running"
    first_restarting = next(e for e in got.events if e.get("state") == "restarting")
    assert "exited" in first_restarting["detail"]
    now = info(hub, "faulty")
    assert now["status"] == "running" and now["restarts"] == 1 and now["pid"] != old_pid
    subscribed = [c for c in read_calls(call_record, "start_streaming") if c["pid"] == now["pid"]]
    assert [c["args"][1:] for c in subscribed] == [["OK", "tick"]]
    assert len(await hub.history("faulty", "OK", "1m", count=2)) == 2


@pytest.mark.asyncio
async def test_slow_subscriber_is_conflated_while_a_fast_one_gets_every_row(start_hub):
    total = 10_000
    hub = await start_hub(ProviderSpec("counter", CounterProvider,
                                       {"total": total, "batch": 50, "pause": 0.002}))
    slow = await hub.subscribe("counter", ["CNT"], "tick", max_pending_rows=50)
    fast = await hub.subscribe("counter", ["CNT"], "tick")
    waiting: list[int] = []
    loop = asyncio.get_running_loop()

    def done(received: Received) -> bool:
        # Sampled once the burst just delivered has been fully handed out (and conflated).
        loop.call_soon(lambda: waiting.append(slow.pending_rows))
        return bool(received.rows) and received.rows[-1]["seq"] == total - 1

    got = await receive(fast, done, "all rows at the fast subscriber", timeout=30)
    assert [row["seq"] for row in got.rows] == list(range(total))
    assert fast.conflated_rows == 0
    await asyncio.sleep(0)
    # The contract (outbox docstring): bounded by max_rows, plus at most the one burst being
    # handed out when a sample falls between a put and its conflation check.
    assert waiting and max(waiting) <= 50 + 50 and slow.pending_rows <= 50
    assert slow.conflated_rows > 0
    late = await receive(slow, lambda r: r.rows, "the slow subscriber's rows")
    assert late.rows[-1]["seq"] == total - 1  # conflation keeps the newest row
    assert len(late.rows) <= 50
    assert hub.stats()["conflated_rows"] >= slow.conflated_rows


@pytest.mark.asyncio
async def test_bad_source_symbol_interval_dates_and_counts_are_refused_by_name(
        start_hub, call_record):
    hub = await start_hub(ProviderSpec("rec", RecordingProvider, {"record": str(call_record)}))
    sub, hist = hub.subscribe, hub.history
    cases = [
        (lambda: sub("nosuch", ["AAA"], "tick"), UnknownSource, ["'nosuch'", "rec"]),
        (lambda: sub(None, ["AAA"], "tick"), UnknownSource, ["None"]),
        (lambda: sub("rec", ["ZZZ"], "tick"), UnknownSymbol, ["'ZZZ'", "'rec'"]),
        (lambda: sub("rec", ["AAA\x00"], "tick"), UnknownSymbol, ["'AAA\\x00'"]),
        (lambda: sub("rec", ["AAA"], "7m"), BadInterval, ["'7m'", "1m, 3m"]),
        (lambda: sub("rec", ["AAA"], None), BadInterval, ["None"]),
        (lambda: sub("rec", [], "tick"), BadRequest, ["at least one symbol"]),
        (lambda: sub("rec", [""], "tick"), BadRequest, ["''"]),
        (lambda: sub("rec", ["A" * 5000], "tick"), BadRequest, ["200 characters"]),
        (lambda: sub("rec", [None], "tick"), BadRequest, ["None"]),
        (lambda: sub("rec", [["AAA"]], "tick"), BadRequest, ["['AAA']"]),
        (lambda: sub("rec", 42, "tick"), BadRequest, ["42"]),
        (lambda: sub("rec", [f"S{i}" for i in range(1001)], "tick"), LimitExceeded,
         ["1001", "1000"]),
        (lambda: hist("nosuch", "AAA", "1m"), UnknownSource, ["'nosuch'"]),
        (lambda: hist("rec", "ZZZ", "1m"), UnknownSymbol, ["'ZZZ'"]),
        (lambda: hist("rec", "\ud800", "1m"), BadRequest, ["'\\ud800'"]),
        (lambda: hist("rec", "AAA", "tick"), BadInterval, ["tick"]),
        (lambda: hist("rec", "AAA", "5 minutes"), BadInterval, ["'5 minutes'"]),
        (lambda: hist("rec", "AAA", "1m", start="yesterday"), BadRequest,
         ["start", "'yesterday'"]),
        (lambda: hist("rec", "AAA", "1m", end="2024-13-45"), BadRequest, ["end", "2024-13-45"]),
        (lambda: hist("rec", "AAA", "1m", start=float("nan")), BadRequest, ["start", "nan"]),
        (lambda: hist("rec", "AAA", "1m", start="2024-01-02", end="2024-01-01"), BadRequest,
         ["2024-01-02", "2024-01-01"]),
        (lambda: hist("rec", "AAA", "1m", count=0), BadRequest, ["count", "0"]),
        (lambda: hist("rec", "AAA", "1m", count=-5), BadRequest, ["count", "-5"]),
        (lambda: hist("rec", "AAA", "1m", count="10"), BadRequest, ["count", "'10'"]),
        (lambda: hist("rec", "AAA", "1m", count=True), BadRequest, ["count", "True"]),
        (lambda: hist("rec", "AAA", "1m", count=10**9), LimitExceeded, ["1000000000"]),
    ]
    for call, error, words in cases:
        with pytest.raises(error) as caught:
            await call()
        for word in words:
            assert word in str(caught.value), (word, str(caught.value))
    assert hub.stats()["streams"] == 0 and hub.stats()["subscriptions"] == 0
    assert not read_calls(call_record, "start_streaming")
    assert not read_calls(call_record, "get_history")


@pytest.mark.asyncio
async def test_interval_the_provider_does_not_list_is_refused_with_the_list(start_hub):
    hub = await start_hub(ProviderSpec("rec", RecordingProvider, {"intervals": ["1m", "1d"]}))
    for interval in ("1h", "tick"):
        with pytest.raises(BadInterval) as caught:
            await hub.subscribe("rec", ["AAA"], interval)
        assert f"'{interval}'" in str(caught.value) and "1m, 1d" in str(caught.value)
    with pytest.raises(BadInterval, match="1m, 1d"):
        await hub.history("rec", "AAA", "4h", count=3)
    sub = await hub.subscribe("rec", ["AAA"], "1m")
    await receive(sub, lambda r: r.rows, "rows of a listed interval")


@pytest.mark.asyncio
async def test_check_symbols_names_or_drops_what_the_catalog_does_not_list(start_hub):
    hub = await start_hub(ProviderSpec("rec", RecordingProvider, {"intervals": ["1m", "1d"]}))
    assert hub.check_symbols("rec", ["BBB", "AAA"], "1m") == ["BBB", "AAA"]
    with pytest.raises(UnknownSymbol, match="'ZZZ'"):
        hub.check_symbols("rec", ["AAA", "ZZZ"], "1m")
    with pytest.raises(BadInterval, match="1m, 1d"):
        hub.check_symbols("rec", ["AAA"], "tick")
    # What a Workspace live grid asks for: the listed symbols of that interval, the rest left out.
    assert hub.check_symbols("rec", ["ZZZ", "AAA"], "1m", drop_unknown=True) == ["AAA"]
    assert hub.check_symbols("rec", ["AAA"], "tick", drop_unknown=True) == []
    with pytest.raises(BadRequest, match="200 characters"):
        hub.check_symbols("rec", ["A" * 300], "1m", drop_unknown=True)
    with pytest.raises(UnknownSource, match="'nosuch'"):
        hub.check_symbols("nosuch", ["AAA"], "1m")


@pytest.mark.asyncio
async def test_provider_whose_init_raises_is_failed_and_the_hub_serves_the_others(start_hub):
    hub = await start_hub(ProviderSpec("broken", InitFailsProvider),
                          ProviderSpec("rec", RecordingProvider))
    broken = info(hub, "broken")
    assert broken["status"] == "failed"
    assert "init failed" in broken["detail"] and "no API key configured" in broken["detail"]
    assert info(hub, "rec")["status"] == "running"

    with pytest.raises(UpstreamError, match="no API key configured"):
        await hub.history("broken", "X", "1d", count=3)
    sub = await hub.subscribe("broken", ["X"], "tick")
    got = await receive(sub, lambda r: r.states(), "the status of the failed provider")
    assert got.states() == ["failed"] and "no API key" in got.events[0]["detail"]

    rec = await hub.subscribe("rec", ["AAA"], "tick")
    await receive(rec, lambda r: r.rows, "rows of a healthy provider")


@pytest.mark.asyncio
async def test_provider_status_reports_reach_subscribers(start_hub):
    hub = await start_hub(ProviderSpec("faulty", FaultyProvider, {"symbols": FAULTY_SYMBOLS}))
    sub = await hub.subscribe("faulty", ["DEGRADEX"], "tick")
    got = await receive(sub, lambda r: "degraded" in r.states() and r.rows,
                        "a degraded status and rows")
    event = next(e for e in got.events if e.get("state") == "degraded")
    assert event["detail"] == "upstream answers slowly" and event["source"] == "faulty"
    assert (info(hub, "faulty")["status"], info(hub, "faulty")["detail"]) == (
        "degraded", "upstream answers slowly")


@pytest.mark.asyncio
async def test_stopping_the_hub_ends_subscriptions_and_provider_processes(start_hub):
    hub = await start_hub(ProviderSpec("rec", RecordingProvider, {"period": 0.01}))
    sub = await hub.subscribe("rec", ["AAA"], "tick")
    await receive(sub, lambda r: r.rows, "rows")
    pid = info(hub, "rec")["pid"]
    await hub.stop()

    async def drain() -> None:
        async for _ in sub:
            pass

    await asyncio.wait_for(drain(), 10)  # the iterator ends instead of waiting forever
    assert info(hub, "rec")["status"] == "stopped"
    await wait_until(lambda: not os.path.exists(f"/proc/{pid}"), "the provider process to exit")


@pytest.mark.asyncio
async def test_the_hub_hands_the_cache_only_bars_a_later_bar_has_closed(start_hub, call_record):
    """Live candles: the hub alone decides when a bar is final (a later bar arrived). Final bars
    are stored and extend what the cache knows complete, so history serves them without asking
    the provider; the newest bar is still open and is asked for."""
    t = 1_704_153_600_000  # 2024-01-02T00:00Z
    live = [{"time": t + i * MINUTE, "open": 1.0, "high": 2.0, "low": 0.5, "close": 900.0 + i,
             "volume": 5.0} for i in range(3)]
    hub = await start_hub(ProviderSpec("rec", ScriptedBarsProvider,
                                       {"record": str(call_record), "live": live}))
    await hub.history("rec", "AAA", "1m", start=t - 10 * MINUTE, end=t)  # complete up to t
    asked = len(read_calls(call_record, "get_history"))

    sub = await hub.subscribe("rec", "AAA", "1m")
    got = await receive(sub, lambda r: len(r.rows) >= 3, "the three live bars")
    assert [r["close"] for r in got.rows] == [900.0, 901.0, 902.0]
    rows = await hub.history("rec", "AAA", "1m", start=t - 10 * MINUTE, end=t + 2 * MINUTE)
    assert len(read_calls(call_record, "get_history")) == asked  # served from the cache
    assert [r["close"] for r in rows[-2:]] == [900.0, 901.0]  # the live values, stored

    await hub.history("rec", "AAA", "1m", start=t, end=t + 3 * MINUTE)
    [call] = read_calls(call_record, "get_history")[asked:]
    assert call["args"] == ["AAA", "1m", t + 2 * MINUTE, t + 3 * MINUTE, None]  # open: asked
    await sub.close()


@pytest.mark.asyncio
async def test_a_csv_file_whose_data_ended_long_ago_is_asked_once(start_hub, call_record):
    """The bundled DEMO-USD sample ends on 2025-03-05. The newest bars before a later end come
    from two provider calls the first time and from the cache after that; up to now, only the
    bar of now is asked for again."""
    hub = await start_hub(ProviderSpec("csv", RecordingCSVProvider,
                                       {"record": str(call_record)}))
    first = await hub.history("csv", "DEMO-USD", "1m", end="2025-06-01", count=100)
    assert len(first) == 100 and first[-1]["time"] == 1_741_132_740_000
    assert len(read_calls(call_record, "get_history")) == 2
    assert await hub.history("csv", "DEMO-USD", "1m", end="2025-06-01", count=100) == first
    assert len(read_calls(call_record, "get_history")) == 2

    assert await hub.history("csv", "DEMO-USD", "1m", count=100) == first
    asked = len(read_calls(call_record, "get_history"))
    assert await hub.history("csv", "DEMO-USD", "1m", count=100) == first
    [again] = read_calls(call_record, "get_history")[asked:]
    start, end = again["args"][2:4]
    assert end - start == MINUTE and start <= now_ms() < end  # just the open bar
