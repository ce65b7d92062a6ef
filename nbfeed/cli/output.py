"""How the ``nbfeed`` command prints rows: aligned tables for people, CSV and JSON for pipes.

The rules for values are :mod:`nbfeed.tabular`'s, which the REST CSV download follows too:
``time`` (epoch ms) is printed as ISO 8601 UTC in every format, so output of different commands
lines up and pastes into anything that reads dates. Lists are joined with commas in tables and CSV
and stay lists in JSON. Missing values and NaN are empty cells (table, CSV) or ``null`` (JSON,
which has no NaN). Tables show floats with 10 significant digits; CSV keeps full precision.

Writers raise ``BrokenPipeError`` when the reader went away (``| head``); the command treats that
as a normal end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from ..jsonfast import nan_to_none
from ..tabular import TIME_FIELDS, columns_of, field_text, is_missing, is_time, write_csv
from ..timeutil import ms_to_iso

FORMATS = ("table", "csv", "json")

def cell_text(column: str, value: Any) -> str:
    """A value as a table cell: a CSV field (:func:`nbfeed.tabular.field_text`), but floats
    compact (10 significant digits)."""
    if isinstance(value, float) and not is_missing(value):
        return f"{value:.10g}"
    return field_text(column, value)


def json_row(row: dict) -> dict:
    """A row ready for ``json.dumps``: ISO times, NaN/inf as ``None``."""
    return {key: ms_to_iso(value) if is_time(key, value) else nan_to_none(value)
            for key, value in row.items()}


def _numeric(values: Iterable[Any]) -> bool:
    found = False
    for v in values:
        if is_missing(v):
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
