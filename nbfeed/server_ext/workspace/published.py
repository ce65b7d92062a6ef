"""Tables that notebooks publish to Workspace: definitions and their latest rows, in memory.

A notebook (``nbfeed.workspace.widget``) runs its function *in the kernel* and pushes the
resulting rows here; Workspace then reads them from ``published/<id>`` like any other table, and
polls with ``refetchInterval`` when the notebook refreshes periodically. The server never calls
back into a kernel: data is exactly as fresh as the last push, and stays served when the kernel
goes away, until the notebook deletes it or the server restarts.

Everything a notebook sends is validated before it can reach widgets.json, since one invalid
entry makes Workspace reject the whole backend: ids, names, column definitions (against
:mod:`.schema`) and rows (flat JSON scalars, bounded sizes). Errors are :class:`BadRequest` naming
the bad value.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

from ...errors import BadRequest, LimitExceeded, NBFeedError
from .schema import MIN_INTERVAL_MS, check_widget, column_problems

MAX_WIDGETS = 50
MAX_ROWS = 10_000
MAX_COLUMNS = 200
MAX_TEXT = 200
WIDGET_PREFIX = "nbfeed_nb_"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_DEFINITION_KEYS = frozenset({"id", "name", "description", "category", "subCategory", "columns",
                              "refetchInterval", "gridData", "rows"})


class UnknownWidget(NBFeedError, KeyError):
    code = "unknown_widget"
    http_status = 404

    def __str__(self) -> str:
        return self.message


@dataclass
class Published:
    id: str
    entry: dict          # the widgets.json entry; endpoint relative to the backend base
    rows: list[dict]
    updated_ms: int

    @property
    def widget_id(self) -> str:
        return WIDGET_PREFIX + self.id


def _text(body: dict, key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise BadRequest(f"{key} must be a non-empty string, got {value!r:.60}")
    if len(value) > (MAX_TEXT if key != "description" else 5 * MAX_TEXT):
        raise BadRequest(f"{key} is too long ({len(value)} characters)")
    return value


def check_id(value: Any) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise BadRequest(f"widget id must be 1-64 characters of letters, digits, '_' or '-' "
                         f"starting with a letter or digit, got {value!r:.60}")
    return value


def check_rows(rows: Any) -> list[dict]:
    """Rows as a list of flat objects of JSON scalars (non-finite floats become null)."""
    if not isinstance(rows, list):
        raise BadRequest(f"rows must be a list of objects, got {type(rows).__name__}")
    if len(rows) > MAX_ROWS:
        raise LimitExceeded(f"{len(rows)} rows; a published table holds at most {MAX_ROWS}")
    out = []
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadRequest(f"rows[{n}] must be an object, got {type(row).__name__}")
        clean = {}
        for key, value in row.items():
            if not isinstance(key, str):
                raise BadRequest(f"rows[{n}]: field names must be strings, got {key!r:.40}")
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            elif value is not None and not isinstance(value, (str, int, float, bool)):
                raise BadRequest(f"rows[{n}].{key}: values must be text, numbers, booleans or "
                                 f"null, got {type(value).__name__}")
            clean[key] = value
        out.append(clean)
    return out


def build_entry(body: dict) -> tuple[str, dict]:
    """The validated widgets.json entry for a notebook's definition (rows not included)."""
    if not isinstance(body, dict):
        raise BadRequest(f"the widget definition must be a JSON object, got {type(body).__name__}")
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
                             f"{refetch!r:.40}")
        entry["refetchInterval"] = refetch
        entry["staleTime"] = refetch
    grid = body.get("gridData")
    entry["gridData"] = grid if grid is not None else {"w": 20, "h": 10}
    check_widget(WIDGET_PREFIX + wid, entry)
    return wid, entry


class PublishedStore:
    """The published tables of this server (in memory; bounded by ``max_widgets``)."""

    def __init__(self, max_widgets: int = MAX_WIDGETS) -> None:
        self.max_widgets = max_widgets
        self._items: dict[str, Published] = {}

    def put(self, body: Any) -> Published:
        """Create or replace a table from a definition with ``rows``."""
        wid, entry = build_entry(body)
        rows = check_rows(body.get("rows", []))
        if wid not in self._items and len(self._items) >= self.max_widgets:
            raise LimitExceeded(f"{self.max_widgets} published widgets already; delete one "
                                f"first ({', '.join(sorted(self._items)[:10])})")
        item = self._items[wid] = Published(wid, entry, rows, _now_ms())
        return item

    def set_rows(self, wid: str, rows: Any) -> Published:
        item = self.get(wid)
        item.rows = check_rows(rows)
        item.updated_ms = _now_ms()
        return item

    def get(self, wid: str) -> Published:
        item = self._items.get(wid)
        if item is None:
            raise UnknownWidget(f"no published widget {wid!r:.80}; published: "
                                f"{', '.join(sorted(self._items)) or '(none)'}")
        return item

    def remove(self, wid: str) -> None:
        self.get(wid)
        del self._items[wid]

    def entries(self) -> dict[str, dict]:
        """widgets.json entries keyed by widget id (endpoints relative to the backend)."""
        return {item.widget_id: item.entry for item in self._items.values()}

    def summary(self) -> list[dict]:
        return [{"id": i.id, "widget_id": i.widget_id, "name": i.entry["name"],
                 "rows": len(i.rows), "updated_ms": i.updated_ms}
                for i in self._items.values()]

    def __len__(self) -> int:
        return len(self._items)


def _now_ms() -> int:
    return int(time.time() * 1000)
