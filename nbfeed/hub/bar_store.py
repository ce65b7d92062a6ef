"""The history cache's storage: bars and complete spans of each series in one SQLite file.

``BarStore`` is the synchronous side of ``nbfeed.hub.history.HistoryCache``: it knows nothing of
requests, fetches or the event loop. It keeps, per series ``(source, symbol, interval)``, an id,
the bars, and the spans marked complete. Its callers decide what is complete; it only stores.

Layout: bars are packed per series in blocks of up to ``BLOCK_BARS`` bar slots - times as int64
and open/high/low/close/volume as float64 columns (little-endian, so a file moves between
machines), plus a JSON list for rows that carry other fields - because unpacking ~100 blobs is
several times faster than stepping through 100k SQLite rows (see ``bench/history_cache.py``).
Writing a bar whose time is already stored replaces it.

Rows in and out: ``bar_record`` checks one row and turns it into a ``Record``; a row that is not
a dict, has no integer epoch-ms ``time`` (or one outside 1900..2999), has a non-string field name
or symbol, or a field that is neither a number nor a flag (``True``/``False``, such as Binance's
``closed``) raises ``MalformedBar`` saying what is wrong. ``parse_fetched``
does the same for a whole fetch answer (a list) and names the row. A row holding exactly
``time``, the five OHLCV numbers and at most the series' own ``symbol`` comes back with those
numbers as floats; any other row comes back with its fields exactly as stored. Rows without
``symbol`` get the series' one.

Threads: one writer connection and, for files, one reader connection (WAL, so big reads run
beside writes), each behind a lock; every method may be called from any thread. Big writes are
split into transactions of ``_BLOCKS_PER_TRANSACTION`` blocks so a live write never waits long.

Failure behaviour: a file that is not an SQLite database raises ``sqlite3.DatabaseError`` naming
the path and saying to delete it or configure another path. A file with an unknown schema
version is a stale cache: its tables are dropped and rebuilt, with a warning. Each transaction
rolls back on error, so a block is written whole or not at all; a big write that fails part-way
keeps the blocks committed before the failure, which is harmless because coverage is recorded
only after the bars of a span are written. Another process writing the same file makes a write
wait up to 30 s, then raise ``sqlite3.OperationalError``.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import sqlite3
import sys
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .requests import MAX_TIME_MS, MIN_TIME_MS
from .spans import Span

log = logging.getLogger(__name__)

Row = dict[str, Any]
Record = tuple  # (time, open, high, low, close, volume, extra dict or None)

BLOCK_BARS = 1024
"""Bar slots per stored block: callers pass ``block_ms = BLOCK_BARS * interval_ms(interval)``,
and block ``k`` of a series holds the times in ``[k * block_ms, (k + 1) * block_ms)``."""

_OHLCV = ("open", "high", "low", "close", "volume")
_FAST_NUMBERS = (float, int)
_BLOCKS_PER_TRANSACTION = 16  # ~16k bars: keeps each write-lock hold to tens of ms
_SCHEMA_VERSION = 1
_LITTLE_ENDIAN = sys.byteorder == "little"


class MalformedBar(Exception):
    """A bar row that cannot be stored; the message says why."""


# --------------------------------------------------------------------------- storage


class BarStore:
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
        # 4 MB per connection. 32 MB each filled up over a long day of history requests (the
        # server grew +10 MB in 3 minutes of the soak, bench/soak.py); warm reads of 100k bars
        # measured no slower (bench/history_cache.py): the OS keeps the file's pages anyway.
        conn.execute("PRAGMA cache_size=-4096")
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
        """Close both connections; later reads and writes raise ``sqlite3.ProgrammingError``."""
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


def bar_record(row: Any, symbol: str) -> Record:
    """A stored record for one row; raises MalformedBar saying what is wrong with it."""
    if type(row) is not dict:
        raise MalformedBar(f"expected a dict, got {type(row).__name__}")
    t = row.get("time")
    if type(t) is not int:
        t = _row_time(t)
    if not MIN_TIME_MS <= t < MAX_TIME_MS:
        raise MalformedBar(f"time {t} is outside 1900..3000 in epoch ms")
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
                raise MalformedBar(f"symbol {value!r} is not a string")
            if value != symbol:
                extra[key] = value
            continue
        if not isinstance(key, str):
            raise MalformedBar(f"field name {key!r} is not a string")
        extra[key] = _row_number(key, value)
    cols = tuple(extra[f] if type(extra.get(f)) in _FAST_NUMBERS else math.nan for f in _OHLCV)
    return (t, *cols, extra)


def _row_time(value: Any) -> int:
    if value is None:
        raise MalformedBar("time is missing")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise MalformedBar(f"time {value!r:.60} is not an integer epoch-ms bar start")


def _row_number(key: str, value: Any) -> Any:
    if value is None or type(value) in _FAST_NUMBERS or type(value) is bool:
        return value  # a flag stays a flag (JSON true/false), not 1/0
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    raise MalformedBar(f"field {key!r} = {value!r:.60} is not a number")


def parse_fetched(result: Any, symbol: str, not_after: int) -> list[Record]:
    """Validate a fetch answer; drops bars starting at/after ``not_after`` (not yet begun)."""
    if not isinstance(result, (list, tuple)):
        raise MalformedBar(f"fetch returned {type(result).__name__}, expected a list of row dicts")
    records = []
    for i, row in enumerate(result):
        try:
            rec = bar_record(row, symbol)
        except MalformedBar as exc:
            raise MalformedBar(f"row {i}: {exc}") from None
        if rec[0] < not_after:
            records.append(rec)
    return records


def record_row(rec: Record, symbol: str) -> Row:
    """The row a stored record stands for; ``symbol`` fills in the series' symbol."""
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
