"""Tables that notebooks publish to Workspace: definitions and their latest rows, in memory.

A notebook (``nbfeed.workspace.widget``) runs its function *in the kernel* and pushes the
resulting rows here; Workspace then reads them from ``published/<id>`` like any other table, and
polls with ``refetchInterval`` when the notebook refreshes periodically. The server never calls
back into a kernel: data is exactly as fresh as the last push, and stays served when the kernel
goes away, until the notebook deletes it or the server restarts.

Everything a notebook sends is validated before it can reach widgets.json, since one invalid
entry makes Workspace reject the whole backend (:mod:`nbfeed.openbb.entries`: ids, names, column
definitions, rows as flat JSON scalars, bounded sizes). Errors are :class:`BadRequest` naming the
bad value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ...errors import LimitExceeded, NBFeedError, shown
from ...openbb.entries import WIDGET_PREFIX, build_entry, check_rows

MAX_WIDGETS = 50


class UnknownWidget(NBFeedError, KeyError):
    """No table of that id is published (HTTP 404)."""

    code = "unknown_widget"
    http_status = 404

    def __str__(self) -> str:
        return self.message


@dataclass
class Published:
    """One published table: its widgets.json entry and the rows last pushed."""

    id: str
    entry: dict          # the widgets.json entry; endpoint relative to the backend base
    rows: list[dict]
    updated_ms: int

    @property
    def widget_id(self) -> str:
        return WIDGET_PREFIX + self.id


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
            raise UnknownWidget(f"no published widget {shown(wid)}; published: "
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
