"""How fast the CSV provider's store loads, answers and follows a large file, next to pandas.

Writes a ``--rows`` one-minute candle file (ISO times) in a temporary folder and prints:

* first load of the file by :class:`CSVStore` (clean file: the fast path), and the same file
  with one malformed line (the careful row-by-row path that names each problem), beside the
  reference ``pandas.read_csv(path, parse_dates=["date"])`` of the clean file in the same run;
* history requests (``count=500`` ending at random times, p50/p99), beside the reference of
  re-reading the file with pandas for each request (what an index avoids);
* reading 100 appended lines, beside a full reload.

    cd /work/main && python bench/csv_history.py [--rows 500000] [--requests 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from nbfeed.providers.csv.store import CSVStore

T0 = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())


def _iso(sec: int) -> str:
    return datetime.fromtimestamp(sec, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_file(path: Path, rows: int, bad_line: int | None = None) -> None:
    lines = ["date,open,high,low,close,volume"]
    for i in range(rows):
        lines.append(f"{_iso(T0 + 60 * i)},{i},{i + 1},{i - 1},{i + 0.5},{10 * i}")
    if bad_line is not None:
        lines[bad_line - 1] = f"{_iso(T0 + 60 * (bad_line - 2))},1,2,oops,1.5,10"
    path.write_text("\n".join(lines) + "\n")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_file(folder / "CLEAN.csv", args.rows)
        write_file(folder / "DIRTY.csv", args.rows, bad_line=args.rows // 2)
        size_mb = (folder / "CLEAN.csv").stat().st_size / 1e6
        print(f"file: {args.rows} rows, {size_mb:.1f} MB")

        ref_load = timed(lambda: pd.read_csv(folder / "CLEAN.csv", parse_dates=["date"]))
        store = CSVStore(folder)
        clean_load = timed(lambda: store.file("CLEAN"))
        dirty_load = timed(lambda: store.file("DIRTY"))
        print(f"first load, clean file (fast path):   {clean_load:7.3f} s")
        print(f"first load, one bad line (careful):   {dirty_load:7.3f} s  "
              f"({len(store.problems('DIRTY'))} problem reported)")
        print(f"reference pandas.read_csv:            {ref_load:7.3f} s")

        rng = random.Random(1)
        ends = [(T0 + 60 * rng.randrange(500, args.rows)) * 1000 for _ in range(args.requests)]
        lat = sorted(timed(lambda e=e: store.history("CLEAN", "1m", None, e, 500)) for e in ends)
        p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
        coarse = sorted(timed(lambda e=e: store.history("CLEAN", "1h", None, e, 500))
                        for e in ends[:50])

        def reread(end_ms: int) -> None:
            df = pd.read_csv(folder / "CLEAN.csv", parse_dates=["date"])
            df[df["date"] < pd.Timestamp(end_ms, unit="ms", tz="UTC")].tail(500)

        ref_req = statistics.median(timed(lambda e=e: reread(e)) for e in ends[:3])
        print(f"history count=500 (1m):  p50 {p50 * 1e3:7.2f} ms  p99 {p99 * 1e3:7.2f} ms")
        print(f"history count=500 (1h, resampled from 1m): p50 "
              f"{statistics.median(coarse) * 1e3:7.2f} ms")
        print(f"reference: re-read with pandas per request: {ref_req * 1e3:9.1f} ms")

        f = store.file("CLEAN")
        extra = "".join(f"{_iso(T0 + 60 * (args.rows + i))},1,2,0,1.5,7\n" for i in range(100))
        with open(folder / "CLEAN.csv", "a") as fh:
            fh.write(extra)
        tail = timed(lambda: store.file("CLEAN"))
        assert (f.full_parses, f.tail_parses) == (1, 1)
        full = timed(lambda: CSVStore(folder).file("CLEAN"))
        print(f"100 appended lines: {tail * 1e3:7.2f} ms   reference full reload: "
              f"{full * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
