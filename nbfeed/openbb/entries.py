"""A table definition from a notebook, checked into the ``widgets.json`` entry Workspace gets.

Both sides use it: the kernel (:mod:`nbfeed.client.publish`) to show a bad definition where it
was written, and the server (:mod:`nbfeed.server_ext.workspace.published`) because it never
trusts what a kernel sends - one invalid entry makes Workspace reject the whole backend.

Errors are :class:`~nbfeed.errors.BadRequest` (or :class:`~nbfeed.errors.LimitExceeded` for
sizes) naming the bad field and what is accepted.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import BadRequest, LimitExceeded, shown
from ..jsonfast import lone_surrogate_at, nan_to_none
from .schema import MIN_INTERVAL_MS, check_widget, column_problems

MAX_ROWS = 10_000
MAX_COLUMNS = 200
MAX_TEXT = 200
#: Published tables appear in widgets.json as ``WIDGET_PREFIX + id``.
WIDGET_PREFIX = "nbfeed_nb_"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_DEFINITION_KEYS = frozenset({"id", "name", "description", "category", "subCategory", "columns",
                              "refetchInterval", "gridData", "rows"})


def _text(body: dict, key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise BadRequest(f"{key} must be a non-empty string, got {shown(value, 60)}")
    if len(value) > (MAX_TEXT if key != "description" else 5 * MAX_TEXT):
        raise BadRequest(f"{key} is too long ({len(value)} characters)")
    return value


def check_id(value: Any) -> str:
    """A published table's id: 1-64 letters, digits, ``_`` or ``-``, starting alphanumeric."""
    if not isinstance(value, str) or not _ID.match(value):
        raise BadRequest(f"widget id must be 1-64 characters of letters, digits, '_' or '-' "
                         f"starting with a letter or digit, got {shown(value, 60)}")
    return value


def _refuse_lone_surrogates(value: Any, where: str = "") -> None:
    """BadRequest naming the first text in ``value`` that is not valid Unicode (a lone
    surrogate cannot be written as UTF-8: it would break every reply it appears in)."""
    found = lone_surrogate_at(value, where)
    if found is not None:
        raise BadRequest(f"{found}: text with a lone surrogate (like \\ud800) is not valid "
                         "Unicode")


def check_rows(rows: Any) -> list[dict]:
    """Rows as a list of flat objects of JSON scalars (non-finite floats become null); text
    must be valid Unicode."""
    if not isinstance(rows, list):
        raise BadRequest(f"rows must be a list of objects, got {type(rows).__name__}")
    if len(rows) > MAX_ROWS:
        raise LimitExceeded(f"{len(rows)} rows; a published table holds at most {MAX_ROWS}")
    _refuse_lone_surrogates(rows, "rows")
    out = []
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadRequest(f"rows[{n}] must be an object, got {type(row).__name__}")
        clean = {}
        for key, value in row.items():
            if not isinstance(key, str):
                raise BadRequest(f"rows[{n}]: field names must be strings, got {shown(key, 40)}")
            value = nan_to_none(value)
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise BadRequest(f"rows[{n}].{key}: values must be text, numbers, booleans or "
                                 f"null, got {type(value).__name__}")
            clean[key] = value
        out.append(clean)
    return out


def build_entry(body: dict) -> tuple[str, dict]:
    """The id and validated widgets.json entry of a notebook's definition (rows not included).

    The entry's ``endpoint`` (``published/<id>``) is relative to the backend's base URL.
    """
    if not isinstance(body, dict):
        raise BadRequest(f"the widget definition must be a JSON object, got {type(body).__name__}")
    _refuse_lone_surrogates({k: v for k, v in body.items() if k != "rows"})
    extra = sorted(str(k) for k in body if k not in _DEFINITION_KEYS)
    if extra:
        raise BadRequest(f"unknown field(s) {', '.join(extra)}; accepted: "
                         f"{', '.join(sorted(_DEFINITION_KEYS))}")
    wid = check_id(body.get("id"))
    columns = body.get("columns")
    if not isinstance(columns, list) or not columns:
        raise BadRequest("columns must be a non-empty list of column definitions")
    if len(columns) > MAX_COLUMNS:
        raise LimitExceeded(f"{len(columns)} columns; the limit is {MAX_COLUMNS}")
    for i, col in enumerate(columns):
        problems = column_problems(col, f"columns[{i}]")
        if problems:
            raise BadRequest("; ".join(problems[:5]))
    entry: dict[str, Any] = {
        "name": _text(body, "name"),
        "description": _text(body, "description", ""),
        "type": "table",
        "category": _text(body, "category", "Notebook") or "Notebook",
        "endpoint": f"published/{wid}",
        "data": {"table": {"showAll": True, "columnsDefs": [dict(c) for c in columns]}},
    }
    sub = body.get("subCategory")
    if sub:
        entry["subCategory"] = _text(body, "subCategory")
    refetch = body.get("refetchInterval")
    if refetch is not None:
        if isinstance(refetch, bool) or not isinstance(refetch, int) or refetch < MIN_INTERVAL_MS:
            raise BadRequest(f"refetchInterval must be >= {MIN_INTERVAL_MS} ms, got "
                             f"{shown(refetch, 40)}")
        entry["refetchInterval"] = refetch
        entry["staleTime"] = refetch
    grid = body.get("gridData")
    entry["gridData"] = grid if grid is not None else {"w": 20, "h": 10}
    check_widget(WIDGET_PREFIX + wid, entry)
    return wid, entry
