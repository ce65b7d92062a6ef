"""HistoryCache: cold vs warm reads of 100k 1m bars, beside references measured in the same run.

    cd /work/main && python bench/history_cache.py [--bars 100000] [--repeat 5]

cold   - empty cache file: one fetch from a generator "provider", store, answer from the store
warm   - the same request again: no upstream call, answered from SQLite (target <= 100 ms)
warm, count-only / after reopen - the newest-N path, and a fresh HistoryCache on the same file
references - building the same dicts from in-memory lists (the floor for any answer made of
dicts); a plain row-per-bar SQLite table read with fetchall, without and with dict building
(the obvious design the packed blocks replace).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbfeed.hub.history import HistoryCache
from nbfeed.hub.requests import history_request

MIN = 60_000
START = 1_767_225_600_000  # 2026-01-01T00:00Z


def make_rows(start: int, end: int) -> list[dict]:
    out = []
    for t in range(start, end, MIN):
        base = 100.0 + (t // MIN) % 97
        out.append(
            {
                "time": t,
                "symbol": "BTCUSDT",
                "open": base,
                "high": base + 1.5,
                "low": base - 1.25,
                "close": base + 0.5,
                "volume": float(t % 1000),
            }
        )
    return out


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median wall time in seconds of ``repeat`` calls, and the last result."""
    samples, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), result


def line(label: str, seconds: float, rows: int, calls: int | str = "") -> None:
    print(
        f"{label:<44} {seconds * 1000:9.1f} ms  {rows / seconds:12,.0f} rows/s  "
        f"{'' if calls == '' else f'upstream calls: {calls}'}"
    )


async def run(bars: int, repeat: int, folder: Path) -> None:
    end = START + bars * MIN
    now = end + 86_400_000
    calls = 0

    async def fetch(s: int | None, e: int, count: int | None) -> list[dict]:
        nonlocal calls
        calls += 1
        assert s is not None, "the bench asks for spans only"
        return make_rows(s, e)

    span = history_request("bench", "BTCUSDT", "1m", START, end)
    newest = history_request("bench", "BTCUSDT", "1m", None, end, bars)

    path = folder / "history.sqlite"
    cache = HistoryCache(path)
    t0 = time.perf_counter()
    rows = await cache.get(span, fetch, now_ms=now)
    cold = time.perf_counter() - t0
    assert len(rows) == bars, len(rows)
    gen, _ = timed(lambda: make_rows(START, end), 1)

    print(f"HistoryCache, {bars:,} 1m bars, median of {repeat}, file {path}")
    line("cold (fetch + store + read)", cold, bars, calls)
    line("  of which the fetch generator itself", gen, bars)

    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = await cache.get(span, fetch, now_ms=now)
        samples.append(time.perf_counter() - t0)
    assert len(rows) == bars and calls == 1
    warm_s = statistics.median(samples)
    line("warm start/end (served from cache)", warm_s, bars, calls - 1)

    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = await cache.get(newest, fetch, now_ms=now)
        samples.append(time.perf_counter() - t0)
    assert len(rows) == bars and calls == 1
    line("warm count-only (newest N)", statistics.median(samples), bars, calls - 1)
    cache.close()

    reopened = HistoryCache(path)
    t0 = time.perf_counter()
    rows = await reopened.get(span, fetch, now_ms=now)
    line("warm after reopen (first request)", time.perf_counter() - t0, len(rows), calls - 1)
    reopened.close()

    print("references, same run:")
    source = make_rows(START, end)
    columns = [[r[k] for r in source] for k in ("time", "open", "high", "low", "close", "volume")]
    ref_dicts, _ = timed(
        lambda: [
            {
                "time": t,
                "symbol": "BTCUSDT",
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
                "volume": v,
            }
            for t, o, h, lo, c, v in zip(*columns, strict=True)
        ],
        repeat,
    )
    line("build the same dicts from in-memory lists", ref_dicts, bars)

    plain = sqlite3.connect(folder / "plain.sqlite")
    plain.execute(
        "CREATE TABLE bars (series INTEGER, time INTEGER, open REAL, high REAL, "
        "low REAL, close REAL, volume REAL, PRIMARY KEY (series, time)) WITHOUT ROWID"
    )
    with plain:
        plain.executemany(
            "INSERT INTO bars VALUES (1, ?, ?, ?, ?, ?, ?)",
            [(r["time"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in source],
        )
    query = (
        "SELECT time, open, high, low, close, volume FROM bars WHERE series = 1 "
        "AND time >= ? AND time < ? ORDER BY time"
    )
    ref_select, _ = timed(lambda: plain.execute(query, (START, end)).fetchall(), repeat)
    line("row-per-bar table: raw SELECT, no dicts", ref_select, bars)
    ref_full, _ = timed(
        lambda: [
            {
                "time": t,
                "symbol": "BTCUSDT",
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
                "volume": v,
            }
            for t, o, h, lo, c, v in plain.execute(query, (START, end))
        ],
        repeat,
    )
    line("row-per-bar table: SELECT + dicts", ref_full, bars)
    plain.close()

    verdict = "meets" if warm_s <= 0.100 else "misses"
    print(
        f"target: warm {bars:,} bars <= 100 ms -> {warm_s * 1000:.1f} ms, {verdict} it; "
        f"{warm_s / ref_dicts:.1f}x the bare dict-building floor"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbfeed-bench-") as folder:
        asyncio.run(run(args.bars, args.repeat, Path(folder)))


if __name__ == "__main__":
    main()
