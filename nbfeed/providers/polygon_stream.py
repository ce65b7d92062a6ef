"""Polygon websockets: one authenticated connection per cluster, kept subscribed to its channels.

Polygon allows one connection per cluster (``stocks``, ``crypto``, ``forex``, ``indices``) per
key. Each :class:`PolygonCluster` sends ``{"action": "auth"}``, then ``subscribe`` /
``unsubscribe`` of comma-separated channels (``"A.AAPL"``), reconciling the server's set with the
wanted one from its socket thread, and hands each frame's events to the provider.

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
import threading
import time
from typing import TYPE_CHECKING, Any

from ._ws import Backoff, PermanentStreamError, ReconnectingSocket
from .polygon_rest import market_of

if TYPE_CHECKING:
    from .polygon import PolygonProvider

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

    ``desired`` is the set of channels (``"A.AAPL"``) wanted; the socket thread reconciles the
    server's set with it after every frame, so subscribing again after a reconnect is automatic.
    """

    def __init__(self, provider: PolygonProvider, cluster: str, url: str) -> None:
        self.provider = provider
        self.cluster = cluster
        self.url = url
        self.desired: set[str] = set()
        self.live: set[str] = set()
        self.lock = threading.Lock()
        self.dirty = True
        self.auth_error = ""
        self.socket = ReconnectingSocket(
            url, name=f"polygon-{cluster}", on_open=self._opened, on_message=self._message,
            on_idle=self._sync, on_state=self._state, stop=provider.stopping,
            backoff=Backoff(maximum=float(provider.options.get("max_backoff", 30.0))),
            log=provider.log)

    def _opened(self, conn: Any) -> None:
        conn.send(json.dumps({"action": "auth", "params": self.provider.api_key}))
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
            self.provider.log.warning("polygon %s: ignoring a malformed frame: %.120r",
                                      self.cluster, text)
            return
        events = []
        for item in items:
            if item.get("ev") == "status":
                if item.get("status") not in ("success", "connected", "auth_success"):
                    self.provider.log.warning("polygon %s: %s: %s", self.cluster,
                                              item.get("status"), item.get("message"))
            else:
                events.append(item)
        if events:
            self.provider._on_events(self.cluster, events)

    def _state(self, state: str, detail: str) -> None:
        self.provider._cluster_state(self, state, detail)

    def close(self) -> None:
        self.socket.close(timeout=0)


def _items(text: Any) -> list[dict]:
    data = json.loads(text)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("expected a JSON array")
    return [x for x in data if isinstance(x, dict)]
