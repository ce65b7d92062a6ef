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
Malformed frames are logged and skipped.

A channel the plan does not include is refused with an ``error`` status. Polygon answers every
channel of a ``subscribe``/``unsubscribe`` with one status, in order, so a refusal is matched to
its channel by the name it carries or, when it names none (a bare ``"not authorized"``), by that
order; the refused channel is left out of the wanted set (not retried on every reconnect) and
reported through ``on_refused(cluster, channel, message)``. The exact wording of a refusal was
not found in a recording; matching by order does not depend on it.

Client library: ``websockets`` (why: see ``_ws.py``). Polygon's official ``polygon-api-client``
was not used: its websocket client is asyncio-only, ignores ``auth_failed`` and gives up after a
few reconnects.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
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
                 max_backoff: float = 30.0,
                 on_refused: Callable[[str, str, str], None] | None = None) -> None:
        self.url = url
        self.cluster = cluster
        self._api_key = api_key
        self._on_events = on_events
        self._on_state = on_state
        self._on_refused = on_refused
        self._stop = stop
        self._max_backoff = max_backoff
        self.log = log or logging.getLogger("nbfeed.provider.polygon")
        self.desired: set[str] = set()
        self.live: set[str] = set()
        self.refused: dict[str, str] = {}  # channel -> why the server refused it
        # (action, channel) sent and not yet answered, in order: how a refusal that names no
        # channel is matched to one.
        self._unanswered: deque[tuple[str, str]] = deque()
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
        """Carry ``channels`` too (sent from the socket thread at its next chance); a channel
        refused before gets one more try."""
        with self.lock:
            self.desired.update(channels)
            for ch in channels:
                self.refused.pop(ch, None)
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
                               stop=self._stop, log=self.log, max_backoff=self._max_backoff,
                               on_refused=self._on_refused)
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
                        self._unanswered.clear()
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
            add = sorted(self.desired - self.live - set(self.refused))
        for action, names in (("unsubscribe", remove), ("subscribe", add)):
            for i in range(0, len(names), 500):
                chunk = names[i:i + 500]
                conn.send(json.dumps({"action": action, "params": ",".join(chunk)}))
                with self.lock:
                    self._unanswered.extend((action, ch) for ch in chunk)
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
                self._status(item)
            else:
                events.append(item)
        if events:
            self._on_events(self.cluster, events)

    def _status(self, item: dict) -> None:
        """A status message: the answer to one channel of a (un)subscribe, or news."""
        status, message = item.get("status"), str(item.get("message") or "")
        if status in ("connected", "auth_success", "auth_failed", "max_connections"):
            return
        with self.lock:
            named = next((entry for entry in self._unanswered
                          if _names_channel(message, entry[1])), None)
            entry = named or (self._unanswered[0] if self._unanswered else None)
            if entry is not None:
                self._unanswered.remove(entry)
        if status == "success":
            return
        self.log.warning("polygon %s: %s: %s", self.cluster, status, message)
        if entry is None or entry[0] != "subscribe":
            return
        channel = entry[1]
        with self.lock:
            self.refused[channel] = message or str(status)
            self.live.discard(channel)
        if self._on_refused is not None:
            self._on_refused(self.cluster, channel, message or str(status))

    def _state(self, state: str, detail: str) -> None:
        self._on_state(self, state, detail)


# ---- reading events --------------------------------------------------------------------------

#: Per-second aggregates: stocks and indices (``A``), crypto (``XAS``), forex (``CAS``).
SECOND_AGGREGATES = frozenset({"A", "XAS", "CAS"})
#: Per-minute aggregates, the live bars of plans without per-second ones: ``AM``, ``XA``, ``CA``.
MINUTE_AGGREGATES = frozenset({"AM", "XA", "CA"})
AGGREGATE_EVENTS = SECOND_AGGREGATES | MINUTE_AGGREGATES
#: The per-minute channel standing in for each per-second one.
MINUTE_OF = {"A": "AM", "XAS": "XA", "CAS": "CA"}


def event_symbol(event: dict) -> Any:
    """The websocket name an event is about (see :func:`ws_name`), or None."""
    return event.get("sym") or event.get("pair") or event.get("p") or event.get("T")


def aggregate(event: dict) -> tuple[int, float, float, float, float, float, float]:
    """A per-second or per-minute aggregate as ``(start, open, high, low, close, volume,
    vwap)``. Volume and vwap are NaN when the event has none (index aggregates carry no ``v``
    or ``vw``): missing, never 0.

    Raises KeyError/TypeError/ValueError for an event that lacks or garbles a price or ``s``."""
    v, vw = event.get("v"), event.get("vw")
    return (int(event["s"]), float(event["o"]), float(event["h"]), float(event["l"]),
            float(event["c"]), math.nan if v is None else float(v),
            math.nan if vw is None else float(vw))


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


def _names_channel(message: str, channel: str) -> bool:
    """Whether a status message names ``channel`` as a whole word (``A.AAPL`` is not named by
    ``"subscribed to: A.AAPLX"``)."""
    at = message.find(channel)
    while at >= 0:
        end = at + len(channel)
        if (at == 0 or not _channel_char(message[at - 1])) and (
                end == len(message) or not _channel_char(message[end])):
            return True
        at = message.find(channel, at + 1)
    return False


def _channel_char(ch: str) -> bool:
    return ch.isalnum() or ch in ".:-/"


def _items(text: Any) -> list[dict]:
    data = json.loads(text)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("expected a JSON array")
    return [x for x in data if isinstance(x, dict)]
