"""How the ``nbfeed`` command prints rows: aligned tables for people, CSV and JSON for pipes.

Rows are flat dicts (see docs/internals.md). ``time`` (epoch ms) is printed as ISO 8601 UTC in
every format, so output of different commands lines up and pastes into anything that reads dates.
Lists (a symbol's categories or intervals) are joined with commas in tables and CSV and stay lists
in JSON. Missing values and NaN are empty cells (table, CSV) or ``null`` (JSON, which has no NaN).

Writers raise ``BrokenPipeError`` when the reader went away (``| head``); the command treats that
as a normal end.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

FORMATS = ("table", "csv", "json")
TIME_FIELDS = ("time",)
_LEADING = ("time", "source", "symbol", "name")


def columns_of(rows: Iterable[dict], leading: Sequence[str] = _LEADING) -> list[str]:
    """Every field of ``rows`` in first-seen order, with ``leading`` fields (if present) first."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    first = [c for c in leading if c in seen]
    return first + [c for c in seen if c not in first]


def iso_time(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC with a ``Z``: whole seconds when exact, else milliseconds."""
    try:
        dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):  # far outside datetime's range: keep the number
        return str(ms)
    spec = "seconds" if ms % 1000 == 0 else "milliseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


def _is_time(column: str, value: Any) -> bool:
    return column in TIME_FIELDS and isinstance(value, int) and not isinstance(value, bool)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def cell_text(column: str, value: Any) -> str:
    """A value as a table cell: ISO times, compact floats (10 significant digits), joined lists."""
    if _missing(value):
        return ""
    if _is_time(column, value):
        return iso_time(value)
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def csv_text(column: str, value: Any) -> str:
    """A value as a CSV field: like a table cell, but floats keep full precision."""
    if isinstance(value, float) and not _missing(value):
        return repr(value)
    return cell_text(column, value)


def json_row(row: dict) -> dict:
    """A row ready for ``json.dumps``: ISO times, NaN/inf as ``None``."""
    out = {}
    for key, value in row.items():
        if _is_time(key, value):
            value = iso_time(value)
        elif _missing(value):
            value = None
        out[key] = value
    return out


def _numeric(values: Iterable[Any]) -> bool:
    found = False
    for v in values:
        if _missing(v):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        found = True
    return found


def write_table(rows: Sequence[dict], columns: Sequence[str], out: TextIO) -> None:
    """An aligned text table with a header; numeric columns (except time) right-aligned."""
    cells = [[cell_text(c, row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    right = [c not in TIME_FIELDS and _numeric(row.get(c) for row in rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "  ".join(parts).rstrip()

    out.write(line(list(columns)) + "\n")
    for values in cells:
        out.write(line(values) + "\n")


def write_csv(rows: Iterable[dict], columns: Sequence[str], out: TextIO) -> None:
    """CSV with a header line; ``\\n`` line ends (what Unix tools expect)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_text(c, row.get(c)) for c in columns])


def write_json(rows: Iterable[dict], out: TextIO) -> None:
    """A JSON array, one row per line (valid JSON and still readable with ``grep``)."""
    out.write("[")
    sep = "\n"
    for row in rows:
        out.write(sep + json.dumps(json_row(row), default=str))
        sep = ",\n"
    out.write("\n]\n" if sep != "\n" else "]\n")


def write_rows(rows: Sequence[dict], fmt: str, out: TextIO,
               columns: Sequence[str] | None = None) -> None:
    """Write ``rows`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        write_json(rows, out)
        return
    cols = list(columns) if columns is not None else columns_of(rows)
    if fmt == "csv":
        write_csv(rows, cols, out)
    else:
        write_table(rows, cols, out)


class LiveTable:
    """A table printed row by row as a stream delivers them (``nbfeed stream``).

    Columns and widths are fixed by the first rows seen (a live tail cannot know later widths);
    a wider value later shifts its line rather than being cut. Fields that appear later are only
    shown by the JSON format.
    """

    def __init__(self, out: TextIO, min_widths: dict[str, int] | None = None) -> None:
        self.out = out
        self.min_widths = dict(min_widths or {})
        self.columns: list[str] | None = None
        self.widths: list[int] = []
        self.right: list[bool] = []

    def write(self, rows: Sequence[dict]) -> None:
        if not rows:
            return
        if self.columns is None:
            self.columns = columns_of(rows)
            self.right = [c not in TIME_FIELDS and _numeric(r.get(c) for r in rows)
                          for c in self.columns]
            # Numbers get 2 characters of slack: a price or volume that grows a digit (or loses
            # a trailing zero) keeps the columns aligned. Times have a fixed width.
            self.widths = [max(len(c), self.min_widths.get(c, 0),
                               *(len(cell_text(c, r.get(c))) + 2 * num for r in rows))
                           for c, num in zip(self.columns, self.right)]
            self._line(list(self.columns))
        for row in rows:
            self._line([cell_text(c, row.get(c)) for c in self.columns])

    def _line(self, values: Sequence[str]) -> None:
        parts = [v.rjust(w) if r else v.ljust(w)
                 for v, w, r in zip(values, self.widths, self.right)]
        self.out.write("  ".join(parts).rstrip() + "\n")


def write_json_lines(rows: Iterable[dict], out: TextIO) -> None:
    """One JSON object per line (NDJSON): the streaming form, for ``jq`` and friends."""
    for row in rows:
        out.write(json.dumps(json_row(row), default=str) + "\n")
