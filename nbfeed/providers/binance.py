"""Binance spot market data: symbols, klines history and live streams. No API key needed.

* **Symbols** from ``GET /api/v3/exchangeInfo?permissions=SPOT``: spot symbols whose status is
  ``TRADING``. A symbol that is halted or not tradable on spot is not listed.
* **History** from ``GET /api/v3/klines``: 1,000 bars per call, paged forwards (``startTime``) or
  backwards (``endTime``) and stitched by open time, so pages never overlap (no duplicates) and
  each page starts right after the previous one (no gaps we introduce).
* **Rate limits**: every answer's ``X-MBX-USED-WEIGHT-<n><unit>`` header is compared with the
  ``REQUEST_WEIGHT`` limits ``exchangeInfo`` announces; before a request that would cross the
  limit the client waits for the window to roll over. A 429/418 answer holds *all* requests for
  its ``Retry-After`` (see :mod:`nbfeed.providers._http`).
* **Live**: candles from ``<symbol>@kline_<interval>``, quotes (``tick``) from ``<symbol>@ticker``
  (24hr ticker: price, change, volume) merged with ``<symbol>@bookTicker`` (best bid/ask), all
  multiplexed over combined-stream connections (``/stream``; at most 1,024 streams each) with live
  ``SUBSCRIBE``/``UNSUBSCRIBE`` messages - one socket for many symbols and clients, never one per
  client or per symbol. Control messages are paced under Binance's 5 messages/second. A dropped
  connection, a server close (Binance ends connections after 24 h) or a ``serverShutdown`` notice
  leads to a reconnect with backoff that resubscribes every stream; subscribers do nothing.

Configuration (provider options, else environment, else Binance's public endpoints):
``rest_url`` / ``NBFEED_BINANCE_REST_URL`` (default ``https://api.binance.com``), ``ws_url`` /
``NBFEED_BINANCE_WS_URL`` (default ``wss://stream.binance.com:9443``). Other options:
``quote_assets`` (list: only list symbols quoted in these), ``max_history_bars`` (default
200,000), ``max_wait`` (longest rate-limit wait a request sits through, default 90 s),
``max_streams_per_connection`` (default 1024), ``request_timeout`` (default 15 s).

Client libraries: ``httpx`` for REST and ``websockets`` for streams (why: see ``_http.py`` and
``_ws.py``). ``python-binance``/``binance-connector`` were not used: their stream managers open
asyncio loops of their own, and we need our own pacing, weight budget and resubscription anyway.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from ..errors import BadRequest, LimitExceeded, UnknownSymbol, UpstreamError
from ..intervals import BAR_INTERVALS, INTERVALS, TICK, check_interval
from ..timeutil import now_ms
from ._http import HttpError, RateGate, RestClient
from ._ws import Backoff, ReconnectingSocket
from .base import Provider

DEFAULT_REST_URL = "https://api.binance.com"
DEFAULT_WS_URL = "wss://stream.binance.com:9443"
KLINES_PER_CALL = 1000
WEIGHT_EXCHANGE_INFO = 20
WEIGHT_KLINES = 2
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
_WEIGHT_HEADER = re.compile(r"^x-mbx-used-weight-(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL_UNIT = {"SECOND": "s", "MINUTE": "m", "HOUR": "h", "DAY": "d"}
_CANDLE_OUTPUTS = [{"name": n, "y_axis": "volume" if n == "volume" else "price"}
                   for n in ("open", "high", "low", "close", "volume")]


def resolve_url(options: dict, key: str, env: str, default: str) -> str:
    """A base URL: the provider option, else the environment variable, else the default."""
    value = options.get(key) or os.environ.get(env) or default
    if not isinstance(value, str):
        raise BadRequest(f"option {key!r} must be a URL string, got {value!r}")
    return value.rstrip("/")


# ---- REST ------------------------------------------------------------------------------------


class WeightBudget:
    """Keeps request weight under Binance's per-window limits, using the used-weight headers.

    ``limits`` maps a window key such as ``"1m"`` to its limit (from ``exchangeInfo``). After each
    answer we remember the used weight per window; before a request of weight ``w`` that would
    take a window past ``safety`` of its limit, the gate is held until that window rolls over.
    Windows are aligned to the clock, as Binance counts them.
    """

    def __init__(self, gate: RateGate, limits: dict[str, int] | None = None,
                 safety: float = 0.9) -> None:
        self.gate = gate
        self.limits = dict(limits or {"1m": 6000})
        self.safety = safety
        self.used: dict[str, tuple[int, int]] = {}  # window key -> (window number, used)
        self._lock = threading.Lock()

    def configure(self, rate_limits: Iterable[dict]) -> None:
        limits = {}
        for item in rate_limits:
            if not isinstance(item, dict) or item.get("rateLimitType") != "REQUEST_WEIGHT":
                continue
            unit = _INTERVAL_UNIT.get(item.get("interval"))
            num, limit = item.get("intervalNum"), item.get("limit")
            if unit and isinstance(num, int) and isinstance(limit, int) and num > 0 and limit > 0:
                limits[f"{num}{unit}"] = limit
        if limits:
            with self._lock:
                self.limits = limits

    @staticmethod
    def _window(key: str, now: float) -> tuple[int, float]:
        length = int(key[:-1]) * _UNIT_SECONDS[key[-1]]
        number = int(now // length)
        return number, (number + 1) * length - now

    def observe(self, headers: httpx.Headers) -> None:
        now = time.time()
        with self._lock:
            for name, value in headers.items():
                m = _WEIGHT_HEADER.match(name.lower())
                if m and value.strip().isdigit():
                    key = m.group(1) + m.group(2)
                    self.used[key] = (self._window(key, now)[0], int(value))

    def before(self, weight: int) -> None:
        now = time.time()
        with self._lock:
            for key, limit in self.limits.items():
                number, left = self._window(key, now)
                seen_number, used = self.used.get(key, (number, 0))
                if seen_number != number:
                    continue
                if used + weight > limit * self.safety:
                    self.gate.hold(left + 0.05, f"used weight {used}/{limit} per {key}")


class BinanceREST:
    """Binance's public market-data REST endpoints with paging, stitching and rate limits."""

    def __init__(self, rest_url: str = DEFAULT_REST_URL, *, stop: threading.Event | None = None,
                 timeout: float = 15.0, max_wait: float = 90.0,
                 max_history_bars: int = 200_000, log: Any = None) -> None:
        self.http = RestClient(rest_url, name="binance", timeout=timeout, max_wait=max_wait,
                               stop=stop, log=log, before_request=self._before,
                               after_response=self._after)
        self.budget = WeightBudget(self.http.gate)
        self.max_history_bars = max_history_bars

    def _before(self, weight: int) -> None:
        self.budget.before(weight)

    def _after(self, headers: httpx.Headers) -> None:
        self.budget.observe(headers)

    def close(self) -> None:
        self.http.close()

    def exchange_info(self) -> dict:
        data = self.http.get("/api/v3/exchangeInfo", {"permissions": "SPOT"},
                             weight=WEIGHT_EXCHANGE_INFO).data
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
            raise UpstreamError("binance exchangeInfo: expected an object with a 'symbols' list")
        self.budget.configure(data.get("rateLimits") or [])
        return data

    def spot_symbols(self, quote_assets: Iterable[str] | None = None) -> list[dict]:
        """The symbol objects of exchangeInfo that trade on spot now, sorted by name."""
        if isinstance(quote_assets, str):
            quote_assets = [quote_assets]
        quotes = {str(q).upper() for q in quote_assets} if quote_assets else None
        out = []
        for item in self.exchange_info()["symbols"]:
            if not isinstance(item, dict) or not isinstance(item.get("symbol"), str):
                continue
            if item.get("status") != "TRADING" or not _is_spot(item):
                continue
            if quotes is not None and item.get("quoteAsset") not in quotes:
                continue
            out.append(item)
        out.sort(key=lambda s: s["symbol"])
        return out

    def _page(self, symbol: str, interval: str, **params: Any) -> list[list]:
        try:
            data = self.http.get("/api/v3/klines", {"symbol": symbol, "interval": interval,
                                                    **params}, weight=WEIGHT_KLINES).data
        except HttpError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            if body.get("code") == -1121:
                raise UnknownSymbol(f"binance has no symbol {symbol!r}") from None
            if body.get("code") == -1120:
                raise BadRequest(f"binance does not serve interval {interval!r}") from None
            raise
        if not isinstance(data, list):
            raise UpstreamError(f"binance klines for {symbol}: expected a list, got "
                                f"{type(data).__name__}")
        return data

    def klines(self, symbol: str, interval: str, start: int | None = None,
               end: int | None = None, count: int | None = None) -> list[dict]:
        """Candle rows with open times in ``[start, end)``; with ``count``, the newest ``count``.

        Pages are stitched by open time: a bar is kept once, pages continue right after the
        last bar seen, and a page that does not move forward ends the loop instead of spinning.
        """
        if count is None and start is None:
            count = 500
        if count is not None and count > self.max_history_bars:
            raise LimitExceeded(f"count {count} exceeds max_history_bars "
                                f"{self.max_history_bars} for binance")
        end_incl = end - 1 if end is not None else None
        bars: dict[int, list] = {}
        if count is not None:
            cursor = end_incl
            while len(bars) < count:
                want = min(KLINES_PER_CALL, count - len(bars))
                page = self._page(symbol, interval, endTime=cursor, limit=want)
                rows = _check_rows(page, symbol)
                fresh = [r for r in rows if r[0] not in bars]
                for r in fresh:
                    bars[r[0]] = r
                if len(rows) < want or not fresh:
                    break
                first = rows[0][0]
                if start is not None and first <= start:
                    break
                cursor = first - 1
        else:
            cursor = start
            while True:
                page = self._page(symbol, interval, startTime=cursor, endTime=end_incl,
                                  limit=KLINES_PER_CALL)
                rows = _check_rows(page, symbol)
                fresh = [r for r in rows if r[0] not in bars and r[0] >= cursor]
                for r in fresh:
                    bars[r[0]] = r
                if len(bars) > self.max_history_bars:
                    raise LimitExceeded(
                        f"binance {symbol} {interval}: the span holds more than "
                        f"{self.max_history_bars} bars (max_history_bars); ask for a shorter "
                        "span or a count")
                if len(rows) < KLINES_PER_CALL or not fresh:
                    break
                cursor = rows[-1][0] + 1
        times = sorted(t for t in bars if (start is None or t >= start)
                       and (end is None or t < end))
        if count is not None:
            times = times[-count:]
        return [_candle(symbol, bars[t]) for t in times]


def _is_spot(item: dict) -> bool:
    if item.get("isSpotTradingAllowed") is True:
        return True
    perms = set(item.get("permissions") or ())
    for group in item.get("permissionSets") or ():
        perms.update(group)
    return "SPOT" in perms


def _check_rows(page: list, symbol: str) -> list[list]:
    """Validate kline rows: ``[openTime, open, high, low, close, volume, ...]``."""
    out = []
    for i, row in enumerate(page):
        if not isinstance(row, list) or len(row) < 6 or not isinstance(row[0], int) \
                or isinstance(row[0], bool):
            raise UpstreamError(f"binance klines for {symbol}: row {i} is not a kline array: "
                                f"{row!r:.120}")
        out.append(row)
    out.sort(key=lambda r: r[0])
    return out


def _candle(symbol: str, k: list) -> dict:
    try:
        return {"time": k[0], "symbol": symbol, "open": float(k[1]), "high": float(k[2]),
                "low": float(k[3]), "close": float(k[4]), "volume": float(k[5])}
    except (TypeError, ValueError):
        raise UpstreamError(f"binance klines for {symbol}: non-numeric price in {k!r:.120}"
                            ) from None


# ---- streams ---------------------------------------------------------------------------------


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
        query = "?streams=" + "/".join(self._initial) if self._initial else ""
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
    """The Binance streams behind one nbfeed stream."""
    sym = symbol.lower()
    if interval == TICK:
        return [f"{sym}@ticker", f"{sym}@bookTicker"]
    return [f"{sym}@kline_{interval}"]


def kline_row(data: dict) -> tuple[str, str, dict]:
    """A kline event -> (symbol, interval, candle row)."""
    k = data["k"]
    symbol = k.get("s") or data["s"]
    return symbol, k["i"], {"time": int(k["t"]), "symbol": symbol, "open": float(k["o"]),
                            "high": float(k["h"]), "low": float(k["l"]),
                            "close": float(k["c"]), "volume": float(k["v"])}


# ---- the provider ----------------------------------------------------------------------------


class BinanceProvider(Provider):
    """nbfeed's Binance source (spot, public market data). See the module docstring."""

    name = "binance"
    intervals = INTERVALS

    def init(self) -> None:
        opts = self.options
        self.rest_url = resolve_url(opts, "rest_url", "NBFEED_BINANCE_REST_URL", DEFAULT_REST_URL)
        self.ws_url = resolve_url(opts, "ws_url", "NBFEED_BINANCE_WS_URL", DEFAULT_WS_URL)
        self.rest = BinanceREST(self.rest_url, stop=self.stopping,
                                timeout=float(opts.get("request_timeout", 15.0)),
                                max_wait=float(opts.get("max_wait", 90.0)),
                                max_history_bars=int(opts.get("max_history_bars", 200_000)),
                                log=self.log)
        self.streams = CombinedStreams(
            self.ws_url, self._on_event, stop=self.stopping, log=self.log,
            max_streams_per_connection=int(opts.get("max_streams_per_connection", 1024)),
            max_backoff=float(opts.get("max_backoff", 30.0)), on_state=self._on_stream_state)
        self._symbols: set[str] | None = None
        self._symbols_at = 0.0
        self._symbols_lock = threading.Lock()
        self._quotes: dict[str, dict] = {}
        self._quotes_lock = threading.Lock()  # ticker and book streams may be on two sockets
        self._status = "running"

    # ---- catalog ------------------------------------------------------------------------------

    def get_dataset(self) -> list[dict]:
        items = self.rest.spot_symbols(self.options.get("quote_assets"))
        with self._symbols_lock:
            self._symbols = {s["symbol"] for s in items}
            self._symbols_at = time.monotonic()
        return [{
            "source": self.name, "name": s["symbol"],
            "name_label": f"{s.get('baseAsset', '?')} / {s.get('quoteAsset', '?')}",
            "type": "candlestick", "categories": ["Crypto", str(s.get("quoteAsset", ""))],
            "intervals": [*BAR_INTERVALS, TICK], "outputs": _CANDLE_OUTPUTS,
        } for s in items]

    def _check_symbol(self, symbol: Any) -> str:
        if not isinstance(symbol, str) or not _SYMBOL_RE.match(symbol):
            raise UnknownSymbol(f"binance symbols are 2-20 upper-case letters/digits like "
                                f"'BTCUSDT', got {symbol!r:.60}")
        with self._symbols_lock:
            known, age = self._symbols, time.monotonic() - self._symbols_at
        stale = known is None or (symbol not in known and age > 600)
        if stale and self.rest.http.gate.remaining() > 0:
            return symbol  # rate limited: do not park the caller just to check a name
        if stale:
            try:
                known = {s["symbol"] for s in self.rest.spot_symbols()}
            except UpstreamError as exc:
                # Cannot check now: let it through; an unknown stream simply stays silent.
                self.log.warning("binance: cannot load symbols to check %s: %s", symbol, exc)
                return symbol
            with self._symbols_lock:
                self._symbols, self._symbols_at = known, time.monotonic()
        if symbol not in known:
            raise UnknownSymbol(f"binance has no spot symbol {symbol!r} trading now")
        return symbol

    # ---- history ------------------------------------------------------------------------------

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        check_interval(interval, BAR_INTERVALS)
        self._check_symbol(symbol)
        return self.rest.klines(symbol, interval, start, end, count)

    # ---- live ---------------------------------------------------------------------------------

    def subscribe(self, symbol: str, interval: str) -> None:
        check_interval(interval, INTERVALS)
        self._check_symbol(symbol)
        self.streams.add(stream_names(symbol, interval))

    def unsubscribe(self, symbol: str, interval: str) -> None:
        self.streams.remove(stream_names(symbol, interval))
        if interval == TICK:
            with self._quotes_lock:
                self._quotes.pop(symbol, None)

    def no_update(self, symbol: str, interval: str) -> None:
        # Binance pushes every stream at least every 2 s, so silence means a stale connection
        # (a half-open TCP connection can look alive for minutes): renew it.
        self.log.warning("binance %s %s: no data for a while; renewing its connection",
                         symbol, interval)
        self.streams.reconnect(stream_names(symbol, interval))

    def _on_event(self, stream: str, data: dict) -> None:
        try:
            kind = data.get("e")
            if kind == "kline":
                _, interval, row = kline_row(data)
                self.publish([row], interval=interval)
            elif kind == "24hrTicker":
                # prev_close is the rolling window's open, so change == price - prev_close
                # and change_percent match Binance's own p and P.
                self._quote(data["s"], int(data["E"]), price=float(data["c"]),
                            prev_close=float(data["o"]), change=float(data["p"]),
                            change_percent=float(data["P"]), volume=float(data["v"]),
                            bid=float(data["b"]), ask=float(data["a"]))
            elif stream.endswith("@bookTicker"):
                self._quote(data["s"], now_ms(), bid=float(data["b"]), ask=float(data["a"]))
        except (KeyError, TypeError, ValueError) as exc:
            self.log.warning("binance: unreadable %s event (%s): %.200r", stream, exc, data)

    def _quote(self, symbol: str, time_ms: int, **fields: float) -> None:
        with self._quotes_lock:
            row = self._quotes.get(symbol)
            if row is None:
                row = self._quotes[symbol] = {"time": time_ms, "symbol": symbol}
            row.update(fields)
            row["time"] = time_ms
            snapshot = dict(row)
        self.publish([snapshot], interval=TICK)

    def _on_stream_state(self, state: str, detail: str) -> None:
        if state != self._status:
            self._status = state
            self.set_status(state, detail)
