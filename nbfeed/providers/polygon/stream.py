"""Polygon websockets: one authenticated connection per cluster, kept subscribed to its channels.

Polygon allows one connection per cluster (``stocks``, ``crypto``, ``forex``, ``indices``) per
key. Each :class:`PolygonCluster` sends ``{"action": "auth"}``, then ``subscribe`` /
``unsubscribe`` of comma-separated channels (``"A.AAPL"``), reconciling the server's set with the
wanted one from its socket thread, and hands each frame's events to ``on_events``. It knows
nothing of the provider: it gets the key, callbacks and plain values, as binance's
``CombinedStreams`` does. :func:`aggregate` and :func:`quote_update` read the events the
provider turns into bars and quote rows.

Failure behaviour: ``auth_failed`` stops that socket for good (a
:class:`~nbfeed.providers._ws.PermanentStreamError`) and records the reason in ``auth_error``;
no answer to ``auth`` within 15 s or ``max_connections`` is a connection error, retried with
backoff. Drops and server closes reconnect with backoff and resubscribe every channel.
Malformed frames are logged and skipped; status messages other than success are logged.

Client library: ``websockets`` (why: see ``_ws.py``). Polygon's official ``polygon-api-client``
was not used: its websocket client is asyncio-only, ignores ``auth_failed`` and gives up after a
few reconnects.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .._ws import Backoff, PermanentStreamError, ReconnectingSocket
from .rest import market_of

DEFAULT_WS_URL = "wss://socket.polygon.io"
DEFAULT_DELAYED_WS_URL = "wss://delayed.polygon.io"


def ws_name(ticker: str, meta: dict | None = None) -> str:
    """The ticker as the websocket names it: ``X:BTCUSD`` -> ``BTC-USD``, ``C:EURUSD`` ->
    ``EUR/USD``; stocks and indices unchanged."""
    market = market_of(ticker)
    if market not in ("crypto", "fx"):
        return ticker
    body = ticker[2:]
    base = (meta or {}).get("base_currency_symbol")
    quote = (meta or {}).get("currency_symbol")
    if not (isinstance(base, str) and isinstance(quote, str) and base + quote == body):
        base, quote = body[:-3], body[-3:]
    return f"{base}-{quote}" if market == "crypto" else f"{base}/{quote}"


class PolygonCluster:
    """One authenticated websocket to one Polygon cluster and the channels it should carry.

    :meth:`add`/:meth:`remove` change the wanted channels (``"A.AAPL"``) from any thread; the
    socket thread reconciles the server's set with them after every frame, so subscribing again
    after a reconnect is automatic. ``on_events(cluster, events)`` gets each frame's events and
    ``on_state(self, state, detail)`` every connection state change, both on the socket thread.
    """

    def __init__(self, url: str, cluster: str, *, api_key: str,
                 on_events: Callable[[str, list[dict]], None],
                 on_state: Callable[[PolygonCluster, str, str], None],
                 stop: threading.Event | None = None, log: logging.Logger | None = None,
                 max_backoff: float = 30.0) -> None:
        self.url = url
        self.cluster = cluster
        self._api_key = api_key
        self._on_events = on_events
        self._on_state = on_state
        self._stop = stop
        self._max_backoff = max_backoff
        self.log = log or logging.getLogger("nbfeed.provider.polygon")
        self.desired: set[str] = set()
        self.live: set[str] = set()
        self.lock = threading.Lock()
        self.dirty = True
        self.auth_error = ""
        self.socket = ReconnectingSocket(
            url, name=f"polygon-{cluster}", on_open=self._opened, on_message=self._message,
            on_idle=self._sync, on_state=self._state, stop=stop,
            backoff=Backoff(maximum=max_backoff), log=self.log)

    # ---- what the provider uses ---------------------------------------------------------------

    def start(self) -> None:
        self.socket.start()

    def add(self, channels: list[str]) -> None:
        """Carry ``channels`` too (sent from the socket thread at its next chance)."""
        with self.lock:
            self.desired.update(channels)
            self.dirty = True

    def remove(self, channels: list[str]) -> bool:
        """Stop carrying ``channels``; True when no channel is wanted any more."""
        with self.lock:
            self.desired.difference_update(channels)
            self.dirty = True
            return not self.desired

    def renewed(self) -> PolygonCluster:
        """A fresh, unstarted cluster with the same settings and wanted channels (a refused
        feed gets one new try when a user subscribes again)."""
        fresh = PolygonCluster(self.url, self.cluster, api_key=self._api_key,
                               on_events=self._on_events, on_state=self._on_state,
                               stop=self._stop, log=self.log, max_backoff=self._max_backoff)
        with self.lock:
            fresh.desired = set(self.desired)
        return fresh

    @property
    def state(self) -> str:
        """The socket's state: ``connecting``, ``connected``, ``reconnecting`` or ``failed``."""
        return self.socket.state

    @property
    def failed(self) -> bool:
        """Refused for good (bad key, plan without this feed) or given up on."""
        return self.socket.state == "failed" or bool(self.auth_error)

    @property
    def problem(self) -> str:
        """Why the cluster is failing, for the provider's status."""
        return self.auth_error or self.socket.detail

    def close(self) -> None:
        self.socket.close(timeout=0)

    # ---- the socket thread ---------------------------------------------------------------------

    def _opened(self, conn: Any) -> None:
        conn.send(json.dumps({"action": "auth", "params": self._api_key}))
        deadline = time.monotonic() + 15.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"polygon {self.cluster}: no answer to auth")
            for item in _items(conn.recv(timeout=left)):
                status = item.get("status")
                if item.get("ev") != "status":
                    continue
                if status == "auth_success":
                    with self.lock:
                        self.live = set()
                        self.dirty = True
                    self.auth_error = ""
                    return
                if status == "auth_failed":
                    self.auth_error = (f"polygon auth failed on the {self.cluster} feed "
                                       f"({self.url}): {item.get('message', 'auth_failed')}; check "
                                       "the API key (POLYGON_API_KEY or api_key) and that your "
                                       "plan includes this feed (feed='delayed' for 15-minute "
                                       "delayed plans)")
                    raise PermanentStreamError(self.auth_error)
                if status == "max_connections":
                    raise ConnectionError(f"polygon {self.cluster}: {item.get('message')}")

    def _sync(self, conn: Any) -> None:
        if not self.dirty:  # the common case, after every frame
            return
        with self.lock:
            self.dirty = False
            remove = sorted(self.live - self.desired)
            add = sorted(self.desired - self.live)
        for action, names in (("unsubscribe", remove), ("subscribe", add)):
            for i in range(0, len(names), 500):
                chunk = names[i:i + 500]
                conn.send(json.dumps({"action": action, "params": ",".join(chunk)}))
                with self.lock:
                    if action == "subscribe":
                        self.live.update(chunk)
                    else:
                        self.live.difference_update(chunk)

    def _message(self, text: str) -> None:
        try:
            items = _items(text)
        except ValueError:
            self.log.warning("polygon %s: ignoring a malformed frame: %.120r", self.cluster, text)
            return
        events = []
        for item in items:
            if item.get("ev") == "status":
                if item.get("status") not in ("success", "connected", "auth_success"):
                    self.log.warning("polygon %s: %s: %s", self.cluster, item.get("status"),
                                     item.get("message"))
            else:
                events.append(item)
        if events:
            self._on_events(self.cluster, events)

    def _state(self, state: str, detail: str) -> None:
        self._on_state(self, state, detail)


# ---- reading events --------------------------------------------------------------------------

#: Per-second aggregates: stocks and indices (``A``), crypto (``XAS``), forex (``CAS``).
AGGREGATE_EVENTS = frozenset({"A", "XAS", "CAS"})


def event_symbol(event: dict) -> Any:
    """The websocket name an event is about (see :func:`ws_name`), or None."""
    return event.get("sym") or event.get("pair") or event.get("p") or event.get("T")


def aggregate(event: dict) -> tuple[int, float, float, float, float, float]:
    """A per-second aggregate as ``(second, open, high, low, close, volume)``.

    Raises KeyError/TypeError/ValueError for an event that lacks or garbles a field."""
    return (int(event["s"]), float(event["o"]), float(event["h"]), float(event["l"]),
            float(event["c"]), float(event.get("v") or 0.0))


def _forex_quote(event: dict) -> tuple[Any, dict[str, float]]:
    bid, ask = float(event["b"]), float(event["a"])
    return event.get("t"), {"bid": bid, "ask": ask, "price": (bid + ask) / 2}


_QUOTE_FIELDS: dict[str, Callable[[dict], tuple[Any, dict[str, float]]]] = {
    "T": lambda ev: (ev.get("t"), {"price": float(ev["p"])}),  # stock trade
    "XT": lambda ev: (ev.get("t"), {"price": float(ev["p"])}),  # crypto trade
    "Q": lambda ev: (ev.get("t"), {"bid": float(ev["bp"]), "ask": float(ev["ap"])}),
    "XQ": lambda ev: (ev.get("t"), {"bid": float(ev["bp"]), "ask": float(ev["ap"])}),
    "C": _forex_quote,  # forex quotes carry no trades: the mid is the price
    "V": lambda ev: (ev.get("t"), {"price": float(ev["val"])}),  # index value
}


def quote_update(event: dict) -> tuple[Any, dict[str, float]] | None:
    """``(time, fields)`` a trade, quote or index event adds to its symbol's quote row (the
    day's volume of an aggregate is added by the provider); None for other events.

    Raises KeyError/TypeError/ValueError for an event that lacks or garbles a field."""
    read = _QUOTE_FIELDS.get(event.get("ev"))  # type: ignore[arg-type]
    return None if read is None else read(event)


def _items(text: Any) -> list[dict]:
    data = json.loads(text)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("expected a JSON array")
    return [x for x in data if isinstance(x, dict)]
