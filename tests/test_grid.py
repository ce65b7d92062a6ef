"""LiveGrid: bounded frames under a flood, acknowledged pacing, directions, frozen columns, sort.

Without a browser, the widget's comm is replaced by a recording one (``comm.create_comm`` is
the hook comm 0.2 provides for this) and browser messages are fed in through the same
``comm.handle_msg`` path a kernel uses. :class:`Page` rebuilds what the browser holds from the
frames, the way ``static/grid.js`` does. The slow test runs the real thing: a Jupyter server,
a kernel started over its REST API, and a websocket client counting what reaches the page.
(What the page draws is checked in JupyterLab + Chromium by ``tests/browser/``.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import comm
import numpy as np
import pandas as pd
import pytest
from comm.base_comm import BaseComm

from nbfeed.errors import BadRequest, NBFeedError
from nbfeed.widgets.grid import LiveGrid
from nbfeed.widgets.grid_columns import Column

pytest_plugins = ["pytest_jupyter.jupyter_server"]

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- fixtures


@dataclass
class Sent:
    at: float
    msg_type: str
    data: dict
    buffers: list

    @property
    def event(self) -> str | None:
        if self.data.get("method") == "custom":
            return self.data["content"].get("type")
        return None


@pytest.fixture
def sent(monkeypatch):
    """Every message any widget sends, in order (comm_open, state updates, custom)."""
    log: list[Sent] = []

    class RecordingComm(BaseComm):
        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            log.append(Sent(time.monotonic(), msg_type, data or {}, list(buffers or [])))

    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    return log


@pytest.fixture
def make_grid(sent):
    grids: list[LiveGrid] = []

    def make(*args, **kwargs) -> LiveGrid:
        grid = LiveGrid(*args, **kwargs)
        grids.append(grid)
        return grid

    yield make
    for grid in grids:
        grid.close()


@dataclass
class FakeStream:
    """The stream contract, duck-typed: on_update / interval / latest / close."""

    interval: str = "tick"
    latest: pd.DataFrame = field(default_factory=pd.DataFrame)
    callbacks: list = field(default_factory=list)
    closed: bool = False

    def on_update(self, callback):
        self.callbacks.append(callback)

    def off_update(self, callback):
        self.callbacks.remove(callback)

    def emit(self, rows):
        for cb in self.callbacks:
            cb(rows)

    def close(self):
        self.closed = True


def browser_says(grid: LiveGrid, content: dict) -> None:
    """A custom message from the page, delivered as the kernel would deliver it."""
    grid.comm.handle_msg({"content": {"data": {"method": "custom", "content": content}},
                          "buffers": []})


class Page:
    """The browser's copy of a grid, rebuilt from the frames in ``sent`` as grid.js does."""

    def __init__(self, grid: LiveGrid, sent: list[Sent]) -> None:
        self.grid = grid
        self.sent = sent
        self.headers = {c["field"]: c["header"] for c in grid._columns}

    def frames(self) -> list[dict]:
        """Every frame sent so far, decoded: content plus ``values`` and ``flashes`` by field."""
        out = []
        for m in list(self.sent):
            if m.event != "frame":
                continue
            content = dict(m.data["content"])
            nums = content["num"]
            content["values"] = {f: np.frombuffer(m.buffers[k], "<f8").tolist()
                                 for k, f in enumerate(nums)}
            content["flashes"] = {f: np.frombuffer(m.buffers[len(nums) + k], np.int8).tolist()
                                  for k, f in enumerate(content["flash"])}
            out.append(content)
        return out

    def rows(self) -> list[dict]:
        """The rows the page holds, in display order, by header (hidden fields by field)."""
        cache: dict[int, dict] = {}
        total = 0
        for f in self.frames():
            for i, pos in enumerate(f["pos"]):
                row = {f2: vals[i] for f2, vals in f["text"].items()}
                row.update({f2: vals[i] for f2, vals in f["values"].items()})
                cache[pos] = {self.headers.get(k, k): v for k, v in row.items()}
            total = f["total"]
        return [cache[p] for p in sorted(cache) if p < total]

    @property
    def seq(self) -> int:
        frames = [m for m in list(self.sent) if m.event == "frame"]
        return frames[-1].data["content"]["seq"] if frames else 0

    def ack(self) -> None:
        """The page drew the last frame it got."""
        if self.seq:
            browser_says(self.grid, {"type": "ack", "seq": self.seq})

    def open(self, first: int = 0, last: int = 29) -> Page:
        """A view renders and says which rows it shows."""
        browser_says(self.grid, {"type": "hello", "first": first, "last": last})
        return self

    def shows(self, check, timeout: float = 5.0) -> bool:
        """Wait (acking each frame, as the page does) until ``check(rows)`` holds."""
        def ok(_grid) -> bool:
            self.ack()
            rows = self.rows()
            return len(rows) > 0 and check(rows)

        return self.grid.wait(ok, timeout=timeout)


def column(rows: list[dict], name: str) -> list:
    return [r[name] for r in rows]


# --------------------------------------------------------------------------- flood


def test_flood_is_coalesced_to_the_flush_rate_and_ends_on_latest_values(make_grid, sent):
    symbols = [f"S{i:03d}" for i in range(500)]
    stream = FakeStream()
    grid = make_grid(stream, columns=["symbol", "price", "volume"], flush_hz=10)
    page = Page(grid, sent).open(0, 29)
    last: dict[str, float] = {}
    stop_at = time.monotonic() + 2.0
    fed = 0

    def feed():
        nonlocal fed
        step = 0
        while time.monotonic() < stop_at:
            batch = []
            for _ in range(200):
                sym = symbols[(step * 7) % 500]
                price = 100 + (step % 977) * 0.01
                batch.append({"time": step, "symbol": sym, "price": price, "volume": step})
                last[sym] = price
                step += 1
            stream.emit(batch)
            fed += len(batch)
            page.ack()

    start = time.monotonic()
    sent.clear()
    feeder = threading.Thread(target=feed)
    feeder.start()
    feeder.join(10)
    assert grid.wait(timeout=10)
    frame = grid.frame()
    assert len(frame) == 500
    assert frame["price"].to_dict() == last
    # The page's copy of its window ends on the final prices.
    assert page.shows(
        lambda rows: column(rows, "Price") == [last[s] for s in column(rows, "Symbol")])
    elapsed = time.monotonic() - start
    assert fed > 20_000, "the feeder should have pushed a flood"
    assert len(sent) <= grid.flush_hz * elapsed + 3, (len(sent), elapsed)
    frames = page.frames()
    assert all(len(f["pos"]) <= 90 for f in frames), "only the page's window (and margin) is sent"


def test_without_acknowledgements_the_kernel_waits_then_sends_a_full_frame(make_grid, sent):
    """Back-pressure: a page that has not drawn the last frame gets no new one for a second;
    then one full frame (it may have missed something) instead of a backlog."""
    grid = make_grid(columns=["symbol", "price"], flush_hz=50)
    page = Page(grid, sent).open(0, 10)
    grid.update([{"symbol": "A", "price": 1.0}, {"symbol": "B", "price": 2.0}])
    assert page.shows(lambda rows: len(rows) == 2)
    page.ack()
    grid.update({"symbol": "A", "price": 1.5})
    assert grid.wait()
    assert grid.wait(lambda g: len(page.frames()) >= 2, timeout=5)
    before = len(page.frames())
    started = time.monotonic()
    for i in range(40):  # the page does not acknowledge any of this
        grid.update({"symbol": "B", "price": 2.0 + i})
        time.sleep(0.01)
    assert grid.wait(lambda g: len(page.frames()) > before, timeout=5)
    waited = time.monotonic() - started
    frames = page.frames()[before:]
    assert len(frames) == 1, "no frame goes while the page has not drawn the previous one"
    assert frames[0]["reset"] and sorted(frames[0]["pos"]) == [0, 1], "a full frame"
    assert waited >= 0.8
    assert column(page.rows(), "Price") == [1.5, 41.0]


# --------------------------------------------------------------------------- flashes


def test_rise_flashes_green_fall_flashes_red_and_both_fade(make_grid, sent):
    grid = make_grid(columns=["symbol", "price"], flash_ms=300, flush_hz=30)
    page = Page(grid, sent).open()
    grid.update([{"symbol": "UP", "price": 10.0}, {"symbol": "DOWN", "price": 10.0}])
    assert page.shows(lambda rows: len(rows) == 2)
    assert grid.flash_state()["price"].tolist() == [0, 0], "a new row has nothing to compare"
    assert all(not f["flash"] for f in page.frames()), "new rows do not flash"

    changed_at = time.monotonic()
    grid.update([{"symbol": "UP", "price": 10.5}, {"symbol": "DOWN", "price": 9.5}])
    assert grid.wait()
    assert grid.flash_state()["price"].to_dict() == {"UP": 1, "DOWN": -1}
    assert page.shows(lambda rows: column(rows, "Price") == [10.5, 9.5])
    flashed = [f for f in page.frames() if f["flash"]]
    assert len(flashed) == 1
    directions = dict(zip([page.rows()[p]["Symbol"] for p in flashed[0]["pos"]],
                          flashed[0]["flashes"]["price"]))
    assert directions == {"UP": 1, "DOWN": -1}, "the page is told which way each cell moved"
    assert grid.wait(lambda g: not g.flash_state().to_numpy().any(), timeout=5)
    assert time.monotonic() - changed_at >= 0.3, "not cleared before flash_ms"
    frames = len(page.frames())
    time.sleep(0.3)
    assert len(page.frames()) == frames, "the fade is the browser's: no frame for it"


def test_flash_colour_can_follow_another_fields_sign(make_grid):
    # Workspace: showCellChange + colorValueKey: the colour is the sign of "change".
    cols = [
        {"field": "symbol", "headerName": "Symbol"},
        {"field": "price", "headerName": "Price", "renderFn": "showCellChange",
         "renderFnParams": {"colorValueKey": "change"}},
        {"field": "change", "headerName": "Chg", "hide": True},
    ]
    grid = make_grid(columns=cols, flash_ms=5000)
    grid.update({"symbol": "X", "price": 10.0, "change": -1.0})
    assert grid.wait()
    grid.update({"symbol": "X", "price": 11.0, "change": -0.5})
    assert grid.wait()
    assert grid.flash_state().loc["X", "price"] == -1, "rose, but change is negative: red"


# --------------------------------------------------------------------------- frozen columns


def test_a_frozen_column_keeps_its_first_value(make_grid, sent):
    cols = [
        {"field": "symbol", "headerName": "Symbol"},
        {"field": "price", "headerName": "Price", "renderFn": ["showCellChange", "greenRed"]},
        {"field": "prev_close", "headerName": "Prev", "enableCellChangeWs": False},
        Column("volume", live=False),
    ]
    stream = FakeStream(latest=pd.DataFrame([{"symbol": "A", "price": 1.0, "prev_close": 0.9}]))
    grid = make_grid(stream, columns=cols, flush_hz=50)
    page = Page(grid, sent).open()
    for i in range(50):
        stream.emit([{"symbol": "A", "price": 1.0 + i, "prev_close": 5.0 + i, "volume": 100 + i}])
        if i % 10 == 0:
            assert grid.wait()
            page.ack()
    assert grid.wait()
    row = grid.frame().loc["A"]
    assert row["price"] == 50.0
    assert row["prev_close"] == 0.9, "frozen at the snapshot value"
    assert row["volume"] == 100, "frozen at the first value it received"
    assert page.shows(lambda rows: column(rows, "Price") == [50.0])
    assert {v for f in page.frames() for v in f["values"]["prev_close"]} == {0.9}


# --------------------------------------------------------------------------- sort / filter


def test_sort_and_filter_survive_updates_and_the_order_follows_the_values(make_grid, sent):
    grid = make_grid(columns=["symbol", "price"], flush_hz=50)
    page = Page(grid, sent).open()
    grid.update([{"symbol": s, "price": p} for s, p in [("A", 1.0), ("B", 2.0), ("C", 3.0)]])
    assert grid.wait()
    browser_says(grid, {"type": "sort", "field": "price", "desc": True})  # a header click
    assert grid.get_visible_data()["Symbol"].tolist() == ["C", "B", "A"]
    assert page.shows(lambda rows: column(rows, "Symbol") == ["C", "B", "A"])
    assert page.frames()[-1]["sort"] == ["price", True], "the page shows the sort mark"
    keep = {"type": "filter", "column": "Price", "operator": "<", "value": 100.0}
    grid.transform([*grid.transforms, keep])

    grid.update([{"symbol": "A", "price": 9.0}, {"symbol": "C", "price": 0.5},
                 {"symbol": "B", "price": 500.0}])
    assert grid.wait()
    assert [t["type"] for t in grid.transforms] == ["sort", "filter"], "updates keep them"
    assert grid.get_visible_data()["Symbol"].tolist() == ["A", "C"]
    assert grid.row_count == 2
    assert page.shows(lambda rows: column(rows, "Symbol") == ["A", "C"])

    grid.transform([{"type": "sort", "column": "price"}])  # field names work too
    assert grid.get_visible_data()["Symbol"].tolist() == ["C", "A", "B"]
    browser_says(grid, {"type": "sort", "field": None, "desc": None})  # third click: unsorted
    assert grid.get_visible_data()["Symbol"].tolist() == ["A", "B", "C"]
    with pytest.raises(BadRequest, match="operator"):
        grid.transform([{"type": "filter", "column": "price", "operator": "~", "value": 1}])


def test_a_large_table_sends_only_the_window_around_what_the_page_shows(make_grid, sent):
    grid = make_grid(columns=["symbol", "price"], flush_hz=50)
    page = Page(grid, sent).open(0, 19)
    grid.update([{"symbol": f"S{i:04d}", "price": float(i)} for i in range(2000)])
    assert page.shows(lambda rows: len(rows) == 40)  # 20 shown + 20 below
    browser_says(grid, {"type": "view", "first": 1000, "last": 1019})  # scrolled
    assert page.shows(lambda rows: any(r["Symbol"] == "S1010" for r in rows))
    last = page.frames()[-1]
    assert min(last["pos"]) >= 980 and max(last["pos"]) < 1040


def test_a_click_returns_the_row_to_python(make_grid, sent):
    grid = make_grid(columns=["symbol", "price"])
    page = Page(grid, sent).open()
    grid.update([{"symbol": "AAPL", "price": 1.0}, {"symbol": "MSFT", "price": 2.0}])
    assert page.shows(lambda rows: len(rows) == 2)
    clicked = []
    grid.on_click(clicked.append)
    uid = page.frames()[-1]["uid"][1]
    browser_says(grid, {"type": "click", "uid": uid})
    assert [r["symbol"] for r in clicked] == ["MSFT"]
    assert grid.selected["symbol"] == "MSFT" and grid._selected_uid == uid


def test_stream_status_events_reach_the_status_line_and_dim_stale_rows(make_grid):
    class EventStream(FakeStream):
        def on_event(self, callback):
            self.events = callback

    stream = EventStream()
    grid = make_grid(stream, columns=["symbol", "price"])
    stream.events({"type": "status", "source": "sim", "state": "stale", "symbols": ["AAPL"]})
    assert grid._status == {"state": "stale", "symbols": ["AAPL"], "detail": ""}
    stream.events({"type": "status", "source": "sim", "state": "running", "detail": ""})
    assert grid._status["state"] == "live"


def test_per_symbol_stream_events_dim_only_their_rows(make_grid):
    class EventStream(FakeStream):
        def on_event(self, callback):
            self.events = callback

    stream = EventStream()
    grid = make_grid(stream, columns=["symbol", "price"])
    event = {"type": "status", "source": "sim", "interval": "tick"}
    stream.events({**event, "symbol": "MSFT", "state": "stale"})
    stream.events({**event, "symbol": "AAPL", "state": "closed"})
    assert grid._status == {"state": "stale", "symbols": ["AAPL", "MSFT"],
                            "detail": "2 stale: AAPL, MSFT"}
    stream.events({**event, "symbol": "MSFT", "state": "live"})
    assert grid._status["state"] == "closed" and grid._status["symbols"] == ["AAPL"]
    # The provider going down dims every row, whatever the symbols say; back up, they rule.
    stream.events({"type": "status", "source": "sim", "state": "restarting"})
    assert grid._status["state"] == "restarting" and grid._status["symbols"] is None
    stream.events({"type": "status", "source": "sim", "state": "running"})
    assert grid._status["symbols"] == ["AAPL"]
    stream.events({**event, "symbol": "AAPL", "state": "live"})
    assert grid._status == {"state": "live", "symbols": None, "detail": ""}


# --------------------------------------------------------------------------- candles


def test_candles_update_the_open_bar_append_new_bars_and_keep_a_bounded_window(make_grid):
    minute = 60_000
    # The snapshot as a stream hands it over: times as a tz-aware index.
    latest = pd.DataFrame({"symbol": ["BTC"], "open": [1.0], "high": [1.0], "low": [1.0],
                           "close": [1.0], "volume": [1.0]},
                          index=pd.DatetimeIndex([pd.Timestamp(0, tz="UTC")], name="time"))
    stream = FakeStream(interval="1m", latest=latest)
    grid = make_grid(stream, max_rows=5, flush_hz=50)
    assert grid.key_fields == ("symbol", "time")
    assert len(grid.frame()) == 1
    stream.emit([{"time": 0, "symbol": "BTC", "open": 1, "high": 3, "low": 1, "close": 2,
                  "volume": 5}])
    assert grid.wait()
    frame = grid.frame()
    assert len(frame) == 1, "same bar time: updated in place"
    assert frame.iloc[0][["high", "close", "volume"]].tolist() == [3, 2, 5]

    for i in range(1, 40):
        stream.emit([{"time": i * minute, "symbol": "BTC", "open": i, "high": i, "low": i,
                      "close": i, "volume": i}])
        if i % 7 == 0:
            assert grid.wait()
    assert grid.wait()
    frame = grid.frame()
    assert len(frame) == 5, "the rolling window keeps memory flat"
    times = frame.index.get_level_values("time")
    assert [int(t.timestamp() * 1000) for t in times] == [i * minute for i in range(35, 40)]
    assert frame["close"].tolist() == [35, 36, 37, 38, 39]
    assert grid.row_count == 5
    assert grid._options["follow"] is True, "candle grids follow appended bars"


def test_newest_first_puts_the_latest_bar_on_top(make_grid):
    stream = FakeStream(interval="1m")
    grid = make_grid(stream, columns=["time", "close"], newest_first=True)
    stream.emit([{"time": t * 60_000, "symbol": "X", "close": t} for t in range(3)])
    assert grid.wait()
    assert grid.get_visible_data()["Close"].tolist() == [2, 1, 0]


# --------------------------------------------------------------------------- columns


def test_workspace_column_defs_map_to_what_the_page_draws(make_grid):
    cols = [
        {"field": "symbol", "headerName": "Ticker", "renderFn": "greenRed",
         "renderFnParams": {"colorValueKey": "change"}},
        {"field": "price", "headerName": "Last", "renderFn": "showCellChange,greenRed",
         "decimalPlaces": 3, "prefix": "$", "width": 90},
        {"field": "change_percent", "headerName": "Chg%", "formatterFn": "percent"},
        {"field": "change", "headerName": "Change", "hide": True},
    ]
    grid = make_grid(columns=cols)
    spec = {c.field: c for c in grid.columns_spec}
    assert (spec["price"].flash, spec["price"].green_red, spec["price"].fmt) == (True, True, ",.3f")
    assert spec["change_percent"].suffix == "%"
    assert spec["symbol"].sign_field == "change"
    shown = {c["field"]: c for c in grid._columns}
    assert list(shown) == ["symbol", "price", "change_percent"], "hidden columns are not drawn"
    assert shown["price"] | {"ref": None} == {
        "field": "price", "header": "Last", "kind": "number", "fmt": ",.3f", "prefix": "$",
        "suffix": "", "scale": 1.0, "align": "right", "flash": True, "greenRed": True,
        "signField": None, "width": 90, "ref": None}
    assert shown["symbol"]["signField"] == "change" and shown["symbol"]["align"] == "left"
    assert "change" in grid._num_fields, "the sign field still reaches the page"


def test_prices_default_to_tick_size_decimals_and_times_name_their_zone(make_grid):
    grid = make_grid(FakeStream(), columns=["symbol", "price", "volume", "time", "age"],
                     timezone="America/New_York")
    shown = {c["field"]: c for c in grid._columns}
    assert shown["price"]["fmt"] == "auto" and shown["price"]["ref"] == "price"
    assert shown["volume"]["fmt"] == ",.0f"
    assert shown["time"]["fmt"] == "%H:%M:%S" and grid._options["timezone"] == "America/New_York"
    assert shown["age"]["kind"] == "age"
    bars = make_grid(FakeStream(interval="1s"))
    assert {c["field"]: c["fmt"] for c in bars._columns}["time"] == "%Y-%m-%d %H:%M:%S"
    with pytest.raises(BadRequest, match="unknown timezone 'Mars/Olympus'"):
        make_grid(columns=["symbol"], timezone="Mars/Olympus")


def test_grid_js_formats_like_a_trader_expects(tmp_path):
    """The browser's formatters, run in node: tick-size decimals, d3 formats, times, ages."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node")
    src = REPO / "nbfeed" / "widgets" / "static" / "grid.js"
    (tmp_path / "grid.mjs").write_text(src.read_text())
    script = tmp_path / "check.mjs"
    script.write_text("""
import { tickDecimals, d3Formatter, timeFormatter, formatAge, cellFormatter } from "./grid.mjs";
const out = {
  ticks: [187.1234, 1.0845, 0.94123, 65000.12, 187.1, 100].map(tickDecimals),
  d3: [[",.2f", 1234.5], [",.0f", 1234567], [".1%", 0.1234], ["+,.2f", 3], ["$,.2f", -4.5],
       [",d", 12.7], ["", 0.5]].map(([s, v]) => d3Formatter(s)(v)),
  utc: timeFormatter("%Y-%m-%d %H:%M:%S", "UTC")(Date.UTC(2026, 0, 2, 9, 30, 5)),
  ny: timeFormatter("%H:%M", "America/New_York")(Date.UTC(2026, 0, 2, 14, 30)),
  ages: [400, 12000, 185000, 7300000].map(formatAge),
  pct: cellFormatter({kind: "number", fmt: ",.2f", suffix: "%", scale: 1}, {})(-0.9),
  zero: cellFormatter({kind: "number", fmt: "auto", scale: 1, ref: "price"}, {})(
    -0.001, {decimals: () => 2}),
};
console.log(JSON.stringify(out));
""")
    out = json.loads(subprocess.run([node, str(script)], capture_output=True, text=True,
                                    timeout=60, check=True).stdout)
    assert out["ticks"] == [2, 4, 5, 2, 2, 2]
    assert out["d3"] == ["1,234.50", "1,234,567", "12.3%", "+3.00", "-$4.50", "13", "0.5"]
    assert out["utc"] == "2026-01-02 09:30:05"
    assert out["ny"] == "09:30"
    assert out["ages"] == ["0.4s", "12s", "3m05s", "2h01m"]
    assert out["pct"] == "-0.90%"
    assert out["zero"] == "0.00", "a change that rounds to zero has no minus sign"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": ["symbol", "prise"]}, "unknown column 'prise'"),
        ({"flash_ms": "fast"}, "flash_ms must be a number"),
        ({"flash_ms": -5}, "flash_ms must be a number"),
        ({"flush_hz": 0}, "flush_hz must be a number above 0"),
        ({"flush_hz": 61}, "at most 60"),
        ({"flush_hz": True}, "flush_hz"),
        ({"flush_hz": float("nan")}, "flush_hz"),
        ({"max_rows": 0}, "max_rows"),
        ({"max_height": 10}, "max_height must be an integer 80-4000"),
        ({"stale_after": -1}, "stale_after"),
        ({"follow": "yes"}, "follow must be True or False"),
        ({"selection_mode": "row"}, "unknown LiveGrid option(s) selection_mode"),
        ({"columns": [{"field": "price", "headerName": "P", "renderFn": "sparkle"}]},
         "unknown renderFn 'sparkle'"),
        ({"columns": [{"field": "price", "headerName": "P", "decimalPlaces": 9}]},
         "decimalPlaces must be an integer 0-6"),
        ({"columns": [{"field": "price", "headerName": "P", "enableCellChangeWS": False}]},
         "unknown Workspace key(s) 'enableCellChangeWS'"),
        ({"columns": [{"field": "price", "fmt": "%%bad"}]}, "not a d3-format specifier"),
        ({"columns": [{"field": "price", "flsh": True}]}, "unknown key(s) 'flsh'"),
        ({"columns": "price"}, "columns must be a list"),
        ({"columns": []}, "columns is empty"),
        ({"columns": ["price", "price"]}, "listed twice"),
        ({"columns": [Column("price", green_red=True, sign_field="nope")]},
         "sign_field 'nope' is not one of the grid's columns"),
        ({"columns": [Column("symbol", flash=True)]}, "only number columns can flash"),
        ({"row_id": 5}, "row_id must be a field name"),
        ({"interval": "7m"}, "unknown interval '7m'"),
    ],
)
def test_bad_arguments_are_named_in_the_error(make_grid, kwargs, message):
    with pytest.raises(NBFeedError) as err:
        make_grid(FakeStream(interval="tick") if "interval" not in kwargs else None, **kwargs)
    assert message in str(err.value)


def test_bad_first_arguments(make_grid):
    with pytest.raises(BadRequest, match=r"needs a stream .* or a source name, got 42"):
        make_grid(42)
    with pytest.raises(BadRequest, match="needs symbols"):
        make_grid("simulated")
    with pytest.raises(BadRequest, match="does not match the stream's 'tick'"):
        make_grid(FakeStream(), interval="1m")


def test_rows_without_the_row_id_are_rejected_by_name(make_grid):
    stream = FakeStream()
    grid = make_grid(stream, columns=["symbol", "price"])
    with pytest.raises(BadRequest, match="has no 'symbol'"):
        stream.emit([{"symbol": "A", "price": 1.0}, {"price": 2.0}])
    with pytest.raises(BadRequest, match="a row must be a dict"):
        grid.update(["AAPL"])
    with pytest.raises(BadRequest, match="has no 'symbol'"):
        grid.update({"symbol": None, "price": 1.0})
    candles = make_grid(FakeStream(interval="1m"))
    with pytest.raises(BadRequest, match="time"):
        candles.update({"symbol": "X", "time": "yesterday-ish", "close": 1})


def test_hostile_browser_messages_are_ignored_and_junk_values_show_blank(make_grid, sent):
    grid = make_grid(columns=["symbol", "price"])
    grid.update({"symbol": "A", "price": "n/a"})
    assert grid.wait()
    assert np.isnan(grid.frame().loc["A", "price"])
    for bad in ({"type": "view", "first": -1, "last": 5},
                {"type": "view", "first": 5, "last": 1},
                {"type": "hello", "first": "0", "last": 5},
                {"type": "ack", "seq": 10**9},
                {"type": "ack", "seq": "x"},
                {"type": "sort", "field": "nope", "desc": True},
                {"type": "sort", "field": "price", "desc": "down"},
                {"type": "click", "uid": -3},
                {"type": "click", "uid": 999},
                {"type": "explode"}, ["not", "a", "dict"]):
        browser_says(grid, bad)
    assert grid.transforms == []
    assert grid.selected is None
    page = Page(grid, sent).open()
    assert page.shows(lambda rows: rows[0]["Symbol"] == "A" and np.isnan(rows[0]["Price"]))


def test_closing_a_grid_detaches_it_but_leaves_a_users_stream_open(make_grid):
    stream = FakeStream()
    grid = make_grid(stream, columns=["symbol", "price"])
    grid.close()
    assert stream.callbacks == [] and not stream.closed


def test_a_source_name_subscribes_lazily_and_close_ends_the_subscription(make_grid, monkeypatch):
    import nbfeed.client

    calls = []
    stream = FakeStream()

    class Client:
        def subscribe(self, source, symbols, interval):
            calls.append((source, symbols, interval))
            return stream

    monkeypatch.setattr(nbfeed.client, "connect", lambda: Client())
    with pytest.raises(BadRequest, match="prise"):
        make_grid("simulated", ["AAPL"], columns=["symbol", "prise"])
    assert stream.closed, "a grid that failed to build closes the subscription it opened"
    stream.closed = False
    calls.clear()
    grid = make_grid("simulated", ["AAPL", "MSFT"], interval="tick")
    assert calls == [("simulated", ["AAPL", "MSFT"], "tick")]
    stream.emit([{"symbol": "AAPL", "price": 1.0}])
    assert grid.wait()
    grid.close()
    assert stream.closed
    assert not grid._loop.running
    assert stream.callbacks == [], "no grid stays attached to the stream"
    stream.emit([{"symbol": "AAPL", "price": 2.0}])  # late rows after close are dropped
    assert grid.frame().loc["AAPL", "price"] == 1.0


# --------------------------------------------------------------------------- real server


KERNEL_SETUP = """
import json, sys, threading, time
sys.path.insert(0, {repo!r})
import pandas as pd
from nbfeed.widgets.grid import LiveGrid

class SyntheticStream:
    interval = "tick"
    latest = pd.DataFrame()
    def __init__(self):
        self.callbacks = []
    def on_update(self, cb):
        self.callbacks.append(cb)
    def close(self):
        pass

SYMBOLS = [f"S{{i:03d}}" for i in range(500)]
stream = SyntheticStream()
grid = LiveGrid(stream, columns=["symbol", "price", "volume"], flush_hz=10, flash_ms=600)
print(json.dumps({{"comm_id": grid.comm.comm_id}}))
"""

KERNEL_FEED = """
last = {{}}
def feed(rate={rate}, total={total}):
    start = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int(rate * (time.monotonic() - start)))
        while sent < due:
            n = min(500, due - sent)
            batch = []
            for i in range(sent, sent + n):
                sym = SYMBOLS[(i * 7) % 500]
                price = 100 + (i % 9973) * 0.01
                batch.append({{"time": i, "symbol": sym, "price": price, "volume": i}})
                last[sym] = price
            for cb in stream.callbacks:
                cb(batch)
            sent += n
        time.sleep(0.005)
    return sent, time.monotonic() - start

result = {{}}
feeder = threading.Thread(target=lambda: result.update(zip(("sent", "secs"), feed())))
feeder.start()
feeder.join()
print("FEED-DONE", json.dumps(result))
"""

KERNEL_CHECK = """
ok = grid.wait(lambda g: not g.flash_state().to_numpy().any(), timeout=15)
frame = grid.frame()
wrong = [s for s in SYMBOLS if frame.loc[s, "price"] != last[s]]
print(json.dumps({"ok": ok, "rows": len(frame), "wrong": wrong[:5],
                  "expected": {s: last[s] for s in SYMBOLS}}))
"""


class _Columns:
    """The headers a Page needs, for a grid that lives in another process."""

    _columns = [{"field": "symbol", "header": "Symbol"}, {"field": "price", "header": "Price"},
                {"field": "volume", "header": "Volume"}]


class KernelChannel:
    """A minimal Jupyter websocket client: send requests, record everything that arrives."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.session = uuid.uuid4().hex
        self.received: list[tuple[float, dict]] = []

    def send(self, msg_type: str, content: dict, channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        self.ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "session": self.session,
                       "username": "test", "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "content": content, "channel": channel,
            "buffers": [],
        }))
        return msg_id

    async def read_until(self, done, timeout: float) -> None:
        import asyncio

        from jupyter_server.services.kernels.connection.base import deserialize_binary_message

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from the kernel in time")
            raw = await asyncio.wait_for(self.ws.read_message(), remaining)
            if raw is None:
                raise ConnectionError("websocket closed")
            msg = deserialize_binary_message(raw) if isinstance(raw, bytes) else json.loads(raw)
            self.received.append((time.monotonic(), msg))
            if done(msg):
                return

    async def execute(self, code: str, timeout: float = 60) -> str:
        msg_id = self.send("execute_request", {"code": code, "silent": False,
                                               "store_history": False, "allow_stdin": False})
        await self.read_until(
            lambda m: m.get("msg_type") == "status" and m["parent_header"].get("msg_id") == msg_id
            and m["content"]["execution_state"] == "idle", timeout)
        out, errors = [], []
        for _, m in self.received:
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out.append(m["content"]["text"])
            elif m["msg_type"] == "error":
                errors.append("\n".join(m["content"]["traceback"]))
        assert not errors, errors
        return "".join(out)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_real_server_flood_stays_under_the_iopub_limit(jp_fetch, jp_ws_fetch):
    """20k updates/s for 10 s through a real server and kernel: the page gets <= 10 grid
    messages/s, nothing is dropped by Jupyter's IOPub limiter, and the values end right."""
    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(r.body)["id"]
    ws = await jp_ws_fetch("api", "kernels", kernel_id, "channels")
    ch = KernelChannel(ws)
    try:
        info = ch.send("kernel_info_request", {})
        await ch.read_until(lambda m: m["parent_header"].get("msg_id") == info
                            and m["msg_type"] == "kernel_info_reply", 60)
        out = await ch.execute(KERNEL_SETUP.format(repo=str(REPO)))
        comm_id = json.loads(out.strip().splitlines()[-1])["comm_id"]

        def comm_msgs(since: float = 0.0, until: float = float("inf")) -> list[dict]:
            """Every widget message the page received in that span (the grid's, or any)."""
            return [m for t, m in ch.received if m["msg_type"] == "comm_msg"
                    and since <= t <= until]

        # The page says which rows it shows, as grid.js does when it renders (the grid is
        # still empty, so there is nothing to send yet; the kernel remembers the window).
        request = ch.send("comm_msg", {"comm_id": comm_id, "data": {"method": "custom",
                          "content": {"type": "hello", "first": 0, "last": 29}}})
        await ch.read_until(lambda m: m["msg_type"] == "status"
                            and m["parent_header"].get("msg_id") == request
                            and m["content"]["execution_state"] == "idle", 30)

        start = time.monotonic()
        out = await ch.execute(KERNEL_FEED.format(rate=20_000, total=200_000), timeout=90)
        busy = time.monotonic() - start
        assert "FEED-DONE" in out, "the cell's own print reached the page"
        fed = json.loads(out.split("FEED-DONE", 1)[1])
        assert fed["sent"] == 200_000
        during = comm_msgs(start, time.monotonic())
        print(f"grid messages while the cell ran: {len(during)} in {busy:.1f} s")
        assert len(during) <= 10 * busy + 5, (len(during), busy)
        assert len(during) >= 2 * fed["secs"], "the screen kept updating while the cell ran"

        out = await ch.execute(KERNEL_CHECK, timeout=60)
        result = json.loads(out.strip().splitlines()[-1])
        assert result["ok"] and result["rows"] == 500 and result["wrong"] == []
        total = comm_msgs(start, time.monotonic())
        assert len(total) <= 10 * (time.monotonic() - start) + 5

        texts = [m["content"].get("text", "") for _, m in ch.received
                 if m["msg_type"] == "stream"]
        assert not any("rate exceeded" in t for t in texts), "Jupyter's limiter dropped output"

        # The page's window after the flood shows the final prices (this client never
        # acknowledges: while the cell ran frames went anyway, then one full frame a second).
        pushed = [Sent(0, "comm_msg", m["content"]["data"], m["buffers"]) for m in comm_msgs()
                  if m["content"]["comm_id"] == comm_id]
        page = Page(_Columns(), pushed)
        assert len(page.frames()) >= 2 * fed["secs"], "frames were sent while the cell ran"
        rows = page.rows()
        assert len(rows) == 60, "the 30 rows shown and 30 below"
        assert column(rows, "Price") == [result["expected"][s] for s in column(rows, "Symbol")]
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


