"""The viewport protocol of a LiveGrid: which rows the page sees, what it was sent, and when.

The browser shows a window of the display order (rows ``first..last``). The kernel sends it
*frames*: the rows of that window (plus a margin of one screen above and below, so a small
scroll needs no round trip; the whole table when it is small) that changed since they were last
sent - a row is identified by its ``uid`` and compared by its ``version``, so an unchanged row
is never re-sent, and a row that moved (sorting) is sent at its new position.

**Pacing (back-pressure).** The page acknowledges each frame after it has drawn it
(``{"type": "ack", "seq"}``). The kernel sends the next frame only once the previous one is
acknowledged, and never more often than ``flush_hz``: a page that draws slowly gets fewer,
fuller frames instead of a growing backlog, so what is on screen is never more than one frame
old. If no acknowledgement comes within :data:`ACK_TIMEOUT` s (no view open yet, the tab is
hidden), the kernel sends a *full* frame (every row of the window, ``reset``) at most once per
:data:`ACK_TIMEOUT`, so a view that opens late or lost messages heals within a second.

While a cell is running the kernel cannot read acknowledgements (they queue behind the cell),
so waiting for them would freeze the grid: then frames go at ``flush_hz`` without waiting, with
a full frame every :data:`ACK_TIMEOUT` for views that opened meanwhile. The page draws each
frame cheaply (one canvas, changed rows only), so this cannot build a backlog that matters.

Frame wire format (a custom widget message): JSON content ``{"type": "frame", "seq", "reset",
"total", "sent_ms", "pos": [display positions], "uid": [row uids], "text": {field: [str|None]},
"num": [fields], "flash": [fields], "sort", "ups"}`` and binary buffers: one little-endian
float64 array per ``num`` field (times as epoch ms, NaN for a missing value), then one int8
array per ``flash`` field (+1 rose, -1 fell, 0 unchanged since the previous frame).

Not thread-safe: the grid holds its lock around every call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .grid_table import GridTable

ACK_TIMEOUT = 1.0
"""Seconds without an acknowledgement after which the kernel stops waiting for one."""
SMALL_TABLE = 300
"""Tables up to this many rows are sent whole: scrolling them never waits for the kernel."""
MAX_PAGE_ROWS = 500
"""The most rows one page may show at once (a 10,000 px tall grid); larger requests are cut."""


class Viewport:
    """The page's window onto the display order, what it was last sent, and the pacing."""

    def __init__(self, flush_hz: float, page_rows: int = 20) -> None:
        self.period = 1.0 / flush_hz
        self.first, self.last = 0, page_rows - 1
        self._sent_uid: dict[int, int] = {}  # display position -> uid last sent there
        self._sent_version: dict[int, int] = {}
        self.seq = 0
        self.acked = 0
        self.sent_at = -float("inf")
        self.acked_at = -float("inf")
        self.cut_at = 0.0  # monotonic time up to which changes went into a frame
        self.reset_at = 0.0

    # ---------------------------------------------------------------- page messages

    def set_view(self, first: int, last: int) -> None:
        """The page scrolled or resized: it now shows rows ``first..last``."""
        last = min(last, first + MAX_PAGE_ROWS - 1)
        self.first, self.last = first, max(first, last)

    def ack(self, seq: int) -> None:
        """The page drew frame ``seq``."""
        if 0 < seq <= self.seq and seq > self.acked:
            self.acked = seq
            self.acked_at = time.monotonic()

    def reset(self) -> None:
        """Forget what the page holds: the next frame sends the whole window."""
        self._sent_uid.clear()
        self._sent_version.clear()

    # ---------------------------------------------------------------- pacing

    def next_send_at(self, now: float, cell_running: bool = False) -> float:
        """The earliest instant the next frame may go (now or later)."""
        earliest = self.sent_at + self.period
        if self.seq > self.acked and not cell_running:  # the page has not drawn the last one
            earliest = max(earliest, self.sent_at + ACK_TIMEOUT)
        return max(now, earliest)

    # ---------------------------------------------------------------- frames

    def window(self, total: int) -> tuple[int, int]:
        """Display positions ``[w0, w1)`` the page should hold."""
        if total <= SMALL_TABLE:
            return 0, total
        shown = self.last - self.first + 1
        w0 = max(0, self.first - shown)
        return w0, min(total, self.last + 1 + shown)

    def changed(self, order: np.ndarray, table: GridTable) -> tuple[np.ndarray, np.ndarray]:
        """Display positions of the window that differ from what was last sent there, and the
        storage positions of their rows."""
        w0, w1 = self.window(len(order))
        positions = np.arange(w0, w1)
        storage = order[w0:w1]
        uids, versions = table.uids[storage], table.versions[storage]
        sent_uid, sent_version = self._sent_uid, self._sent_version
        stale = [i for i, (p, u, v) in enumerate(zip(positions.tolist(), uids.tolist(),
                                                     versions.tolist()))
                 if sent_uid.get(p) != u or sent_version.get(p) != v]
        # Positions beyond the window: the page may keep them (stale); forget them here so
        # that they are sent again when they come back into the window.
        for p in [p for p in sent_uid if p < w0 or p >= w1]:
            del sent_uid[p]
            sent_version.pop(p, None)
        idx = np.array(stale, dtype=np.int64)
        return positions[idx], storage[idx]

    def build(self, table: GridTable, order: np.ndarray, *, now: float, text_fields: Sequence[str],
              num_fields: Sequence[str], extra: Mapping[str, Any]) -> tuple[dict, list] | None:
        """The next frame (content, buffers), or None when the page is up to date.

        Marks the rows as sent and advances the sequence; the caller sends the result.
        """
        reset = self.seq > self.acked and (now - self.sent_at >= ACK_TIMEOUT
                                           or now - self.reset_at >= ACK_TIMEOUT)
        if reset:
            self.reset_at = now
            self.reset()
        positions, storage = self.changed(order, table)
        total = len(order)
        if not len(positions) and not reset and not extra.get("force"):
            return None
        rows = storage.tolist()
        flashes = table.directions_since(storage, self.cut_at)
        flash_fields = [f for f, d in flashes.items() if d.any()]
        self.seq += 1
        content = {
            "type": "frame", "seq": self.seq, "reset": reset, "total": total,
            "sent_ms": time.time() * 1000.0, "pos": positions.tolist(),
            "uid": table.uids[storage].tolist(),
            "text": {f: table.cells(f, rows) for f in text_fields},
            "num": list(num_fields), "flash": flash_fields,
            **{k: v for k, v in extra.items() if k != "force"},
        }
        buffers = [np.asarray(table.cells(f, rows), dtype="<f8").tobytes() for f in num_fields]
        buffers += [flashes[f].tobytes() for f in flash_fields]
        for p, u, v in zip(positions.tolist(), content["uid"],
                           table.versions[storage].tolist()):
            self._sent_uid[p] = u
            self._sent_version[p] = v
        self.sent_at = now
        self.cut_at = now
        return content, buffers


class CellActivity:
    """Whether the IPython kernel this runs in is executing a cell (its acks are stuck)."""

    def __init__(self) -> None:
        self.running = False
        self._hooked = False

    def hook(self) -> None:
        """Follow IPython's pre/post_run_cell events, once per process; no-op outside IPython."""
        if self._hooked:
            return
        self._hooked = True
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
        if shell is None or not hasattr(shell, "events"):
            return
        shell.events.register("pre_run_cell", self._started)
        shell.events.register("post_run_cell", self._finished)

    def _started(self, *_: Any) -> None:
        self.running = True

    def _finished(self, *_: Any) -> None:
        self.running = False


CELLS = CellActivity()
"""The process-wide watcher every grid reads."""
