"""Recordings on disk: the real writer thread, real Parquet files read back by pandas and
pyarrow (polars and DuckDB when installed), limits, merges, crash leftovers and hostile names."""

from __future__ import annotations

import json
import math
import os

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from nbfeed.errors import BadRequest, UnknownRecording
from nbfeed.recorder.box import RecorderBox
from nbfeed.recorder.layout import Layout, check_name
from nbfeed.recorder.limits import make_limits
from nbfeed.recorder.recorder import Recorder
from nbfeed.recorder.schema import table_to_rows
from nbfeed.recorder.store import RecordingStore
from tests.recordings_for_tests import Sent, now_us, quote_rows, settle, spread, write_recording


def replayed(store: RecordingStore, name: str) -> list[dict]:
    reader = store.reader(name)
    out: list[dict] = []
    for table in reader.tables():
        out.extend(table_to_rows(table, reader.json_columns).rows)
    return out


def test_rows_come_back_exactly_with_odd_fields_and_the_files_read_as_they_are(tmp_path):
    t0 = 1_767_323_400_000
    odd = [
        {"time": t0, "symbol": "AAA", "price": 1 / 3, "seq": 7, "interval": "x",
         "source": "vendor", "row.note": "escaped twice", "flag": True},
        {"time": t0 + 1, "symbol": "AAA", "price": float("nan"), "depth": {"bids": [1, 2.5]}},
        {"time": t0 + 1, "symbol": "AAA", "price": 2.0, "depth": {"asks": [3]}, "flag": None},
        {"time": t0 + 2, "symbol": "AAA", "price": -0.0, "mixed": 1},
        {"time": t0 + 3, "symbol": "AAA", "price": 1e-300, "mixed": "one", "big": 2**70},
    ]
    sent = [Sent("sim", "AAA", "tick", odd[:3]), Sent("sim", "AAA", "tick", odd[3:])]
    write_recording(tmp_path, "odd", spread(sent, now_us(), 1.0))
    back = replayed(RecordingStore(tmp_path), "odd")
    assert [r["time"] for r in back] == [r["time"] for r in odd]
    for got, want in zip(back, odd):
        want = {k: v for k, v in want.items() if v is not None}  # None fields come back absent
        assert set(got) == set(want)
        for key, value in want.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got[key])
            else:
                assert got[key] == value and type(got[key]) is type(value), key
    assert math.copysign(1, back[3]["price"]) == -1.0  # -0.0 keeps its sign bit

    folder = tmp_path / "recordings" / "odd"
    partition = folder / "source=sim"
    frame = pd.read_parquet(partition)  # as it is, no nbfeed involved
    assert list(frame["symbol"]) == ["AAA"] * 5
    assert "row.seq" in frame.columns and "received" in frame.columns
    assert str(frame["time"].dtype) == "datetime64[ms, UTC]"
    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 5 and set(table.column("source").to_pylist()) == {"sim"}


def test_a_stream_that_gains_fields_and_a_second_source_read_by_name(tmp_path):
    t0 = 1_767_323_400_000
    first = Sent("sim", "AAA", "tick", quote_rows("AAA", t0, 3))
    later = Sent("sim", "AAA", "tick", [{**r, "venue": "X"} for r in
                                         quote_rows("AAA", t0 + 300, 3)])
    candles = Sent("bars", "BBB", "1m", [{"time": t0, "symbol": "BBB", "open": 1.0,
                                          "high": 2.0, "low": 0.5, "close": 1.5,
                                          "volume": 10.0}])
    write_recording(tmp_path, "grow", spread([first, candles, later], now_us(), 1.0),
                    flush_each=True)
    store = RecordingStore(tmp_path)
    back = replayed(store, "grow")
    assert [("venue" in r, r["symbol"]) for r in back] == [
        (False, "AAA")] * 3 + [(False, "BBB")] + [(True, "AAA")] * 3
    assert back[3] == candles.rows[0]
    frame = store.frame("grow")
    assert list(frame["seq"]) == list(range(1, 8))
    assert frame["venue"].isna().sum() == 4 and {"open", "price", "source"} <= set(frame)


def test_polars_and_duckdb_read_a_recording_by_name_when_installed(tmp_path):
    sent = [Sent("sim", "AAA", "tick", quote_rows("AAA", 1_767_323_400_000, 5)),
            Sent("sim", "AAA", "tick", [{**r, "venue": "X"} for r in
                                        quote_rows("AAA", 1_767_323_401_000, 5)])]
    write_recording(tmp_path, "engines", spread(sent, now_us(), 1.0), flush_each=True)
    folder = tmp_path / "recordings" / "engines"
    files = sorted(str(p) for p in folder.rglob("*.parquet"))
    read = 0
    try:
        import duckdb
    except ImportError:
        duckdb = None
    if duckdb is not None:
        n, venues = duckdb.sql(
            f"select count(*), count(venue) from read_parquet('{folder}/**/*.parquet', "
            "hive_partitioning=true, union_by_name=true)").fetchall()[0]
        assert (n, venues) == (10, 5)
        read += 1
    try:
        import polars as pl
    except ImportError:
        pl = None
    if pl is not None:
        frame = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
        assert frame.height == 10 and frame["venue"].null_count() == 5
        read += 1
    if not read:
        pytest.skip("neither polars nor duckdb is installed")


def test_parts_are_merged_and_a_merge_cut_short_leaves_no_duplicates(tmp_path):
    t0 = 1_767_323_400_000
    sent = [Sent("sim", "AAA", "tick", quote_rows("AAA", t0 + i * 1000, 10)) for i in range(7)]
    # Received at a fixed time of day: two seconds from the wall clock could straddle UTC
    # midnight and make two day files, where this test expects one.
    rec = write_recording(tmp_path, "merged", spread(sent, t0 * 1000, 2.0), flush_each=True,
                          merge_parts=3)
    store = RecordingStore(tmp_path)
    layout = Layout(tmp_path)
    files = layout.data_files("merged")
    assert [f.kind for f in files] == ["data"], files  # merged on the way and at the end
    assert rec.manifest["rows"] == 70 and store.describe("merged")["rows"] == 70
    want = replayed(store, "merged")
    # A crash between "merged file visible" and "inputs deleted" leaves the inputs behind:
    # put a covered part back and a half-written temporary file beside it.
    merged = files[0].path
    table = pq.read_table(merged).slice(0, 10)
    pq.write_table(table, merged.parent / "part-0000000000000001-0000000000000010.parquet")
    (merged.parent / ".part-0000000000000071-0000000000000080.parquet.1.tmp").write_bytes(
        b"PAR1 cut short")
    assert replayed(store, "merged") == want  # readers skip what the merge covers
    assert len(pd.read_parquet(merged.parent)) == 80  # a plain reader sees the leftover...
    done = store.repair("merged")
    assert done == {"temporary_files_removed": 1, "covered_files_removed": 1}
    assert len(pd.read_parquet(merged.parent)) == 70  # ...until repair removes it


def test_the_disk_limit_stops_the_recording_with_a_message_and_is_never_passed(tmp_path):
    rec = Recorder(Layout(tmp_path), "small", [{"source": "sim", "symbols": ["AAA"],
                                                "interval": "tick"}],
                   make_limits(max_bytes=40_000), flush_interval=0.05)
    rec.start()
    t0 = 1_767_323_400_000
    for i in range(200):
        if rec.done.is_set():
            break
        rec.box.put_batch(Sent("sim", "AAA", "tick", quote_rows("AAA", t0 + i * 10_000, 200,
                                                                 price=100 + i)))
        settle(rec)
    assert rec.done.wait(30)
    info = RecordingStore(tmp_path).describe("small")
    assert info["status"] == "limit"
    assert "disk limit of 39.1 KiB (max_bytes=40000)" in info["detail"]
    on_disk = sum(p.stat().st_size for p in (tmp_path / "recordings" / "small").rglob(
        "*.parquet"))
    assert 0 < on_disk <= 40_000 and info["bytes"] == on_disk
    assert info["rows"] > 0


def test_an_age_limit_keeps_a_rolling_window(tmp_path):
    rec = Recorder(Layout(tmp_path), "window", [], make_limits(max_age=60),
                   flush_interval=0.05)
    rec.start()
    old = now_us() - 3_600_000_000  # received an hour ago
    rec.box.put_batch(Sent("sim", "AAA", "tick", quote_rows("AAA", 1, 5)), received_us=old)
    settle(rec)
    rec.box.put_batch(Sent("sim", "AAA", "tick", quote_rows("AAA", 10_000, 5)))
    settle(rec)
    rec.stop()
    store = RecordingStore(tmp_path)
    assert [r["time"] for r in replayed(store, "window")] == [10_000 + 100 * i for i in range(5)]
    assert store.describe("window")["rows"] == 5


def test_a_full_box_drops_and_counts_rows_never_conflates(tmp_path):
    box = RecorderBox(max_rows=10)
    for i in range(4):  # 4 batches of 4 rows: the third and fourth do not fit
        box.put_batch(Sent("sim", "AAA", "tick", quote_rows("AAA", i * 1000, 4)),
                      received_us=1_000_000 + i)
    items, _ = box.drain()
    assert box.lost_rows == 8 and box.conflated_rows == 0
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["Batch", "Batch", "Gap"]
    assert items[2].rows == 8 and items[2].streams == {"sim/AAA/tick": 8}

    rec = Recorder(Layout(tmp_path), "lossy", [], make_limits(), flush_interval=0.05,
                   max_queue_rows=10)
    rec.start()
    for i in range(4):
        rec.box.put_batch(Sent("sim", "AAA", "tick", quote_rows("AAA", i * 1000, 4)))
    rec.stop()
    info = RecordingStore(tmp_path).describe("lossy")
    assert info["lost_rows"] == 8 and info["rows"] == 8
    assert info["gaps"] == [{"after_seq": 8, "rows": 8, "from_ms": info["gaps"][0]["from_ms"],
                             "to_ms": info["gaps"][0]["to_ms"],
                             "streams": {"sim/AAA/tick": 8}}]


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden", "x" * 65, "a..b", "bad name",
                                  "über", "nul\x00", "x.tmp", 42, None])
def test_bad_names_are_refused_with_what_a_name_may_be(name):
    with pytest.raises(BadRequest, match="must be 1-64 characters of letters, digits"):
        check_name(name)


def test_paths_outside_the_recordings_folder_are_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    root = Layout(tmp_path).ensure_root()
    (root / "escape").symlink_to(outside)
    with pytest.raises(BadRequest, match="outside the recordings folder"):
        Layout(tmp_path).recording_dir("escape")
    with pytest.raises(BadRequest, match="bad partition"):
        Layout(tmp_path).partition_dir("ok", "../x", "2026-01-01")
    assert "escape" not in RecordingStore(tmp_path).names()


def test_unknown_recordings_are_refused_naming_the_known_ones(tmp_path):
    write_recording(tmp_path, "known", [(Sent("sim", "A", "tick", quote_rows("A", 1, 1)), 1)])
    store = RecordingStore(tmp_path)
    with pytest.raises(UnknownRecording, match=r"unknown recording 'nope'; recordings: known"):
        store.describe("nope")
    with pytest.raises(BadRequest, match="already exists"):
        write_recording(tmp_path, "known", [])
    store.delete("known")
    assert store.names() == [] and not (tmp_path / "recordings" / "known").exists()


def test_the_manifest_says_what_was_recorded(tmp_path):
    sent = [Sent("sim", "AAA", "tick", quote_rows("AAA", 1_767_323_400_000, 3))]
    write_recording(tmp_path, "m", spread(sent, now_us(), 0))
    manifest = json.loads((tmp_path / "recordings" / "m" / "_recording.json").read_text())
    assert manifest["status"] == "stopped" and manifest["rows"] == 3
    assert manifest["streams"] == [{"source": "sim", "symbols": ["AAA"], "interval": "tick"}]
    assert manifest["pid"] == os.getpid() and manifest["ended_ms"] >= manifest["started_ms"]


def test_random_rows_of_every_kind_come_back_by_the_documented_rules(tmp_path):
    import random

    rnd = random.Random(17)
    makers = [lambda: rnd.random() * 1e6 - 5e5, lambda: rnd.randint(-2**62, 2**62),
              lambda: rnd.choice(["x", "ünïcode", "", "a\nb"]), lambda: rnd.random() < 0.5,
              lambda: None, lambda: {"k": [rnd.randint(0, 9), rnd.random()]},
              lambda: [rnd.random(), "s"]]
    kinds = {f"f{i}": rnd.sample(range(len(makers)), rnd.randint(1, 3)) for i in range(12)}
    rows = []
    for i in range(3000):
        row = {"time": 1_767_323_400_000 + i, "symbol": rnd.choice(["A", "B"])}
        for field, options in kinds.items():
            if rnd.random() < 0.8:
                row[field] = makers[rnd.choice(options)]()
        rows.append(row)
    write_recording(tmp_path, "random", [(Sent("sim", "A", "tick", rows), now_us())])
    back = replayed(RecordingStore(tmp_path), "random")

    def expected_column(field: str) -> str:
        types = {type(r[field]) for r in rows if r.get(field) is not None}
        if len(types) == 1 and types <= {int, float, str, bool}:
            return "same"
        if types == {int, float}:
            return "float"
        return "json"

    rules = {field: expected_column(field) for field in kinds}
    for got, want in zip(back, rows, strict=True):
        for field, value in want.items():
            if value is None:
                assert field not in got
                continue
            rule = rules.get(field, "same")
            if rule == "float":
                value = float(value)
            elif rule == "json":
                value = json.loads(json.dumps(value))
            assert got[field] == value and type(got[field]) is type(value), (field, rule)
