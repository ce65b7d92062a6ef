"""The history cache: historical bars kept in SQLite, fetched from providers only where missing.

``HistoryCache`` answers ``get(source, symbol, interval, start, end, count, fetch)`` from a local
store and calls ``fetch(start_ms, end_ms)`` (the provider) once per *missing* half-open span,
including holes in the middle of what it already holds. It records, per series
``(source, symbol, interval)``, the spans it holds completely; a fetch that returns nothing still
marks its span complete (a closed market is known to be empty and is not asked again).

Rules that shape every answer:

- Spans are aligned to bars: ``start`` down to its bar, ``end`` up, so the answer holds every bar
  that overlaps ``[start, end)``, in time order, without duplicates. ``end=None`` means now.
- The bar containing "now" is still open: it is stored so it can be shown, but its span is never
  marked complete, so every request that reaches it re-fetches that tail. Bars that start after
  the open bar cannot exist yet: they are neither fetched, stored nor marked complete.
- ``count`` keeps the newest ``count`` bars. Without ``start`` the cache looks back ``count`` bars
  from ``end``; when that span holds fewer bars (nights, weekends) it makes at most one more fetch
  reaching back three times as far (at least four days) and then returns what it has.
- Concurrent requests share upstream calls: a missing span that overlaps a fetch in flight for
  the same series waits for it instead of asking again. If ``fetch`` raises, every request waiting
  on it gets that exception and nothing is marked complete, so the next request asks again.
- ``fetch`` must return every bar of the span it was asked for (providers paginate upstream): the
  span is marked complete as soon as it returns. A row that is not a dict, has no integer epoch-ms
  ``time``, or has a non-numeric field makes the whole answer invalid: ``UpstreamError`` names
  the row and the problem and nothing of it is stored. Rows outside the span are stored but do
  not count as coverage.
- Live bars (``add_live_bars``) are upserted; a bar is final once a later bar arrived or its end
  has passed. Final bars of a run received without gaps extend the complete coverage only when
  the run starts inside or at the end of already-complete coverage: subscribing at 12:00 does not
  make 9:00-12:00 complete. The newest, still-open live bar is kept in memory (merged into
  answers) and written when it becomes final or on ``close()``, so a tick costs a dict update;
  a fetched bar for the same time replaces it (the stream may have stopped mid-bar).

Storage: one SQLite file (WAL) with bars packed per series in blocks of up to 1024 bar slots -
times as int64 and open/high/low/close/volume as float64 columns, plus a JSON list for rows that
carry other fields - because unpacking ~100 blobs is several times faster than stepping through
100k SQLite rows (see ``bench/history_cache.py``). Numbers in the five OHLCV fields come back as
floats; any other field comes back exactly as stored. Rows without ``symbol`` get the requested
one. The file is a cache: an unknown schema version is dropped and rebuilt.

Threads: SQLite work for fetched spans and reads runs in worker threads (``asyncio.to_thread``)
with one writer connection and, for files, one reader connection, each behind a lock; big writes
are split into short transactions so a live write never waits long. ``add_live_bars`` and
``coverage`` are synchronous and must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import calendar
import inspect
import json
import logging
import math
import numbers
import sqlite3
import sys
import threading
from array import array
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from .. import timeutil
from ..errors import BadInterval, BadRequest, LimitExceeded, UpstreamError
from ..intervals import BAR_INTERVALS, INTERVALS, floor_bar, interval_ms, next_bar
from . import spans
from .spans import Span

log = logging.getLogger(__name__)

Row = dict[str, Any]
Fetch = Callable[[int, int], Awaitable[list[Row]] | list[Row]]

MAX_ROWS = 1_000_000
"""Most bars one request may ask for (``count``, or the bars a start/end span can hold)."""
DEFAULT_COUNT = 500
"""Bars returned when a request gives neither ``start`` nor ``count``."""
MIN_TIME_MS = -2_208_988_800_000  # 1900-01-01: older than any market data, safe for calendars
MAX_TIME_MS = 32_503_680_000_000  # 3000-01-01

_OHLCV = ("open", "high", "low", "close", "volume")
_FAST_NUMBERS = (float, int)
_BLOCK_BARS = 1024
_BLOCKS_PER_TRANSACTION = 16  # ~16k bars: keeps each write-lock hold to tens of ms
_WIDEN_FACTOR = 3
_WIDEN_MIN_MS = 4 * 86_400_000  # a long weekend, so one widening reaches the last trading day
_SCHEMA_VERSION = 1
_LITTLE_ENDIAN = sys.byteorder == "little"


class _Malformed(Exception):
    """A bar row that cannot be stored; the message says why."""


Record = tuple  # (time, open, high, low, close, volume, extra dict or None)


# --------------------------------------------------------------------------- storage


class _BarStore:
    """The synchronous SQLite side: series ids, packed bar blocks and complete spans."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        memory = self.path == ":memory:"
        if not memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = sqlite3.connect(
            self.path, check_same_thread=False, timeout=30, isolation_level=None
        )
        try:
            self._tune(self._writer)
            if not memory:
                self._writer.execute("PRAGMA journal_mode=WAL")
                self._writer.execute("PRAGMA synchronous=NORMAL")
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            self._writer.close()
            raise sqlite3.DatabaseError(
                f"history cache {self.path!r} is not a usable SQLite database ({exc}); "
                "delete the file or configure another path"
            ) from exc
        self._write_lock = threading.Lock()
        # A second connection lets big reads run beside writes (WAL); ":memory:" has only one.
        self._reader = (
            self._writer
            if memory
            else self._tune(
                sqlite3.connect(
                    self.path, check_same_thread=False, timeout=30, isolation_level=None
                )
            )
        )
        self._read_lock = self._write_lock if memory else threading.Lock()

    @staticmethod
    def _tune(conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.execute("PRAGMA cache_size=-32768")  # 32 MB: a warm 100k-bar read stays in memory
        return conn

    def _create_schema(self) -> None:
        db = self._writer
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            log.warning(
                "history cache %s has schema %s, expected %s: rebuilding it",
                self.path,
                version,
                _SCHEMA_VERSION,
            )
            for table in ("series", "bar_blocks", "coverage"):
                db.execute(f"DROP TABLE IF EXISTS {table}")
        db.executescript(f"""
            CREATE TABLE IF NOT EXISTS series (
                id INTEGER PRIMARY KEY, source TEXT NOT NULL, symbol TEXT NOT NULL,
                bar_interval TEXT NOT NULL, UNIQUE (source, symbol, bar_interval));
            CREATE TABLE IF NOT EXISTS bar_blocks (
                series INTEGER NOT NULL, block INTEGER NOT NULL, n INTEGER NOT NULL,
                times BLOB NOT NULL, cols BLOB NOT NULL, extras TEXT,
                PRIMARY KEY (series, block)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS coverage (
                series INTEGER NOT NULL, span_start INTEGER NOT NULL, span_end INTEGER NOT NULL,
                PRIMARY KEY (series, span_start)) WITHOUT ROWID;
            PRAGMA user_version = {_SCHEMA_VERSION};
        """)

    def load_series(self, source: str, symbol: str, interval: str) -> tuple[int, list[Span]]:
        """The series id (created when new) and its complete spans."""
        with self._write_lock:
            db = self._writer
            db.execute(
                "INSERT OR IGNORE INTO series (source, symbol, bar_interval) VALUES (?, ?, ?)",
                (source, symbol, interval),
            )
            sid = db.execute(
                "SELECT id FROM series WHERE source=? AND symbol=? AND bar_interval=?",
                (source, symbol, interval),
            ).fetchone()[0]
            return sid, self._coverage(db, sid)

    def coverage(self, source: str, symbol: str, interval: str) -> list[Span]:
        """Complete spans of a series as stored ([] for a series never seen)."""
        with self._read_lock:
            row = self._reader.execute(
                "SELECT id FROM series WHERE source=? AND symbol=? AND bar_interval=?",
                (source, symbol, interval),
            ).fetchone()
            return [] if row is None else self._coverage(self._reader, row[0])

    @staticmethod
    def _coverage(db: sqlite3.Connection, sid: int) -> list[Span]:
        return [
            tuple(r)
            for r in db.execute(
                "SELECT span_start, span_end FROM coverage WHERE series=? ORDER BY span_start",
                (sid,),
            )
        ]

    def add_coverage(self, sid: int, span: Span) -> Span:
        """Mark ``span`` complete, merged with stored spans it overlaps or touches; returns the
        merged span (which may include coverage another process added)."""
        start, end = span
        with self._write_lock, _transaction(self._writer) as db:
            touching = db.execute(
                "SELECT span_start, span_end FROM coverage WHERE series=? AND "
                "span_start <= ? AND span_end >= ?",
                (sid, end, start),
            ).fetchall()
            start = min([start, *(r[0] for r in touching)])
            end = max([end, *(r[1] for r in touching)])
            db.execute(
                "DELETE FROM coverage WHERE series=? AND span_start <= ? AND span_end >= ?",
                (sid, end, start),
            )
            db.execute("INSERT INTO coverage VALUES (?, ?, ?)", (sid, start, end))
        return start, end

    def write_bars(self, sid: int, block_ms: int, records: Iterable[Record]) -> None:
        """Upsert bar records (later duplicates win), a few blocks per transaction."""
        by_block: dict[int, dict[int, Record]] = {}
        for rec in records:
            by_block.setdefault(rec[0] // block_ms, {})[rec[0]] = rec
        blocks = sorted(by_block.items())
        for i in range(0, len(blocks), _BLOCKS_PER_TRANSACTION):
            with self._write_lock, _transaction(self._writer) as db:
                for block, new in blocks[i : i + _BLOCKS_PER_TRANSACTION]:
                    old = db.execute(
                        "SELECT n, times, cols, extras FROM bar_blocks WHERE series=? AND block=?",
                        (sid, block),
                    ).fetchone()
                    if old is not None:
                        merged = _decode_records(*old)
                        merged.update(new)
                        new = merged
                    db.execute(
                        "INSERT OR REPLACE INTO bar_blocks VALUES (?, ?, ?, ?, ?, ?)",
                        (sid, block, *_encode_block(new)),
                    )

    def read(
        self, sid: int, symbol: str, block_ms: int, start: int, end: int, count: int | None
    ) -> list[Row]:
        """Rows with ``start <= time < end`` in time order; only the newest ``count`` if given."""
        bounds = (sid, start // block_ms, (end - 1) // block_ms)
        parts = []
        with self._read_lock:
            if count is None:
                cur = self._reader.execute(
                    "SELECT n, times, cols, extras FROM bar_blocks WHERE "
                    "series=? AND block BETWEEN ? AND ? ORDER BY block",
                    bounds,
                )
                parts = [_slice_block(row, start, end) for row in cur]
            else:
                cur = self._reader.execute(
                    "SELECT n, times, cols, extras FROM bar_blocks WHERE "
                    "series=? AND block BETWEEN ? AND ? "
                    "ORDER BY block DESC",
                    bounds,
                )
                total = 0
                for row in cur:
                    part = _slice_block(row, start, end)
                    parts.append(part)
                    total += part[-1] - part[-2]
                    if total >= count:
                        break
                cur.close()
                parts.reverse()
                if total > count:  # drop the oldest surplus from the first (oldest) block
                    parts[0] = (*parts[0][:-2], parts[0][-2] + total - count, parts[0][-1])
        out: list[Row] = []
        for part in parts:  # dicts are built outside the lock: they are the expensive part
            out += _block_rows(symbol, *part)
        return out

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
        if self._reader is not self._writer:
            with self._read_lock:
                self._reader.close()


class _transaction:
    """``with _transaction(conn) as db:`` - BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _pack(typecode: str, values: list) -> bytes:
    arr = array(typecode, values)
    if not _LITTLE_ENDIAN:  # the file stays portable between machines
        arr.byteswap()
    return arr.tobytes()


def _unpack(typecode: str, blob: bytes) -> list:
    arr = array(typecode)
    arr.frombytes(blob)
    if not _LITTLE_ENDIAN:
        arr.byteswap()
    return arr.tolist()


def _encode_block(records: dict[int, Record]) -> tuple[int, bytes, bytes, str | None]:
    recs = [records[t] for t in sorted(records)]
    cols: list[float] = []
    for k in range(1, 6):
        cols += [r[k] for r in recs]
    extras = [r[6] for r in recs]
    extras_json = (
        json.dumps(extras, separators=(",", ":")) if any(x is not None for x in extras) else None
    )
    return len(recs), _pack("q", [r[0] for r in recs]), _pack("d", cols), extras_json


def _decode_records(n: int, times: bytes, cols: bytes, extras: str | None) -> dict[int, Record]:
    ts, cs = _unpack("q", times), _unpack("d", cols)
    xs = json.loads(extras) if extras is not None else [None] * n
    return {
        t: (t, cs[i], cs[n + i], cs[2 * n + i], cs[3 * n + i], cs[4 * n + i], xs[i])
        for i, t in enumerate(ts)
    }


def _slice_block(row: tuple, start: int, end: int) -> tuple:
    n, times, cols, extras = row
    ts = _unpack("q", times)
    return n, ts, cols, extras, bisect_left(ts, start), bisect_left(ts, end)


def _block_rows(
    symbol: str, n: int, ts: list[int], cols_blob: bytes, extras: str | None, i: int, j: int
) -> list[Row]:
    if i >= j:
        return []
    cs = _unpack("d", cols_blob)
    columns = zip(
        ts[i:j],
        cs[i:j],
        cs[n + i : n + j],
        cs[2 * n + i : 2 * n + j],
        cs[3 * n + i : 3 * n + j],
        cs[4 * n + i : 4 * n + j],
        strict=True,
    )
    if extras is None:
        return [
            {"time": t, "symbol": symbol, "open": o, "high": h, "low": lo, "close": c, "volume": v}
            for t, o, h, lo, c, v in columns
        ]
    xs = json.loads(extras)[i:j]
    return [
        {"time": t, "symbol": symbol, "open": o, "high": h, "low": lo, "close": c, "volume": v}
        if x is None
        else {"time": t, "symbol": symbol, **x}
        for (t, o, h, lo, c, v), x in zip(columns, xs, strict=True)
    ]


# --------------------------------------------------------------------------- rows


def _bar_record(row: Any, symbol: str) -> Record:
    """A stored record for one row; raises _Malformed saying what is wrong with it."""
    if type(row) is not dict:
        raise _Malformed(f"expected a dict, got {type(row).__name__}")
    t = row.get("time")
    if type(t) is not int:
        t = _row_time(t)
    if not MIN_TIME_MS <= t < MAX_TIME_MS:
        raise _Malformed(f"time {t} is outside 1900..3000 in epoch ms")
    size = len(row)
    if size == 6 or (size == 7 and row.get("symbol") == symbol):
        get = row.get
        o, h, lo, c, v = get("open"), get("high"), get("low"), get("close"), get("volume")
        if (
            type(o) in _FAST_NUMBERS
            and type(h) in _FAST_NUMBERS
            and type(lo) in _FAST_NUMBERS
            and type(c) in _FAST_NUMBERS
            and type(v) in _FAST_NUMBERS
        ):
            return (t, o, h, lo, c, v, None)
    extra: dict[str, Any] = {}
    for key, value in row.items():
        if key == "time":
            continue
        if key == "symbol":
            if not isinstance(value, str):
                raise _Malformed(f"symbol {value!r} is not a string")
            if value != symbol:
                extra[key] = value
            continue
        if not isinstance(key, str):
            raise _Malformed(f"field name {key!r} is not a string")
        extra[key] = _row_number(key, value)
    cols = tuple(extra[f] if type(extra.get(f)) in _FAST_NUMBERS else math.nan for f in _OHLCV)
    return (t, *cols, extra)


def _row_time(value: Any) -> int:
    if value is None:
        raise _Malformed("time is missing")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Malformed(f"time {value!r:.60} is not an integer epoch-ms bar start")


def _row_number(key: str, value: Any) -> Any:
    if value is None or type(value) in _FAST_NUMBERS:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    raise _Malformed(f"field {key!r} = {value!r:.60} is not a number")


def _parse_fetched(result: Any, symbol: str, not_after: int) -> list[Record]:
    """Validate a fetch answer; drops bars starting at/after ``not_after`` (not yet begun)."""
    if not isinstance(result, (list, tuple)):
        raise _Malformed(f"fetch returned {type(result).__name__}, expected a list of row dicts")
    records = []
    for i, row in enumerate(result):
        try:
            rec = _bar_record(row, symbol)
        except _Malformed as exc:
            raise _Malformed(f"row {i}: {exc}") from None
        if rec[0] < not_after:
            records.append(rec)
    return records


def _record_row(rec: Record, symbol: str) -> Row:
    t, o, h, lo, c, v, extra = rec
    if extra is not None:
        return {"time": t, "symbol": symbol, **extra}
    return {
        "time": t,
        "symbol": symbol,
        "open": float(o),
        "high": float(h),
        "low": float(lo),
        "close": float(c),
        "volume": float(v),
    }


# --------------------------------------------------------------------------- requests


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise BadRequest(
            f"{what}: expected a non-empty string of at most 256 characters, got {value!r:.80}"
        )
    return value


def _check_bar_interval(interval: Any) -> str:
    if interval not in BAR_INTERVALS or not isinstance(interval, str):
        if isinstance(interval, str) and interval in INTERVALS:
            raise BadInterval(
                f"interval {interval!r} has no history (quotes are not cached); "
                f"use a bar interval: {', '.join(BAR_INTERVALS)}"
            )
        raise BadInterval(
            f"unknown interval {interval!r:.40}; bar intervals: {', '.join(BAR_INTERVALS)}"
        )
    return interval


def _time_arg(value: Any, what: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        ms = int(value)  # ints are epoch ms here, whatever their size
    else:
        ms = timeutil.to_ms(value, what)
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        raise BadRequest(f"{what}: {value!r:.40} is outside the supported years 1900..2999")
    return ms


def _ceil_bar(ms: int, interval: str) -> int:
    start = floor_bar(ms, interval)
    return start if start == ms else next_bar(ms, interval)


def _bars_back(end: int, count: int, interval: str) -> int:
    """Start of the bar ``count`` bars before the bar boundary ``end`` (not before 1900)."""
    if interval == "1M":
        d = datetime.fromtimestamp(end / 1000, tz=timezone.utc)
        year, month = divmod(d.year * 12 + d.month - 1 - count, 12)
        if year < 1900:
            return MIN_TIME_MS
        return calendar.timegm((year, month + 1, 1, 0, 0, 0)) * 1000
    return max(MIN_TIME_MS, end - count * interval_ms(interval))


@dataclass(eq=False)
class _Flight:
    """A fetch in progress for one span; everyone needing part of the span awaits ``task``."""

    span: Span
    task: asyncio.Task | None = None


@dataclass(eq=False)
class _Series:
    """What the cache knows of one (source, symbol, interval) in this process."""

    id: int
    symbol: str
    interval: str
    block_ms: int
    coverage: list[Span]
    flights: list[_Flight] = field(default_factory=list)
    pending: dict[int, Record] = field(default_factory=dict)  # live bars not yet written
    run_start: int | None = None  # first bar of the live run received without gaps
    run_last: int | None = None  # newest bar of that run


def _flight_done(series: _Series, flight: _Flight, task: asyncio.Task) -> None:
    # Normally the fetch removed itself already; a task cancelled before it ever ran did not.
    if flight in series.flights:
        series.flights.remove(flight)
    # Waiters get the exception; this only keeps asyncio quiet when every waiter went away.
    if not task.cancelled():
        task.exception()


class HistoryCache:
    """Coverage-aware cache of historical bars in a SQLite file (or ``":memory:"``).

    See the module docstring for the rules. ``max_rows`` caps the bars one request may want
    (``LimitExceeded`` beyond it); ``default_count`` is used when neither start nor count is given.
    """

    def __init__(
        self, path: str | Path, *, max_rows: int = MAX_ROWS, default_count: int = DEFAULT_COUNT
    ) -> None:
        self._store = _BarStore(path)
        self.path = self._store.path
        self.max_rows = max_rows
        self.default_count = default_count
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"HistoryCache({self.path!r})"

    # ------------------------------------------------------------------ public API

    async def get(
        self,
        source: str,
        symbol: str,
        interval: str,
        start: Any,
        end: Any,
        count: Any,
        fetch: Fetch,
        now_ms: int | None = None,
    ) -> list[Row]:
        """Bars of ``(source, symbol, interval)`` overlapping ``[start, end)``, fetching gaps.

        Raises BadRequest/BadInterval/LimitExceeded for bad arguments (naming the value),
        UpstreamError for a malformed fetch answer, and whatever ``fetch`` raises.
        """
        self._check_open()
        key = (
            _check_name(source, "source"),
            _check_name(symbol, "symbol"),
            _check_bar_interval(interval),
        )
        if not callable(fetch):
            raise TypeError(f"fetch must be an async callable (start_ms, end_ms), got {fetch!r}")
        now = timeutil.now_ms() if now_ms is None else _time_arg(now_ms, "now_ms")
        start_ms = None if start is None else _time_arg(start, "start")
        end_ms = now if end is None else _time_arg(end, "end")
        count = self._count_arg(count)
        if start_ms is not None and start_ms >= end_ms:
            raise BadRequest(
                f"start {timeutil.ms_to_iso(start_ms)} must be before end "
                f"{timeutil.ms_to_iso(end_ms)}{' (now)' if end is None else ''}"
            )
        end_bar = _ceil_bar(end_ms, interval)
        if start_ms is None and count is None:
            count = self.default_count
        series = await self._open_series(key)
        if count is None:
            window = (floor_bar(start_ms, interval), end_bar)
            self._check_span_size(window, interval)
            await self._ensure(series, window, fetch, now)
            return await self._read(series, window, None)
        lower = MIN_TIME_MS if start_ms is None else floor_bar(start_ms, interval)
        first = max(lower, _bars_back(end_bar, count, interval))
        await self._ensure(series, (first, end_bar), fetch, now)
        rows = await self._read(series, (first, end_bar), count)
        if len(rows) < count and first > lower:
            # One widened look further back (closed markets), then settle for what exists.
            reach = max(_WIDEN_FACTOR * (end_bar - first), _WIDEN_MIN_MS)
            wider = max(lower, floor_bar(max(MIN_TIME_MS, first - reach), interval))
            await self._ensure(series, (wider, first), fetch, now)
            rows = await self._read(series, (wider, end_bar), count)
        return rows

    def add_live_bars(
        self,
        source: str,
        symbol: str,
        interval: str,
        rows: Iterable[Row] | Row,
        now_ms: int | None = None,
    ) -> int:
        """Upsert bars of a subscribed stream; returns how many rows were usable.

        Malformed rows are skipped with a warning (a live stream must not stop for one bad bar).
        Final bars are written at once; the open bar waits in memory until it is final.
        """
        self._check_open()
        key = (
            _check_name(source, "source"),
            _check_name(symbol, "symbol"),
            _check_bar_interval(interval),
        )
        now = timeutil.now_ms() if now_ms is None else _time_arg(now_ms, "now_ms")
        series = self._series.get(key) or self._new_series(key, *self._store.load_series(*key))
        if isinstance(rows, dict):
            rows = [rows]
        elif isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
            raise BadRequest(
                f"live bars: expected a row dict or a list of them, got {type(rows).__name__}"
            )
        records: dict[int, Record] = {}
        problems = []
        for i, row in enumerate(rows):
            try:
                rec = _bar_record(row, series.symbol)
            except _Malformed as exc:
                problems.append(f"row {i}: {exc}")
                continue
            records[rec[0]] = rec
        if problems:
            log.warning(
                "%s/%s/%s: skipped %d malformed live bar(s), first: %s",
                *key,
                len(problems),
                problems[0],
            )
        if not records:
            return 0
        series.pending.update(records)
        newest = max(series.pending)
        final = [t for t in series.pending if t < newest or next_bar(t, interval) <= now]
        if final:
            self._store.write_bars(series.id, series.block_ms, [series.pending[t] for t in final])
            for t in final:
                del series.pending[t]
        self._follow_live_run(series, sorted(records), now)
        return len(records)

    def coverage(self, source: str, symbol: str, interval: str) -> list[Span]:
        """The spans of a series stored as complete, ``[(start_ms, end_ms), ...]``."""
        self._check_open()
        return self._store.coverage(source, symbol, _check_bar_interval(interval))

    def close(self) -> None:
        """Write pending live bars and close the database; later calls raise RuntimeError.

        Fetches still in flight fail when they try to store; close after the hub stopped."""
        if self._closed:
            return
        self._closed = True
        try:
            for series in self._series.values():
                # A bar inside complete coverage came from the provider after this one.
                keep = [
                    rec
                    for t, rec in series.pending.items()
                    if not any(s <= t < e for s, e in series.coverage)
                ]
                if keep:
                    self._store.write_bars(series.id, series.block_ms, keep)
                    series.pending.clear()
        finally:
            self._store.close()

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _count_arg(self, count: Any) -> int | None:
        if count is None:
            return None
        if not isinstance(count, numbers.Integral) or isinstance(count, bool):
            raise BadRequest(
                f"count: expected a positive integer, got {count!r:.40} ({type(count).__name__})"
            )
        if count <= 0:
            raise BadRequest(f"count: expected a positive integer, got {count}")
        if count > self.max_rows:
            raise LimitExceeded(
                f"count {count} is more than the limit of {self.max_rows} bars per request"
            )
        return int(count)

    def _check_span_size(self, window: Span, interval: str) -> None:
        bars = (window[1] - window[0]) // interval_ms(interval)
        if bars > self.max_rows:
            raise LimitExceeded(
                f"{timeutil.ms_to_iso(window[0])} .. {timeutil.ms_to_iso(window[1])} holds about "
                f"{bars} {interval} bars, more than the limit of {self.max_rows} per request; "
                "narrow the span or pass count"
            )

    def _new_series(self, key: tuple[str, str, str], sid: int, coverage: list[Span]) -> _Series:
        series = _Series(
            sid, key[1], key[2], interval_ms(key[2]) * _BLOCK_BARS, spans.normalize(coverage)
        )
        return self._series.setdefault(key, series)

    async def _open_series(self, key: tuple[str, str, str]) -> _Series:
        series = self._series.get(key)
        if series is None:
            sid, coverage = await asyncio.to_thread(self._store.load_series, *key)
            series = self._new_series(key, sid, coverage)
        return series

    async def _ensure(self, series: _Series, window: Span, fetch: Fetch, now: int) -> None:
        """Make ``window`` present in the store: fetch what is missing, join fetches in flight."""
        start, end = window[0], min(window[1], next_bar(now, series.interval))
        if start >= end:
            return
        missing = spans.subtract((start, end), series.coverage)
        if not missing:
            return
        waits = [f.task for f in series.flights if any(spans.overlaps(f.span, m) for m in missing)]
        for span in spans.subtract_all(missing, [f.span for f in series.flights]):
            flight = _Flight(span)
            flight.task = asyncio.get_running_loop().create_task(
                self._fetch_span(series, flight, fetch, now)
            )
            flight.task.add_done_callback(partial(_flight_done, series, flight))
            series.flights.append(flight)
            waits.append(flight.task)
        for task in waits:
            # shield: a caller that gives up must not cancel a fetch others are waiting for.
            await asyncio.shield(task)

    async def _fetch_span(self, series: _Series, flight: _Flight, fetch: Fetch, now: int) -> None:
        start, end = flight.span
        try:
            result = fetch(start, end)
            if inspect.isawaitable(result):
                result = await result
            complete_end = min(end, floor_bar(now, series.interval))
            complete = (start, complete_end) if start < complete_end else None
            merged, answered = await asyncio.to_thread(
                self._store_fetched,
                series,
                result,
                flight.span,
                next_bar(now, series.interval),
                complete,
                set(series.pending),
            )
            if merged is not None:
                series.coverage = spans.add(series.coverage, merged)
            # The provider's bar supersedes a live bar still waiting in memory (e.g. the last
            # bar of a stream that stopped mid-bar); a live bar it did not return is kept.
            for t in answered:
                series.pending.pop(t, None)
        finally:
            if flight in series.flights:
                series.flights.remove(flight)

    def _store_fetched(
        self,
        series: _Series,
        result: Any,
        span: Span,
        not_after: int,
        complete: Span | None,
        pending: set[int],
    ) -> tuple[Span | None, list[int]]:
        """Validate, store and mark complete (worker thread); returns the merged complete span
        and which of the ``pending`` live bar times the answer contained."""
        try:
            records = _parse_fetched(result, series.symbol, not_after)
        except _Malformed as exc:
            raise UpstreamError(
                f"history for {series.symbol} {series.interval} "
                f"[{timeutil.ms_to_iso(span[0])}, {timeutil.ms_to_iso(span[1])}): malformed "
                f"answer from the provider: {exc}"
            ) from None
        if records:
            self._store.write_bars(series.id, series.block_ms, records)
        merged = None if complete is None else self._store.add_coverage(series.id, complete)
        return merged, [rec[0] for rec in records if rec[0] in pending] if pending else []

    async def _read(self, series: _Series, window: Span, count: int | None) -> list[Row]:
        pending = [series.pending[t] for t in sorted(series.pending) if window[0] <= t < window[1]]
        rows = await asyncio.to_thread(
            self._store.read, series.id, series.symbol, series.block_ms, window[0], window[1], count
        )
        for rec in pending:  # the open live bar(s): usually appended at the end
            i = bisect_left(rows, rec[0], key=_row_time_key)
            row = _record_row(rec, series.symbol)
            if i < len(rows) and rows[i]["time"] == rec[0]:
                rows[i] = row
            else:
                rows.insert(i, row)
        if count is not None and len(rows) > count:
            del rows[: len(rows) - count]
        return rows

    def _follow_live_run(self, series: _Series, times: list[int], now: int) -> None:
        """Track the run of live bars received without gaps; extend coverage with its final
        bars where complete coverage already reaches the run's first bar."""
        interval = series.interval
        for t in times:
            if series.run_last is None or t > next_bar(series.run_last, interval):
                if series.run_start is not None and series.run_last is not None:
                    # A later bar exists, so the old run is final up to its end.
                    self._extend_coverage_live(
                        series, series.run_start, next_bar(series.run_last, interval), now
                    )
                series.run_start = series.run_last = t  # first bar, or after a gap: a new run
            elif t > series.run_last:
                series.run_last = t
        if series.run_start is not None and series.run_last is not None:
            last_end = next_bar(series.run_last, interval)
            self._extend_coverage_live(
                series, series.run_start, last_end if last_end <= now else series.run_last, now
            )

    def _extend_coverage_live(self, series: _Series, start: int, end: int, now: int) -> None:
        end = min(end, floor_bar(now, series.interval))  # never the open bar
        base = spans.touching(series.coverage, start)
        if end <= start or base is None or base[1] >= end:
            return  # nothing final, nothing complete to extend, or nothing new
        merged = self._store.add_coverage(series.id, (start, end))
        series.coverage = spans.add(series.coverage, merged)


def _row_time_key(row: Row) -> int:
    return row["time"]
