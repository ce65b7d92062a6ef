"""LiveChart: what the browser receives (snapshots, deltas, message counts) and bad input.

Outgoing widget messages are captured with a recording comm (the ``comm`` package's hook that
ipykernel itself uses), so these tests see exactly the messages a kernel would publish. One test
runs a real kernel; the JavaScript is checked with node when it is installed.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import comm
import numpy as np
import pandas as pd
import pytest
from comm.base_comm import BaseComm

from nbfeed.errors import BadRequest
from nbfeed.widgets.chart import LiveChart
from nbfeed.widgets.chart_window import decode_frame, encode_frame

ROOT = Path(__file__).resolve().parents[1]
CHART_JS = ROOT / "nbfeed" / "widgets" / "static" / "chart.js"
T0 = 1_767_312_000_000  # 2026-01-02 00:00 UTC
MIN = 60_000


class RecordingComm(BaseComm):
    """A comm that keeps what it would publish, and lets a test wait for a message."""

    def __init__(self, *args, **kwargs):
        self.sent: list[tuple[str, dict, list[bytes]]] = []
        self.cond = threading.Condition()
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        with self.cond:
            self.sent.append((msg_type, data or {}, [bytes(b) for b in buffers or []]))
            self.cond.notify_all()

    def messages(self):
        with self.cond:
            return [m for m in self.sent if m[0] == "comm_msg"]

    def wait_for(self, predicate, timeout=20.0):
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate(self.sent), timeout)
        assert ok, f"timed out; {len(self.sent)} messages sent"


@pytest.fixture(autouse=True)
def recording_comms(monkeypatch):
    monkeypatch.setattr(comm, "create_comm", RecordingComm)


def candle(t, close, **extra):
    return {"time": t, "open": 10.0, "high": max(10.0, close) + 1, "low": min(10.0, close) - 1,
            "close": close, **extra}


def deltas(chart):
    return [decode_frame(b[0]) for _, d, b in chart.comm.sent
            if d.get("method") == "custom" and d["content"].get("kind") == "delta"]


def snapshot(chart):
    return decode_frame(chart.get_state("_snapshot")["_snapshot"])


def history_frame(n=300):
    idx = pd.date_range("2026-01-02 09:30", periods=n, freq="1min", tz="America/New_York")
    close = 100 + np.cumsum(np.sin(np.arange(n)))
    return pd.DataFrame({"Open": close - 0.5, "High": close + 1, "Low": close - 1,
                         "Close": close, "Volume": np.arange(n) * 10.0}, index=idx)


# --- snapshot and deltas ---------------------------------------------------------------------

def test_history_frame_becomes_the_snapshot_a_new_view_draws():
    df = history_frame(300)
    chart = LiveChart(df, max_bars=200, title="AAPL 1m")
    snap = snapshot(chart)
    assert chart.kind == "candle"
    assert snap["columns"] == ["open", "high", "low", "close", "volume"]
    # The newest 200 bars, times as UTC epoch ms (the index was New York time).
    assert len(snap["times"]) == 200
    assert snap["times"][-1] == df.index[-1].tz_convert("UTC").value // 1_000_000
    assert snap["times"][-1] - snap["times"][0] == 199 * MIN
    np.testing.assert_array_equal(snap["close"], df["Close"].to_numpy()[-200:])
    np.testing.assert_array_equal(snap["volume"], df["Volume"].to_numpy()[-200:])
    # The comm's opening message already carries the same data (what the page gets first).
    opened = chart.comm.sent[0]
    assert opened[0] == "comm_open" and decode_frame(opened[2][0])["seq"] == 0
    chart.close()


def test_numeric_columns_become_lines_and_nan_stays_a_gap():
    df = pd.DataFrame({"time": [T0, T0 + MIN, T0 + 2 * MIN], "close": [1.0, np.nan, 3.0],
                       "sma": [np.nan, 1.5, 2.5], "label": ["a", "b", "c"]})
    chart = LiveChart(df)
    assert chart.kind == "line" and chart.columns == ("close", "sma")
    snap = snapshot(chart)
    assert snap["times"].tolist() == [T0, T0 + MIN, T0 + 2 * MIN]
    assert np.isnan(snap["close"][1]) and snap["sma"][2] == 2.5
    chart.close()


def test_last_bar_updates_in_place_and_new_bars_append_without_resending_history():
    chart = LiveChart([candle(T0 + i * MIN, 100.0 + i) for i in range(1000)])
    last = T0 + 999 * MIN
    chart.update(candle(last, 555.0))
    chart.flush()
    chart.update([candle(last + MIN, 556.0), candle(last + MIN, 557.0)])
    chart.flush()
    first, second = deltas(chart)
    assert first["times"].tolist() == [last] and first["close"].tolist() == [555.0]
    assert second["times"].tolist() == [last + MIN] and second["close"].tolist() == [557.0]
    assert [first["seq"], second["seq"]] == [1, 2]
    frame = chart.to_frame()
    assert len(frame) == 1001 and frame["close"].iloc[-2:].tolist() == [555.0, 557.0]
    assert snapshot(chart)["seq"] == 2
    chart.close()


def test_window_is_bounded_and_memory_flat():
    chart = LiveChart(max_bars=50)
    for i in range(5000):
        chart.update(candle(T0 + i * MIN, float(i)))
    chart.flush()
    frame = chart.to_frame()
    assert len(frame) == 50
    assert frame["close"].tolist() == [float(i) for i in range(4950, 5000)]
    assert chart._store._t.size <= 100  # arrays never grow past twice the window
    # A late row older than a full window is dropped; one inside it is inserted in order.
    chart.update(candle(T0, -1.0))
    chart.update(candle(T0 + 4960 * MIN + 1, -2.0))
    frame = chart.to_frame()
    assert len(frame) == 50 and -1.0 not in frame["close"].tolist()
    assert frame.index.is_monotonic_increasing and -2.0 in frame["close"].tolist()
    assert len(snapshot(chart)["times"]) == 50
    chart.close()


def test_rows_from_a_thread_are_coalesced_to_a_few_messages_with_the_final_values():
    flush_hz = 10
    chart = LiveChart(flush_hz=flush_hz)
    n_rows, per_bar = 20_000, 100
    last_time, last_close = T0 + (n_rows - 1) // per_bar * MIN, float(n_rows - 1)
    done = threading.Event()

    def produce():  # a stream's thread: one update per row, paced over about two seconds
        for i in range(n_rows):
            chart.update(candle(T0 + i // per_bar * MIN, float(i), volume=float(i)))
            if i % 1000 == 999:
                time.sleep(0.1)
        done.set()

    started = time.monotonic()
    threading.Thread(target=produce, daemon=True).start()

    def final_value_sent(_sent):
        frames = deltas(chart)
        return bool(frames) and frames[-1]["times"][-1] == last_time and \
            frames[-1]["close"][-1] == last_close

    chart.comm.wait_for(final_value_sent)
    elapsed = time.monotonic() - started
    assert done.wait(20)
    sent = chart.comm.messages()
    assert len(sent) <= flush_hz * elapsed + 3, (len(sent), elapsed)
    assert len(sent) >= 5  # it streamed while rows arrived, not only at the end
    snap = snapshot(chart)
    assert len(snap["times"]) == n_rows // per_bar
    assert snap["times"][-1] == last_time and snap["close"][-1] == last_close
    assert chart.stats["rows_received"] == n_rows and chart.stats["rows_rejected"] == 0
    chart.close()


def test_resync_request_from_the_browser_is_answered_with_a_current_snapshot():
    chart = LiveChart([candle(T0 + i * MIN, float(i)) for i in range(10)])
    chart.update(candle(T0 + 10 * MIN, 10.0))
    chart.comm.handle_msg({"content": {"data": {"method": "custom",
                                                "content": {"kind": "resync"}}},
                           "buffers": []})

    def snapshots(sent):
        # ipywidgets moves binary values out of "state" into buffers, listed in buffer_paths.
        return [decode_frame(b[0]) for _, d, b in sent
                if d.get("method") == "update" and d.get("buffer_paths") == [["_snapshot"]]]

    chart.comm.wait_for(lambda sent: bool(snapshots(sent)))
    frame = snapshots(chart.comm.sent)[-1]
    assert len(frame["times"]) == 11 and frame["close"][-1] == 10.0
    chart.close()


# --- streams ---------------------------------------------------------------------------------

class FakeStream:
    """The duck type LiveChart follows: on_update(cb) -> unsubscribe, interval, history."""

    def __init__(self, interval="1m", history=None, symbols=("AAPL",)):
        self.interval, self.symbols, self._history = interval, list(symbols), history
        self.callbacks = []

    def on_update(self, callback):
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def history(self, count):
        self.asked_count = count
        return self._history

    def publish(self, rows):
        for cb in list(self.callbacks):
            cb(rows)


def test_chart_follows_a_stream_of_one_symbol_from_its_thread_and_detaches_on_close():
    hist = [candle(T0 + i * MIN, 100.0 + i, symbol="AAPL") for i in range(20)]
    stream = FakeStream(history=hist)
    stream.history = lambda count: (stream.publish([candle(T0 + 19 * MIN, 999.0,
                                                           symbol="AAPL")]), hist)[1]
    chart = LiveChart(stream, max_bars=500)
    assert chart.kind == "candle" and chart.symbol == "AAPL"
    # The live update that raced the history fetch wins over the history's stale open bar.
    assert chart.to_frame()["close"].iloc[-1] == 999.0

    def run():
        stream.publish([candle(T0 + 20 * MIN, 1.0, symbol="AAPL"),
                        candle(T0 + 20 * MIN, 2.0, symbol="MSFT")])
        stream.publish([{"time": T0 + 21 * MIN, "symbol": "AAPL", "close": "oops"},
                        candle(T0 + 21 * MIN, 3.0, symbol="AAPL")])

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(10)
    chart.flush()
    frame = chart.to_frame()
    assert frame["close"].iloc[-2:].tolist() == [1.0, 3.0]  # MSFT skipped, bad row dropped
    assert chart.stats["rows_rejected"] == 1 and chart.stats["rows_other_symbol"] == 1
    chart.close()
    assert stream.callbacks == []
    assert chart.comm is None


class OffUpdateStream(FakeStream):
    """A stream whose on_update returns nothing; callbacks are removed with off_update."""

    def on_update(self, callback):
        self.callbacks.append(callback)

    def off_update(self, callback):
        self.callbacks.remove(callback)


def test_history_as_a_dataframe_of_several_symbols_and_off_update_style_streams():
    idx = pd.date_range("2026-01-02", periods=4, freq="1min", tz="UTC")
    hist = pd.DataFrame({"symbol": ["AAPL", "MSFT"] * 2, "open": 1.0, "high": 3.0, "low": 0.5,
                         "close": [1.0, 2.0, 3.0, 4.0], "volume": 10.0}, index=idx)
    stream = OffUpdateStream(history=hist, symbols=("AAPL", "MSFT"))
    chart = LiveChart(stream, symbol="MSFT")
    assert stream.asked_count == 5000
    assert chart.to_frame()["close"].tolist() == [2.0, 4.0]
    chart.detach()
    assert stream.callbacks == []
    stream.publish([candle(T0, 1.0, symbol="MSFT")])
    assert len(chart.to_frame()) == 2  # detached: no longer follows
    chart.update(candle(int(idx[-1].value // 1_000_000) + MIN, 5.0, symbol="MSFT"))
    assert chart.to_frame()["close"].iloc[-1] == 5.0  # manual feeding still works
    chart.close()


def test_a_failing_history_warns_and_the_chart_still_goes_live():
    stream = FakeStream()

    def broken(count):
        raise ConnectionError("provider down")

    stream.history = broken
    with pytest.warns(UserWarning, match="provider down"):
        chart = LiveChart(stream)
    stream.publish([candle(T0, 3.0, symbol="AAPL")])
    assert chart.to_frame()["close"].tolist() == [3.0]
    chart.close()


class TickStream(FakeStream):
    """A quote stream of one symbol whose source has 1 s bars (as nbfeed's Stream does)."""

    source = "sim"

    def __init__(self, bars=None):
        super().__init__(interval="tick", symbols=("BTC-USD",))
        self.bars, self.asked = bars, []

    def history(self, count, interval=None):
        self.asked.append(interval)
        if interval is None or interval == "tick":
            return pd.DataFrame()  # what Stream.history gives for a tick stream
        return self.bars

    def latest_rows(self):
        return [{"time": T0 + 61_000, "symbol": "BTC-USD", "price": 65_010.0}]


def test_a_tick_line_starts_from_recent_one_second_bars_without_a_warning(recwarn):
    idx = pd.date_range(pd.Timestamp(T0, unit="ms", tz="UTC"), periods=60, freq="1s")
    bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "volume": 1.0,
                         "close": 65_000.0 + np.arange(60)}, index=idx)
    stream = TickStream(bars)
    chart = LiveChart(stream, kind="line", field="price")
    assert not recwarn.list, [str(w.message) for w in recwarn.list]
    assert stream.asked == ["1s"]
    frame = chart.to_frame()
    assert len(frame) == 61, "60 closes of history, then the stream's latest price"
    assert frame["price"].iloc[[0, -2, -1]].tolist() == [65_000.0, 65_059.0, 65_010.0]
    stream.publish([{"time": T0 + 62_000, "symbol": "BTC-USD", "price": 65_020.0}])
    chart.flush()
    assert chart.to_frame()["price"].iloc[-1] == 65_020.0
    chart.close()
    # A source without bars: no history, no warning, still live.
    bare = TickStream(None)
    chart = LiveChart(bare, kind="line", field="price")
    assert not recwarn.list and bare.asked == ["1s", "1m"]
    assert len(chart.to_frame()) == 1
    chart.close()


def test_show_switches_symbol_and_interval_in_the_same_widget(monkeypatch):
    import nbfeed.client

    made = []

    class Client:
        def subscribe(self, source, symbols, interval):
            hist = [candle(T0 + i * MIN, 10.0 * (len(made) + 1) + i, symbol=symbols[0])
                    for i in range(5)]
            stream = FakeStream(interval=interval, history=hist, symbols=symbols)
            stream.source, stream.closed = source, False
            stream.close = lambda: setattr(stream, "closed", True)
            made.append(stream)
            return stream

    monkeypatch.setattr(nbfeed.client, "connect", lambda: Client())
    chart = LiveChart("sim", symbol="AAPL", interval="1m")
    assert chart.kind == "candle" and chart.to_frame()["close"].iloc[0] == 10.0
    generation = chart._generation
    chart.show("MSFT", interval="5m")
    assert made[0].closed and made[0].callbacks == [], "the chart's own stream is closed"
    assert (made[1].symbols, made[1].interval) == (["MSFT"], "5m")
    assert chart.symbol == "MSFT" and chart._interval == "5m"
    assert chart._interval_ms == 5 * MIN and chart._generation == generation + 1
    assert chart.to_frame()["close"].tolist() == [20.0, 21.0, 22.0, 23.0, 24.0]
    made[1].publish([candle(T0 + 5 * MIN, 99.0, symbol="MSFT")])
    chart.flush()
    assert chart.to_frame()["close"].iloc[-1] == 99.0
    chart.close()
    assert made[1].closed
    with pytest.raises(BadRequest, match="follows an nbfeed stream"):
        LiveChart(history_frame(5)).show("MSFT")


def test_an_ohlc_frame_as_a_line_plots_close():
    chart = LiveChart(history_frame(10), kind="line")
    assert chart.kind == "line" and chart.columns == ("Close",)
    chart.close()


def test_tick_stream_plots_at_most_one_point_per_flush():
    stream = FakeStream(interval="tick")
    chart = LiveChart(stream, flush_hz=5)
    assert chart.kind == "line" and chart.columns == ("price",)
    stream.publish([{"time": T0 + i, "symbol": "AAPL", "price": 100.0 + i, "bid": 1.0}
                    for i in range(1000)])
    chart.flush()
    stream.publish([{"time": T0 + 5000, "symbol": "AAPL", "price": 7.0}])
    chart.flush()
    frame = chart.to_frame()
    assert frame["price"].tolist() == [1099.0, 7.0]
    chart.close()


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"max_bars": 0}, "max_bars must be an integer from 1"),
    ({"max_bars": -5}, "-5"),
    ({"max_bars": 2.5}, "2.5"),
    ({"max_bars": True}, "True"),
    ({"max_bars": 10**9}, "1000000000"),
    ({"flush_hz": 0}, "flush_hz must be a number above 0"),
    ({"flush_hz": 1000}, "1000"),
    ({"flush_hz": "10"}, "'10'"),
    ({"flush_hz": float("nan")}, "nan"),
    ({"kind": "bar"}, "'bar'"),
    ({"height": 5}, "height"),
    ({"interval": "7m"}, "'7m'"),
    ({"stream": object()}, "on_update"),
])
def test_bad_options_are_refused_by_name(kwargs, needle):
    with pytest.raises(ValueError, match=None) as err:
        LiveChart(**kwargs)
    assert needle in str(err.value)


@pytest.mark.parametrize(("data", "needle"), [
    (pd.DataFrame({"time": [T0], "name": ["x"]}), "no numeric column"),
    (pd.DataFrame({"close": [1.0]}), "DatetimeIndex or a 'time' column"),
    (pd.DataFrame({"close": [1.0, 2.0]},
                  index=pd.DatetimeIndex(["2026-01-02", None], tz="UTC")), "NaT"),
    (pd.DataFrame({"time": [T0], "open": [1.0], "high": [np.inf], "low": [1.0],
                   "close": [1.0]}), "'high' is inf"),
    (pd.DataFrame({"time": [T0], "open": [1.0], "high": [2.0], "low": [1.0],
                   "close": [np.nan]}), "'close' is nan"),
    (pd.DataFrame({"time": [T0, T0], "symbol": ["AAPL", "MSFT"], "close": [1.0, 2.0]}),
     "several symbols"),
    ([{"open": 1.0}], "row 0 has no 'time'"),
    ([candle(T0, 1.0), "not a row"], "row 1 must be a dict"),
    ("AAPL", "needs symbol="),
    (42, "got int"),
])
def test_bad_data_is_refused_naming_the_value(data, needle):
    with pytest.raises(BadRequest) as err:
        LiveChart(data)
    assert needle in str(err.value)


@pytest.mark.parametrize(("row", "needle"), [
    ({"time": T0, "open": 1.0, "high": 2.0, "low": 0.5}, "has no close"),
    ({"time": T0, "open": 1.0, "high": 2.0, "low": 0.5, "close": float("nan")}, "close is nan"),
    ({"time": T0, "open": 1.0, "high": 2.0, "low": 0.5, "close": "12"}, "close must be a number"),
    ({"time": T0, "open": True, "high": 2.0, "low": 0.5, "close": 1.0}, "open must be a number"),
    ({"time": "yesterday-ish", "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.0},
     "'yesterday-ish'"),
    ({"time": None, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.0}, "None"),
])
def test_bad_rows_raise_and_nothing_of_the_batch_is_applied(row, needle):
    chart = LiveChart([candle(T0 - MIN, 5.0)])
    with pytest.raises(BadRequest) as err:
        chart.update([candle(T0 + MIN, 6.0), row])
    assert needle in str(err.value) and "row 1" in str(err.value)
    assert chart.to_frame()["close"].tolist() == [5.0]
    chart.close()


def test_candle_kind_needs_ohlc_and_a_tick_stream_cannot_make_candles():
    with pytest.raises(BadRequest, match="kind='candle' needs open, high, low and close"):
        LiveChart(pd.DataFrame({"time": [T0], "price": [1.0]}), kind="candle")
    with pytest.raises(BadRequest, match="interval 'tick'"):
        LiveChart(FakeStream(interval="tick"), kind="candle")


# --- the JavaScript --------------------------------------------------------------------------

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


@needs_node
def test_chart_js_parses():
    subprocess.run([NODE, "--check", str(CHART_JS)], check=True, timeout=60)


NODE_SCRIPT = r"""
import { readFileSync } from "node:fs";
import { decodeFrame, FeedState, Viewport, niceTicks, formatTimeLabel, dataDecimals }
  from "./chart.mjs";
const read = (name) => {
  const b = readFileSync(name);
  // An odd byte offset, as a DataView into a larger message buffer would have.
  const big = new Uint8Array(b.length + 3);
  big.set(b, 3);
  return new DataView(big.buffer, 3, b.length);
};
const out = {};
const feed = new FeedState(50);
out.snapshotTaken = feed.snapshot(decodeFrame(read("snap.bin")));
out.results = ["d1", "d3", "d4", "d2"].map((n) => feed.delta(decodeFrame(read(n + ".bin"))));
out.awaiting = feed.awaiting;
out.resynced = feed.snapshot(decodeFrame(read("resync.bin")));
out.afterResync = feed.queue.map((d) => d.seq);
feed.drain();
out.seq = feed.seq;
out.times = Array.from(feed.store.times);
out.close = Array.from(feed.store.col("close"));
out.stale = feed.delta(decodeFrame(read("d1.bin")));
// The view: pinned follows new bars; panned away stays on the same bars through appends+trims.
const view = new Viewport();
view.span = 10;
const store = feed.store;
out.pinnedRight = view.right(store);
view.pan(store, 20);
const startTime = store.times[Math.floor(view.right(store) - view.span)];
feed.snapshot(decodeFrame(read("more.bin")));
const s2 = feed.store;
out.pinnedAfterPan = view.pinned;
out.startTimeKept = s2.times[Math.floor(view.right(s2) - view.span)] === startTime;
out.ticks = niceTicks(0.13, 0.97, 5).ticks;
out.label = formatTimeLabel(Date.UTC(2026, 0, 2, 9, 30), 15 * 60000, Date.UTC(2026, 0, 2, 9, 0));
out.dayLabel = formatTimeLabel(Date.UTC(2026, 0, 3), 3600000, Date.UTC(2026, 0, 2, 23, 0));
// Values are shown with the decimals the data carries: cents, FX pips, whole numbers.
out.decimals = [[208.68, 208.7, 208.71], [1.05871, 1.0586], [62264, 62270], [0.1, 0.25]].map(
  (v) => dataDecimals(v, 0, v.length - 1));
console.log(JSON.stringify(out));
"""


def _frame(seq, rows, columns=("open", "high", "low", "close", "volume")):
    times = np.array([t for t, _ in rows], dtype=np.int64)
    values = np.array([[r.get(c, np.nan) for _, r in rows] for c in columns], dtype=np.float64)
    return encode_frame(seq, columns, times, values.reshape(len(columns), len(rows)))


@needs_node
def test_browser_data_logic_matches_the_kernel(tmp_path):
    """The chart's snapshot and encoded deltas, applied by chart.js's FeedState in node."""
    shutil.copy(CHART_JS, tmp_path / "chart.mjs")
    bars = {T0 + i * MIN: candle(T0 + i * MIN, float(i)) for i in range(40)}
    chart = LiveChart(list(bars.values()), max_bars=50)
    (tmp_path / "snap.bin").write_bytes(chart.get_state("_snapshot")["_snapshot"])

    def delta(seq, rows):
        bars.update({r["time"]: r for r in rows})
        return _frame(seq, [(r["time"], r) for r in rows])

    frames = {
        "d1": delta(1, [candle(T0 + 39 * MIN, 100.0)]),                      # in place
        "d2": delta(2, [candle(T0 + i * MIN, float(i)) for i in range(40, 45)]),  # lost
        "d3": delta(3, [candle(T0 + 45 * MIN, 45.0)]),                       # after a gap
    }
    resync = _frame(3, sorted(bars.items()))
    frames["d4"] = delta(4, [candle(T0 + 46 * MIN, 46.0)])
    for name, frame in frames.items():
        (tmp_path / f"{name}.bin").write_bytes(frame)
    (tmp_path / "resync.bin").write_bytes(resync)
    more = [candle(T0 + i * MIN, float(i)) for i in range(47, 60)]  # trims 10 old bars
    (tmp_path / "more.bin").write_bytes(
        _frame(5, [(r["time"], r) for r in [*bars.values(), *more]][-50:]))
    (tmp_path / "t.mjs").write_text(NODE_SCRIPT)
    run = subprocess.run([NODE, "t.mjs"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["snapshotTaken"] is True
    assert out["results"] == ["queued", "gap", "held", "held"]
    assert out["awaiting"] is True and out["resynced"] is True
    assert out["afterResync"] == [4]  # the held delta newer than the snapshot is replayed
    assert out["seq"] == 4 and out["stale"] == "stale"
    assert out["times"] == sorted(bars) and len(out["times"]) == 47
    assert out["close"] == [bars[t]["close"] for t in sorted(bars)]
    assert out["pinnedRight"] == 48  # 47 bars + one empty slot
    assert out["pinnedAfterPan"] is False and out["startTimeKept"] is True
    assert out["ticks"] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert out["label"] == "09:30" and out["dayLabel"] == "Jan 03"
    assert out["decimals"] == [2, 5, 0, 2]
    chart.close()


# --- a real kernel ---------------------------------------------------------------------------

def test_in_a_real_kernel_thread_updates_arrive_as_few_binary_messages():
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env,
                              startup_timeout=60)
    try:
        code = f"""
import threading, time
from nbfeed.widgets.chart import LiveChart
chart = LiveChart(flush_hz=10)
def feed():
    for i in range(5000):
        chart.update({{"time": {T0} + i // 50 * 60000, "open": 1.0, "high": 9e9, "low": 0.5,
                       "close": float(i)}})
        if i % 500 == 499:
            time.sleep(0.1)
threading.Thread(target=feed).start()
print("started")
"""
        kc.execute(code)
        comm_msgs, last = [], None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and last != 4999.0:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            assert msg["msg_type"] != "error", msg["content"]
            if msg["msg_type"] == "comm_msg":
                comm_msgs.append(msg)
                data = msg["content"]["data"]
                if data.get("method") == "custom":
                    last = decode_frame(msg["buffers"][0])["close"][-1]
        assert last == 4999.0
        # ~1 s of feeding at 10 Hz: a dozen or so messages, never one per row.
        assert 3 <= len(comm_msgs) <= 40
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
