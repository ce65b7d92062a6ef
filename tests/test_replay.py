"""Record live streams at the hub and play them back through the notebook API: exact rows in
recorded order, speed, pause, seek, sessions that do not interfere, bars from recordings, and
clear refusals. Real provider processes (simulated, and the on-demand replay provider)."""

from __future__ import annotations

import math
import re
import threading
import time

import pytest

import nbfeed
from nbfeed.errors import BadInterval, BadRequest, UnknownRecording, UnknownSymbol
from nbfeed.intervals import floor_bar
from nbfeed.providers.registry import resolve_spec
from nbfeed.recorder.store import RecordingStore
from tests.recordings_for_tests import Sent, now_us, write_recording

SYMBOLS = ["AAPL", "MSFT", "BTC-USD"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("replay-home")


@pytest.fixture(scope="module")
def feed(home):
    f = nbfeed.connect(embedded=True, home=str(home),
                       providers=[resolve_spec("simulated", None, rate=200)])
    yield f
    f.close()


def exact(rows: list[dict]) -> list[dict]:
    """Rows with floats as their exact bit patterns (so -0.0, NaN and every last bit count)."""
    return [{k: (float.hex(v) if isinstance(v, float) else v, type(v).__name__)
             for k, v in row.items()} for row in rows]


def collect(stream) -> tuple[list[dict], threading.Event]:
    got: list[dict] = []
    stream.on_update(lambda rows: got.extend(dict(r) for r in rows))
    return got, stream.finished


def synthetic(home, name: str, seconds: float, per_second: int, symbols=("AAA", "BBB"),
              start_us: int | None = None) -> list[dict]:
    """A recording whose rows were received ``per_second`` times a second for ``seconds``;
    each row's ``time`` is its receive time in ms (easy to check against the clock)."""
    start_us = start_us or (now_us() // 1_000_000 - 3600) * 1_000_000
    sent, rows = [], []
    for i in range(int(seconds * per_second) + 1):
        received = start_us + i * 1_000_000 // per_second
        sym = symbols[i % len(symbols)]
        row = {"time": received // 1000, "symbol": sym, "price": 100 + i / 7, "n": i}
        rows.append(row)
        sent.append((Sent("bench", sym, "tick", [row]), received))
    write_recording(home, name, sent)
    return rows


def test_a_live_recording_replays_as_fast_as_possible_with_every_row_exact_and_in_order(feed):
    live_rows: list[dict] = []
    live = feed.subscribe("simulated", SYMBOLS)
    live.on_update(live_rows.extend)
    rec = feed.record("simulated", SYMBOLS, name="live-ticks", duration=2)
    info = rec.wait(60)
    live.close()
    assert info["status"] == "finished" and info["lost_rows"] == 0, info
    assert info["rows"] > 100 and set(info["symbols"]) == set(SYMBOLS)
    recorded = rec.rows()
    assert list(recorded["seq"]) == list(range(1, info["rows"] + 1))

    # The live subscriber got the same rows meanwhile: recording ran beside it.
    first = next(i for i, r in enumerate(live_rows)
                 if (r["symbol"], r["time"]) == (recorded["symbol"][0],
                                                 recorded["time"][0].value // 10**6))
    expected = live_rows[first:first + info["rows"]]
    assert len(expected) == info["rows"]

    stream = feed.subscribe("replay", SYMBOLS, recording="live-ticks", speed="max",
                            paused=True)
    got, finished = collect(stream)
    stream.resume()
    assert finished.wait(60), stream.state()
    stream.close()
    assert exact(got) == exact(expected)  # same values, same times, same order, same types
    assert stream.now_ms() == recorded["received"].iloc[-1].value // 10**6


def test_ten_times_real_time_plays_a_30_second_recording_in_3_seconds(feed, home):
    rows = synthetic(home, "thirty-s", seconds=30, per_second=20)
    stream = feed.subscribe("replay", ["AAA", "BBB"], recording="thirty-s", speed=10,
                            paused=True)
    got, finished = collect(stream)
    started = time.monotonic()
    stream.resume()
    assert finished.wait(60)
    elapsed = time.monotonic() - started
    stream.close()
    assert exact(got) == exact(rows)
    # 30 s of recording at 10x: 3 s (not faster; a loaded machine may add a little).
    assert 2.9 <= elapsed <= 5.0, elapsed
    assert stream.now_ms() == rows[-1]["time"]


def test_pause_holds_rows_and_clock_and_seek_jumps_dropping_rows_in_flight(feed, home):
    rows = synthetic(home, "controls", seconds=40, per_second=10)
    stream = feed.subscribe("replay", ["AAA", "BBB"], recording="controls", speed=4,
                            paused=True)
    got, finished = collect(stream)
    assert stream.paused and stream.state()["published"] == 0
    stream.resume()
    deadline = time.monotonic() + 30
    while len(got) < 20:
        assert time.monotonic() < deadline, "no rows after resume"
        time.sleep(0.02)
    state = stream.pause()
    assert state["paused"]
    deadline = time.monotonic() + 30
    while len(got) < state["published"]:  # rows already on their way still arrive
        assert time.monotonic() < deadline
        time.sleep(0.02)
    held, clock = len(got), stream.now_ms()
    time.sleep(0.5)  # an observation window, not synchronisation: nothing may move in it
    assert len(got) == held and stream.now_ms() == clock
    assert got == rows[:held]

    target = rows[300]["time"]
    state = stream.seek(target)
    assert state["epoch"] == 2 and stream.now_ms() == target
    before = len(got)
    stream.set_speed("max")
    stream.resume()
    assert finished.wait(60)
    after_seek = got[before:]
    assert after_seek == rows[300:]  # nothing from before the jump, nothing missing after

    stream.seek(rows[0]["time"])  # back to the start: played again
    assert finished.wait(60)
    stream.close()
    assert got[before + len(after_seek):] == rows


def test_two_replays_of_one_recording_at_different_speeds_do_not_interfere(feed, home):
    rows = synthetic(home, "shared", seconds=5, per_second=50)
    slow = feed.subscribe("replay", ["AAA", "BBB"], recording="shared", speed=1,
                          paused=True)
    fast = feed.subscribe("replay", ["AAA", "BBB"], recording="shared", speed="max",
                          paused=True)
    slow_rows, _ = collect(slow)
    fast_rows, fast_done = collect(fast)
    fast.resume()
    assert fast_done.wait(60)
    assert exact(fast_rows) == exact(rows)
    assert slow_rows == [] and not slow.finished.is_set()
    assert slow.state()["published"] == 0
    slow.close()
    fast.close()


@pytest.mark.parametrize("split_second", [30, 0], ids=["split-inside-a-bar",
                                                      "split-on-a-bar-boundary"])
def test_history_of_a_recording_warms_up_and_the_replay_continues_the_open_bar(feed, home,
                                                                              split_second):
    # Where the split falls within its minute is chosen, not left to the wall clock: the
    # open bar the replay continues exists only when the split lies inside a bar.
    minute_s = (now_us() // 1_000_000 - 3600) // 60 * 60
    start_us = (minute_s + split_second - 150) * 1_000_000
    rows = synthetic(home, f"bars-{split_second}", seconds=300, per_second=1,
                     symbols=("AAA",), start_us=start_us)
    split = rows[150]["time"]  # replay from here; history is what was known before
    assert split % 60_000 == split_second * 1000
    bars = feed.history("replay", "AAA", "1m", recording=f"bars-{split_second}", end=split)
    expected: dict[int, list[float]] = {}
    for row in rows:
        if row["time"] >= split:
            break
        start, p = floor_bar(row["time"], "1m"), row["price"]
        bar = expected.setdefault(start, [p, p, p, p])
        bar[1], bar[2], bar[3] = max(bar[1], p), min(bar[2], p), p
    assert [int(t.value // 10**6) for t in bars.index] == sorted(expected)
    assert bars[["open", "high", "low", "close"]].values.tolist() == list(expected.values())
    assert "volume" not in bars.columns  # these rows carry no volume of any kind

    stream = feed.subscribe("replay", "AAA", recording=f"bars-{split_second}", speed="max",
                            start=split, paused=True)
    got, finished = collect(stream)
    stream.resume()
    assert finished.wait(60)
    stream.close()
    assert got == rows[150:]
    last_bar = int(bars.index[-1].value // 10**6)
    if split_second:  # the replay's first row goes on in the bar the history left open
        assert floor_bar(got[0]["time"], "1m") == last_bar
        assert bars["close"].iloc[-1] == rows[149]["price"]
    else:  # the history ends with a whole bar; the replay's first row opens the next one
        assert floor_bar(got[0]["time"], "1m") == split == last_bar + 60_000


def test_recordings_are_listed_described_exported_and_deleted(feed, home, tmp_path):
    synthetic(home, "manage", seconds=2, per_second=5)
    table = feed.recordings()
    assert "manage" in table.index
    row = table.loc["manage"]
    assert row["status"] == "stopped" and row["rows"] == 11
    assert list(row["symbols"]) == ["AAA", "BBB"] and row["sources"] == ["bench"]
    rec = feed.recording("manage")
    out = rec.export(tmp_path / "manage.parquet")
    import pandas as pd

    exported = pd.read_parquet(out)
    assert len(exported) == 11 and list(exported["seq"]) == list(range(1, 12))
    csv = rec.export(tmp_path / "manage.csv")
    assert csv.read_text().splitlines()[0].startswith('"seq","received","interval","time"')
    with pytest.raises(BadRequest, match="exists; pass overwrite=True"):
        rec.export(out)
    rec.delete()
    assert "manage" not in feed.recordings().index
    with pytest.raises(UnknownRecording, match="unknown recording 'manage'"):
        feed.recording("manage")


def test_a_recording_stops_with_the_hub_and_keeps_every_row(tmp_path):
    f = nbfeed.connect(embedded=True, providers=["simulated"], home=str(tmp_path))
    try:
        rec = f.record("simulated", ["AAPL"], name="until-close")
        deadline = time.monotonic() + 30
        while rec.info()["rows"] == 0:  # a first part file is on disk
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        f.close()
    info = RecordingStore(tmp_path).describe("until-close")
    assert info["status"] == "stopped" and info["rows"] > 0 and info["lost_rows"] == 0


def test_bad_requests_are_refused_with_clear_errors(feed, home):
    synthetic(home, "errors", seconds=1, per_second=5)
    with pytest.raises(UnknownRecording, match=r"unknown recording 'nope'; recordings: .*errors"):
        feed.subscribe("replay", "AAA", recording="nope")
    with pytest.raises(BadRequest,
                       match=re.escape("recording name '../x' must be 1-64 characters")):
        feed.subscribe("replay", "AAA", recording="../x")
    with pytest.raises(BadRequest, match=re.escape("speed must be from 0.1 to 1000, or 'max'")):
        feed.subscribe("replay", "AAA", recording="errors", speed=5000)
    with pytest.raises(BadRequest, match="replay needs recording=<name>"):
        feed.subscribe("replay", "AAA", speed=2)
    with pytest.raises(BadRequest, match="'simulated' takes no subscription options"):
        feed.subscribe("simulated", "AAPL", speed=2)
    with pytest.raises(BadRequest, match="does not take the option 'sped'; it takes: "
                                         "recording, speed"):
        feed.subscribe("replay", "AAA", recording="errors", sped=2)
    with pytest.raises(UnknownSymbol, match=re.escape("'ZZZ' is not in recording 'errors'; "
                                                      "it holds: AAA (tick), BBB (tick)")):
        feed.subscribe("replay", "ZZZ", recording="errors")
    with pytest.raises(BadInterval, match="'AAA' was recorded in 'errors' at tick, not '1m'"):
        feed.subscribe("replay", "AAA", "1m", recording="errors")
    with pytest.raises(BadRequest, match="replay history needs recording=<name>"):
        feed.history("replay", "AAA", "1m")
    with pytest.raises(BadRequest, match="must be 1-64 characters"):
        feed.record("simulated", "AAPL", name="no/slashes")
    with pytest.raises(BadRequest, match="'errors' already exists"):
        feed.record("simulated", "AAPL", name="errors")
    with pytest.raises(UnknownSymbol):
        feed.record("simulated", "NOPE", name="never-made")
    assert not (home / "recordings" / "never-made").exists()
    with pytest.raises(BadRequest, match="replays recordings; it cannot be recorded"):
        feed.record("replay", "AAA", name="replay-of-replay")
    with pytest.raises(BadRequest, match="max_bytes must be between 1 and"):
        feed.record("simulated", "AAPL", name="neg", max_bytes=-5)
    with pytest.raises(BadRequest, match="duration must be a number of seconds"):
        feed.record("simulated", "AAPL", name="neg", duration=math.inf)


def test_a_provider_restart_during_a_recording_is_noted_and_recording_goes_on(tmp_path):
    import os
    import signal

    f = nbfeed.connect(embedded=True, home=str(tmp_path),
                       providers=[resolve_spec("simulated", None, rate=50)])
    try:
        rec = f.record("simulated", ["AAPL"], name="restart")
        deadline = time.monotonic() + 30
        while rec.info()["rows"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pid = f.providers().loc["simulated", "pid"]
        os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (f.providers().loc["simulated", "status"] == "running"
                   and f.providers().loc["simulated", "pid"] != pid):
            assert time.monotonic() < deadline, "the provider did not come back"
            time.sleep(0.05)
        rows_after_restart = rec.info()["rows"]
        while rec.info()["rows"] <= rows_after_restart:  # rows keep coming after the restart
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = rec.stop()
    finally:
        f.close()
    states = [e.get("state") for e in info["events"] if e.get("type") == "status"]
    assert "restarting" in states and states[-1] == "running", info["events"]
    assert info["status"] == "stopped" and info["lost_rows"] == 0
