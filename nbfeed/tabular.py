"""Rows as text fields and CSV: one set of rules for the REST download and the ``nbfeed`` command.

Rows are flat dicts (docs/internals.md). The rules, stated once:

- ``time`` (epoch ms) is ISO 8601 UTC (:func:`nbfeed.timeutil.ms_to_iso`);
- None, NaN and infinities are empty fields (JSON-bound output uses ``null`` instead);
- floats keep full precision (``repr``), so a value read back is the value written;
- lists (a symbol's categories or intervals) are joined with commas;
- columns come in first-seen order, with ``time``, ``source``, ``symbol`` and ``name`` first.

Writers raise ``BrokenPipeError`` when the reader went away (``| head``); callers decide what that
means.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from .jsonfast import nan_to_none
from .timeutil import ms_to_iso

TIME_FIELDS = ("time",)
LEADING = ("time", "source", "symbol", "name")


def columns_of(rows: Iterable[dict], leading: Sequence[str] = LEADING) -> list[str]:
    """Every field of ``rows`` in first-seen order, with ``leading`` fields (if present) first."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    first = [c for c in leading if c in seen]
    return first + [c for c in seen if c not in first]


def is_time(column: str, value: Any) -> bool:
    """Whether ``value`` of ``column`` is an epoch-ms time to show as ISO."""
    return column in TIME_FIELDS and isinstance(value, int) and not isinstance(value, bool)


def is_missing(value: Any) -> bool:
    """None, NaN or an infinity: a value that is shown as nothing."""
    return nan_to_none(value) is None


def field_text(column: str, value: Any) -> str:
    """A value as a CSV field (see module docstring)."""
    if is_missing(value):
        return ""
    if is_time(column, value):
        return ms_to_iso(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def write_csv(rows: Iterable[dict], columns: Sequence[str], out: TextIO) -> None:
    """CSV with a header line; ``\\n`` line ends (what Unix tools expect)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([field_text(c, row.get(c)) for c in columns])


def rows_to_csv(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """``rows`` as CSV text (columns: :func:`columns_of` unless given)."""
    out = io.StringIO()
    write_csv(rows, columns if columns is not None else columns_of(rows), out)
    return out.getvalue()
