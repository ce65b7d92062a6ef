"""A provider that stops answering (SIGSTOP, a deadlocked hook) never holds up the hub.

Real provider processes: the hub writes to a process only from a writer thread, notices a hang
by heartbeat, reports ``stalled`` in REST (``providers_info``) and in-band (a ``status`` event),
fails requests fast, and kills and restarts a process whose stall lasts. A bystander stream of
another provider keeps flowing (no gap over a second) throughout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from nbfeed.errors import UpstreamError
from nbfeed.providers.registry import ProviderSpec
from tests.providers_for_faults import Bystander, HangingHookProvider
from tests.providers_for_tests import RecordingProvider, read_calls, receive, wait_until

pytestmark = pytest.mark.asyncio


def info(hub, name: str) -> dict:
    return next(p for p in hub.providers_info() if p["name"] == name)


@pytest.fixture
def stopped_pids():
    """Processes a test SIGSTOPs; each is continued at teardown, so none is left frozen."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


async def start_pair(start_hub, tmp_path, victim_cls=RecordingProvider, victim_options=None,
                     **config):
    """A hub with a ``bystander`` provider and a ``victim`` provider (recording its hooks)."""
    record = tmp_path / "victim.jsonl"
    hub = await start_hub(
        ProviderSpec("bystander", RecordingProvider, {"period": 0.02}),
        ProviderSpec("victim", victim_cls, {"record": str(record), **(victim_options or {})}),
        **{"heartbeat_interval": 0.5, "stall_timeout": 2.0, **config})
    bystander = Bystander(await hub.subscribe("bystander", ["AAA"]))
    await bystander.flowing()
    return hub, bystander, record


async def test_sigstopped_provider_is_stalled_requests_fail_fast_and_others_flow(
        start_hub, tmp_path, stopped_pids):
    hub, bystander, record = await start_pair(start_hub, tmp_path, stall_restart_after=0)
    watched = await hub.subscribe("victim", ["AAA"])
    got = await receive(watched, lambda r: r.rows, "victim rows")
    pid = info(hub, "victim")["pid"]

    os.kill(pid, signal.SIGSTOP)
    stopped_pids.append(pid)
    frozen_at = time.monotonic()
    # Subscription churn towards the frozen process (the fault: 300 frames in 5 s froze the
    # server, because each command was a blocking pipe write on the event loop).
    for _ in range(150):
        sub = await hub.subscribe("victim", ["BBB"])
        await sub.close()
        await asyncio.sleep(5 / 300)
    await receive(watched, lambda r: "stalled" in r.states(), "an in-band stalled event",
                  timeout=20, into=got)
    detected = time.monotonic() - frozen_at
    assert info(hub, "victim")["status"] == "stalled"
    assert "heartbeat" in info(hub, "victim")["detail"]
    assert detected < 10, f"stall noticed after {detected:.1f} s"

    asked = time.monotonic()
    with pytest.raises(UpstreamError, match="stalled"):
        await hub.history("victim", "AAA", "1m", count=5)
    assert time.monotonic() - asked < 1.0  # fails fast instead of waiting out the timeout
    assert bystander.max_gap() < 1.0, f"bystander silent for {bystander.max_gap():.2f} s"

    # Back: running again in-band and in REST; the commands queued meanwhile arrive in order,
    # so the churned stream ends closed and the watched one never stopped.
    os.kill(pid, signal.SIGCONT)
    await receive(watched, lambda r: r.states()[-1:] == ["running"], "back to running",
                  timeout=20, into=got)
    assert info(hub, "victim")["status"] == "running"
    assert info(hub, "victim")["pid"] == pid  # the same process: it was not restarted
    await wait_until(lambda: len([c for c in read_calls(record) if c["hook"] in (
        "start_streaming", "on_close") and c["args"][1] == "BBB"]) == 300, "all 300 commands")
    calls = [c["hook"] for c in read_calls(record) if c["args"][1:2] == ["BBB"]
             and c["hook"] in ("start_streaming", "on_close")]
    assert calls == ["start_streaming", "on_close"] * 150
    before = len(got.rows)
    await receive(watched, lambda r: len(r.rows) > before + 5, "rows after the stall", into=got)
    assert hub.stats()["streams"] == 2  # AAA of each provider: the churned BBB is gone
    assert bystander.max_gap() < 1.0
    bystander.stop()


async def test_a_lasting_stall_is_killed_and_restarted_and_streams_resume(
        start_hub, tmp_path, stopped_pids):
    hub, bystander, _ = await start_pair(start_hub, tmp_path, stall_restart_after=2.0)
    watched = await hub.subscribe("victim", ["AAA"])
    got = await receive(watched, lambda r: r.rows, "victim rows")
    pid = info(hub, "victim")["pid"]

    os.kill(pid, signal.SIGSTOP)
    stopped_pids.append(pid)
    frozen_at = time.monotonic()
    mark = len(got.rows)
    await receive(watched, lambda r: "stalled" in r.states() and r.states()[-1] == "running",
                  "stalled, then running again", timeout=40, into=got)
    states = got.states("victim")
    assert states == ["stalled", "restarting", "running"], states
    restarting = next(e for e in got.events if e.get("state") == "restarting")
    assert "stalled for" in restarting["detail"]
    new_pid = info(hub, "victim")["pid"]
    assert new_pid != pid and info(hub, "victim")["restarts"] == 1
    await receive(watched, lambda r: any(row["seq"] < 5 for row in r.rows[mark:]),
                  "rows of the new process", timeout=30, into=got)
    resumed = time.monotonic() - frozen_at
    assert resumed < 30, f"rows resumed {resumed:.1f} s after the freeze"
    assert bystander.max_gap() < 1.0, f"bystander silent for {bystander.max_gap():.2f} s"
    bystander.stop()


async def test_a_deadlocked_hook_is_stalled_although_rows_still_flow(start_hub, tmp_path):
    hub, bystander, record = await start_pair(
        start_hub, tmp_path, victim_cls=HangingHookProvider,
        victim_options={"hang": ["BBB"]}, stall_restart_after=0)
    watched = await hub.subscribe("victim", ["AAA"])
    got = await receive(watched, lambda r: r.rows, "victim rows")
    await hub.subscribe("victim", ["BBB"])  # its start_streaming never returns
    await wait_until(lambda: read_calls(record, "hang"), "the hook to hang")
    await receive(watched, lambda r: "stalled" in r.states(), "stalled", timeout=20, into=got)
    detail = info(hub, "victim")["detail"]
    assert "start_streaming('BBB', 'tick')" in detail, detail
    # The process is alive and AAA's thread still publishes: rows alone are no proof of health.
    mark = len(got.rows)
    await receive(watched, lambda r: len(r.rows) > mark, "AAA rows while stalled", into=got)
    assert info(hub, "victim")["status"] == "stalled"
    assert bystander.max_gap() < 1.0
    bystander.stop()


async def test_a_slow_hook_within_the_timeout_is_not_a_stall(start_hub, tmp_path):
    hub, bystander, _ = await start_pair(
        start_hub, tmp_path, victim_cls=HangingHookProvider,
        victim_options={"slow": ["BBB"], "slow_seconds": 1.0}, stall_timeout=4.0)
    watched = await hub.subscribe("victim", ["AAA", "BBB"])
    got = await receive(watched, lambda r: {"AAA", "BBB"} <= {row["symbol"] for row in r.rows},
                        "rows of both streams")
    for _ in range(3):  # three more slow hooks in a row, each shorter than the timeout
        sub = await hub.subscribe("victim", ["BBB"], "1m")
        await receive(sub, lambda r: r.rows, "BBB 1m rows", timeout=20)
        await sub.close()
    assert "stalled" not in got.states()
    assert info(hub, "victim")["status"] == "running"
    bystander.stop()


async def test_a_crash_is_announced_as_restarting_once(start_hub, tmp_path):
    hub, bystander, _ = await start_pair(start_hub, tmp_path)
    watched = await hub.subscribe("victim", ["AAA"])
    got = await receive(watched, lambda r: r.rows, "victim rows")
    os.kill(info(hub, "victim")["pid"], signal.SIGKILL)
    await receive(watched, lambda r: "running" in r.states(), "running again", timeout=30,
                  into=got)
    assert got.states("victim") == ["restarting", "running"]
    assert bystander.max_gap() < 1.0
    bystander.stop()



async def test_a_hook_that_hangs_at_every_start_ends_failed_not_in_a_restart_loop(
        start_hub, tmp_path):
    """Each restart re-subscribes the stream whose hook hangs: the time spent stalled is not
    health, so after max_restarts the provider is ``failed``, with the reason. (Each process
    lives ~5 s, longer than stable_after, but is healthy for ~2 s only.)"""
    hub, bystander, _ = await start_pair(
        start_hub, tmp_path, victim_cls=HangingHookProvider, victim_options={"hang": ["BBB"]},
        stall_restart_after=3.0, max_restarts=2, stable_after=4.0)
    watched = await hub.subscribe("victim", ["BBB"])
    got = await receive(watched, lambda r: "failed" in r.states(), "failed", timeout=90)
    assert got.states("victim").count("restarting") == 2
    detail = info(hub, "victim")["detail"]
    assert info(hub, "victim")["status"] == "failed" and "stalled for" in detail, detail
    assert bystander.max_gap() < 1.0
    bystander.stop()
