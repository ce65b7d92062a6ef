"""Rows as text fields and CSV: one set of rules for the REST download and the ``nbfeed`` command.

Rows are flat dicts (docs/internals.md). The rules, stated once:

- ``time`` (epoch ms) is ISO 8601 UTC (:func:`nbfeed.timeutil.ms_to_iso`);
- None, NaN and infinities are empty fields (JSON-bound output uses ``null`` instead);
- floats keep full precision (``repr``), so a value read back is the value written;
- lists (a symbol's categories or intervals) are joined with commas;
- columns come in first-seen order, with ``time``, ``source``, ``symbol`` and ``name`` first.

:func:`columns_csv` writes :class:`~nbfeed.columns.Columns` by the same rules, a column at a
time (no dict per row): the REST download streams big answers that way, a slice per piece.

Writers raise ``BrokenPipeError`` when the reader went away (``| head``); callers decide what that
means.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any, TextIO

import numpy as np

from .columns import Columns
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


def columns_order(bars: Columns, leading: Sequence[str] = LEADING) -> list[str]:
    """The CSV columns of ``bars``: :func:`columns_of`'s order for the rows they hold."""
    names = bars.names
    first = [c for c in leading if c in names]
    return first + [c for c in names if c not in first]


def columns_csv(bars: Columns, columns: Sequence[str], *, header: bool = True) -> str:
    """``bars`` as CSV text in ``columns`` (with a header line unless ``header`` is False);
    the same text :func:`rows_to_csv` writes for ``bars.rows()``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(columns)
    if len(bars):
        writer.writerows(zip(*(_column_text(bars, c) for c in columns)))
    return out.getvalue()


_ISO_LOW = -30_610_224_000_000  # 1000-01-01: numpy and ms_to_iso write the same text above
_ISO_HIGH = 253_402_300_800_000  # 10000-01-01


def _iso_times(ms: np.ndarray) -> list[str]:
    """:func:`~nbfeed.timeutil.ms_to_iso` of every value, vectorized."""
    if not len(ms) or int(ms.min()) < _ISO_LOW or int(ms.max()) >= _ISO_HIGH:
        return [ms_to_iso(t) for t in ms.tolist()]
    stamps = ms.astype("datetime64[ms]")
    text = np.datetime_as_string(stamps, unit="s", timezone="UTC")
    fractional = ms % 1000 != 0
    if fractional.any():
        text = text.astype(object)
        text[fractional] = np.datetime_as_string(stamps[fractional], unit="ms", timezone="UTC")
    return text.tolist()


def _column_text(bars: Columns, name: str) -> Iterable[str]:
    n = len(bars)
    if name == "time":
        return _iso_times(bars.time)
    batch_symbol = "" if bars.symbol is None else str(bars.symbol)
    if name == "symbol" and "symbol" not in bars.fields:
        return repeat(batch_symbol, n)
    if name not in bars.fields:
        return repeat("", n)
    arr = bars.fields[name]
    kind = arr.dtype.kind
    if kind == "f":
        text = list(map(float.__repr__, arr.tolist()))
        for i in np.flatnonzero(~np.isfinite(arr)).tolist():
            text[i] = ""
    elif kind in "ib":
        text = list(map(str, arr.tolist()))
    else:
        text = [field_text(name, v) for v in arr.tolist()]
    mask = bars.masks.get(name)
    if mask is not None:
        missing = batch_symbol if name == "symbol" else ""  # a row without one has the batch's
        for i in np.flatnonzero(~mask).tolist():
            text[i] = missing
    return text
