"""Quote rows as the Workspace live grid sees them, and the snapshots its socket updates.

A live grid starts from a snapshot (GET) and then patches it with socket frames. The grid only
writes a field that is a declared column, is not ``enableCellChangeWs: false`` and was present in
the snapshot row; rows are matched on ``symbol``. So the snapshot row carries every column (with
``null`` where the provider has not said anything yet) and a frame row carries ``symbol`` plus
the live columns only (:data:`LIVE_FIELDS`): static or frozen columns (name, volume) never travel
over the socket.

:class:`QuoteBoard` answers snapshots. The hub only knows the latest row of streams someone is
subscribed to, so a snapshot subscribes, waits (at most ``wait`` seconds) for a first row per
symbol, and keeps that subscription as a *lease* for ``lease_seconds``: the socket that Workspace
opens right after the snapshot then finds the stream already running, and refetches are instant.
Leases are bounded (``max_leases``, oldest closed first); their outboxes are never read, so they
conflate down to one row per symbol instead of growing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from ...errors import BadRequest, LimitExceeded, shown
from ...hub import Hub, Subscription
from ...hub.tasks import background
from ...intervals import TICK
from ...jsonfast import nan_to_none

#: Updated over the socket (besides the row id ``symbol``).
LIVE_FIELDS = ("price", "change", "change_percent", "bid", "ask")
MAX_SYMBOLS = 200


def quote_columns() -> list[dict]:
    """``columnsDefs`` of the live quote grid."""
    return [
        {"field": "symbol", "headerName": "Symbol", "cellDataType": "text", "pinned": "left",
         "width": 110},
        {"field": "name", "headerName": "Name", "cellDataType": "text",
         "enableCellChangeWs": False},
        # showCellChange flashes the price; the sign of `change` picks green or red. `change`
        # is a declared column, so the grid receives and updates it.
        {"field": "price", "headerName": "Price", "cellDataType": "number",
         "renderFn": "showCellChange", "renderFnParams": {"colorValueKey": "change"}},
        {"field": "change", "headerName": "Change", "cellDataType": "number",
         "renderFn": "greenRed"},
        {"field": "change_percent", "headerName": "Change %", "cellDataType": "number",
         "renderFn": "greenRed", "suffix": "%", "decimalPlaces": 2},
        {"field": "bid", "headerName": "Bid", "cellDataType": "number"},
        {"field": "ask", "headerName": "Ask", "cellDataType": "number"},
        {"field": "volume", "headerName": "Volume", "cellDataType": "number",
         "formatterFn": "int", "enableCellChangeWs": False},
    ]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return nan_to_none(float(value))


def quote_values(row: dict) -> dict[str, float | None]:
    """price, change, change_percent, bid, ask, volume of a provider's quote row.

    Providers send any subset (docs/internals.md); ``change`` and ``change_percent`` are derived
    from ``prev_close`` when missing, and a row without ``price`` falls back to ``close``/``last``.
    """
    price = _num(row.get("price"))
    if price is None:
        price = _num(row.get("close")) if "close" in row else _num(row.get("last"))
    change = _num(row.get("change"))
    prev = _num(row.get("prev_close"))
    if change is None and price is not None and prev is not None:
        change = price - prev
    pct = _num(row.get("change_percent"))
    if pct is None and change is not None and prev:
        pct = 100.0 * change / prev
    return {"price": price, "change": change, "change_percent": pct,
            "bid": _num(row.get("bid")), "ask": _num(row.get("ask")),
            "volume": _num(row.get("volume"))}


def snapshot_row(symbol: str, name: str, row: dict | None) -> dict:
    """A full grid row: every column present, ``None`` where nothing is known yet."""
    return {"symbol": symbol, "name": name, **quote_values(row or {})}


def live_row(row: dict) -> dict:
    """A socket row: the id plus the live fields only."""
    values = quote_values(row)
    out: dict[str, Any] = {"symbol": row.get("symbol")}
    for field in LIVE_FIELDS:
        out[field] = values[field]
    return out


def parse_symbols(value: Any, *, limit: int = MAX_SYMBOLS) -> list[str]:
    """Symbols from a param value: ``"A"``, ``"A,B"``, ``["A", "B,C"]`` or None/empty.

    Order kept, duplicates and blanks dropped. Raises BadRequest for other types and
    LimitExceeded above ``limit`` symbols.
    """
    if value is None:
        return []
    if isinstance(value, str):
        parts: Iterable[Any] = value.split(",")
    elif isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise BadRequest(f"symbol values must be strings, got {shown(item, 40)}")
            parts.extend(str(item).split(","))
    else:
        raise BadRequest(f"symbol must be a string or a list of strings, got {shown(value, 60)}")
    out = list(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if len(out) > limit:
        raise LimitExceeded(f"{len(out)} symbols requested; the limit is {limit}")
    for sym in out:
        if len(sym) > 200:
            raise BadRequest(f"symbol {sym[:40]!r}... is longer than 200 characters")
    return out


class _Lease:
    __slots__ = ("expires", "ready", "sub")

    def __init__(self, sub: Subscription, seconds: float) -> None:
        self.sub = sub
        self.ready = asyncio.Event()
        self.expires = time.monotonic() + seconds


class QuoteBoard:
    """Snapshots of quote streams, with short-lived subscriptions kept warm (see module doc)."""

    def __init__(self, hub: Hub, *, wait: float = 3.0,
                 lease_seconds: float = 60.0, max_leases: int = 32) -> None:
        self._hub = hub
        self.wait = wait
        self.lease_seconds = lease_seconds
        self.max_leases = max_leases
        self._leases: dict[tuple[str, tuple[str, ...]], _Lease] = {}
        self._timer: asyncio.TimerHandle | None = None

    async def snapshot(self, source: str, symbols: list[str]) -> dict[str, dict]:
        """The latest hub row per symbol (symbols without data yet are missing).

        Raises the hub's errors (unknown source/symbol, no tick stream) naming the value.
        """
        hub = self._hub
        key = (source, tuple(symbols))
        lease = self._leases.get(key)
        if lease is None or lease.sub.closed:
            sub = await hub.subscribe(source, symbols, TICK,
                                      max_pending_rows=max(16, 4 * len(symbols)))
            lease = self._add(key, sub)
            await self._wait_first_rows(lease, len(symbols))
        else:
            lease.expires = time.monotonic() + self.lease_seconds
            if not lease.ready.is_set():  # another request is waiting for first rows
                try:
                    await asyncio.wait_for(lease.ready.wait(), self.wait + 1)
                except asyncio.TimeoutError:
                    pass
        return {row["symbol"]: row for row in lease.sub.snapshot()}

    async def _wait_first_rows(self, lease: _Lease, wanted: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        try:
            while len(lease.sub.snapshot()) < wanted:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(lease.sub.get(), left)
                except (asyncio.TimeoutError, EOFError):
                    break
        finally:
            lease.ready.set()

    def _add(self, key: tuple[str, tuple[str, ...]], sub: Subscription) -> _Lease:
        old = self._leases.pop(key, None)
        if old is not None:
            self._close_soon(old.sub)
        while len(self._leases) >= self.max_leases:
            oldest = min(self._leases, key=lambda k: self._leases[k].expires)
            self._close_soon(self._leases.pop(oldest).sub)
        lease = self._leases[key] = _Lease(sub, self.lease_seconds)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.lease_seconds / 4,
                                                                self._expire)
        return lease

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        for key, lease in list(self._leases.items()):
            if lease.expires <= now or lease.sub.closed:
                del self._leases[key]
                self._close_soon(lease.sub)
        if self._leases:
            self._timer = asyncio.get_running_loop().call_later(self.lease_seconds / 4,
                                                                self._expire)

    async def close(self) -> None:
        """Release every lease (the hub's own stop would close them too)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            await lease.sub.close()

    def _close_soon(self, sub: Subscription) -> None:
        """Close a lease's subscription from synchronous code; the task stays referenced
        until it is done."""
        background(sub.close(), "closing a Workspace quote lease")

    def __len__(self) -> int:
        return len(self._leases)

