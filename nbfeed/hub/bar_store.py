"""The history cache's storage: bars and complete spans of each series in one SQLite file.

``BarStore`` is the synchronous side of ``nbfeed.hub.history.HistoryCache``: it knows nothing of
requests, fetches or the event loop. It keeps, per series ``(source, symbol, interval)``, an id,
the bars, and the spans marked complete. Its callers decide what is complete; it only stores.

Layout: bars are packed per series in blocks of up to ``BLOCK_BARS`` bar slots - times as int64
and every field as one little-endian array (:func:`nbfeed.columns.pack`: float64, int64, bool,
or JSON values; a mask where some bars lack the field), so a file moves between machines and a
read is ~100 blob reads turned into numpy arrays without one Python object per bar (see
``bench/history_cache.py``). Reads and writes are :class:`~nbfeed.columns.Columns`. Writing a
bar whose time is already stored replaces it.

Bars in: ``bar_columns`` checks a fetch answer (a list of row dicts or Columns) and returns
Columns; a row that is not a dict, has no integer epoch-ms ``time`` (or one outside
1900..2999), has a non-string field name or symbol, or a field that is neither a number nor a
flag (``True``/``False``, such as Binance's ``closed``) nor ``None`` raises ``MalformedBar``
naming the row and what is wrong. The five OHLCV fields are stored as floats when they hold
numbers only; any other field comes back exactly as stored (ints stay ints). Rows without
``symbol`` get the series' one.

Threads: one writer connection and, for files, one reader connection (WAL, so big reads run
beside writes), each behind a lock; every method may be called from any thread. Big writes are
split into transactions of ``_BLOCKS_PER_TRANSACTION`` blocks so a live write never waits long.

Failure behaviour: a file that is not an SQLite database raises ``sqlite3.DatabaseError`` naming
the path and saying to delete it or configure another path. A file with an unknown schema
version is a stale cache (schema 1 held rows as JSON): its tables are dropped and rebuilt, with a
warning. Each transaction rolls back on error, so a block is written whole or not at all; a big
write that fails part-way keeps the blocks committed before the failure, which is harmless
because coverage is recorded only after the bars of a span are written. Another process writing
the same file makes a write wait up to 30 s, then raise ``sqlite3.OperationalError``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..columns import BadRows, Columns
from ..columns_io import pack, unpack
from .requests import MAX_TIME_MS, MIN_TIME_MS
from .spans import Span

log = logging.getLogger(__name__)

Row = dict[str, Any]

BLOCK_BARS = 1024
"""Bar slots per stored block: callers pass ``block_ms = BLOCK_BARS * interval_ms(interval)``,
and block ``k`` of a series holds the times in ``[k * block_ms, (k + 1) * block_ms)``."""

OHLCV = ("open", "high", "low", "close", "volume")
_BLOCKS_PER_TRANSACTION = 16  # ~16k bars: keeps each write-lock hold to tens of ms
_SCHEMA_VERSION = 2
_TIMES = np.dtype("<i8")


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
        if version != _SCHEMA_VERSION and (
                version != 0 or db.execute("SELECT 1 FROM sqlite_master").fetchone()):
            log.warning(
                "history cache %s has schema %s, expected %s: rebuilding it",
                self.path,
                version,
                _SCHEMA_VERSION,
            )
            for table in ("series", "bar_blocks", "coverage"):
                db.execute(f"DROP TABLE IF EXISTS {table}")
            db.execute("VACUUM")  # give the old blocks' space back
        db.executescript(f"""
            CREATE TABLE IF NOT EXISTS series (
                id INTEGER PRIMARY KEY, source TEXT NOT NULL, symbol TEXT NOT NULL,
                bar_interval TEXT NOT NULL, UNIQUE (source, symbol, bar_interval));
            CREATE TABLE IF NOT EXISTS bar_blocks (
                series INTEGER NOT NULL, block INTEGER NOT NULL, n INTEGER NOT NULL,
                times BLOB NOT NULL, fields BLOB NOT NULL,
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

    def write_bars(self, sid: int, block_ms: int, bars: Columns) -> None:
        """Upsert bars (of one series; later duplicates win), a few blocks per transaction."""
        if not len(bars):
            return
        bars = latest_per_time(bars)
        blocks = bars.time // block_ms
        cuts = [0, *(np.flatnonzero(blocks[1:] != blocks[:-1]) + 1).tolist(), len(bars)]
        parts = [(int(blocks[a]), bars.slice(a, b)) for a, b in zip(cuts, cuts[1:])]
        for i in range(0, len(parts), _BLOCKS_PER_TRANSACTION):
            with self._write_lock, _transaction(self._writer) as db:
                for block, new in parts[i : i + _BLOCKS_PER_TRANSACTION]:
                    old = db.execute(
                        "SELECT times, fields FROM bar_blocks WHERE series=? AND block=?",
                        (sid, block),
                    ).fetchone()
                    if old is not None:
                        stored = _decode(old, new.symbol)
                        new = latest_per_time(Columns.concat([stored, new], new.symbol))
                    db.execute(
                        "INSERT OR REPLACE INTO bar_blocks VALUES (?, ?, ?, ?, ?)",
                        (sid, block, len(new), _encode_times(new.time), pack(new)),
                    )

    def read(
        self, sid: int, symbol: str, block_ms: int, start: int, end: int, count: int | None
    ) -> Columns:
        """Bars with ``start <= time < end`` in time order; only the newest ``count`` if given."""
        bounds = (sid, start // block_ms, (end - 1) // block_ms)
        parts: list[Columns] = []
        with self._read_lock:
            if count is None:
                cur = self._reader.execute(
                    "SELECT times, fields FROM bar_blocks WHERE "
                    "series=? AND block BETWEEN ? AND ? ORDER BY block",
                    bounds,
                )
                blobs = cur.fetchall()
            else:
                cur = self._reader.execute(
                    "SELECT times, fields FROM bar_blocks WHERE "
                    "series=? AND block BETWEEN ? AND ? ORDER BY block DESC",
                    bounds,
                )
                blobs, total = [], 0
                for row in cur:
                    blobs.append(row)
                    times = np.frombuffer(row[0], dtype=_TIMES)
                    total += int(np.searchsorted(times, end) - np.searchsorted(times, start))
                    if total >= count:
                        break
                cur.close()
                blobs.reverse()
        for row in blobs:  # decoded outside the lock
            times = np.frombuffer(row[0], dtype=_TIMES)
            i, j = np.searchsorted(times, start), np.searchsorted(times, end)
            if i < j:
                parts.append(_decode(row, symbol).slice(int(i), int(j)))
        bars = Columns.concat(parts, symbol)
        if count is not None and len(bars) > count:
            bars = bars.slice(len(bars) - count, len(bars))
        return bars

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


def _encode_times(times: np.ndarray) -> bytes:
    return times.astype(_TIMES, copy=False).tobytes()


def _decode(row: tuple, symbol: str | None) -> Columns:
    times = np.frombuffer(row[0], dtype=_TIMES)
    if not _TIMES.isnative:
        times = times.astype(np.int64)
    return unpack(row[1], times, symbol)


def latest_per_time(bars: Columns) -> Columns:
    """``bars`` in time order with one bar per time: the last one given wins."""
    t = bars.time
    if len(t) < 2 or bool(np.all(t[1:] > t[:-1])):
        return bars
    order = np.argsort(t, kind="stable")
    sorted_t = t[order]
    keep = np.ones(len(t), dtype=bool)
    keep[:-1] = sorted_t[1:] != sorted_t[:-1]
    return bars.take(order[keep])


# --------------------------------------------------------------------------- rows


def bar_columns(result: Any, symbol: str) -> Columns:
    """A fetch answer or live bars (a list of row dicts, or Columns) checked and as Columns of
    ``symbol``; raises MalformedBar naming the first bad row and what is wrong with it."""
    if isinstance(result, Columns):
        bars = result if result.symbol == symbol else _with_symbol(result, symbol)
    else:
        if not isinstance(result, (list, tuple)):
            raise MalformedBar(
                f"fetch returned {type(result).__name__}, expected a list of row dicts")
        try:
            bars = Columns.from_rows(result, symbol)
        except BadRows as exc:
            if exc.time is not None:
                raise MalformedBar(f"row {exc.row}: time {exc.time} is outside 1900..3000 in "
                                   "epoch ms") from None
            raise MalformedBar(str(exc)) from None
    if len(bars):
        outside = np.flatnonzero((bars.time < MIN_TIME_MS) | (bars.time >= MAX_TIME_MS))
        if len(outside):
            i = int(outside[0])
            raise MalformedBar(f"row {i}: time {int(bars.time[i])} is outside 1900..3000 in "
                               "epoch ms")
    floats = {}
    for name, arr in bars.fields.items():
        if arr.dtype.kind in "fb":
            continue
        if arr.dtype.kind == "i":
            if name in OHLCV:
                floats[name] = arr.astype(np.float64)
            continue
        if arr.dtype.kind != "O":
            raise MalformedBar(f"field {name!r} has values of type {arr.dtype}")
        if name == "symbol":
            continue
        mask = bars.masks.get(name)
        for i, value in enumerate(arr.tolist()):
            if (value is not None and type(value) not in (float, int, bool)
                    and (mask is None or mask[i])):
                raise MalformedBar(f"row {i}: field {name!r} = {value!r:.60} is not a number")
    if floats:
        bars = Columns(bars.time, {**bars.fields, **floats}, symbol=bars.symbol,
                       masks=bars.masks)
    return bars


def _with_symbol(bars: Columns, symbol: str) -> Columns:
    """``bars`` as bars of ``symbol``: rows that named no symbol of their own get it."""
    fields = dict(bars.fields)
    masks = dict(bars.masks)
    if bars.symbol is not None and "symbol" not in fields:
        fields = {"symbol": np.full(len(bars), bars.symbol, dtype=object), **fields}
    mask = masks.pop("symbol", None)
    if "symbol" in fields and mask is not None:
        column = fields["symbol"].copy()
        column[~mask] = symbol
        fields["symbol"] = column
    if "symbol" in fields and bool(np.all(fields["symbol"] == symbol)):
        del fields["symbol"]
    return Columns(bars.time, fields, symbol=symbol, masks=masks)


def parse_fetched(result: Any, symbol: str, not_after: int) -> Columns:
    """Validate a fetch answer; drops bars starting at/after ``not_after`` (not yet begun)."""
    bars = bar_columns(result, symbol)
    if len(bars) and int(bars.time.max()) >= not_after:
        bars = bars.take(bars.time < not_after)
    return bars
