"""History: 100k cached 1m bars from the cache to a DataFrame, beside references in the same run.

    python bench/history_cache.py [--bars 100000] [--repeat 5] [--no-remote]

cache   HistoryCache.get of a span: cold (fetch from a generator, store, read), warm, warm
        count-only (newest N), warm after reopening the file - each answer is Columns
feed    ``feed.history()`` of the same 100k cached bars to the DataFrame it returns: embedded
        (a hub in this process, a provider process) and remote (a real Jupyter server's REST
        endpoint, the Arrow stream the notebook client asks for), plus the REST JSON and CSV
        answers of the same request
refs    building the same rows as dicts from in-memory lists (the floor for any answer made of
        dicts), and those dicts to a DataFrame (what history() used to do after that); a
        row-per-bar SQLite table read with fetchall + dicts (the obvious design)

Target: ``feed.history()`` of 100k cached bars faster than merely building the same rows as
dicts in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
from _bars_provider import MIN, BarsProvider, bars_frame
from _jupyter import start_server

from nbfeed.client.embedded import EmbeddedFeed
from nbfeed.client.frames import history_frame
from nbfeed.client.remote import RemoteFeed
from nbfeed.hub.history import HistoryCache
from nbfeed.hub.requests import history_request
from nbfeed.providers.registry import ProviderSpec
from nbfeed.timeutil import now_ms

START = 1_767_225_600_000  # 2026-01-01T00:00Z


def make_rows(start: int, end: int) -> list[dict]:
    frame = bars_frame(start, end)
    times = range(start, end, MIN)
    cols = [frame[c].tolist() for c in ("open", "high", "low", "close", "volume")]
    return [{"time": t, "symbol": "BENCH", "open": o, "high": h, "low": lo, "close": c,
             "volume": v} for t, o, h, lo, c, v in zip(times, *cols)]


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median wall time in seconds of ``repeat`` calls, and the last result."""
    samples, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), result


def line(label: str, seconds: float, rows: int, note: str = "") -> None:
    print(f"{label:<52} {seconds * 1000:9.1f} ms  {rows / seconds:12,.0f} rows/s  {note}")


async def cache_figures(bars: int, repeat: int, folder: Path) -> None:
    end = START + bars * MIN
    now = end + 86_400_000
    calls = 0

    async def fetch(s: int | None, e: int, count: int | None) -> list[dict]:
        nonlocal calls
        calls += 1
        return make_rows(s, e)

    span = history_request("bench", "BENCH", "1m", START, end)
    newest = history_request("bench", "BENCH", "1m", None, end, bars)
    path = folder / "history.sqlite"
    cache = HistoryCache(path)
    t0 = time.perf_counter()
    got = await cache.get(span, fetch, now_ms=now)
    cold = time.perf_counter() - t0
    assert len(got) == bars, len(got)
    line("cache  cold (fetch + store + read)", cold, bars, f"upstream calls: {calls}")
    fetched = calls
    for label, request in (("cache  warm start/end -> Columns", span),
                           ("cache  warm count-only (newest N) -> Columns", newest)):
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            got = await cache.get(request, fetch, now_ms=now)
            samples.append(time.perf_counter() - t0)
        assert len(got) == bars and calls == fetched
        line(label, statistics.median(samples), bars, "upstream calls: 0")
    cache.close()
    reopened = HistoryCache(path)
    t0 = time.perf_counter()
    got = await reopened.get(span, fetch, now_ms=now)
    line("cache  warm after reopen (first request)", time.perf_counter() - t0, len(got))
    reopened.close()


def feed_figures(bars: int, repeat: int, folder: Path, remote: bool) -> dict[str, float]:
    end = now_ms() // MIN * MIN - 2 * 86_400_000
    out: dict[str, float] = {}
    feed = EmbeddedFeed(providers=[ProviderSpec("bars", BarsProvider)], home=str(folder / "e"))
    try:
        t0 = time.perf_counter()
        frame = feed.history("bars", "BENCH", "1m", end=end, count=bars)
        line("feed   embedded, cold (provider process + cache)", time.perf_counter() - t0, bars)
        assert len(frame) == bars, len(frame)
        out["embedded"], frame = timed(
            lambda: feed.history("bars", "BENCH", "1m", end=end, count=bars), repeat)
        line("feed   embedded history() -> DataFrame, warm", out["embedded"], bars)
    finally:
        feed.close()
    if not remote:
        return out
    proc, url, token = start_server(folder / "server", ["bars=_bars_provider:BarsProvider"])
    try:
        rfeed = RemoteFeed(url, token)
        rfeed.history("bars", "BENCH", "1m", end=end, count=bars)  # cold: fills the cache
        out["remote"], frame2 = timed(
            lambda: rfeed.history("bars", "BENCH", "1m", end=end, count=bars), repeat)
        line("feed   remote history() -> DataFrame (REST, Arrow)", out["remote"], bars)
        pd.testing.assert_frame_equal(frame, frame2)
        for fmt in ("json", "csv"):
            query = f"source=bars&symbol=BENCH&interval=1m&end={end}&count={bars}&format={fmt}"
            req = urllib.request.Request(f"{url}nbfeed/api/history?{query}",
                                         headers={"Authorization": f"token {token}"})

            def get(req: urllib.request.Request = req) -> int:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    return len(resp.read())

            seconds, size = timed(get, repeat)
            line(f"REST   {fmt} answer, whole body read", seconds, bars,
                 f"{size / 1e6:.1f} MB")
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def reference_figures(bars: int, repeat: int, folder: Path) -> float:
    end = START + bars * MIN
    source = make_rows(START, end)
    columns = [[r[k] for r in source] for k in ("time", "open", "high", "low", "close", "volume")]

    def dicts() -> list[dict]:
        return [{"time": t, "symbol": "BENCH", "open": o, "high": h, "low": lo, "close": c,
                 "volume": v} for t, o, h, lo, c, v in zip(*columns, strict=True)]

    floor, rows = timed(dicts, repeat)
    line("ref    build the same rows as dicts (the floor)", floor, bars)
    seconds, _ = timed(lambda: history_frame(dicts()), repeat)
    line("ref    ... and those dicts to a DataFrame (old path)", seconds, bars)
    plain = sqlite3.connect(folder / "plain.sqlite")
    plain.execute("CREATE TABLE bars (series INTEGER, time INTEGER, open REAL, high REAL, "
                  "low REAL, close REAL, volume REAL, PRIMARY KEY (series, time)) WITHOUT ROWID")
    with plain:
        plain.executemany("INSERT INTO bars VALUES (1, ?, ?, ?, ?, ?, ?)",
                          [(r["time"], r["open"], r["high"], r["low"], r["close"], r["volume"])
                           for r in rows])
    query = ("SELECT time, open, high, low, close, volume FROM bars WHERE series = 1 "
             "AND time >= ? AND time < ? ORDER BY time")
    seconds, _ = timed(lambda: [
        {"time": t, "symbol": "BENCH", "open": o, "high": h, "low": lo, "close": c, "volume": v}
        for t, o, h, lo, c, v in plain.execute(query, (START, end))], repeat)
    line("ref    row-per-bar SQLite table: SELECT + dicts", seconds, bars)
    plain.close()
    return floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-remote", action="store_true", help="skip the Jupyter server")
    args = parser.parse_args()
    print(f"history, {args.bars:,} 1m bars, median of {args.repeat}; {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="nbfeed-bench-") as tmp:
        folder = Path(tmp)
        asyncio.run(cache_figures(args.bars, args.repeat, folder))
        feeds = feed_figures(args.bars, args.repeat, folder, not args.no_remote)
        floor = reference_figures(args.bars, args.repeat, folder)
    for name, seconds in feeds.items():
        verdict = "meets" if seconds < floor else "misses"
        print(f"target: {name} feed.history() of {args.bars:,} cached bars faster than the dict "
              f"floor -> {seconds * 1000:.1f} ms vs {floor * 1000:.1f} ms = "
              f"{seconds / floor:.2f}x, {verdict} it")
    print(f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
