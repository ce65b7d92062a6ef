"""The provider SDK as authors meet it: a ported reference provider, publishing from threads,
idle detection, notebook-defined classes, dataset validation and the registry's errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from nbfeed.errors import BadRequest, UnknownSource
from nbfeed.intervals import floor_bar
from nbfeed.providers.base import Provider
from nbfeed.providers.dataset import validate_entries
from nbfeed.providers.registry import ProviderSpec, load_class, resolve_spec
from nbfeed.timeutil import now_ms
from tests.providers_for_tests import (
    BadDatasetProvider,
    CounterProvider,
    RecordingProvider,
    ReferencePortProvider,
    read_calls,
    receive,
    wait_until,
)

CANDLE_KEYS = {"time", "symbol", "open", "high", "low", "close", "volume"}


@pytest.mark.asyncio
async def test_a_provider_written_for_the_reference_app_runs_after_renames_only(start_hub):
    hub = await start_hub(ProviderSpec("my_provider", ReferencePortProvider))
    (entry,) = await hub.search("BTCUSDT", source="my_provider")
    assert entry["name_label"] == "Bitcoin - USD pair" and "1m" in entry["intervals"]

    sub = await hub.subscribe("my_provider", ["BTCUSDT"], "1m")
    got = await receive(sub, lambda r: len(r.rows) >= 2, "rows sent with send_from")
    row = got.rows[-1]
    assert set(row) == CANDLE_KEYS
    bar_now = floor_bar(now_ms(), "1m")
    assert row["symbol"] == "BTCUSDT" and row["time"] in (bar_now, bar_now - 60_000)
    assert row["high"] - row["low"] == 10.0 and row["volume"] == 12.5

    end = floor_bar(now_ms(), "1m")
    bars = await hub.history("my_provider", "BTCUSDT", "1m", start=end - 5 * 60_000, end=end)
    assert [b["time"] for b in bars] == [end - (5 - i) * 60_000 for i in range(5)]
    assert all(set(b) == CANDLE_KEYS for b in bars)
    first = ReferencePortProvider().kline(bars[0]["time"], "1m")
    assert [bars[0][k] for k in ("open", "high", "low", "close", "volume")] == first[1:]


@pytest.mark.asyncio
async def test_a_reference_port_registered_under_another_name_still_reads_its_keys(start_hub):
    hub = await start_hub(ProviderSpec("ported", ReferencePortProvider))
    end = floor_bar(now_ms(), "1m")
    bars = await hub.history("ported", "BTCUSDT", "1m", start=end - 2 * 60_000, end=end)
    assert bars and all(set(b) == CANDLE_KEYS for b in bars)


@pytest.mark.asyncio
async def test_publish_is_safe_from_several_threads(start_hub):
    threads, total = 4, 2_000
    hub = await start_hub(ProviderSpec("counter", CounterProvider,
                                       {"threads": threads, "total": total, "batch": 10}))
    sub = await hub.subscribe("counter", ["CNT"], "tick", max_pending_rows=100_000)
    got = await receive(sub, lambda r: len(r.rows) >= threads * total,
                        "every row of every publishing thread", timeout=30)
    assert len(got.rows) == threads * total
    for k in range(threads):
        assert [r["seq"] for r in got.rows if r["thread"] == k] == list(range(total))


@pytest.mark.asyncio
async def test_no_update_fires_after_the_idle_timeout_for_silent_streams_only(
        start_hub, call_record):
    idle = 2.0  # far above the busy stream's 20 ms period, even on a loaded machine
    hub = await start_hub(ProviderSpec("rec", RecordingProvider,
                                       {"record": str(call_record), "silent": ["AAA"],
                                        "period": 0.02}),
                          idle_timeout=idle)
    busy = await hub.subscribe("rec", ["BBB"], "tick")
    quiet = await hub.subscribe("rec", ["AAA"], "tick")
    await receive(busy, lambda r: r.rows, "rows of the busy stream")
    calls = await wait_until(lambda: (c := read_calls(call_record, "no_update"))[1:] and c,
                             "no_update called twice", timeout=20)
    assert [c["args"] for c in calls] == [["AAA", "tick"], ["AAA", "tick"]]
    (subscribed,) = [c for c in read_calls(call_record, "subscribe") if c["args"][0] == "AAA"]
    assert calls[0]["t"] - subscribed["t"] >= idle * 0.9
    assert calls[1]["t"] - calls[0]["t"] >= idle * 0.9
    assert "control" in calls[0]["thread"]
    await quiet.close()


@pytest.mark.asyncio
async def test_a_class_defined_in_a_notebook_cell_runs_in_its_own_process(start_hub):
    class CellProvider(Provider):  # not importable: shipped to its process with cloudpickle
        def get_dataset(self):
            return [{"name": "X1", "type": "quote", "intervals": ["tick"]}]

        def subscribe(self, symbol, interval):
            import os

            from nbfeed.timeutil import now_ms

            self.publish({"time": now_ms(), "symbol": symbol, "pid": os.getpid(),
                          "greeting": self.options["greeting"]}, interval=interval)

    spec = ProviderSpec("mine", CellProvider, {"greeting": "hello"})
    assert spec.payload()[0] == "pickled"
    hub = await start_hub()
    await hub.add_provider(spec)
    info = next(p for p in hub.providers_info() if p["name"] == "mine")
    assert info["status"] == "running" and info["datasets"] == 1
    sub = await hub.subscribe("mine", ["X1"], "tick")
    got = await receive(sub, lambda r: r.rows, "a row from the notebook class")
    assert got.rows[0]["greeting"] == "hello"
    assert got.rows[0]["pid"] == info["pid"] != os.getpid()
    with pytest.raises(BadRequest, match="'mine' is already running"):
        await hub.add_provider(spec)


@pytest.mark.asyncio
async def test_invalid_dataset_entries_are_reported_naming_provider_entry_and_field(start_hub):
    hub = await start_hub(ProviderSpec("baddata", BadDatasetProvider))
    info = hub.providers_info()[0]
    assert info["status"] == "running" and info["datasets"] == 0
    for word in ("'baddata'", "entry 1", "'WEIRD'", "'type'", "'bar-chart'"):
        assert word in info["populate_error"]
    result = await hub.populate(["baddata"])
    assert result["baddata"].startswith("error:") and "'WEIRD'" in result["baddata"]


@pytest.mark.parametrize(("entries", "words"), [
    ([{"name": "A", "type": "bar"}], ["entry 0", "'A'", "'type'", "'bar'", "candlestick"]),
    ([{"name": "A"}, {"type": "line"}], ["entry 1", "'name'", "non-empty"]),
    ([{"name": "A", "intervals": ["1m", "2m"]}], ["'A'", "'intervals'", "'2m'"]),
    ([{"name": "A", "intervals": []}], ["'A'", "'intervals'", "non-empty"]),
    ([{"name": "A", "categories": [1]}], ["'A'", "'categories'"]),
    ([{"name": "A", "outputs": [{"y_axis": "price"}]}], ["'A'", "'outputs'"]),
    ([{"name": "A"}, {"name": "A"}], ["entry 1", "duplicate", "'A'"]),
    ([{"name": "bad\nname"}], ["entry 0", "'name'", "printable"]),
    (["AAPL"], ["entry 0", "must be a dict", "str"]),
    ({"name": "A"}, ["must return a list", "dict"]),
])
def test_dataset_validation_errors_name_provider_entry_and_field(entries, words):
    with pytest.raises(BadRequest) as caught:
        validate_entries("prov", entries)
    message = str(caught.value)
    assert "'prov'" in message
    for word in words:
        assert word in message, (word, message)


def test_dataset_entries_get_the_reference_defaults():
    (entry,) = validate_entries("prov", [{"name": "A"}])
    assert entry["source"] == "prov" and entry["type"] == "candlestick"
    # One class may serve several sources: the registered name wins over the entry's own.
    assert validate_entries("prov", [{"name": "A", "source": "other"}])[0]["source"] == "prov"
    assert entry["intervals"] == ["1d"] and entry["name_label"] == "A"
    assert [o["name"] for o in entry["outputs"]] == ["open", "high", "low", "close", "volume"]
    (quote,) = validate_entries("prov", [{"name": "Q", "type": "quote"}])
    assert quote["intervals"] == ["tick"] and "bid" in [o["name"] for o in quote["outputs"]]


def test_publish_accepts_what_authors_have_and_refuses_rows_without_time():
    p = RecordingProvider()
    p.name = "src"  # outside a provider process, publish collects rows in p.published
    t = 1_704_187_800_000  # 2024-01-02 09:30 UTC
    p.publish({"date": "2024-01-02 09:30:00", "symbol": "AAA", "price": np.float64(1.5),
               "volume": np.int64(7)})
    p.publish(pd.DataFrame({"close": [1.0, 2.0]},
                           index=pd.to_datetime([t, t + 60_000], unit="ms")),
              symbol="BBB", interval="1m")
    p.publish([{"timestamp": t / 1000, "src-CCC-1m-close": 3.0}], symbol="CCC", interval="1m")
    assert p.published == [
        {"time": t, "symbol": "AAA", "price": 1.5, "volume": 7},
        {"time": t, "symbol": "BBB", "close": 1.0},
        {"time": t + 60_000, "symbol": "BBB", "close": 2.0},
        {"time": t, "symbol": "CCC", "close": 3.0},
    ]
    assert type(p.published[0]["price"]) is float and type(p.published[0]["volume"]) is int
    with pytest.raises(BadRequest, match="no time"):
        p.publish({"symbol": "AAA", "price": 1.0})
    with pytest.raises(BadRequest, match="'soon'"):
        p.publish({"time": "soon", "symbol": "AAA"})
    with pytest.raises(BadRequest, match="str"):
        p.publish("AAA 1.0")
    with pytest.raises(BadRequest, match="no time"):  # a missing time in a DataFrame
        p.publish(pd.DataFrame({"close": [1.0]}, index=pd.DatetimeIndex([pd.NaT])), symbol="D")
    # A list is checked row by row, not only by its first row: a later row without a usable
    # time is refused, and rows with ISO times in a list otherwise made of plain rows are read.
    with pytest.raises(BadRequest, match="no time"):
        p.publish([{"time": t, "symbol": "AAA", "price": 1.0}, {"symbol": "AAA", "price": 2.0}])
    p.published.clear()
    p.publish([{"time": t, "symbol": "AAA", "price": 1.0},
               {"time": "2024-01-02T09:31:00Z", "symbol": "AAA", "price": 2.0}])
    assert [r["time"] for r in p.published] == [t, t + 60_000]


def test_send_from_reads_the_reference_message_and_refuses_other_actions():
    p = ReferencePortProvider()
    p.name = "my_provider"
    k = p.kline(1_704_187_800_000, "1m")
    p.send_from({"action": "write_message", "ws_clients": [1], "source": "my_provider",
                 "name": "BTCUSDT", "interval": "1m",
                 "args": [json.dumps({"type": "data_update",
                                      "data": p.format_datapoint("BTCUSDT", "1m", k)})]})
    assert p.published == [{"time": k[0], "symbol": "BTCUSDT", "open": k[1], "high": k[2],
                             "low": k[3], "close": k[4], "volume": k[5]}]
    with pytest.raises(BadRequest, match="'close_socket'"):
        p.send_from({"action": "close_socket", "name": "BTCUSDT", "interval": "1m"})
    with pytest.raises(BadRequest, match="'name'"):
        p.send_from({"action": "write_message", "interval": "1m", "args": []})


def test_set_status_refuses_unknown_states():
    with pytest.raises(ValueError, match="'sleepy'"):
        RecordingProvider().set_status("sleepy")


def test_registry_errors_name_the_bad_value():
    with pytest.raises(UnknownSource) as caught:
        resolve_spec("nosuchprovider")
    assert "'nosuchprovider'" in str(caught.value) and "simulated" in str(caught.value)
    with pytest.raises(BadRequest, match="'Bad Name'"):
        ProviderSpec("Bad Name", RecordingProvider)
    with pytest.raises(BadRequest, match="not a subclass"):
        ProviderSpec("x", dict)
    with pytest.raises(BadRequest, match="expected a class or a dotted path"):
        ProviderSpec("x", 42)
    with pytest.raises(BadRequest, match=r"'nbfeed\.nothere'"):
        load_class("nbfeed.nothere:Provider")
    with pytest.raises(BadRequest, match="'Missing'"):
        load_class("tests.providers_for_tests:Missing")
    with pytest.raises(BadRequest, match="not a subclass"):
        load_class("tests.providers_for_tests:read_calls")
    assert load_class("tests.providers_for_tests.RecordingProvider") is RecordingProvider
    assert ProviderSpec("rec", RecordingProvider).payload() == (
        "path", "tests.providers_for_tests:RecordingProvider")


def test_spec_of_an_unpicklable_class_says_why():
    import threading

    lock = threading.Lock()

    class Holder(Provider):
        def init(self):
            self.lock = lock  # a lock cannot travel to another process

    with pytest.raises(BadRequest) as caught:
        ProviderSpec("holder", Holder).payload()
    assert "'holder'" in str(caught.value) and "Holder" in str(caught.value)


def test_outside_a_process_the_provider_is_plain_python():
    p = RecordingProvider(period=0)
    p.init()
    p.start_streaming("c1", "AAA", "tick")
    p.start_streaming("c2", "AAA", "tick")
    assert p.clients("AAA", "tick") == {"c1", "c2"} and p.streams() == [("AAA", "tick")]
    p.on_close("c1", "AAA", "tick")
    p.on_close("nobody", "AAA", "tick")  # unknown clients are ignored
    assert p.streams() == [("AAA", "tick")]
    p.on_close("c2", "AAA", "tick")
    assert p.streams() == []
    assert RecordingProvider.implements_subscribe() and not ReferencePortProvider \
        .implements_subscribe()
    assert p.published == []  # period 0: nothing was started


class TicksOnly(Provider):
    """Lists no symbols; its class says it streams ticks only."""

    intervals = ("tick",)

    def subscribe(self, symbol, interval):
        self.publish({"time": now_ms(), "symbol": symbol, "price": 1.0})


@pytest.mark.asyncio
async def test_class_intervals_are_enforced_when_nothing_is_listed(start_hub):
    from nbfeed.errors import BadInterval

    hub = await start_hub(ProviderSpec("ticks", TicksOnly))
    with pytest.raises(BadInterval, match=r"'1m' is not supported by 'ticks'; supported: tick"):
        await hub.subscribe("ticks", ["ANY"], "1m")
    sub = await hub.subscribe("ticks", ["ANY"], "tick")
    await sub.close()


def test_rest_client_retries_transient_failures_then_names_what_went_wrong():
    """The REST helper every exchange provider uses, against real sockets on 127.0.0.1: a 503
    and a malformed body are retried, then answered; a server that never answers and a port
    nobody listens on give up after the retries, naming the host and what happened."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from nbfeed.errors import UpstreamError, UpstreamTimeout
    from nbfeed.providers._http import RestClient

    script = {"/flaky": [(503, b"busy"), (200, b"{not json"), (200, b'{"ok": true}')]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # the stdlib calls it by this name
            if self.path == "/silent":
                threading.Event().wait(2.0)  # longer than the client's timeout
                return
            status, body = script[self.path].pop(0)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        client = RestClient(base, name="fake", timeout=0.3, max_retries=2, backoff=0.01)
        assert client.get("/flaky").data == {"ok": True}
        assert client.requests_sent == 3

        with pytest.raises(UpstreamTimeout, match=r"fake /silent: no answer after 3 attempts"):
            client.get("/silent")
    finally:
        server.shutdown()
        server.server_close()

    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens there
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    refused = RestClient(closed, name="fake", max_retries=1, backoff=0.01)
    with pytest.raises(UpstreamError, match=r"cannot reach http://127\.0\.0\.1:\d+ after 2 "
                                            r"attempts"):
        refused.get("/x")
