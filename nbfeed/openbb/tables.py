"""DataFrames and lists of dicts as Workspace table columns and rows.

:func:`to_table` turns what a notebook function returns into ``columnsDefs`` and rows that the
server accepts (:mod:`.entries`) and the grid shows: times as ISO strings, NaN/NaT as null,
numpy scalars as plain numbers, and field names without the characters the grid would misread
(a ``.`` is a path into nested objects there); the original name stays as the header.
No Jupyter imports; pandas only when given a DataFrame.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import BadRequest, LimitExceeded
from ..jsonfast import nan_to_none
from .entries import MAX_ROWS

_FIELD = re.compile(r"[^A-Za-z0-9_]+")


def _field_names(names: list[Any]) -> list[str]:
    out: list[str] = []
    for name in names:
        field = _FIELD.sub("_", str(name)).strip("_") or "column"
        base, n = field, 2
        while field in out:
            field, n = f"{base}_{n}", n + 1
        out.append(field)
    return out


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return nan_to_none(value)
    if hasattr(value, "isoformat"):
        try:
            import pandas as pd

            if pd.isna(value):
                return None
        except (ImportError, TypeError, ValueError):
            pass
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _cell(value.item())
    return str(value)


def _kind(values: list[Any]) -> str:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return "boolean"
    if isinstance(sample, (int, float)):
        return "number"
    return "text"


def to_table(data: Any) -> tuple[list[dict], list[dict]]:
    """``(columnsDefs, rows)`` of a DataFrame (a non-default index becomes columns) or a list
    of dicts. Times become ISO strings, NaN/NaT null; field names are made grid-safe (letters,
    digits, ``_``) and the original name is kept as the header."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        import pandas as pd

        df = data
        if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
            df = df.reset_index()
        headers = [str(c) for c in df.columns]
        columns_data = []
        types = []
        for col in df.columns:
            series = df[col]
            kind = series.dtype.kind
            if kind == "M":
                values = [None if pd.isna(v) else pd.Timestamp(v).isoformat() for v in series]
                types.append("date")
            else:
                values = [_cell(v) for v in series.tolist()]
                types.append("boolean" if kind == "b" else "number" if kind in "iuf"
                             else _kind(values))
            columns_data.append(values)
        fields = _field_names(headers)
        rows = [dict(zip(fields, vals)) for vals in zip(*columns_data)] if fields else []
    elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
        headers = list(dict.fromkeys(str(k) for r in data for k in r))
        fields = _field_names(headers)
        rename = dict(zip(headers, fields))
        rows = [{rename[str(k)]: _cell(v) for k, v in r.items()} for r in data]
        types = [_kind([r.get(f) for r in rows]) for f in fields]
    else:
        raise BadRequest(f"a Workspace widget function must return a DataFrame or a list of "
                         f"dicts, got {type(data).__name__}")
    if len(rows) > MAX_ROWS:
        raise LimitExceeded(f"{len(rows)} rows; Workspace tables from notebooks hold at most "
                            f"{MAX_ROWS} (return df.tail({MAX_ROWS}) or aggregate)")
    columns = [{"field": f, "headerName": h, "cellDataType": t}
               for f, h, t in zip(fields, headers, types)]
    return columns, rows
