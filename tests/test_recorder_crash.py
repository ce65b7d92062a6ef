"""A recording process killed with SIGKILL leaves complete, readable Parquet files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

import nbfeed
from nbfeed.recorder.layout import Layout
from nbfeed.recorder.store import RecordingStore

RECORD = """
import sys, time
import nbfeed
from nbfeed.providers.registry import resolve_spec
feed = nbfeed.connect(embedded=True, home=sys.argv[1],
                      providers=[resolve_spec("simulated", None, rate=2000)])
feed.record("simulated", ["AAPL", "MSFT", "EURUSD"], name="crash")
print("recording", flush=True)
time.sleep(600)
"""


def test_a_recorder_killed_with_sigkill_leaves_readable_files(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", RECORD, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout.readline().strip() == "recording"
        layout = Layout(tmp_path)
        deadline = time.monotonic() + 60
        while len([f for f in layout.data_files("crash") if f.kind == "part"]) < 3:
            assert time.monotonic() < deadline, "no part files appeared"
            assert proc.poll() is None, "the recording process died on its own"
            time.sleep(0.05)
        killed_at_ms = time.time() * 1000
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)

    folder = tmp_path / "recordings" / "crash"
    files = sorted(folder.rglob("*.parquet"))
    assert files
    for path in files:  # every visible file is a complete Parquet file
        assert pq.read_metadata(path).num_rows > 0
    frame = pd.read_parquet(folder / "source=simulated")  # pandas, as the files are
    seqs = sorted(frame["seq"])
    assert seqs == list(range(1, len(seqs) + 1)), "rows missing inside the recording"
    assert set(frame["symbol"]) == {"AAPL", "MSFT", "EURUSD"}
    table = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == len(frame)
    newest = frame["received"].max().value / 1e6
    assert killed_at_ms - newest < 10_000, "more than the last few seconds were lost"

    store = RecordingStore(tmp_path)
    assert store.describe("crash")["status"] == "interrupted"
    store.repair("crash")
    assert not list(folder.rglob("*.tmp"))
    with nbfeed.connect(embedded=True, home=str(tmp_path), providers=[]) as feed:
        stream = feed.subscribe("replay", ["AAPL", "MSFT", "EURUSD"], recording="crash",
                                speed="max", paused=True)
        got: list[dict] = []
        stream.on_update(got.extend)
        stream.resume()
        assert stream.wait(60)
        stream.close()
    assert len(got) == len(frame)
