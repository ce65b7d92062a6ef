"""Binance market streams: many symbols' klines and tickers over few combined-stream sockets.

Candles come from ``<symbol>@kline_<interval>``, quotes (``tick``) from ``<symbol>@ticker``
(24hr ticker: price, change, volume) and ``<symbol>@bookTicker`` (best bid/ask), all multiplexed
over combined-stream connections (``/stream``; at most 1,024 streams each) with live
``SUBSCRIBE``/``UNSUBSCRIBE`` messages - one socket for many symbols and clients, never one per
client or per symbol. Control messages are paced under Binance's 5 messages/second.

Failure behaviour: a dropped connection, a server close (Binance ends connections after 24 h; we
renew them at 23.5 h) or a ``serverShutdown`` notice leads to a reconnect with backoff that
resubscribes every stream; subscribers do nothing. A stream Binance refuses is logged and left
out (it is not retried until it is removed and added again). Malformed frames are counted
(``CombinedStreams.malformed``), logged and skipped. Connection trouble is reported through
``on_state`` as ``degraded``, recovery as ``running``.

Client library: ``websockets`` (why: see ``_ws.py``). ``python-binance``/``binance-connector``
were not used: their stream managers open asyncio loops of their own, and we need our own
pacing and resubscription anyway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from ...intervals import TICK
from .._ws import Backoff, ReconnectingSocket

DEFAULT_WS_URL = "wss://stream.binance.com:9443"


class _Combined:
    """One combined-stream connection and the streams it should carry."""

    def __init__(self, pool: CombinedStreams, number: int) -> None:
        self.pool = pool
        self.number = number
        self.desired: set[str] = set()
        self.live: set[str] = set()  # what the server carries on the current socket (we think)
        self.rejected: set[str] = set()
        self.pending: dict[int, tuple[str, list[str]]] = {}
        self._initial: list[str] = []
        self.dirty = True  # desired may differ from live; checked after every frame
        self._sent: list[float] = []
        self._next_id = 1
        self.socket = ReconnectingSocket(
            self._url, name=f"binance-streams-{number}", on_open=self._opened,
            on_message=self._message, on_idle=self._sync, on_state=self._state,
            stop=pool.stop, backoff=Backoff(maximum=pool.max_backoff), max_age=pool.max_age,
            log=pool.log)

    def _url(self) -> str:
        with self.pool.lock:
            self._initial = sorted(self.desired - self.rejected)[:self.pool.url_streams]
        # Symbols may be UTF-8 (Binance, 2025-12): names are percent-encoded in the URL, the
        # '/' between them stays the separator. SUBSCRIBE messages carry them as JSON text.
        query = ("?streams=" + "/".join(quote(n, safe="@_.-") for n in self._initial)
                 if self._initial else "")
        return f"{self.pool.ws_url}/stream{query}"

    def _opened(self, conn: Any) -> None:
        with self.pool.lock:
            self.live = set(self._initial)
            self.pending.clear()
            self.dirty = True

    def _state(self, state: str, detail: str) -> None:
        self.pool._state_changed(self, state, detail)

    def _sync(self, conn: Any) -> None:
        """Bring the server's stream set in line with ``desired`` (socket thread only)."""
        if not self.dirty:  # the common case, after every frame: nothing to do
            return
        with self.pool.lock:
            self.dirty = False
            remove = sorted(self.live - self.desired)
            add = sorted(self.desired - self.live - self.rejected)
        for method, names in (("UNSUBSCRIBE", remove), ("SUBSCRIBE", add)):
            for i in range(0, len(names), self.pool.params_per_message):
                chunk = names[i:i + self.pool.params_per_message]
                if not self._may_send():
                    self.dirty = True  # the rest goes out on a later idle call
                    return
                msg_id = self._next_id
                self._next_id += 1
                conn.send(json.dumps({"method": method, "params": chunk, "id": msg_id}))
                with self.pool.lock:
                    self.pending[msg_id] = (method, chunk)
                    if method == "SUBSCRIBE":
                        self.live.update(chunk)
                    else:
                        self.live.difference_update(chunk)

    def _may_send(self) -> bool:
        # Binance counts pings, pongs and control messages against 5/s; stay well below.
        now = time.monotonic()
        self._sent = [t for t in self._sent if now - t < 1.0]
        if len(self._sent) >= self.pool.messages_per_second:
            return False
        self._sent.append(now)
        return True

    def _message(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            self.pool.malformed += 1
            self.pool.log.warning("binance stream: ignoring a malformed frame: %.120r", text)
            return
        if not isinstance(msg, dict):
            return
        data = msg.get("data")
        if isinstance(data, dict) and isinstance(msg.get("stream"), str):
            if data.get("e") == "serverShutdown":
                self.socket.reconnect()
                return
            self.pool.on_event(msg["stream"], data)
            return
        event = msg.get("event") if isinstance(msg.get("event"), dict) else msg
        if event.get("e") == "serverShutdown":
            self.pool.log.info("binance announced a server shutdown; reconnecting now")
            self.socket.reconnect()
            return
        if "id" in msg and ("result" in msg or "error" in msg or "code" in msg):
            self._reply(msg)

    def _reply(self, msg: dict) -> None:
        with self.pool.lock:
            request = self.pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
            error = msg.get("error") or ({"code": msg["code"], "msg": msg.get("msg")}
                                         if "code" in msg else None)
            if error is None:
                return
            if request is None:
                self.pool.log.warning("binance stream error: %s", error)
                return
            method, names = request
            if method == "SUBSCRIBE":
                self.live.difference_update(names)
                self.rejected.update(names)
        self.pool.log.error("binance refused %s %s: %s", method, names, error)


class CombinedStreams:
    """Binance market streams multiplexed over as few combined-stream connections as possible.

    ``add``/``remove`` may be called from any thread; each connection's own thread sends the
    ``SUBSCRIBE``/``UNSUBSCRIBE`` messages (batched, paced) and delivers events to
    ``on_event(stream_name, data)`` on that thread. A connection whose last stream is removed is
    closed.
    """

    def __init__(self, ws_url: str, on_event: Callable[[str, dict], None], *,
                 max_streams_per_connection: int = 1024, messages_per_second: int = 3,
                 params_per_message: int = 100, url_streams: int = 50,
                 max_age: float | None = 23.5 * 3600, max_backoff: float = 30.0,
                 stop: threading.Event | None = None,
                 on_state: Callable[[str, str], None] | None = None, log: Any = None) -> None:
        import logging

        self.ws_url = ws_url.rstrip("/")
        self.on_event = on_event
        self.max_streams = max_streams_per_connection
        self.messages_per_second = messages_per_second
        self.params_per_message = params_per_message
        self.url_streams = url_streams
        self.max_age = max_age
        self.max_backoff = max_backoff
        self.stop = stop
        self.on_state = on_state
        self.log = log or logging.getLogger("nbfeed.provider.binance")
        self.lock = threading.RLock()
        self.connections: list[_Combined] = []
        self._owner: dict[str, _Combined] = {}
        self._numbers = 0
        self.malformed = 0

    def add(self, streams: Iterable[str]) -> None:
        started = []
        with self.lock:
            for name in streams:
                if name in self._owner:
                    continue
                conn = next((c for c in self.connections if len(c.desired) < self.max_streams),
                            None)
                if conn is None:
                    self._numbers += 1
                    conn = _Combined(self, self._numbers)
                    self.connections.append(conn)
                    started.append(conn)
                conn.desired.add(name)
                conn.dirty = True
                self._owner[name] = conn
        for conn in started:
            conn.socket.start()

    def remove(self, streams: Iterable[str]) -> None:
        retired = []
        with self.lock:
            for name in streams:
                conn = self._owner.pop(name, None)
                if conn is None:
                    continue
                conn.desired.discard(name)
                conn.rejected.discard(name)
                conn.dirty = True
                if not conn.desired:
                    self.connections.remove(conn)
                    retired.append(conn)
        for conn in retired:
            conn.socket.close(timeout=0)

    def streams(self) -> set[str]:
        with self.lock:
            return set(self._owner)

    def reconnect(self, streams: Iterable[str]) -> None:
        """Renew the connections carrying ``streams`` (they went silent)."""
        with self.lock:
            conns = {self._owner[n] for n in streams if n in self._owner}
        for conn in conns:
            conn.socket.reconnect()

    def close(self) -> None:
        with self.lock:
            conns, self.connections = self.connections, []
            self._owner.clear()
        for conn in conns:
            conn.socket.close()

    def _state_changed(self, conn: _Combined, state: str, detail: str) -> None:
        if self.on_state is None:
            return
        with self.lock:
            states = [c.socket.state for c in self.connections]
        if state in ("reconnecting", "failed"):
            self.on_state("degraded", f"binance stream {detail}")
        elif all(s == "connected" for s in states):
            self.on_state("running", "")


def stream_names(symbol: str, interval: str) -> list[str]:
    """The Binance streams behind one nbfeed stream (stream names use the lower-cased symbol;
    a UTF-8 symbol such as ``这是测试币456`` has no case and stays as it is)."""
    sym = symbol.lower()
    if interval == TICK:
        return [f"{sym}@ticker", f"{sym}@bookTicker"]
    return [f"{sym}@kline_{interval}"]


def kline_row(data: dict) -> tuple[str, str, dict]:
    """A kline event -> (symbol, interval, candle row).

    Besides OHLCV the row keeps ``closed`` (the kline's ``x``: Binance's own word that this is
    the bar's final version), ``quote_volume`` (``q``) and ``trades`` (``n``); a field the event
    lacks is left out. Raises KeyError/TypeError/ValueError for an event that lacks or garbles
    OHLCV."""
    k = data["k"]
    symbol = k.get("s") or data["s"]
    row = {"time": int(k["t"]), "symbol": symbol, "open": float(k["o"]),
           "high": float(k["h"]), "low": float(k["l"]), "close": float(k["c"]),
           "volume": float(k["v"])}
    if "q" in k:
        row["quote_volume"] = float(k["q"])
    if isinstance(k.get("n"), int) and not isinstance(k.get("n"), bool):
        row["trades"] = k["n"]
    if isinstance(k.get("x"), bool):
        row["closed"] = k["x"]
    return symbol, k["i"], row
