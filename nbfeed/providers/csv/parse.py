"""Reading CSV text into time and value arrays, naming every problem by file and line.

Pure functions over bytes and strings, no file-system state: :mod:`nbfeed.providers.csv.file`
feeds them a whole file or only the bytes appended since the last read. The rules they implement
(the user-facing summary is in :mod:`nbfeed.providers.csv`):

* The first non-blank line is the header. The date column is ``options.date_column`` when set,
  else the first of ``date``, ``time``, ``timestamp``, ``datetime`` (any case) that exists - a
  ``date`` column next to a ``time`` column holding clock times (``09:30``) is read as one date
  and time - else the first column when its values read as times.
* ``open, high, low, close`` (any case, all four) make a candlestick with an optional ``volume``;
  every other column whose sample values are mostly numbers is a line series named exactly as in
  the header. Text columns and a ``symbol`` column are ignored.
* Times are read by :mod:`nbfeed.providers.csv.times` (ISO 8601, epoch s/ms, ``YYYYMMDD``).

Failure behaviour: nothing here raises for bad content. Rows that cannot be read (bad or missing
date, missing candle field, wrong number of fields, bytes that are not valid in the encoding) are
skipped and reported as :class:`Problem`; a bad number in ``volume`` or a line column becomes a
missing value, also reported. Only a file that cannot be served at all (no header, no date column,
no numeric column) raises :class:`LayoutError`, which the store turns into a reported reason.
"""

from __future__ import annotations

import csv  # the standard library's (imports are absolute; this package's own are relative)
import gc
import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .times import parse_times

DATE_CANDIDATES = ("date", "time", "timestamp", "datetime")
CANDLE_FIELDS = ("open", "high", "low", "close")
IGNORED_NAMES = frozenset({"symbol", *DATE_CANDIDATES})
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none", "-"})
SAMPLE_ROWS = 200

_CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")


@dataclass(frozen=True)
class Problem:
    """Something wrong in a file: ``path`` (as shown to users), 1-based ``line`` or None."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"


class LayoutError(Exception):
    """The file cannot be served at all (empty, no date column, no numeric column)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class ReadOptions:
    """How files are read; validated by the provider (see :mod:`nbfeed.providers.csv`)."""

    date_column: tuple[str, ...] = ()
    timezone: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8"


@dataclass(frozen=True)
class Layout:
    """What a header means: where the time is and which columns become which fields."""

    ncols: int
    date_indexes: tuple[int, ...]
    date_label: str
    kind: str  # "candlestick" | "line"
    fields: tuple[str, ...]  # output names: open..volume lower-cased, others exactly as written
    field_indexes: tuple[int, ...]
    required: int  # the first ``required`` fields must be present for a row to count (OHLC)
    #: Decided from a header without data rows: the store re-decides when rows arrive.
    provisional: bool = False


@dataclass
class Block:
    """Rows read from one stretch of text, in file order."""

    times: np.ndarray  # int64 epoch ms
    values: np.ndarray  # float64, shape (rows, len(layout.fields)); NaN = missing
    lines: np.ndarray  # int64 line number of each row
    problems: list[Problem] = field(default_factory=list)

    @classmethod
    def empty(cls, width: int) -> Block:
        return cls(np.empty(0, np.int64), np.empty((0, width)), np.empty(0, np.int64))


def decode(data: bytes, encoding: str, first_line: int, path: str) -> tuple[str, list[Problem]]:
    """Decode ``data``; a line with bytes invalid in ``encoding`` is blanked and reported.

    Blanking (rather than dropping) keeps the line numbers of everything after it right.
    """
    try:
        return data.decode(encoding), []
    except UnicodeDecodeError:
        pass
    problems = []
    parts = data.split(b"\n")
    for i, raw in enumerate(parts):
        try:
            parts[i] = raw.decode(encoding)  # type: ignore[call-overload]
        except UnicodeDecodeError as exc:
            bad = raw[exc.start:exc.start + 1]
            problems.append(Problem(path, first_line + i,
                                    f"not valid {encoding}: byte 0x{bad.hex()} at column "
                                    f"{exc.start + 1}; line skipped"))
            parts[i] = ""  # type: ignore[call-overload]
    return "\n".join(parts), problems  # type: ignore[arg-type]


@dataclass
class Rows:
    """Split rows in file order, blank ones included, and the line each one starts on."""

    fields: list[list[str]]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.fields)

    def nonblank(self, start: int = 0, limit: int | None = None) -> list[int]:
        """Indexes of up to ``limit`` non-blank rows from index ``start``."""
        out: list[int] = []
        for i in range(start, len(self.fields)):
            if limit is not None and len(out) >= limit:
                break
            if not _blank(self.fields[i]):
                out.append(i)
        return out

    def split_at_line(self, line: int) -> tuple[Rows, Rows]:
        """Rows starting before ``line`` and the rest."""
        i = int(np.searchsorted(self.lines, line))
        return Rows(self.fields[:i], self.lines[:i]), Rows(self.fields[i:], self.lines[i:])

    def __getitem__(self, s: slice) -> Rows:
        return Rows(self.fields[s], self.lines[s])


def _blank(fields: list[str]) -> bool:
    return not fields or not any(f.strip() for f in fields)


def split_rows(text: str, first_line: int, delimiter: str) -> Rows:
    """Split ``text`` (whose first line is ``first_line``) into rows; quoted fields may span
    lines, which only costs the fast path."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    with _no_gc():
        fields = list(reader)
        if reader.line_num == len(fields):  # one row per line: the row index is the line
            return Rows(fields, np.arange(first_line, first_line + len(fields)))
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        fields, lines, consumed = [], [], 0
        for row in reader:
            fields.append(row)
            lines.append(first_line + consumed)
            consumed = reader.line_num
    return Rows(fields, np.asarray(lines, dtype=np.int64))


_gc_lock = threading.Lock()
_gc_pauses = 0  # parses running now, in any thread
_gc_was_enabled = False


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic GC while building millions of small lists: they hold no cycles, and
    the collections it would trigger take longer than the parse itself.

    ``gc.disable()`` is process-wide: while a parse runs (about a second for 500k rows) the
    provider's other threads run without cyclic collections too. Nothing is lost - cycles made
    meanwhile are collected once the GC is back - and reference counting frees everything else
    as usual. Parses on several threads share one pause (a counter), so the GC comes back when
    the last of them ends, and only if it was on before the first began.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def detect_layout(header: list[str], sample: list[list[str]], options: ReadOptions,
                  header_line: int, path: str) -> tuple[Layout, list[Problem]]:
    """Decide the layout from the header and a few data rows (raises LayoutError)."""
    names = [h.strip() for h in header]
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    lower = [n.lower() for n in names]
    notes: list[Problem] = []
    date_idx = _date_indexes(names, lower, sample, options, header_line)
    seen: set[str] = set()
    candle: dict[str, int] = {}
    for want in (*CANDLE_FIELDS, "volume"):
        if want in lower:
            candle[want] = lower.index(want)
    has_candle = all(k in candle for k in CANDLE_FIELDS)
    fields: list[str] = []
    indexes: list[int] = []
    if has_candle:
        for k in (*CANDLE_FIELDS, "volume"):
            if k in candle:
                fields.append(k)
                indexes.append(candle[k])
                seen.add(k)
    elif sum(k in candle for k in CANDLE_FIELDS) >= 2:
        missing = [k for k in CANDLE_FIELDS if k not in candle]
        notes.append(Problem(path, header_line, f"no {', '.join(missing)} column: not a "
                             "candlestick; its numeric columns are served as line series"))
    for i, name in enumerate(names):
        if i in date_idx or i in indexes or lower[i] in IGNORED_NAMES:
            continue
        if not name:
            continue  # a trailing delimiter in the header
        if lower[i] in seen:
            notes.append(Problem(path, header_line,
                                 f"duplicate column {name!r} (column {i + 1}) ignored"))
            continue
        if _mostly_numeric([r[i] for r in sample if i < len(r)]):
            fields.append(name)
            indexes.append(i)
            seen.add(lower[i])
    if not fields:
        raise LayoutError(header_line, "no numeric columns besides the date; columns: "
                          + ", ".join(repr(n) for n in names))
    layout = Layout(
        ncols=len(names), date_indexes=date_idx,
        date_label="+".join(names[i] for i in date_idx),
        kind="candlestick" if has_candle else "line", fields=tuple(fields),
        field_indexes=tuple(indexes), required=4 if has_candle else 0,
        provisional=not sample)
    return layout, notes


def _date_indexes(names: list[str], lower: list[str], sample: list[list[str]],
                  options: ReadOptions, header_line: int) -> tuple[int, ...]:
    if options.date_column:
        idx = []
        for want in options.date_column:
            if want.lower() not in lower:
                raise LayoutError(header_line, f"no date column {want!r} (option date_column); "
                                  "columns: " + ", ".join(repr(n) for n in names))
            idx.append(lower.index(want.lower()))
        return tuple(idx)
    if "date" in lower and "time" in lower:
        t = lower.index("time")
        clock = [r[t].strip() for r in sample[:20] if t < len(r) and r[t].strip()]
        if clock and all(_CLOCK.match(v) for v in clock):
            return (lower.index("date"), t)
    for want in DATE_CANDIDATES:
        if want in lower:
            return (lower.index(want),)
    first = [r[0] for r in sample[:20] if r]
    if first:
        _, ok = parse_times(np.array(first, dtype=object), None)
        if ok.all():
            return (0,)
    raise LayoutError(header_line, "no date column: expected one of "
                      f"{', '.join(DATE_CANDIDATES)} (any case) or set the date_column option; "
                      "columns: " + ", ".join(repr(n) for n in names))


def _mostly_numeric(values: list[str]) -> bool:
    present = [v for v in values if v.strip().lower() not in MISSING_TOKENS]
    if not present:
        return True  # no data yet (header-only file being tailed): assume a series
    nums = pd.to_numeric(pd.Series(present, dtype=object), errors="coerce")
    return int(nums.notna().sum()) * 2 > len(present)


def read_text(text: str, first_line: int, layout: Layout, options: ReadOptions,
              path: str) -> Block:
    """Rows of ``text`` (its first line is ``first_line``) as a :class:`Block`.

    Clean text - every row complete, every number and time readable, no blank or multi-line
    rows - takes one vectorized pass of pandas' C parser (about 10x faster); anything else takes
    the row-by-row pass that names each problem. Both give the same rows for clean text.
    """
    block = _read_clean(text, first_line, layout, options)
    if block is not None:
        return block
    return read_rows(split_rows(text, first_line, options.delimiter), layout, options, path)


def _read_clean(text: str, first_line: int, layout: Layout,
                options: ReadOptions) -> Block | None:
    """The fast pass, or None as soon as anything is unusual."""
    expected = text.count("\n") + (0 if text.endswith("\n") else 1)
    if not text or expected < 2 * SAMPLE_ROWS:
        return None  # small: the careful pass is as fast
    kinds = {i: object for i in layout.date_indexes}
    kinds.update({i: np.float64 for i in layout.field_indexes})
    try:
        # bytes: the C parser reads them several times faster than a StringIO
        frame = pd.read_csv(io.BytesIO(text.encode("utf-8")), encoding="utf-8", header=None,
                            sep=options.delimiter, usecols=sorted(kinds), dtype=kinds,
                            skip_blank_lines=False, engine="c")
    except (ValueError, IndexError, pd.errors.ParserError):
        return None
    if len(frame) != expected:
        return None  # quoted line breaks or blank lines: line numbers would be wrong
    values = frame[list(layout.field_indexes)].to_numpy(np.float64)
    dates = [frame[i] for i in layout.date_indexes]
    if np.isnan(values).any() or any(d.isna().any() for d in dates):
        return None
    text_col = dates[0] if len(dates) == 1 else dates[0].str.strip().str.cat(
        [d.str.strip() for d in dates[1:]], sep=" ")
    times, ok = parse_times(text_col.to_numpy(object), options.timezone)
    if not ok.all():
        return None
    return Block(times, values, np.arange(first_line, first_line + len(frame)))


def head_text(text: str, lines: int) -> str:
    """The first ``lines`` lines of ``text``."""
    pos = 0
    for _ in range(lines):
        nxt = text.find("\n", pos)
        if nxt < 0:
            return text
        pos = nxt + 1
    return text[:pos]


def offset_of_line(text: str, line: int) -> int:
    """Index in ``text`` where its ``line``-th line (1-based) starts."""
    pos = 0
    for _ in range(line - 1):
        nxt = text.find("\n", pos)
        if nxt < 0:
            return len(text)
        pos = nxt + 1
    return pos


def read_rows(rows: Rows, layout: Layout, options: ReadOptions, path: str) -> Block:
    """Convert split rows to a :class:`Block`; bad rows are skipped and reported."""
    width = len(layout.fields)
    problems: list[Problem] = []
    ncols = layout.ncols
    good = rows.fields
    line_arr = rows.lines
    lengths = np.fromiter(map(len, good), np.int64, len(good))
    odd = np.flatnonzero(lengths != ncols)
    if len(odd):  # blank lines, trailing delimiters and ragged rows: look at those only
        keep = np.ones(len(good), bool)
        good = list(good)
        for i in odd:
            fields = good[i]
            if _blank(fields):
                keep[i] = False
            elif len(fields) > ncols and not any(f.strip() for f in fields[ncols:]):
                good[i] = fields[:ncols]
            else:
                keep[i] = False
                problems.append(Problem(path, int(line_arr[i]), f"expected {ncols} fields, "
                                        f"found {len(fields)}; row skipped"))
        idx = np.flatnonzero(keep)
        good = [good[i] for i in idx]
        line_arr = line_arr[idx]
    if not good:
        block = Block.empty(width)
        block.problems = problems
        return block
    with _no_gc():
        columns = list(zip(*good, strict=True))
    if len(layout.date_indexes) == 1:
        date_text = np.asarray(columns[layout.date_indexes[0]], dtype=object)
    else:
        parts = [pd.Series(columns[i], dtype=object).str.strip() for i in layout.date_indexes]
        date_text = parts[0].str.cat(parts[1:], sep=" ").to_numpy(dtype=object)
    times, ok = parse_times(date_text, options.timezone)
    for j in np.flatnonzero(~ok):
        problems.append(Problem(path, int(line_arr[j]),
                                f"cannot read {date_text[j]!r} in column {layout.date_label!r} "
                                "as a time (use ISO 8601 or epoch seconds/ms); row skipped"))
    values = np.empty((len(good), width))
    for k, (name, i) in enumerate(zip(layout.fields, layout.field_indexes, strict=True)):
        col, bad, missing = _numbers(columns[i])
        values[:, k] = col
        required = k < layout.required
        for j in np.flatnonzero(bad | (missing if required else False)):
            if not ok[j]:
                continue  # already reported for its date
            text = columns[i][j].strip()
            if required:
                what = f"bad number {text!r}" if bad[j] else "missing value"
                problems.append(Problem(path, int(line_arr[j]),
                                        f"{what} in column {name!r}; row skipped"))
                ok[j] = False
            else:
                problems.append(Problem(path, int(line_arr[j]), f"bad number {text!r} in "
                                        f"column {name!r}; read as missing"))
    if layout.required == 0:
        ok &= ~np.isnan(values).all(axis=1)  # a line row with no value at all carries nothing
    problems.sort(key=lambda p: p.line or 0)
    return Block(times[ok], values[ok], line_arr[ok], problems)


def _numbers(texts: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Floats, a "bad text" mask and a "missing" mask for one column."""
    n = len(texts)
    bad = np.zeros(n, bool)
    missing = np.zeros(n, bool)
    try:  # float() is C-fast and the usual column has no gaps
        nums = np.fromiter(map(float, texts), np.float64, n)
    except ValueError:
        nums = pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").to_numpy(
            np.float64, copy=True)
    for j in np.flatnonzero(np.isnan(nums)):  # usually few: only look at those
        if texts[j].strip().lower() in MISSING_TOKENS:
            missing[j] = True
        else:
            bad[j] = True
            nums[j] = np.nan
    return nums, bad, missing
