"""The notebook API: connect(), symbols, history, subscribe - embedded and through a server."""

from __future__ import annotations

import asyncio
import threading
import time

import pandas as pd
import pytest

import nbfeed
from nbfeed.client.embedded import EmbeddedFeed
from tests.server_fixtures import *  # noqa: F403


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    f = nbfeed.connect(embedded=True, providers=["simulated"],
                       home=str(tmp_path_factory.mktemp("home")))
    yield f
    f.close()


def wait_for(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_embedded_symbols_and_history_frames(feed):
    assert isinstance(feed, EmbeddedFeed)
    syms = feed.symbols("apple")
    assert syms.iloc[0]["name"] == "AAPL" and syms.iloc[0]["source"] == "simulated"
    df = feed.history("simulated", "AAPL", "5m", count=24)
    assert len(df) == 24
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert all(df[c].dtype == "float64" for c in ("open", "high", "low", "close", "volume"))
    assert (df.index[1:] - df.index[:-1] == pd.Timedelta(minutes=5)).all()
    span = feed.history("simulated", "MSFT", "1h", start="2026-01-05", end="2026-01-06")
    assert len(span) == 24 and span.index[0] == pd.Timestamp("2026-01-05", tz="UTC")


def test_embedded_subscribe_callback_latest_and_close(feed):
    got: list[dict] = []
    done = threading.Event()

    with feed.subscribe("simulated", ["AAPL", "MSFT"]) as stream:
        @stream.on_update
        def collect(rows):
            got.extend(rows)
            if {r["symbol"] for r in got} == {"AAPL", "MSFT"}:
                done.set()

        assert done.wait(20)
        latest = stream.latest
        assert set(latest.index) == {"AAPL", "MSFT"}
        rows = stream.latest_rows()  # the same rows as dicts, for code that wants no DataFrame
        assert {r["symbol"] for r in rows} == {"AAPL", "MSFT"}
        assert all(isinstance(r["time"], int) for r in rows)
        assert str(latest["time"].dt.tz) == "UTC" and latest["price"].dtype == "float64"
    assert stream.closed
    count = len(got)
    time.sleep(0.5)  # nothing may arrive after close()
    assert len(got) == count


def test_a_callback_that_changes_its_rows_changes_nobody_elses(feed):
    """Embedded, every subscriber is fed from the hub's own row dicts; a callback that writes
    into its rows must not reach the hub's snapshot or another subscriber."""
    scribbled = threading.Event()
    other_rows: list[dict] = []
    with feed.subscribe("simulated", "AAPL") as vandal, \
            feed.subscribe("simulated", "AAPL") as other:
        other.on_update(other_rows.extend)

        @vandal.on_update
        def scribble(rows):
            for row in rows:
                row["scribbled"] = True
            scribbled.set()

        assert scribbled.wait(20)
        wait_for(lambda: len(other_rows) >= 20)
        with feed.subscribe("simulated", "AAPL") as late:  # starts from the hub's snapshot
            wait_for(lambda: late.rows_received > 0)
            assert "scribbled" not in late.latest.columns
        assert not any("scribbled" in row for row in other_rows)
        assert "scribbled" in vandal.latest.columns  # its own copies are its to change


def test_embedded_async_iteration(feed):
    async def first_batches():
        stream = feed.subscribe("simulated", "GOOGL")
        batches = []
        async for rows in stream:
            batches.append(rows)
            if len(batches) == 3:
                stream.close()
        return batches

    batches = asyncio.run(asyncio.wait_for(first_batches(), 30))
    assert len(batches) == 3 and all(r["symbol"] == "GOOGL" for b in batches for r in b)


def test_subscribe_from_many_threads(feed):
    streams, errors = [], []

    def worker(sym):
        try:
            streams.append(feed.subscribe("simulated", sym))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in ("AAPL", "MSFT", "TSLA", "V")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(streams) == 4
    wait_for(lambda: all(s.rows_received for s in streams))
    for s in streams:
        s.close()


@pytest.mark.parametrize(
    ("call", "exc", "named"),
    [
        (lambda f: f.history("nope", "AAPL", "1m", count=5), nbfeed.UnknownSource, "nope"),
        (lambda f: f.history("simulated", "NOPE", "1m", count=5), nbfeed.UnknownSymbol, "NOPE"),
        (lambda f: f.history("simulated", "AAPL", "7m"), nbfeed.BadInterval, "7m"),
        (lambda f: f.history("simulated", "AAPL", "1m", count=-1), nbfeed.BadRequest, "count"),
        (lambda f: f.history("simulated", "AAPL", "1m", count="5"), nbfeed.BadRequest, "count"),
        (lambda f: f.history("simulated", "AAPL", "1m", start="whenever"), nbfeed.BadRequest,
         "whenever"),
        (lambda f: f.subscribe("simulated", 42), nbfeed.BadRequest, "symbols"),
        (lambda f: f.subscribe("simulated", ["AAPL"], "fortnightly"), nbfeed.BadInterval,
         "fortnightly"),
        (lambda f: f.symbols(123), nbfeed.BadRequest, "query"),
        (lambda f: f.symbols("a", limit=0), nbfeed.BadRequest, "limit"),
    ],
)
def test_errors_name_the_bad_argument(feed, call, exc, named):
    with pytest.raises(exc, match=named):
        call(feed)


def test_history_checks_interval_and_count_before_asking_with_the_hubs_own_limits(feed):
    from nbfeed.hub.requests import MAX_HISTORY_BARS

    with pytest.raises(nbfeed.BadInterval, match="'tick' has no history"):
        feed.history("simulated", "AAPL", "tick")
    with pytest.raises(nbfeed.LimitExceeded, match=f"limit of {MAX_HISTORY_BARS} bars"):
        feed.history("simulated", "AAPL", "1m", count=MAX_HISTORY_BARS + 1)


def test_providers_lists_loaded_then_installed_sources(feed, monkeypatch):
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    table = feed.providers()
    assert table.loc["simulated", "status"] == "running" and table.loc["simulated", "loaded"]
    assert table.loc["binance", "status"] == "not loaded"
    assert "register_provider('binance')" in table.loc["binance", "enable"]
    assert table.loc["polygon", "status"] == "not usable"
    assert "POLYGON_API_KEY" in table.loc["polygon", "detail"]
    assert list(table.index[:1]) == ["simulated"]  # loaded ones first


def test_register_a_provider_defined_here(feed):
    class Ticker(nbfeed.Provider):  # not importable: shipped to its own process by value
        def get_dataset(self):
            return [{"name": "ONE", "type": "quote", "intervals": ["tick"]}]

        def subscribe(self, symbol, interval):
            import os

            self.publish({"time": 1_700_000_000_000, "symbol": symbol, "price": 1.0,
                          "pid": os.getpid()})

    feed.register_provider("ticker", Ticker)
    assert feed.providers().loc["ticker", "status"] == "running"
    with feed.subscribe("ticker", "ONE") as stream:
        wait_for(lambda: stream.rows_received)
        import os

        assert stream.latest.loc["ONE", "pid"] != os.getpid()


@pytest.mark.parametrize("error", [nbfeed.UnknownSource("a"), nbfeed.UnknownSymbol("b"),
                                   nbfeed.BadInterval("c"), nbfeed.BadRequest("d"),
                                   nbfeed.LimitExceeded("e"), nbfeed.UpstreamError("f")])
def test_an_error_comes_back_from_the_wire_as_itself(error):
    frame = error.to_wire("q1")
    back = nbfeed.NBFeedError.from_wire(frame["code"], frame["message"])
    assert type(back) is type(error) and str(back) == str(error)


def test_an_error_code_without_a_class_is_kept():
    err = nbfeed.NBFeedError.from_wire("no_data", "no 1d bars of simulated/AAPL")
    assert type(err) is nbfeed.NBFeedError and err.code == "no_data"
    assert str(err) == "no 1d bars of simulated/AAPL"


async def test_connect_with_url_and_token(nbfeed_server, jp_serverapp, jp_base_url):
    url = f"http://127.0.0.1:{jp_serverapp.port}{jp_base_url}"
    token = jp_serverapp.identity_provider.token

    def use_remote():
        feed = nbfeed.connect(url, token=token)
        try:
            assert feed.symbols("aapl").iloc[0]["name"] == "AAPL"
            df = feed.history("simulated", "AAPL", "1m", count=10)
            assert len(df) == 10 and str(df.index.tz) == "UTC"
            with pytest.raises(nbfeed.UnknownSymbol, match="NOPE") as refused:
                feed.history("simulated", "NOPE", "1m", count=3)
            assert refused.value.http_status == 404
            assert token not in repr(feed.server)
            with feed.subscribe("simulated", ["AAPL", "MSFT"]) as stream:
                wait_for(lambda: set(stream.latest.index) == {"AAPL", "MSFT"})
            with pytest.raises(nbfeed.UnknownSymbol):
                feed.subscribe("simulated", "NOPE")
        finally:
            feed.close()
        with pytest.raises(nbfeed.NBFeedError, match="not authorized"):
            nbfeed.connect(url, token="wrong")

    await asyncio.to_thread(use_remote)


async def test_connect_from_a_kernel_started_by_the_server(nbfeed_server, jp_serverapp):
    """A real kernel started by the real server finds that server's nbfeed (not embedded)."""
    km = jp_serverapp.kernel_manager
    kernel_id = await km.start_kernel()
    client = km.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=90)
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        code = (
            "import os, nbfeed\n"
            "f = nbfeed.connect()\n"
            "df = f.history('simulated', 'AAPL', '1m', count=7)\n"
            "s = f.subscribe('simulated', 'MSFT')\n"
            "import time; t = time.time()\n"
            "while not s.rows_received and time.time() - t < 30: time.sleep(0.05)\n"
            "print(f.mode, f.symbols('apple').iloc[0]['name'], len(df), str(df.index.tz),"
            " s.rows_received > 0)\n"
            "s.close()\n"
        )
        reply = await client.execute_interactive(code, timeout=90, output_hook=hook)
        assert reply["content"]["status"] == "ok", "".join(out)
        assert "".join(out).split() == ["remote", "AAPL", "7", "UTC", "True"]
    finally:
        client.stop_channels()
        await km.shutdown_kernel(kernel_id, now=True)


def test_a_runtime_files_pid_counts_as_alive_only_for_a_running_process():
    """A stale runtime file (server gone) or a recording whose writer died must not be taken
    for a live one; whatever a file says in place of a pid never raises."""
    import os
    import subprocess
    import sys

    from nbfeed.runtime_file import pid_alive

    assert pid_alive(os.getpid())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert not pid_alive(gone.pid)
    for hostile in (None, "123", str(os.getpid()), True, -1, 0, 2**70, 1.5, [os.getpid()]):
        assert not pid_alive(hostile), hostile
