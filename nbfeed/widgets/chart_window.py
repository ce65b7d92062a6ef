"""The chart's data: a bounded, time-sorted bar window and the binary frame it is sent in.

:class:`BarWindow` keeps the newest ``max_bars`` bars as an int64 time array and float64 value
columns; :func:`encode_frame` packs bars into the one binary layout the browser reads for both
snapshots and deltas (``static/chart.js`` decodes it), :func:`decode_frame` reads it back.

Failure behaviour: the window never grows past twice ``max_bars`` (older bars are dropped, a bar
older than a full window is refused); it is not thread-safe - its owner locks around every call.
:func:`decode_frame` raises ValueError on a frame that is not ours or is truncated.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

_MAGIC = b"NBCF"


# --- wire format ---------------------------------------------------------------------------------

def encode_frame(seq: int, columns: Sequence[str], times: np.ndarray, values: np.ndarray) -> bytes:
    """Bars as one binary frame: ``NBCF``, uint32 header length, JSON header, float64 columns.

    The JSON header is ``{"seq", "n", "columns"}`` padded with spaces so the arrays start on an
    8-byte boundary (the browser can view them as ``Float64Array`` without copying). Then ``n``
    times (epoch ms) and ``n`` values per column, all little-endian float64. Snapshots and deltas
    share the format; a delta's bars are upserts by time.
    """
    n = len(times)
    header = json.dumps({"seq": seq, "n": n, "columns": list(columns)}).encode()
    header += b" " * (-(8 + len(header)) % 8)
    body = np.asarray(times, dtype="<f8").tobytes() + np.asarray(values, dtype="<f8").tobytes()
    return _MAGIC + struct.pack("<I", len(header)) + header + body


def decode_frame(data: bytes | memoryview) -> dict[str, Any]:
    """Read :func:`encode_frame` output: ``{"seq", "columns", "times": int64[], name: float64[]}``.

    For tests and tools that inspect what the chart sends. Raises ValueError on a malformed frame.
    """
    raw = bytes(data)
    if len(raw) < 8 or raw[:4] != _MAGIC:
        raise ValueError("not a LiveChart frame (missing NBCF magic)")
    (hlen,) = struct.unpack("<I", raw[4:8])
    header = json.loads(raw[8:8 + hlen])
    n, columns = header["n"], header["columns"]
    arrays = np.frombuffer(raw, dtype="<f8", offset=8 + hlen)
    if arrays.size != n * (len(columns) + 1):
        raise ValueError(f"frame holds {arrays.size} numbers, header says {n} x {len(columns) + 1}")
    out: dict[str, Any] = {"seq": header["seq"], "columns": columns,
                           "times": arrays[:n].astype(np.int64)}
    for k, name in enumerate(columns):
        out[name] = arrays[n * (k + 1):n * (k + 2)].copy()
    return out


# --- the bounded bar window -----------------------------------------------------------------------

class BarWindow:
    """Time-sorted bars (int64 ms + float64 columns); keeps the newest ``max_bars``.

    Arrays grow to twice ``max_bars`` and are compacted when full, so appends are amortized O(1)
    and memory stays flat. Not thread-safe: the chart holds its lock around every call.
    """

    def __init__(self, columns: Sequence[str], max_bars: int) -> None:
        self.columns = tuple(columns)
        self.max_bars = max_bars
        cap = min(2 * max_bars, 1024)
        self._t = np.empty(cap, np.int64)
        self._v = np.empty((len(self.columns), cap), np.float64)
        self._lo = self._hi = 0

    def __len__(self) -> int:
        return self._hi - self._lo

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self._t[self._lo:self._hi], self._v[:, self._lo:self._hi]

    def since(self, t0: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the bars with time >= ``t0``."""
        i = self._lo + int(np.searchsorted(self._t[self._lo:self._hi], t0))
        return self._t[i:self._hi].copy(), self._v[:, i:self._hi].copy()

    def upsert(self, t: int, vals: Sequence[float | None], overwrite: bool = True) -> bool:
        """Replace the bar at ``t`` (values that are None are kept) or insert it in order.

        Returns False when nothing changed: the bar exists and ``overwrite`` is off, or it is
        older than a full window.
        """
        lo, hi = self._lo, self._hi
        if hi > lo and t <= self._t[hi - 1]:
            i = hi - 1 if t == self._t[hi - 1] else lo + int(np.searchsorted(self._t[lo:hi], t))
            if self._t[i] == t:
                if not overwrite:
                    return False
                for k, v in enumerate(vals):
                    if v is not None:
                        self._v[k, i] = v
                return True
            if hi - lo >= self.max_bars and i == lo:
                return False
            self._make_room()
            i += self._lo - lo
            lo, hi = self._lo, self._hi
            self._t[i + 1:hi + 1] = self._t[i:hi]
            self._v[:, i + 1:hi + 1] = self._v[:, i:hi]
        else:
            self._make_room()
            i = self._hi
        self._t[i] = t
        for k, v in enumerate(vals):
            self._v[k, i] = np.nan if v is None else v
        self._hi += 1
        if self._hi - self._lo > self.max_bars:
            self._lo = self._hi - self.max_bars
        return True

    def _make_room(self) -> None:
        """Ensure one free slot after ``_hi``: compact to the front, or grow up to 2*max_bars."""
        cap = len(self._t)
        if self._hi < cap:
            return
        n = self._hi - self._lo
        if cap < 2 * self.max_bars and n * 2 > cap:
            new_cap = min(2 * cap, 2 * self.max_bars)
            t, v = np.empty(new_cap, np.int64), np.empty((len(self.columns), new_cap), np.float64)
        else:
            t, v = self._t, self._v
        t[:n] = self._t[self._lo:self._hi]
        v[:, :n] = self._v[:, self._lo:self._hi]
        self._t, self._v, self._lo, self._hi = t, v, 0, n
