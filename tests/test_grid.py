"""LiveGrid: bounded messages under a flood, green/red flashes that fade, frozen columns, sort.

Without a browser, the widget's comm is replaced by a recording one (``comm.create_comm`` is
the hook comm 0.2 provides for this) and browser messages are fed in through the same
``comm.handle_msg`` path a kernel uses. The slow test runs the real thing: a Jupyter server, a
kernel started over its REST API, and a websocket client counting what reaches the page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import unicodedata
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
from nbfeed.widgets.grid_style import STYLE_COLUMN, STYLE_COLUMN_WIDTH

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
            return self.data["content"].get("event_type")
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


def browser_sets(grid: LiveGrid, **state) -> None:
    """A state change from the page (the user sorting or filtering)."""
    grid.comm.handle_msg({"content": {"data": {"method": "update", "state": state,
                                               "buffer_paths": []}}, "buffers": []})


def decode_reply(msg: Sent) -> pd.DataFrame:
    """What the page would store from a data-reply: the rows it covers, by column."""
    return pd.DataFrame(_wire_columns(msg.data["content"]["value"]["data"], msg.buffers))


def _wire_columns(data: dict, buffers: list) -> dict[str, list]:
    """Decode ipydatagrid's serialized columns: binary buffers, or raw JSON lists."""
    cols = {}
    for name, col in data.items():
        if isinstance(col, list):
            cols[name] = col
        elif col.get("type") == "raw":
            cols[name] = col["value"]
        else:
            cols[name] = np.frombuffer(buffers[col["value"]], dtype=col["dtype"]).tolist()
    return cols


def replies(sent: list[Sent]) -> list[Sent]:
    return [m for m in sent if m.event == "data-reply"]


def page_rows(messages: list[Sent], row_count: int) -> pd.DataFrame:
    """The page's copy of the grid, as ipydatagrid's StreamingView keeps it: every data-reply
    overwrites rows r1..r2 of a cache; rows never sent are absent."""
    cache: dict[int, dict] = {}
    for m in replies(messages):
        r1 = m.data["content"]["r1"]
        for i, row in enumerate(decode_reply(m).to_dict("records")):
            cache[r1 + i] = row
    return pd.DataFrame([cache[i] for i in sorted(cache) if i < row_count])


def page_shows(grid: LiveGrid, sent: list[Sent], check, timeout: float = 5.0) -> bool:
    """Wait until the page's copy of the grid passes ``check`` (re-checked after each flush:
    about once a second a flush sends a tick instead of rows, which follow on the next one)."""
    def ok(_grid) -> bool:
        page = page_rows(list(sent), grid._row_count)
        return len(page) > 0 and check(page)

    return grid.wait(ok, timeout=timeout)


# --------------------------------------------------------------------------- flood


def test_flood_is_coalesced_to_the_flush_rate_and_ends_on_latest_values(make_grid, sent):
    symbols = [f"S{i:03d}" for i in range(500)]
    stream = FakeStream()
    grid = make_grid(stream, columns=["symbol", "price", "volume"], flush_hz=10)
    browser_says(grid, {"type": "data-request", "r1": 0, "r2": 29, "c1": 0, "c2": 1})
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

    start = time.monotonic()
    sent.clear()
    feeder = threading.Thread(target=feed)
    feeder.start()
    feeder.join(10)
    assert grid.wait(timeout=10)
    frame = grid.frame()
    assert len(frame) == 500
    assert frame["price"].to_dict() == last
    # The page's copy of its viewport ends on the final prices.
    assert page_shows(grid, sent, lambda page: page["Price"].tolist()
                      == [last[s] for s in page["Symbol"]])
    elapsed = time.monotonic() - start
    assert fed > 20_000, "the feeder should have pushed a flood"
    assert len(sent) <= grid.flush_hz * elapsed + 3, (len(sent), elapsed)


# --------------------------------------------------------------------------- flashes


def test_rise_flashes_green_fall_flashes_red_and_both_fade(make_grid, sent):
    grid = make_grid(columns=["symbol", "price"], flash_ms=300, flush_hz=30)
    grid.update([{"symbol": "UP", "price": 10.0}, {"symbol": "DOWN", "price": 10.0}])
    assert grid.wait()
    assert grid.flash_state()["price"].tolist() == [0, 0], "a new row has nothing to compare"
    browser_says(grid, {"type": "data-request", "r1": 0, "r2": 10, "c1": 0, "c2": 0})

    before = len(replies(sent))
    changed_at = time.monotonic()
    grid.update([{"symbol": "UP", "price": 10.5}, {"symbol": "DOWN", "price": 9.5}])
    assert grid.wait()
    assert grid.flash_state()["price"].to_dict() == {"UP": 1, "DOWN": -1}
    assert grid.wait(lambda g: not g.flash_state().to_numpy().any(), timeout=5)
    assert time.monotonic() - changed_at >= 0.3, "not cleared before flash_ms"
    assert page_shows(grid, sent, lambda page: page[STYLE_COLUMN].str.strip().tolist()
                      == ["", ""]), "the kernel sent the fade"
    # What the page painted, in order: strong green/red, (weak,) then nothing.
    after = [i for i, m in enumerate(sent) if m.event == "data-reply"][before:]
    states = [tuple(page_rows(sent[: i + 1], 2)[STYLE_COLUMN]) for i in after]
    states = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert states[0] == ("U", "D")
    assert states[-1] == (" ", " ")
    assert states in ([("U", "D"), ("u", "d"), (" ", " ")], [("U", "D"), (" ", " ")])


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
    browser_says(grid, {"type": "data-request", "r1": 0, "r2": 5, "c1": 0, "c2": 2})
    for i in range(50):
        stream.emit([{"symbol": "A", "price": 1.0 + i, "prev_close": 5.0 + i, "volume": 100 + i}])
        if i % 10 == 0:
            assert grid.wait()
    assert grid.wait()
    row = grid.frame().loc["A"]
    assert row["price"] == 50.0
    assert row["prev_close"] == 0.9, "frozen at the snapshot value"
    assert row["volume"] == 100, "frozen at the first value it received"
    assert {decode_reply(m)["Prev"][0] for m in replies(sent)} == {0.9}
    assert page_shows(grid, sent, lambda page: page["Price"].tolist() == [50.0])


# --------------------------------------------------------------------------- sort / filter


def test_sort_and_filter_survive_updates_and_the_order_follows_the_values(make_grid, sent):
    grid = make_grid(columns=["symbol", "price"], flush_hz=50)
    grid.update([{"symbol": s, "price": p} for s, p in [("A", 1.0), ("B", 2.0), ("C", 3.0)]])
    assert grid.wait()
    browser_says(grid, {"type": "data-request", "r1": 0, "r2": 10, "c1": 0, "c2": 1})
    sort = {"type": "sort", "column": "Price", "desc": True}
    keep = {"type": "filter", "column": "Price", "operator": "<", "value": 100.0}
    browser_sets(grid, _transforms=[sort, keep])  # the user clicked "sort descending"
    assert grid.get_visible_data()["Symbol"].tolist() == ["C", "B", "A"]

    grid.update([{"symbol": "A", "price": 9.0}, {"symbol": "C", "price": 0.5},
                 {"symbol": "B", "price": 500.0}])
    assert grid.wait()
    assert grid._transforms == [sort, keep], "updates never touch the user's transforms"
    assert grid.get_visible_data()["Symbol"].tolist() == ["A", "C"]
    assert grid._row_count == 2
    assert page_shows(grid, sent, lambda page: page["Symbol"].tolist() == ["A", "C"])

    grid.transform([{"type": "sort", "column": "price"}])  # field names work too
    assert grid.get_visible_data()["Symbol"].tolist() == ["C", "A", "B"]


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
    assert grid._row_count == 5


def test_newest_first_puts_the_latest_bar_on_top(make_grid):
    stream = FakeStream(interval="1m")
    grid = make_grid(stream, columns=["time", "close"], newest_first=True)
    stream.emit([{"time": t * 60_000, "symbol": "X", "close": t} for t in range(3)])
    assert grid.wait()
    assert grid.get_visible_data()["Close"].tolist() == [2, 1, 0]


# --------------------------------------------------------------------------- columns


def test_workspace_column_defs_map_to_renderers_and_the_helper_column_is_hidden(make_grid):
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

    names = [f["name"] for f in grid._data["schema"]["fields"]]
    assert names == ["key", "Ticker", "Last", "Chg%", STYLE_COLUMN, "ipydguuid"]
    assert "Change" not in names, "a hidden column stays in the kernel"
    assert [unicodedata.category(ch) for ch in STYLE_COLUMN] == ["Cf"], "an invisible header"
    assert grid.column_widths[STYLE_COLUMN] == STYLE_COLUMN_WIDTH
    assert grid.column_widths["Last"] == 90
    assert grid.renderers[STYLE_COLUMN].text_color == "transparent"
    assert grid.header_visibility == "column"
    last = grid.renderers["Last"]
    assert "substring" in last.background_color.value
    assert "cell.value > 0" in last.text_color.value
    assert last.format == ",.3f"
    assert "\\u0024" in last.text_value.value  # the $ prefix, escaped


def test_a_grid_without_highlights_has_no_helper_column(make_grid):
    grid = make_grid(columns=["symbol", Column("price", flash=False)])
    names = [f["name"] for f in grid._data["schema"]["fields"]]
    assert STYLE_COLUMN not in names


def test_vega_expressions_compile_and_paint_in_ipydatagrids_own_code(make_grid, tmp_path):
    """Compile every expression with the vega-expression code ipydatagrid ships to the browser,
    with its cell.metadata.data rewrite, and evaluate it on sample cells (no browser needed)."""
    node = shutil.which("node")
    import ipydatagrid

    static = Path(ipydatagrid.__file__).parent / "labextension" / "static"
    if node is None or not list(static.glob("646.*.js")):
        pytest.skip("needs node and ipydatagrid's lab extension bundle")
    harness = tmp_path / "harness.js"
    harness.write_text(_VEGA_HARNESS)
    grid = make_grid(columns=[
        "symbol", "price",
        {"field": "chg", "headerName": "Chg", "renderFn": "greenRed", "prefix": "'];x",
         "renderFnParams": {"colorValueKey": "chg"}},
        Column("vol", sign_field="chg", flash=False),
    ])
    price, chg, vol = grid.renderers["Price"], grid.renderers["Chg"], grid.renderers["vol"]
    style = {STYLE_COLUMN: "d-"}
    cases = [
        (price.background_color.value, 1.0, "bg", {STYLE_COLUMN: "U "}),
        (price.background_color.value, 1.0, "bg", {STYLE_COLUMN: "d "}),
        (price.background_color.value, 1.0, "bg", {STYLE_COLUMN: "  "}),
        (price.background_color.value, 1.0, "bg", {STYLE_COLUMN: "..."}),  # not loaded yet
        (chg.text_color.value, -2.0, "fg", {}),
        (chg.text_value.value, 2.0, "2.00", {}),
        (vol.text_color.value, 5.0, "fg", style),
    ]
    payload = [{"expr": e, "value": v, "default_value": d, "row": r} for e, v, d, r in cases]
    out = subprocess.run([node, str(harness), str(static)], input=json.dumps(payload),
                         capture_output=True, text=True, timeout=60)
    results = json.loads(out.stdout)
    assert all(r["ok"] for r in results), results
    got = [r["result"] for r in results]
    assert got[0].startswith("rgba(27, 135, 63, 0.55")
    assert got[1].startswith("rgba(217, 45, 32, 0.25")
    assert got[2:4] == ["bg", "bg"]
    assert got[4] == "#d92d20"
    assert got[5] == "'];x2.00", "user text stays inside its string literal"
    assert got[6] == "#d92d20"


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
    sent.clear()
    for bad in ({"type": "data-request", "r1": -1, "r2": 5},
                {"type": "data-request", "r1": 0, "r2": 10**9},
                {"type": "data-request", "r1": "0", "r2": 5},
                {"type": "unique-values-request", "column": "nope"},
                {"event_type": "cell-changed", "row": 0, "column_index": 0, "value": 1}):
        browser_says(grid, bad)
    assert sent == []
    browser_says(grid, {"type": "unique-values-request", "column": "Symbol"})
    assert [m.event for m in sent] == ["unique-values-reply"]


def test_closing_a_grid_detaches_it_but_leaves_a_users_stream_open(make_grid):
    stream = FakeStream()
    grid = make_grid(stream, columns=["symbol", "price"])
    grid.close()
    assert stream.callbacks == [] and not stream.closed


def test_a_source_name_subscribes_lazily_and_close_ends_the_subscription(make_grid, monkeypatch):
    import nbfeed

    calls = []
    stream = FakeStream()

    class Client:
        def subscribe(self, source, symbols, interval):
            calls.append((source, symbols, interval))
            return stream

    monkeypatch.setattr(nbfeed, "connect", lambda: Client(), raising=False)
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

        # The page asks for its viewport, as ipydatagrid does when it renders (the grid is
        # still empty, so there is nothing to answer yet; the kernel remembers the range).
        request = ch.send("comm_msg", {"comm_id": comm_id, "data": {"method": "custom",
                          "content": {"type": "data-request", "r1": 0, "r2": 29, "c1": 0,
                                      "c2": 1}}})
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

        # The page's viewport after the flood shows the final prices.
        pushed = [Sent(0, "comm_msg", m["content"]["data"], m["buffers"]) for m in comm_msgs()
                  if m["content"]["comm_id"] == comm_id]
        assert len(replies(pushed)) > 50, "rows were pushed while the cell ran"
        page = page_rows(pushed, 500)
        assert len(page) == 30
        assert page["Price"].tolist() == [result["expected"][s] for s in page["Symbol"]]
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


_VEGA_HARNESS = r"""
// Compile VegaExpr strings as ipydatagrid 1.4's VegaExprModel does, then evaluate them.
const fs = require('fs'); const path = require('path');
const dir = process.argv[2];
globalThis.self = globalThis;
self.webpackChunkipydatagrid = [];
for (const f of fs.readdirSync(dir)) {
  if (/^646\..*\.js$/.test(f)) require(path.join(dir, f));
}
const modules = {};
for (const [, mods] of self.webpackChunkipydatagrid) Object.assign(modules, mods);
const cache = {};
function req(id) {
  if (cache[id]) return cache[id].exports;
  const module = cache[id] = { exports: {} };
  modules[id](module, module.exports, req);
  return module.exports;
}
req.r = (e) => Object.defineProperty(e, '__esModule', { value: true });
req.d = (e, defs) => {
  for (const k in defs) Object.defineProperty(e, k, { enumerable: true, get: defs[k] });
};
req.o = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
const vega = req(1646);
const context = { format: (v, spec) => `${v}` };
const codegen = vega.codegen({
  whitelist: ['cell', 'default_value', 'functions'], globalvar: 'cell',
  functions: (c) => {
    const t = vega.functions(c);
    for (const e in context) t[e] = 'functions.' + e;
    return t;
  },
});
function rewrite(e, t) {  // ipydatagrid's VegaExprModel._processRegex
  const i = t.match(/\[(.*?)\]/g), r = i[0].match(/\[(.*?)\]/)[1];
  const call = `cell.metadata.data(cell.row, ${r})`;
  return 1 === i.length ? call : `${call}${i.splice(1).join('')}`;
}
const out = [];
for (const c of JSON.parse(fs.readFileSync(0, 'utf8'))) {
  try {
    const code = codegen(vega.parse(c.expr)).code
      .replace(/cell.metadata.data(?<data>(\[(.*?)\])+)/g, rewrite);
    const fn = Function('cell', 'default_value', 'functions', '"use strict";return(' + code + ')');
    const cell = { value: c.value, row: 0, metadata: { data: (row, name) => c.row[name] } };
    out.push({ ok: true, result: fn(cell, c.default_value, context) });
  } catch (e) { out.push({ ok: false, error: String(e) }); }
}
console.log(JSON.stringify(out));
"""


