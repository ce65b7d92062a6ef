"""One CSV file parsed into arrays, kept fresh as it changes, sliced by binary search.

:class:`CSVFile` holds sorted int64 times and a float64 value matrix (one column per series). It
re-reads nothing that has not changed: every :meth:`CSVFile.refresh` compares the file's (inode,
size, mtime); a file that only grew (same leading and trailing bytes as last time) is parsed from
where the last read stopped; anything else is parsed again in full. History requests are two
``searchsorted`` calls and a slice, plus a vectorized resample for coarser intervals. Arrays grow
by doubling, so a tailed file costs amortized O(appended rows).

Thread safety: everything runs under the file's lock; the provider reads from its worker pool
and its stream threads at the same time. Failure behaviour: content problems never raise (they
are recorded, see :meth:`CSVFile.problems`); a file that cannot be served keeps the reason in
``error`` and only requests for it raise ``BadRequest``; a file that vanished raises
``UnknownSymbol`` on refresh.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BadRequest, UnknownSymbol
from ...intervals import check_interval
from .parse import (
    SAMPLE_ROWS,
    Block,
    Layout,
    LayoutError,
    Problem,
    ReadOptions,
    decode,
    detect_layout,
    head_text,
    offset_of_line,
    read_text,
    split_rows,
)
from .resample import resample, whole_bar_rows
from .times import coarser_intervals, infer_interval

MAX_PROBLEMS = 100  # per file; beyond that only a count (a broken 1 GB file must not eat memory)
SAMPLE_BYTES = 64 * 1024  # what the catalog reads of a file it has not loaded yet
_FINGERPRINT = 4096


@dataclass
class _OpenLine:
    """The last line had no line break yet (maybe half written): how to undo reading it."""

    rows: int
    undoable: bool
    problems: int


class CSVFile:
    """One CSV file, parsed and indexed. Use :meth:`refresh` before reading; it is cheap."""

    def __init__(self, path: Path, symbol: str, options: ReadOptions, *,
                 interval: str | None = None, log: logging.Logger | None = None) -> None:
        self.path = path
        self.symbol = symbol
        self.options = options
        self.forced_interval = interval
        self.log = log or logging.getLogger("nbfeed.provider.csv")
        self.lock = threading.RLock()
        #: Full parses and appended-tail parses so far (tests assert "no re-read").
        self.full_parses = 0
        self.tail_parses = 0
        #: Bumped on every change of the data.
        self.version = 0
        self.layout: Layout | None = None
        self.error: str | None = None
        self._problems: list[Problem] = []
        self._dropped = 0
        self._times = np.empty(0, np.int64)
        self._values = np.empty((0, 0))
        self._n = 0
        self._stat: tuple[int, int, int] | None = None
        self._size = 0
        self._resume = 0  # byte offset where an appended tail starts
        self._resume_line = 1
        self._open: _OpenLine | None = None
        self._head = b""
        self._tail = b""
        self._sample: tuple[tuple[int, int, int], Layout | None, str | None, str | None] | None
        self._sample = None
        self._inferred: tuple[int, str] = (-1, "1d")

    # ---- reading ---------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Bring the arrays up to date with the file; True when the data changed.

        Raises UnknownSymbol when the file disappeared; content problems never raise.
        """
        with self.lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                raise UnknownSymbol(f"csv: {self.path.name} no longer exists") from None
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if key == self._stat:
                return False
            with open(self.path, "rb") as fh:
                if self._appendable(fh, st):
                    self._read_tail(fh, st.st_size)
                else:
                    self._read_all(fh.read())
            self._stat = key
            self.version += 1
            return True

    def _appendable(self, fh: Any, st: os.stat_result) -> bool:
        if self._stat is None or self.layout is None or self.layout.provisional:
            return False
        if st.st_ino != self._stat[0] or st.st_size <= self._size:
            return False
        if self._open is not None and not self._open.undoable:
            return False
        fh.seek(0)
        if fh.read(len(self._head)) != self._head:
            return False
        fh.seek(self._size - len(self._tail))
        return fh.read(len(self._tail)) == self._tail

    def _read_all(self, data: bytes) -> None:
        self.full_parses += 1
        self.layout = None
        self.error = None
        self._problems, self._dropped = [], 0
        self._n = 0
        self._open = None
        self._size = len(data)
        self._head = data[:_FINGERPRINT]
        self._tail = data[-_FINGERPRINT:]
        text, problems = decode(data, self.options.encoding, 1, self.path.name)
        text = text.removeprefix("\ufeff")  # byte offsets come from ``data``, lines from text
        self._add_problems(problems)
        try:
            layout, notes, body_line = _detect(text, self.options, self.path.name)
        except LayoutError as exc:
            self._fail(exc.line, exc.message)
            return
        self.layout = layout
        self._add_problems(notes)
        self._times = np.empty(16, np.int64)
        self._values = np.empty((16, len(layout.fields)))
        self._resume = data.rfind(b"\n") + 1
        self._resume_line = text.count("\n") + 1
        self._read_text(text[offset_of_line(text, body_line):], body_line)

    def _read_tail(self, fh: Any, size: int) -> None:
        self.tail_parses += 1
        if self._open is not None:  # undo the provisional last line; it is read again below
            self._n -= self._open.rows
            del self._problems[self._open.problems:]
            self._open = None
        fh.seek(self._resume)
        data = fh.read(size - self._resume)
        fh.seek(max(0, size - _FINGERPRINT))
        self._tail = fh.read(_FINGERPRINT)
        self._size = size
        text, problems = decode(data, self.options.encoding, self._resume_line, self.path.name)
        self._add_problems(problems)
        first_line = self._resume_line
        self._resume += data.rfind(b"\n") + 1
        self._resume_line += text.count("\n")
        self._read_text(text, first_line)

    def _read_text(self, text: str, first_line: int) -> None:
        """Merge the rows of ``text``. A last line without a line break may be half written by
        a live writer: it is merged separately and undone before the next appended read."""
        assert self.layout is not None
        cut = text.rfind("\n") + 1
        final, pending = text[:cut], text[cut:]
        self._merge(read_text(final, first_line, self.layout, self.options, self.path.name))
        if not pending.strip():
            return
        before_n, before_p, last = self._n, len(self._problems), self._last_time()
        block = read_text(pending, first_line + final.count("\n"), self.layout, self.options,
                          self.path.name)
        self._merge(block)
        undoable = len(block.times) == 0 or (
            len(block.times) == 1 and (last is None or int(block.times[0]) > last))
        self._open = _OpenLine(self._n - before_n, undoable, before_p)

    def _fail(self, line: int | None, message: str) -> None:
        self.error = f"{self.path.name}" + (f":{line}" if line else "") + f": {message}"
        self._add_problems([Problem(self.path.name, line, message)])

    def _add_problems(self, problems: list[Problem]) -> None:
        for p in problems:
            if len(self._problems) < MAX_PROBLEMS:
                self._problems.append(p)
                self.log.warning("%s", p)
            else:
                self._dropped += 1

    def _last_time(self) -> int | None:
        return int(self._times[self._n - 1]) if self._n else None

    def _merge(self, block: Block) -> None:
        """Add rows in file order; equal times keep the later row (as a live bar update)."""
        self._add_problems(block.problems)
        t, v = block.times, block.values
        if not len(t):
            return
        n = self._n
        in_order = bool(np.all(t[1:] > t[:-1]))
        if in_order and (n == 0 or t[0] >= self._times[n - 1]):
            if n and t[0] == self._times[n - 1]:
                self._values[n - 1] = v[0]
                t, v = t[1:], v[1:]
            self._reserve(n + len(t))
            self._times[n:n + len(t)] = t
            self._values[n:n + len(t)] = v
            self._n = n + len(t)
            return
        times = np.concatenate([self._times[:n], t])
        values = np.concatenate([self._values[:n], v])
        lines = np.concatenate([np.zeros(n, np.int64), block.lines])
        order = np.argsort(times, kind="stable")
        times, values, lines = times[order], values[order], lines[order]
        keep = np.ones(len(times), bool)
        keep[:-1] = times[1:] != times[:-1]  # last of each run of equal times wins
        if not keep.all():
            dup_lines = lines[~keep]
            first = int(dup_lines[dup_lines > 0].min()) if (dup_lines > 0).any() else None
            self._add_problems([Problem(self.path.name, first, f"{int((~keep).sum())} rows "
                                        "repeat the time of a later row; the later row wins")])
        self._times, self._values, self._n = times[keep], values[keep], int(keep.sum())

    def _reserve(self, size: int) -> None:
        if size <= len(self._times):
            return
        cap = max(size, 2 * len(self._times))  # doubling: appends are amortized O(1)
        times = np.empty(cap, np.int64)
        values = np.empty((cap, self._values.shape[1]))
        times[:self._n] = self._times[:self._n]
        values[:self._n] = self._values[:self._n]
        self._times, self._values = times, values

    # ---- what the catalog sees -------------------------------------------------------------

    def problems(self) -> list[Problem]:
        """Problems found so far (capped at MAX_PROBLEMS, then one line with the count)."""
        with self.lock:
            out = sorted(self._problems, key=lambda p: p.line or 0)
            if self._dropped:
                out.append(Problem(self.path.name, None,
                                   f"{self._dropped} more problems not listed"))
            return out

    @property
    def native_interval(self) -> str:
        """The file's bar interval: forced by option, inferred from spacing, else ``1d``."""
        if self.forced_interval:
            return self.forced_interval
        with self.lock:
            if self._n >= 2:
                if self._inferred[0] != self.version:
                    self._inferred = (self.version,
                                      infer_interval(self._times[:self._n]) or "1d")
                return self._inferred[1]
            if self._sample is not None and self._sample[3]:
                return self._sample[3]
            return "1d"

    def intervals(self) -> list[str]:
        return coarser_intervals(self.native_interval)

    def describe(self) -> tuple[Layout | None, str | None, list[str]]:
        """``(layout, error, intervals)`` for the catalog, reading only the file's head when it
        was never loaded (a folder of many large files stays cheap to list)."""
        with self.lock:
            if self._stat is not None:
                self.refresh()
                return self.layout, self.error, self.intervals()
            st = os.stat(self.path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self._sample is None or self._sample[0] != key:
                if st.st_size <= SAMPLE_BYTES:
                    self.refresh()
                    return self.layout, self.error, self.intervals()
                self._sample = (key, *self._read_sample())
            _, layout, error, native = self._sample
            return layout, error, coarser_intervals(self.forced_interval or native or "1d")

    def _read_sample(self) -> tuple[Layout | None, str | None, str | None]:
        with open(self.path, "rb") as fh:
            data = fh.read(SAMPLE_BYTES)
        data = data[:data.rfind(b"\n") + 1]
        text, _ = decode(data, self.options.encoding, 1, self.path.name)
        text = text.removeprefix("\ufeff")
        try:
            layout, _, body_line = _detect(text, self.options, self.path.name)
        except LayoutError as exc:
            return None, f"{self.path.name}:{exc.line}: {exc.message}", None
        block = read_text(text[offset_of_line(text, body_line):], body_line, layout,
                          self.options, self.path.name)
        return layout, None, infer_interval(np.unique(block.times))

    # ---- history ----------------------------------------------------------------------------

    def bars(self, interval: str, start: int | None = None, end: int | None = None,
             count: int | None = None, first: int | None = None) -> list[dict]:
        """Rows of bars starting in ``[start, end)``: the newest ``count`` or the oldest
        ``first`` of them. Coarser intervals than the file's are resampled (open first, high
        max, low min, close last, volume sum, line columns last). Call :meth:`refresh` first."""
        with self.lock:
            if self.layout is None:
                raise BadRequest(f"csv: {self.symbol!r} cannot be served: {self.error}")
            supported = self.intervals()
            check_interval(interval, supported)
            if count == 0:
                return []
            t = self._times[:self._n]
            if interval == self.native_interval:
                lo = 0 if start is None else int(np.searchsorted(t, start))
                hi = len(t) if end is None else int(np.searchsorted(t, end))
                lo, hi = _limit(lo, hi, count, first)
                return self._rows(t[lo:hi], self._values[lo:hi])
            return self._resampled(t, interval, start, end, count, first)

    def _resampled(self, t: np.ndarray, interval: str, start: int | None, end: int | None,
                   count: int | None, first: int | None) -> list[dict]:
        assert self.layout is not None
        lo, hi = whole_bar_rows(t, interval, start, end, count, first)
        if lo >= hi:
            return []
        return self._rows(*resample(t[lo:hi], self._values[lo:hi], self.layout, interval))

    def _rows(self, times: np.ndarray, values: np.ndarray) -> list[dict]:
        assert self.layout is not None
        keys = ("time", "symbol", *self.layout.fields)
        cols = []
        for k in range(values.shape[1]):
            col = values[:, k]
            items = col.tolist()
            if np.isnan(col).any():
                items = [None if x != x else x for x in items]
            cols.append(items)
        rows = zip(times.tolist(), repeat(self.symbol), *cols, strict=False)
        return [dict(zip(keys, vals, strict=True)) for vals in rows]

    def __len__(self) -> int:
        return self._n

    def last_time(self) -> int | None:
        """Time of the newest row, or None for a file without rows."""
        with self.lock:
            return self._last_time()


def _detect(text: str, options: ReadOptions, path: str) -> tuple[Layout, list[Problem], int]:
    """Layout and notes from the head of ``text``, and the line where data rows start."""
    rows = split_rows(head_text(text, SAMPLE_ROWS + 50), 1, options.delimiter)
    found = rows.nonblank(0, SAMPLE_ROWS + 1)
    if not found:
        raise LayoutError(None, "empty file: no header line")
    head = found[0]
    layout, notes = detect_layout(rows.fields[head], [rows.fields[i] for i in found[1:]],
                                  options, int(rows.lines[head]), path)
    body_line = int(rows.lines[head + 1]) if head + 1 < len(rows) else int(rows.lines[head]) + 1
    return layout, notes, body_line


def _limit(lo: int, hi: int, count: int | None, first: int | None) -> tuple[int, int]:
    if count is not None:
        lo = max(lo, hi - count)
    if first is not None:
        hi = min(hi, lo + first)
    return lo, max(lo, hi)
