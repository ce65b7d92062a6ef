"""The CSV provider: real files in tmp_path, read by the store, the provider and a real hub.

Most tests talk to :class:`~nbfeed.providers.csv.store.CSVStore` directly (the parsing and
indexing are pure, no process needed); the last ones run ``CSVProvider`` in its own process
behind a :class:`~nbfeed.hub.Hub`, the way users meet it.
"""

from __future__ import annotations

import asyncio
import os
import queue
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nbfeed.errors import BadInterval, BadRequest, UnknownSymbol
from nbfeed.providers.csv import SAMPLE_DIR, CSVProvider, read_settings
from nbfeed.providers.csv.parse import ReadOptions
from nbfeed.providers.csv.store import CSVStore
from nbfeed.providers.registry import ProviderSpec

DAY = 86_400_000
MIN = 60_000


def ms(text: str) -> int:
    """ISO text (UTC when naive) -> epoch ms, for writing expectations plainly."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def append(path: Path, content: str) -> None:
    with open(path, "ab") as fh:
        fh.write(content.encode("utf-8"))


def minute_file(n: int, start: str = "2024-01-01T00:00:00Z") -> str:
    """``n`` one-minute candles with epoch-second times; close of bar i is ``i + 0.5``."""
    t0 = ms(start) // 1000
    lines = ["time,open,high,low,close,volume"]
    lines += [f"{t0 + 60 * i},{i},{i + 1},{i - 1},{i + 0.5},{10 * i}" for i in range(n)]
    return "\n".join(lines) + "\n"


# ---- names and columns ---------------------------------------------------------------------


def test_symbols_are_file_names_exactly(tmp_path):
    names = ["BRK.B", "EUR-USD", "my file", "Ünïcødé €", "lower.case.v2"]
    for name in names:
        write(tmp_path, f"{name}.csv", "date,close\n2024-01-02,1\n2024-01-03,2\n")
    write(tmp_path, "SHOUT.CSV", "date,close\n2024-01-02,1\n")
    write(tmp_path, ".hidden.csv", "date,close\n2024-01-02,1\n")
    write(tmp_path, "notes.txt", "date,close\n2024-01-02,1\n")
    (tmp_path / "folder.csv").mkdir()
    store = CSVStore(tmp_path)

    assert sorted(store.symbols()) == sorted([*names, "SHOUT"])
    for name in [*names, "SHOUT"]:
        rows = store.history(name, "1d")
        assert rows and {r["symbol"] for r in rows} == {name}
    assert sorted(e["name"] for e in store.entries("csv")) == sorted([*names, "SHOUT"])
    with pytest.raises(UnknownSymbol, match=r"brk\.b"):
        store.history("brk.b", "1d")  # case is part of the name


def test_every_series_carries_its_own_columns_values(tmp_path):
    # Regression: the reference app gave every series the same column. Each column here holds
    # values no other column has, so a mix-up cannot go unnoticed.
    lines = ["Date,Open,High,Low,Close,Volume,adj close,RSI 14"]
    for i in range(10):
        lines.append(f"2024-01-{i + 1:02d},{100 + i},{200 + i},{50 + i},{150 + i},{1000 + i},"
                     f"{151 + i}.5,{30 + i}.25")
    write(tmp_path, "ACME.csv", "\n".join(lines) + "\n")
    store = CSVStore(tmp_path)

    [entry] = store.entries("csv")
    assert entry["type"] == "candlestick"
    assert [o["name"] for o in entry["outputs"]] == [
        "open", "high", "low", "close", "volume", "adj close", "RSI 14"]
    assert {o["name"]: o["y_axis"] for o in entry["outputs"]}["RSI 14"] == "RSI 14"
    rows = store.history("ACME", "1d")
    assert len(rows) == 10
    for i, row in enumerate(rows):
        assert row == {"time": ms(f"2024-01-{i + 1:02d}"), "symbol": "ACME",
                       "open": 100.0 + i, "high": 200.0 + i, "low": 50.0 + i,
                       "close": 150.0 + i, "volume": 1000.0 + i, "adj close": 151.5 + i,
                       "RSI 14": 30.25 + i}
    # Coarser bars combine each column by its own rule (Mon 2024-01-01 .. Sun 01-07 is a week).
    week = store.history("ACME", "1w", count=2)
    assert week[0] == {"time": ms("2024-01-01"), "symbol": "ACME", "open": 100.0,
                       "high": 206.0, "low": 50.0, "close": 156.0,
                       "volume": float(sum(1000 + i for i in range(7))),
                       "adj close": 157.5, "RSI 14": 36.25}
    assert week[1]["open"] == 107.0 and week[1]["close"] == 159.0


def test_line_file_has_one_series_per_numeric_column(tmp_path):
    write(tmp_path, "US-YIELDS.csv", "date,2Y,10Y,comment,symbol\n"
          "2024-01-02,4.30,3.95,calm,US\n2024-01-03,4.35,3.90,,US\n")
    store = CSVStore(tmp_path)
    [entry] = store.entries("csv")
    assert entry["type"] == "line"
    assert [o["name"] for o in entry["outputs"]] == ["2Y", "10Y"]
    assert store.history("US-YIELDS", "1d") == [
        {"time": ms("2024-01-02"), "symbol": "US-YIELDS", "2Y": 4.30, "10Y": 3.95},
        {"time": ms("2024-01-03"), "symbol": "US-YIELDS", "2Y": 4.35, "10Y": 3.90}]


def test_partial_candle_columns_make_a_line_file_and_say_why(tmp_path):
    write(tmp_path, "X.csv", "date,open,high,low,volume\n2024-01-02,1,2,0.5,10\n")
    store = CSVStore(tmp_path)
    [entry] = store.entries("csv")
    assert entry["type"] == "line"
    assert [o["name"] for o in entry["outputs"]] == ["open", "high", "low", "volume"]
    assert [str(p) for p in store.problems("X")] == [
        "X.csv:1: no close column: not a candlestick; its numeric columns are served as "
        "line series"]


# ---- times ---------------------------------------------------------------------------------


@pytest.mark.parametrize("column, values", [
    ("date", ["2024-01-02", "2024-01-03"]),
    ("Date", ["2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"]),
    ("datetime", ["2024-01-02 01:00:00+01:00", "2024-01-02T19:00:00-05:00"]),
    ("timestamp", ["1704153600", "1704240000"]),
    ("TIME", ["1704153600000", "1704240000000"]),
    ("date", ["20240102", "20240103"]),
])
def test_time_formats(tmp_path, column, values):
    write(tmp_path, "A.csv", f"{column},close\n{values[0]},1\n{values[1]},2\n")
    rows = CSVStore(tmp_path).history("A", "1d")
    assert [r["time"] for r in rows] == [ms("2024-01-02"), ms("2024-01-03")]


def test_timezone_applies_to_naive_date_times_only(tmp_path):
    write(tmp_path, "NY.csv", "datetime,close\n"
          "2024-03-08 09:30:00,1\n"        # EST: UTC-5
          "2024-03-11 09:30:00,2\n"        # EDT: UTC-4, after the clocks moved
          "2024-03-12T09:30:00Z,3\n"       # explicit UTC stays UTC
          "2024-03-13,4\n")                # a calendar day starts at 00:00 UTC
    store = CSVStore(tmp_path, ReadOptions(timezone="America/New_York"))
    assert [r["time"] for r in store.history("NY", "1d")] == [
        ms("2024-03-08T14:30:00Z"), ms("2024-03-11T13:30:00Z"), ms("2024-03-12T09:30:00Z"),
        ms("2024-03-13T00:00:00Z")]
    naive_utc = CSVStore(tmp_path)
    assert naive_utc.history("NY", "1d")[0]["time"] == ms("2024-03-08T09:30:00Z")


def test_date_column_option_delimiter_and_date_plus_time(tmp_path):
    write(tmp_path, "semi.csv", "when;price;size\n2024-01-02T10:00:00Z;1,5;7\n"
          "2024-01-02T10:01:00Z;2;8\n2024-01-02T10:02:00Z;3;9\n")
    store = CSVStore(tmp_path, ReadOptions(date_column=("When",), delimiter=";"))
    rows = store.history("semi", "1m")
    assert [r["time"] for r in rows][:2] == [ms("2024-01-02T10:00:00Z"),
                                             ms("2024-01-02T10:01:00Z")]
    assert rows[0] == {"time": ms("2024-01-02T10:00:00Z"), "symbol": "semi", "price": None,
                       "size": 7.0}  # "1,5" is not a number here
    assert "bad number '1,5' in column 'price'" in str(store.problems("semi")[0])

    write(tmp_path, "mt.csv", "Date,Time,Open,High,Low,Close\n"
          "2024-01-02,09:30,1,2,0.5,1.5\n2024-01-02,09:31,2,3,1.5,2.5\n")
    rows = CSVStore(tmp_path).history("mt", "1m")
    assert [r["time"] for r in rows] == [ms("2024-01-02T09:30:00Z"), ms("2024-01-02T09:31:00Z")]


def test_unsorted_rows_are_sorted_and_a_repeated_time_keeps_the_later_line(tmp_path):
    write(tmp_path, "D.csv", "date,close\n2024-01-04,4\n2024-01-03,3\n2024-01-02,2\n"
          "2024-01-03,33\n")
    store = CSVStore(tmp_path)
    assert [(r["time"], r["close"]) for r in store.history("D", "1d")] == [
        (ms("2024-01-02"), 2.0), (ms("2024-01-03"), 33.0), (ms("2024-01-04"), 4.0)]
    assert "1 rows repeat the time of a later row" in str(store.problems("D")[0])


def test_interval_is_inferred_from_the_spacing_or_forced(tmp_path):
    write(tmp_path, "M.csv", minute_file(30))
    weekdays = [d for d in range(1, 29) if datetime(2024, 1, d).weekday() < 5]
    write(tmp_path, "D.csv", "date,close\n" + "".join(f"2024-01-{d:02d},{d}\n" for d in weekdays))
    store = CSVStore(tmp_path)
    intervals = {e["name"]: e["intervals"] for e in store.entries("csv")}
    assert intervals["M"][:4] == ["1m", "3m", "5m", "15m"] and "1M" in intervals["M"]
    assert intervals["D"] == ["1d", "3d", "1w", "1M"]
    with pytest.raises(BadInterval, match="supported: 1d, 3d, 1w, 1M"):
        store.history("D", "1h")
    with pytest.raises(BadInterval):
        store.history("D", "tick")
    forced = CSVStore(tmp_path, interval="4h")
    assert forced.file("D").intervals() == ["4h", "8h", "12h", "1d", "3d", "1w", "1M"]


# ---- history requests ----------------------------------------------------------------------


def test_history_span_is_half_open_and_count_takes_the_newest(tmp_path):
    write(tmp_path, "M.csv", minute_file(100))
    store = CSVStore(tmp_path)
    t0 = ms("2024-01-01T00:00:00Z")

    rows = store.history("M", "1m", t0 + 10 * MIN, t0 + 20 * MIN)
    assert [r["time"] for r in rows] == [t0 + i * MIN for i in range(10, 20)]
    rows = store.history("M", "1m", None, t0 + 20 * MIN, 5)
    assert [r["close"] for r in rows] == [15.5, 16.5, 17.5, 18.5, 19.5]
    assert [r["close"] for r in store.history("M", "1m", count=2)] == [98.5, 99.5]
    assert len(store.history("M", "1m", t0 + 95 * MIN, None, 50)) == 5
    assert store.history("M", "1m", t0 + 500 * MIN) == []
    assert store.history("M", "1m", count=0) == []
    with pytest.raises(BadRequest, match="count"):
        store.history("M", "1m", count=-1)
    # resampled: 15m bars starting in [00:15, 01:00) -> 3 bars; count counts bars, not rows
    rows = store.history("M", "15m", t0 + 15 * MIN, t0 + 60 * MIN)
    assert [(r["time"], r["open"], r["close"], r["high"], r["low"]) for r in rows] == [
        (t0 + 15 * MIN, 15.0, 29.5, 30.0, 14.0), (t0 + 30 * MIN, 30.0, 44.5, 45.0, 29.0),
        (t0 + 45 * MIN, 45.0, 59.5, 60.0, 44.0)]
    assert [r["time"] for r in store.history("M", "1h", count=1)] == [t0 + 60 * MIN]


def test_large_file_is_parsed_once_and_requests_only_slice(tmp_path):
    n = 500_000
    path = write(tmp_path, "BIG.csv", minute_file(n))
    write(tmp_path, "small.csv", minute_file(3))
    store = CSVStore(tmp_path)

    entries = {e["name"]: e for e in store.entries("csv")}  # reads only the head of BIG
    assert entries["BIG"]["intervals"][:2] == ["1m", "3m"] and "small" in entries
    assert store.file_unrefreshed("BIG").full_parses == 0
    t0 = ms("2024-01-01T00:00:00Z")
    for k in range(50):
        rows = store.history("BIG", "1m", None, t0 + (k * 9_000 + 100) * MIN, 100)
        assert len(rows) == 100 and rows[-1]["close"] == k * 9_000 + 99.5
    assert store.history("BIG", "1m", count=1)[0]["close"] == n - 1 + 0.5
    assert len(store.history("BIG", "1d", count=3)) == 3
    big = store.file("BIG")
    assert (big.full_parses, big.tail_parses, len(big)) == (1, 0, n)

    append(path, f"{t0 // 1000 + 60 * n},1,2,0,{n + 0.5},7\n")
    assert store.history("BIG", "1m", count=1)[0]["close"] == n + 0.5
    assert (big.full_parses, big.tail_parses, len(big)) == (1, 1, n + 1)


def test_appended_lines_are_read_without_rereading_the_file(tmp_path):
    path = write(tmp_path, "LIVE.csv", minute_file(10))
    store = CSVStore(tmp_path)
    f = store.file("LIVE")
    t0 = ms("2024-01-01T00:00:00Z") // 1000

    append(path, f"{t0 + 600},10,11,9,10.5,100\n{t0 + 660},11,12,10,11.5,110\n")
    assert [r["close"] for r in store.history("LIVE", "1m", count=3)] == [9.5, 10.5, 11.5]
    # A writer caught mid-line: the half line is read as it is, then read again once complete.
    append(path, f"{t0 + 720},12,13,11,12.5,1")
    assert store.history("LIVE", "1m", count=1)[0]["volume"] == 1.0
    append(path, "20\n")
    assert store.history("LIVE", "1m", count=1)[0]["volume"] == 120.0
    # A half line with too few fields yet is not a problem once it is complete.
    append(path, f"{t0 + 780},13,14")
    assert len(store.history("LIVE", "1m")) == 13
    append(path, ",12,13.5,130\n")
    assert store.history("LIVE", "1m", count=1)[0]["close"] == 13.5
    # The newest bar may be rewritten by appending a line with the same time.
    append(path, f"{t0 + 780},13,15,12,14.5,150\n")
    assert store.history("LIVE", "1m", count=1)[0]["close"] == 14.5
    assert len(store.history("LIVE", "1m")) == 14
    assert store.problems("LIVE") == []
    assert (f.full_parses, f.tail_parses) == (1, 6)

    write(tmp_path, "LIVE.csv", minute_file(3))  # rewritten, shorter: read again in full
    assert len(store.history("LIVE", "1m")) == 3
    assert f.full_parses == 2


def test_a_header_only_file_becomes_a_series_when_rows_arrive(tmp_path):
    path = write(tmp_path, "NEW.csv", "date,open,high,low,close,note\n")
    store = CSVStore(tmp_path)
    assert store.history("NEW", "1d") == []
    append(path, "2024-01-02,1,2,0.5,1.5,quiet\n2024-01-03,2,3,1.5,2.5,busy\n")
    assert store.history("NEW", "1d") == [
        {"time": ms("2024-01-02"), "symbol": "NEW", "open": 1.0, "high": 2.0, "low": 0.5,
         "close": 1.5},
        {"time": ms("2024-01-03"), "symbol": "NEW", "open": 2.0, "high": 3.0, "low": 1.5,
         "close": 2.5}]
    assert store.problems("NEW") == []


@pytest.mark.parametrize("dates", ["iso", "epoch"])
def test_fast_and_careful_reads_agree(tmp_path, dates):
    # Clean text takes pandas' C parser, anything else the row-by-row reader: same rows.
    t0 = ms("2024-01-01T00:00:00Z")
    lines = ["Datetime,Open,High,Low,Close,Volume,extra"]
    for i in range(1_000):
        t = t0 + i * MIN
        when = datetime.fromtimestamp(t / 1000, tz=timezone.utc).isoformat() \
            if dates == "iso" else str(t)
        lines.append(f"{when},{i / 3:.6f},{i + 1.1},{i - 0.1},{i / 7:.17g},{i * 1e6},{-i}")
    text = "\n".join(lines) + "\n"
    write(tmp_path, "clean.csv", text)
    write(tmp_path, "careful.csv", text + "\n")  # a blank line sends it the careful way
    store = CSVStore(tmp_path)
    clean, careful = store.history("clean", "1m"), store.history("careful", "1m")
    assert len(clean) == 1_000
    assert [{**r, "symbol": "x"} for r in clean] == [{**r, "symbol": "x"} for r in careful]


# ---- malformed input -----------------------------------------------------------------------


def test_malformed_rows_are_reported_with_file_and_line_and_skipped(tmp_path):
    write(tmp_path, "bad.csv", b"date,open,high,low,close,volume\n"
          b"2024-01-02,1,2,0.5,1.5,10\n"
          b"2024-13-45,1,2,0.5,1.5,10\n"
          b"2024-01-04,1,2,0.5,,10\n"
          b"2024-01-05,1,2\n"
          b"2024-01-06,1,2,0.5,1.5,1\xff\n"
          b"\n"
          b"2024-01-08,1,2,0.5,1.5,lots\n"
          b"2024-01-09,1,2,0.5,abc,10\n"
          b"2024-01-10,1,2,0.5,1.5,10\n")
    store = CSVStore(tmp_path, interval="1d")
    assert [str(p) for p in store.problems("bad")] == [
        "bad.csv:3: cannot read '2024-13-45' in column 'date' as a time (use ISO 8601 or "
        "epoch seconds/ms); row skipped",
        "bad.csv:4: missing value in column 'close'; row skipped",
        "bad.csv:5: expected 6 fields, found 3; row skipped",
        "bad.csv:6: not valid utf-8: byte 0xff at column 25; line skipped",
        "bad.csv:8: bad number 'lots' in column 'volume'; read as missing",
        "bad.csv:9: bad number 'abc' in column 'close'; row skipped",
    ]
    rows = store.history("bad", "1d")
    assert [(r["time"], r["volume"]) for r in rows] == [
        (ms("2024-01-02"), 10.0), (ms("2024-01-08"), None), (ms("2024-01-10"), 10.0)]


def test_encoding_option(tmp_path):
    write(tmp_path, "L.csv", "date,clôture\n2024-01-02,1\n".encode("latin-1"))
    store = CSVStore(tmp_path, ReadOptions(encoding="latin-1"))
    assert store.history("L", "1d")[0]["clôture"] == 1.0
    as_utf8 = CSVStore(tmp_path)
    assert "L.csv:1: not valid utf-8: byte 0xf4" in str(as_utf8.problems("L")[0])


def test_unservable_files_are_left_out_and_the_others_served(tmp_path):
    write(tmp_path, "good.csv", "date,close\n2024-01-02,1\n")
    write(tmp_path, "empty.csv", b"")
    write(tmp_path, "blank.csv", b"\n\n  \n")
    write(tmp_path, "nodate.csv", "label,close\nfirst,1\n")
    write(tmp_path, "text.csv", "date,name\n2024-01-02,hello\n")
    write(tmp_path, "binary.csv", bytes(range(256)) * 4)
    write(tmp_path, "header-only.csv", "date,open,high,low,close\n")
    store = CSVStore(tmp_path)

    entries = {e["name"]: e for e in store.entries("csv")}
    assert sorted(entries) == ["good", "header-only"]
    assert entries["header-only"]["type"] == "candlestick"
    assert store.history("header-only", "1d") == []
    reasons = "\n".join(store.unserved())
    assert "empty.csv: empty file: no header line" in reasons
    assert "blank.csv: empty file: no header line" in reasons
    assert "nodate.csv:1: no date column: expected one of date, time, timestamp, datetime" \
        in reasons and "'label', 'close'" in reasons
    assert "text.csv:1: no numeric columns besides the date" in reasons
    assert "binary.csv" in reasons
    with pytest.raises(BadRequest, match=r"'nodate' cannot be served: nodate\.csv:1: no date"):
        store.history("nodate", "1d")
    assert store.history("good", "1d")[0]["close"] == 1.0


def test_the_provider_reports_unservable_files_and_keeps_serving(tmp_path):
    write(tmp_path, "good.csv", "date,close\n2024-01-02,1\n")
    write(tmp_path, "empty.csv", b"")
    statuses = []

    class Watched(CSVProvider):
        def set_status(self, state, detail=""):
            statuses.append((state, detail))

    provider = Watched(folder=str(tmp_path))
    provider.init()
    assert [e["name"] for e in provider.get_dataset()] == ["good"]
    assert statuses == [("degraded", "csv: 1 file(s) not served: empty.csv: empty file: "
                         "no header line")]
    assert provider.get_history("good", "1d", None, None, None)[0]["close"] == 1.0


def test_a_missing_folder_is_reported_not_fatal(tmp_path):
    statuses = []

    class Watched(CSVProvider):
        def set_status(self, state, detail=""):
            statuses.append((state, detail))

    provider = Watched(folder=str(tmp_path / "nowhere"))
    provider.init()
    assert provider.get_dataset() == []
    assert statuses == [("degraded", "csv: folder 'nowhere' does not exist")]
    with pytest.raises(UnknownSymbol, match=r"no file 'ACME\.csv'"):
        provider.get_history("ACME", "1d", None, None, None)


def test_paths_are_refused(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write(folder, "ok.csv", "date,close\n2024-01-02,1\n")
    write(tmp_path, "secret.csv", "date,close\n2024-01-02,42\n")
    os.symlink(tmp_path / "secret.csv", folder / "link.csv")
    os.symlink(folder / "ok.csv", folder / "alias.csv")  # a link inside the folder is fine
    store = CSVStore(folder)

    for bad in ["../secret", "/etc/passwd", str(tmp_path / "secret"), "sub/ok", "..\\secret",
                "..", ".", "ok\0"]:
        with pytest.raises(BadRequest, match=r"refused|not a file name"):
            store.history(bad, "1d")
    with pytest.raises(BadRequest, match="link points outside the CSV folder"):
        store.history("link", "1d")
    with pytest.raises(UnknownSymbol, match=r"no file 'secret\.csv'"):
        store.history("secret", "1d")
    with pytest.raises(BadRequest, match="non-empty string"):
        store.history("", "1d")
    assert sorted(store.symbols()) == ["alias", "ok"]
    assert store.history("alias", "1d")[0]["close"] == 1.0


# ---- the provider: options, sample folder, streaming ---------------------------------------


def test_folder_comes_from_option_then_environment_then_the_sample(tmp_path, monkeypatch):
    monkeypatch.delenv("NBFEED_CSV_DIR", raising=False)
    provider = CSVProvider()
    assert provider.settings.folder == SAMPLE_DIR
    entries = {e["name"]: e for e in provider.get_dataset()}
    assert sorted(entries) == ["ACME", "DEMO-USD", "US-YIELDS"]
    assert entries["ACME"]["intervals"] == ["1d", "3d", "1w", "1M"]
    assert entries["DEMO-USD"]["intervals"][0] == "1m"
    assert entries["US-YIELDS"]["type"] == "line"
    assert sum(p.stat().st_size for p in SAMPLE_DIR.glob("*.csv")) < 1_000_000
    assert provider.problems() == []

    monkeypatch.setenv("NBFEED_CSV_DIR", str(tmp_path))
    assert CSVProvider().settings.folder == tmp_path
    assert CSVProvider(folder=str(SAMPLE_DIR)).settings.folder == SAMPLE_DIR


@pytest.mark.parametrize("options, message", [
    ({"mode": "stream"}, "mode: 'stream'; expected one of auto, replay, tail"),
    ({"replay_speed": 0}, "replay_speed: expected a positive number, got 0"),
    ({"poll_interval": "fast"}, "poll_interval: expected a positive number"),
    ({"timezone": "Mars/Olympus"}, "'Mars/Olympus' is not an IANA timezone"),
    ({"delimiter": ";;"}, "delimiter: expected one character"),
    ({"interval": "7m"}, "interval: '7m' is not a bar interval"),
    ({"date_column": 5}, "date_column: expected a column name"),
    ({"encoding": "klingon"}, "unknown encoding 'klingon'"),
    ({"replay_start": "yesterday-ish"}, "replay_start"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(BadRequest, match="csv option") as err:
        read_settings(options)
    assert message in str(err.value)


class Recorded(CSVProvider):
    """Publishes into a queue, so a test can wait for rows instead of sleeping."""

    def __init__(self, **options):
        super().__init__(**options)
        self.rows: queue.Queue = queue.Queue()

    def publish(self, rows, *, symbol=None, interval=None):
        for row in rows:
            self.rows.put((interval, row))


def take(provider: Recorded, n: int, timeout: float = 20.0) -> list[tuple[str, dict]]:
    return [provider.rows.get(timeout=timeout) for _ in range(n)]


def test_replay_publishes_the_file_then_follows_it(tmp_path):
    path = write(tmp_path, "M.csv", minute_file(30))
    provider = Recorded(folder=str(tmp_path), mode="replay", replay_speed=500,
                        poll_interval=0.02)
    provider.subscribe("M", "1m")
    try:
        got = take(provider, 30)
        assert [row for _, row in got] == provider.get_history("M", "1m", None, None, None)
        assert {iv for iv, _ in got} == {"1m"}
        t0 = ms("2024-01-01T00:00:00Z") // 1000
        append(path, f"{t0 + 1800},30,31,29,30.5,300\n")
        [(_, row)] = take(provider, 1)
        assert row["close"] == 30.5
    finally:
        [follower] = provider._followers.values()
        provider.unsubscribe("M", "1m")
    follower.join(timeout=20)
    assert not follower.is_alive() and not provider._followers


def test_replay_of_a_coarser_interval_and_from_a_start_time(tmp_path):
    write(tmp_path, "M.csv", minute_file(120))
    provider = Recorded(folder=str(tmp_path), mode="replay", replay_speed=500,
                        replay_start="2024-01-01T01:00:00Z")
    provider.subscribe("M", "15m")
    try:
        got = [row for _, row in take(provider, 4)]
    finally:
        provider.unsubscribe("M", "15m")
    assert got == provider.get_history("M", "15m", ms("2024-01-01T01:00:00Z"), None, None)


def test_tail_publishes_the_newest_bar_then_appended_lines(tmp_path):
    path = write(tmp_path, "T.csv", minute_file(5))
    provider = Recorded(folder=str(tmp_path), mode="tail", poll_interval=0.02)
    with pytest.raises(UnknownSymbol):
        provider.subscribe("nope", "1m")
    with pytest.raises(BadInterval):
        provider.subscribe("T", "tick")
    provider.subscribe("T", "1m")
    try:
        [(_, first)] = take(provider, 1)
        assert first["close"] == 4.5
        t0 = ms("2024-01-01T00:00:00Z") // 1000
        append(path, f"{t0 + 300},5,6,4,5.5,50\n{t0 + 360},6,7,5,6.5,60\n")
        assert [row["close"] for _, row in take(provider, 2)] == [5.5, 6.5]
        append(path, f"{t0 + 360},6,8,5,7.5,70\n")  # the open bar moved
        [(_, moved)] = take(provider, 1)
        assert (moved["time"], moved["close"]) == (ms("2024-01-01T00:06:00Z"), 7.5)
    finally:
        provider.unsubscribe("T", "1m")


def test_auto_mode_tails_a_live_file_and_replays_an_old_one(tmp_path):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    start = datetime.fromtimestamp(now.timestamp() - 600, tz=timezone.utc)
    write(tmp_path, "live.csv", minute_file(10, start.isoformat()))
    write(tmp_path, "old.csv", minute_file(10))
    provider = CSVProvider(folder=str(tmp_path))
    assert provider._mode_for(provider.store.file("live")) == "tail"
    assert provider._mode_for(provider.store.file("old")) == "replay"


# ---- through the hub, in a real provider process -------------------------------------------


async def next_rows(sub, n: int, timeout: float = 30.0) -> list[dict]:
    """The next ``n`` rows a subscription delivers (batches flattened, events skipped)."""
    rows: list[dict] = []

    async def collect() -> None:
        async for items in sub:
            for item in items:
                if isinstance(item, dict):
                    assert item.get("type") != "error", item
                    continue
                rows.extend(item.rows)
            if len(rows) >= n:
                return

    await asyncio.wait_for(collect(), timeout)
    return rows


@pytest.mark.asyncio
async def test_hub_serves_catalog_history_and_replay(tmp_path, start_hub):
    folder = tmp_path / "csv"
    folder.mkdir()
    write(folder, "BRK.B.csv", minute_file(40))
    write(folder, "broken.csv", b"")
    spec = ProviderSpec("csv", "nbfeed.providers.csv:CSVProvider",
                        {"folder": str(folder), "mode": "replay", "replay_speed": 200})
    hub = await start_hub(spec)

    found = await hub.search("BRK", source="csv")
    assert [e["name"] for e in found] == ["BRK.B"]
    [info] = hub.providers_info()
    assert info["status"] == "degraded"
    assert "broken.csv: empty file" in info["detail"]
    t0 = ms("2024-01-01T00:00:00Z")
    rows = await hub.history("csv", "BRK.B", "1m", t0, t0 + 40 * MIN)
    assert [r["close"] for r in rows] == [i + 0.5 for i in range(40)]

    sub = await hub.subscribe("csv", "BRK.B", "1m")
    try:
        streamed = await next_rows(sub, 40)
    finally:
        await sub.close()
    assert [r["close"] for r in streamed[:40]] == [i + 0.5 for i in range(40)]
    assert {r["symbol"] for r in streamed} == {"BRK.B"}


@pytest.mark.asyncio
async def test_hub_tail_publishes_appended_lines(tmp_path, start_hub):
    folder = tmp_path / "csv"
    folder.mkdir()
    path = write(folder, "my file.csv", minute_file(5))
    spec = ProviderSpec("csv", "nbfeed.providers.csv:CSVProvider",
                        {"folder": str(folder), "mode": "tail", "poll_interval": 0.05})
    hub = await start_hub(spec)

    sub = await hub.subscribe("csv", "my file", "1m")
    try:
        [newest] = await next_rows(sub, 1)
        assert newest["close"] == 4.5
        t0 = ms("2024-01-01T00:00:00Z") // 1000
        append(path, f"{t0 + 300},5,6,4,5.5,50\n{t0 + 360},6,7,5,6.5,60\n")
        appended = await next_rows(sub, 2)
    finally:
        await sub.close()
    assert [(r["symbol"], r["close"]) for r in appended] == [("my file", 5.5), ("my file", 6.5)]
