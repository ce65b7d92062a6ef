"""Polygon.io: stocks, crypto, forex and indices - every market the API key is entitled to.

* **Key**: the ``api_key`` option, else ``POLYGON_API_KEY``. REST calls send it as
  ``Authorization: Bearer`` (so it never appears in URLs or logs), websockets in the ``auth``
  message.
* **Symbols** from ``/v3/reference/tickers`` per market (``markets`` option, default stocks,
  crypto, fx, indices), paged by following ``next_url``. A market the key is not entitled to
  (403) is skipped; a rejected key (401) fails loudly and shows as the provider's status.
* **History** from ``/v2/aggs/ticker/{ticker}/range/{mult}/{timespan}/{from}/{to}`` with
  ``adjusted`` (option, default true), ``sort`` and ``limit=50000``, following ``next_url``. Bar
  times are put on nbfeed's grid (UTC-aligned, weeks on Monday): Polygon's stock day bars start at
  midnight New York time and its weeks on Sunday, so each bar is floored to the nbfeed bar that
  holds it (Sunday weeks move to their Monday) and bars that land on the same time are merged.
* **Live** over one websocket per cluster (``stocks``, ``crypto``, ``forex``, ``indices``; Polygon
  allows one connection per cluster per key): ``{"action": "auth"}``, then ``subscribe`` /
  ``unsubscribe`` of comma-separated channels. Candles of *every* interval are built here from
  per-second aggregates (``A``, ``XAS``, ``CAS``): one :class:`BarBuilder` per (ticker, interval),
  volume summed from each second's own ``v`` (never the day's running ``av``), a repeated second
  replaces its earlier copy instead of adding to it, and the first live bar is completed from
  REST second aggregates. Quotes (``tick``) merge trades (``T``/``XT``: price), quotes
  (``Q``/``XQ``/``C``: bid, ask), index values (``V``) and the day's volume (``av``), with
  ``prev_close`` from
  ``/v2/aggs/ticker/{ticker}/prev``. Channels are reference-counted across streams, so
  unsubscribing ``AAPL 1m`` keeps ``A.AAPL`` while ``AAPL 5m`` or ``AAPL tick`` still need it.
* **Feeds**: ``feed="realtime"`` (``ws_url``, ``NBFEED_POLYGON_WS_URL``, default
  ``wss://socket.polygon.io``) or ``feed="delayed"`` (``delayed_ws_url``,
  ``NBFEED_POLYGON_DELAYED_WS_URL``, default ``wss://delayed.polygon.io``). REST base:
  ``rest_url`` / ``NBFEED_POLYGON_REST_URL`` (default ``https://api.polygon.io``).

Failure behaviour: ``auth_failed`` on a cluster stops that socket for good and sets the provider
status (``failed`` when no cluster works, else ``degraded``) with the reason; everything else
keeps running. Drops and server closes reconnect with backoff and resubscribe. REST follows the
rate-limit policy of :mod:`nbfeed.providers._http` (a 429 without ``Retry-After`` waits 15 s,
Polygon's free tier allows 5 calls a minute).

Client libraries: ``httpx`` and ``websockets`` (see ``_http.py``/``_ws.py``). Polygon's official
``polygon-api-client`` was not used: its websocket client is asyncio-only, ignores
``auth_failed`` and gives up after a few reconnects; its REST pager has no shared rate gate.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from ..errors import BadRequest, LimitExceeded, UnknownSymbol, UpstreamError
from ..intervals import BAR_INTERVALS, INTERVALS, TICK, check_interval, floor_bar, interval_ms
from ..timeutil import now_ms
from ._http import HttpError, RestClient
from ._ws import Backoff, PermanentStreamError, ReconnectingSocket
from .base import Provider
from .binance import resolve_url

DEFAULT_REST_URL = "https://api.polygon.io"
DEFAULT_WS_URL = "wss://socket.polygon.io"
DEFAULT_DELAYED_WS_URL = "wss://delayed.polygon.io"
MARKETS = ("stocks", "crypto", "fx", "indices")
CLUSTER = {"stocks": "stocks", "otc": "stocks", "crypto": "crypto", "fx": "forex",
           "indices": "indices"}
_DAY = 86_400_000
_TICKER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:.\-]{0,39}$")
_SPANS = {"1s": (1, "second"), "1m": (1, "minute"), "3m": (3, "minute"), "5m": (5, "minute"),
          "15m": (15, "minute"), "30m": (30, "minute"), "1h": (1, "hour"), "2h": (2, "hour"),
          "4h": (4, "hour"), "6h": (6, "hour"), "8h": (8, "hour"), "12h": (12, "hour"),
          "1d": (1, "day"), "1w": (1, "week"), "1M": (1, "month")}
# channel prefixes per cluster: (per-second aggregate, trades, quotes)
_CHANNELS = {"stocks": ("A", "T", "Q"), "crypto": ("XAS", "XT", "XQ"), "forex": ("CAS", None, "C"),
             "indices": ("A", None, "V")}
_CANDLE_OUTPUTS = [{"name": n, "y_axis": "volume" if n == "volume" else "price"}
                   for n in ("open", "high", "low", "close", "volume")]


class PolygonAuthError(UpstreamError):
    """Polygon rejected the API key."""


def market_of(ticker: str) -> str:
    """The Polygon market of a ticker, from its prefix."""
    prefix = ticker[:2]
    return {"X:": "crypto", "C:": "fx", "I:": "indices"}.get(prefix, "stocks")


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


def bar_time(t: int, interval: str) -> int:
    """Polygon's bar start -> nbfeed's: Sunday-based weeks move to their Monday."""
    if interval == "1w":
        return floor_bar(t + _DAY, "1w")
    return floor_bar(t, interval)


# ---- bars from second aggregates -------------------------------------------------------------


class BarBuilder:
    """Builds one stream's candles (one ticker, one interval) from per-second aggregates.

    Aggregates may arrive late, out of order or twice (a reconnect replays, REST seeding overlaps
    the live feed): each second counts once - a repeat replaces its earlier copy - open is the
    earliest second's, close the latest's. Volume is the sum of the seconds' ``v``.
    """

    RECENT_MS = 300_000  # seconds remembered for de-duplication

    def __init__(self, symbol: str, interval: str) -> None:
        self.symbol = symbol
        self.interval = interval
        self.start: int | None = None
        self._seconds: dict[int, tuple[float, float, float, float, float]] = {}
        self.o = self.h = self.low = self.c = self.v = 0.0
        self._first = self._last = 0

    def add(self, s: int, o: float, h: float, low: float, c: float, v: float) -> dict | None:
        """Fold in the aggregate of the second starting at ``s``; return the bar row it changed
        (``None`` for a second of an earlier, finished bar)."""
        start = floor_bar(s, self.interval)
        if self.start is None or start > self.start:
            self.start, self._seconds = start, {}
            self.o, self.h, self.low, self.c, self.v = o, h, low, c, 0.0
            self._first = self._last = s
        elif start < self.start:
            return None
        previous = self._seconds.get(s)
        if previous is not None:
            self.v -= previous[4]
            if previous[1] >= self.h or previous[2] <= self.low:
                # the replaced second may have set the extreme: recompute from what we hold
                self._seconds[s] = (o, h, low, c, v)
                self.h = max(x[1] for x in self._seconds.values())
                self.low = min(x[2] for x in self._seconds.values())
        self._seconds[s] = (o, h, low, c, v)
        self.v += v
        self.h, self.low = max(self.h, h), min(self.low, low)
        if s <= self._first:
            self._first, self.o = s, o
        if s >= self._last:
            self._last, self.c = s, c
        if len(self._seconds) > 400:
            cutoff = self._last - self.RECENT_MS
            self._seconds = {k: x for k, x in self._seconds.items() if k >= cutoff}
        return self.row()

    def row(self) -> dict:
        return {"time": self.start, "symbol": self.symbol, "open": self.o, "high": self.h,
                "low": self.low, "close": self.c, "volume": self.v}


# ---- REST ------------------------------------------------------------------------------------


class PolygonREST:
    """Polygon REST endpoints with ``next_url`` paging, auth and rate-limit handling."""

    def __init__(self, api_key: str, rest_url: str = DEFAULT_REST_URL, *,
                 stop: threading.Event | None = None, timeout: float = 15.0,
                 max_wait: float = 90.0, adjusted: bool = True, max_history_bars: int = 500_000,
                 log: Any = None) -> None:
        self.http = RestClient(rest_url, name="polygon", timeout=timeout, max_wait=max_wait,
                               stop=stop, log=log, default_retry_after=15.0,
                               headers={"Authorization": f"Bearer {api_key}"})
        self.adjusted = adjusted
        self.max_history_bars = max_history_bars

    def close(self) -> None:
        self.http.close()

    def _get(self, path_or_url: str, params: dict | None = None) -> dict:
        try:
            data = self.http.get(path_or_url, params).data
        except HttpError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            reason = body.get("error") or body.get("message") or str(exc.body)[:200]
            if exc.status == 401:
                raise PolygonAuthError(f"polygon rejected the API key: {reason}") from None
            raise
        if not isinstance(data, dict):
            raise UpstreamError(f"polygon: expected a JSON object, got {type(data).__name__}")
        return data

    def pages(self, path: str, params: dict, max_items: int | None = None) -> Iterable[dict]:
        """Every item of ``results`` across the ``next_url`` chain."""
        url: str | None = path
        seen = 0
        visited: set[str] = set()
        while url is not None:
            data = self._get(url, params)
            params = None  # next_url carries the query (its cursor) itself
            results = data.get("results") or []
            if not isinstance(results, list):
                raise UpstreamError(f"polygon {path}: 'results' is not a list")
            for item in results:
                if isinstance(item, dict):
                    seen += 1
                    yield item
            nxt = data.get("next_url")
            if not isinstance(nxt, str) or not nxt or not results or nxt in visited:
                return
            if max_items is not None and seen >= max_items:
                return
            visited.add(nxt)
            url = nxt

    def tickers(self, market: str) -> list[dict]:
        """Active tickers of one market; raises HttpError 403 when the key is not entitled."""
        return list(self.pages("/v3/reference/tickers",
                               {"market": market, "active": "true", "limit": 1000}))

    def ticker(self, ticker: str) -> dict | None:
        items = list(self.pages("/v3/reference/tickers",
                                {"ticker": ticker, "market": market_of(ticker), "limit": 1}, 1))
        return items[0] if items else None

    def prev_close(self, ticker: str) -> float | None:
        results = self._get(f"/v2/aggs/ticker/{ticker}/prev").get("results") or []
        if results and isinstance(results[0], dict) and isinstance(results[0].get("c"),
                                                                   (int, float)):
            return float(results[0]["c"])
        return None

    def second_aggs(self, ticker: str, start: int, end: int) -> list[dict]:
        """Raw per-second aggregates with ``t`` in ``[start, end)``, ascending."""
        if end <= start:
            return []
        return [a for a in self.pages(
            f"/v2/aggs/ticker/{ticker}/range/1/second/{start}/{end - 1}",
            {"adjusted": _flag(self.adjusted), "sort": "asc", "limit": 50000})
            if isinstance(a.get("t"), int) and start <= a["t"] < end]

    def aggs(self, ticker: str, interval: str, start: int | None, end: int | None,
             count: int | None) -> list[dict]:
        """Candle rows on nbfeed's grid in ``[start, end)``; with ``count`` the newest ones."""
        mult, span = _SPANS[interval]
        step = interval_ms(interval)
        end_ms = end if end is not None else now_ms() + step
        if count is None and start is None:
            count = 500
        if count is not None and count > self.max_history_bars:
            raise LimitExceeded(f"count {count} exceeds max_history_bars "
                                f"{self.max_history_bars} for polygon")
        # A bar of margin before start: Sunday weeks and midnight-New-York days belong to the
        # nbfeed bar after their own timestamp.
        if count is not None and start is None:
            frm = max(0, end_ms - count * step * 7)
            sort = "desc"
        else:
            frm = max(0, (start or 0) - step)
            sort = "asc"
        params = {"adjusted": _flag(self.adjusted), "sort": sort, "limit": 50000}
        merged: dict[int, dict] = {}
        path = f"/v2/aggs/ticker/{ticker}/range/{mult}/{span}/{frm}/{end_ms - 1}"
        for agg in self.pages(path, params):
            row = _agg_row(ticker, agg)
            if row is None:
                continue
            t = bar_time(row["time"], interval)
            if (start is not None and t < start) or t >= end_ms:
                continue
            row["time"] = t
            old = merged.get(t)
            merged[t] = row if old is None else _merge(old, row, newer_first=sort == "desc")
            if len(merged) > self.max_history_bars:
                raise LimitExceeded(f"polygon {ticker} {interval}: the span holds more than "
                                    f"{self.max_history_bars} bars; ask for a shorter span")
            if count is not None and sort == "desc" and len(merged) > count:
                break
        rows = [merged[t] for t in sorted(merged)]
        return rows[-count:] if count is not None else rows


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _agg_row(ticker: str, agg: dict) -> dict | None:
    try:
        return {"time": int(agg["t"]), "symbol": ticker, "open": float(agg["o"]),
                "high": float(agg["h"]), "low": float(agg["l"]), "close": float(agg["c"]),
                "volume": float(agg.get("v") or 0.0)}
    except (KeyError, TypeError, ValueError):
        return None


def _merge(a: dict, b: dict, newer_first: bool) -> dict:
    first, last = (b, a) if newer_first else (a, b)
    return {**a, "open": first["open"], "close": last["close"],
            "high": max(a["high"], b["high"]), "low": min(a["low"], b["low"]),
            "volume": a["volume"] + b["volume"]}


# ---- websocket -------------------------------------------------------------------------------


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


# ---- the provider ----------------------------------------------------------------------------


class PolygonProvider(Provider):
    """nbfeed's Polygon.io source. See the module docstring for options and behaviour."""

    name = "polygon"
    intervals = INTERVALS

    def init(self) -> None:
        opts = self.options
        key = opts.get("api_key") or os.environ.get("POLYGON_API_KEY")
        if not isinstance(key, str) or not key.strip():
            raise PolygonAuthError("polygon needs an API key: set POLYGON_API_KEY or the "
                                   "provider's api_key option")
        self.api_key = key.strip()
        feed = opts.get("feed", "realtime")
        if feed not in ("realtime", "delayed"):
            raise BadRequest(f"polygon option feed must be 'realtime' or 'delayed', got {feed!r}")
        self.feed = feed
        self.rest_url = resolve_url(opts, "rest_url", "NBFEED_POLYGON_REST_URL", DEFAULT_REST_URL)
        if feed == "delayed":
            self.ws_url = resolve_url(opts, "delayed_ws_url", "NBFEED_POLYGON_DELAYED_WS_URL",
                                      DEFAULT_DELAYED_WS_URL)
        else:
            self.ws_url = resolve_url(opts, "ws_url", "NBFEED_POLYGON_WS_URL", DEFAULT_WS_URL)
        markets = opts.get("markets", MARKETS)
        if isinstance(markets, str):
            markets = [markets]
        bad = [m for m in markets if m not in CLUSTER]
        if bad:
            raise BadRequest(f"polygon option markets has unknown {bad}; valid: "
                             f"{', '.join(CLUSTER)}")
        self.markets = list(markets)
        self.rest = PolygonREST(self.api_key, self.rest_url, stop=self.stopping, log=self.log,
                                timeout=float(opts.get("request_timeout", 15.0)),
                                max_wait=float(opts.get("max_wait", 90.0)),
                                adjusted=bool(opts.get("adjusted", True)))
        self.seed_bars = bool(opts.get("seed_bars", True))
        self._lock = threading.RLock()
        self._meta: dict[str, dict] = {}
        self._known: set[str] | None = None
        self._clusters: dict[str, PolygonCluster] = {}
        self._channels: dict[str, set[tuple[str, str]]] = {}  # channel -> streams using it
        self._builders: dict[str, dict[str, BarBuilder]] = {}  # symbol -> interval -> builder
        self._tick_symbols: set[str] = set()
        self._quotes: dict[str, dict] = {}
        self._names: dict[tuple[str, str], str] = {}  # (cluster, ws name) -> ticker
        self._status = ("running", "")

    # ---- catalog ------------------------------------------------------------------------------

    def get_dataset(self) -> list[dict]:
        entries = []
        known: set[str] = set()
        skipped = []
        for market in self.markets:
            try:
                items = self.rest.tickers(market)
            except PolygonAuthError as exc:
                self._set_status("failed", str(exc))
                raise
            except HttpError as exc:
                if exc.status == 403:
                    skipped.append(market)
                    self.log.info("polygon: key not entitled to market %s; skipped", market)
                    continue
                raise
            for item in items:
                ticker = item.get("ticker")
                if not isinstance(ticker, str) or not _TICKER_RE.match(ticker) or ticker in known:
                    continue
                known.add(ticker)
                with self._lock:
                    self._meta[ticker] = item
                entries.append({
                    "source": self.name, "name": ticker,
                    "name_label": str(item.get("name") or ticker)[:200],
                    "type": "candlestick",
                    "categories": [c for c in (market, item.get("type"),
                                               item.get("primary_exchange"))
                                   if isinstance(c, str) and c],
                    "intervals": [*BAR_INTERVALS, TICK], "outputs": _CANDLE_OUTPUTS})
        if skipped and not entries:
            raise UpstreamError(f"polygon: the API key is not entitled to any of the markets "
                                f"{', '.join(self.markets)}")
        with self._lock:
            self._known = known
        return entries

    def _check_symbol(self, symbol: Any) -> str:
        if not isinstance(symbol, str) or not _TICKER_RE.match(symbol):
            raise UnknownSymbol(f"polygon tickers look like 'AAPL', 'X:BTCUSD', 'C:EURUSD' or "
                                f"'I:SPX'; got {symbol!r:.60}")
        if market_of(symbol) not in self.markets and not (
                market_of(symbol) == "stocks" and "otc" in self.markets):
            raise UnknownSymbol(f"polygon ticker {symbol!r} is in market "
                                f"{market_of(symbol)!r}, which is not enabled "
                                f"(markets: {', '.join(self.markets)})")
        with self._lock:
            known = self._known
            if symbol in self._meta:
                return symbol
        if known is not None:
            raise UnknownSymbol(f"polygon has no active ticker {symbol!r}")
        if self.rest.http.gate.remaining() > 0:
            return symbol  # rate limited: do not park the caller just to check a name
        try:
            meta = self.rest.ticker(symbol)
        except PolygonAuthError:
            raise
        except UpstreamError as exc:
            self.log.warning("polygon: cannot check ticker %s: %s", symbol, exc)
            return symbol
        if meta is None:
            raise UnknownSymbol(f"polygon has no active ticker {symbol!r}")
        with self._lock:
            self._meta[symbol] = meta
        return symbol

    # ---- history ------------------------------------------------------------------------------

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        check_interval(interval, BAR_INTERVALS)
        self._check_symbol(symbol)
        try:
            return self.rest.aggs(symbol, interval, start, end, count)
        except PolygonAuthError as exc:
            self._set_status("failed", str(exc))
            raise

    # ---- live ---------------------------------------------------------------------------------

    def _stream_channels(self, symbol: str, interval: str) -> tuple[str, list[str]]:
        cluster = CLUSTER[market_of(symbol)]
        agg, trade, quote = _CHANNELS[cluster]
        with self._lock:
            name = ws_name(symbol, self._meta.get(symbol))
            self._names[(cluster, name)] = symbol
        if interval != TICK:
            return cluster, [f"{agg}.{name}"]
        wanted = [quote]
        if trade is not None:
            wanted.append(trade)
        if cluster == "stocks":
            wanted.append(agg)  # the day's accumulated volume rides on A
        return cluster, [f"{ev}.{name}" for ev in wanted if ev]

    def subscribe(self, symbol: str, interval: str) -> None:
        check_interval(interval, INTERVALS)
        self._check_symbol(symbol)
        cluster, channels = self._stream_channels(symbol, interval)
        start = None
        with self._lock:
            for ch in channels:
                self._channels.setdefault(ch, set()).add((symbol, interval))
            if interval == TICK:
                self._tick_symbols.add(symbol)
            else:
                self._builders.setdefault(symbol, {})[interval] = BarBuilder(symbol, interval)
            conn = self._clusters.get(cluster)
            if conn is not None and conn.socket.state == "failed":
                # A new subscription is a user action: give a refused feed one fresh try
                # (with the channels it already had); it never retries on its own.
                conn.close()
                fresh = PolygonCluster(self, cluster, conn.url)
                fresh.desired = set(conn.desired)
                conn = self._clusters[cluster] = fresh
                start = conn
            if conn is None:
                conn = self._clusters[cluster] = PolygonCluster(
                    self, cluster, f"{self.ws_url}/{cluster}")
                start = conn
            with conn.lock:
                conn.desired.update(channels)
                conn.dirty = True
        if start is not None:
            start.socket.start()
        if interval == TICK:
            threading.Thread(target=self._load_prev_close, args=(symbol,), daemon=True,
                             name=f"polygon-prev-{symbol}").start()

    def unsubscribe(self, symbol: str, interval: str) -> None:
        cluster, channels = self._stream_channels(symbol, interval)
        with self._lock:
            if interval == TICK:
                self._tick_symbols.discard(symbol)
                self._quotes.pop(symbol, None)
            else:
                by_interval = self._builders.get(symbol, {})
                by_interval.pop(interval, None)
                if not by_interval:
                    self._builders.pop(symbol, None)
            unused = []
            for ch in channels:
                users = self._channels.get(ch)
                if users is None:
                    continue
                users.discard((symbol, interval))
                if not users:
                    del self._channels[ch]
                    unused.append(ch)
            conn = self._clusters.get(cluster)
            if conn is not None:
                with conn.lock:
                    conn.desired.difference_update(unused)
                    conn.dirty = True
                    empty = not conn.desired
                if empty:
                    del self._clusters[cluster]
                    conn.close()

    def _load_prev_close(self, symbol: str) -> None:
        try:
            prev = self.rest.prev_close(symbol)
        except UpstreamError as exc:
            self.log.warning("polygon: no previous close for %s: %s", symbol, exc)
            return
        if prev is not None:
            self._quote(symbol, None, prev_close=prev)

    def _on_events(self, cluster: str, events: list[dict]) -> None:
        """One frame of events from a cluster socket: update bars and quotes, publish once."""
        bars: dict[tuple[str, str], dict] = {}
        quotes: dict[str, dict] = {}
        seeds = []
        with self._lock:
            for ev in events:
                kind = ev.get("ev")
                name = ev.get("sym") or ev.get("pair") or ev.get("p") or ev.get("T")
                symbol = self._names.get((cluster, name)) if isinstance(name, str) else None
                if symbol is None:
                    continue
                try:
                    if kind in ("A", "XAS", "CAS"):
                        second = int(ev["s"])
                        values = (float(ev["o"]), float(ev["h"]), float(ev["l"]),
                                  float(ev["c"]), float(ev.get("v") or 0.0))
                        for interval, builder in self._builders.get(symbol, {}).items():
                            fresh = builder.start is None
                            row = builder.add(second, *values)
                            if row is not None:
                                bars[(symbol, interval)] = row
                                if fresh and self.seed_bars and row["time"] < second:
                                    seeds.append((builder, row["time"], second))
                        if "av" in ev:
                            quotes[symbol] = self._merge_quote(symbol, ev.get("e"),
                                                               volume=float(ev["av"]))
                    elif kind in ("T", "XT"):
                        quotes[symbol] = self._merge_quote(symbol, ev.get("t"),
                                                           price=float(ev["p"]))
                    elif kind in ("Q", "XQ"):
                        quotes[symbol] = self._merge_quote(symbol, ev.get("t"),
                                                           bid=float(ev["bp"]),
                                                           ask=float(ev["ap"]))
                    elif kind == "C":
                        bid, ask = float(ev["b"]), float(ev["a"])
                        quotes[symbol] = self._merge_quote(symbol, ev.get("t"), bid=bid,
                                                           ask=ask, price=(bid + ask) / 2)
                    elif kind == "V":
                        quotes[symbol] = self._merge_quote(symbol, ev.get("t"),
                                                           price=float(ev["val"]))
                except (KeyError, TypeError, ValueError) as exc:
                    self.log.warning("polygon: unreadable %s event (%s): %.200r", kind, exc, ev)
        for (_, interval), row in bars.items():
            self.publish([row], interval=interval)
        if quotes:
            self.publish([q for q in quotes.values() if q is not None], interval=TICK)
        for builder, start, first in seeds:
            threading.Thread(target=self._seed, args=(builder, start, first), daemon=True,
                             name=f"polygon-seed-{builder.symbol}").start()

    def _merge_quote(self, symbol: str, t: Any, **fields: float) -> dict | None:
        """Update the quote row of a ``tick`` stream (lock held); None if nobody wants it."""
        if symbol not in self._tick_symbols:
            return None
        row = self._quotes.get(symbol)
        if row is None:
            row = self._quotes[symbol] = {"time": now_ms(), "symbol": symbol}
        row.update(fields)
        if isinstance(t, int):
            row["time"] = t
        price, prev = row.get("price"), row.get("prev_close")
        if price is not None and prev:
            row["change"] = price - prev
            row["change_percent"] = (price - prev) / prev * 100.0
        return dict(row)

    def _quote(self, symbol: str, t: Any, **fields: float) -> None:
        with self._lock:
            row = self._merge_quote(symbol, t, **fields)
        if row is not None:
            self.publish([row], interval=TICK)

    def _seed(self, builder: BarBuilder, start: int, first: int) -> None:
        """Complete a stream's first live bar with the seconds before we subscribed."""
        try:
            aggs = self.rest.second_aggs(builder.symbol, start, first)
        except UpstreamError as exc:
            self.log.warning("polygon: cannot complete the first %s %s bar: %s",
                             builder.symbol, builder.interval, exc)
            return
        with self._lock:
            if self._builders.get(builder.symbol, {}).get(builder.interval) is not builder:
                return
            row = None
            for a in aggs:
                r = _agg_row(builder.symbol, a)
                if r is not None:
                    row = builder.add(r["time"], r["open"], r["high"], r["low"], r["close"],
                                      r["volume"]) or row
            row = builder.row() if row is not None else None
        if row is not None:
            self.publish([row], interval=builder.interval)

    # ---- status -------------------------------------------------------------------------------

    def _cluster_state(self, cluster: PolygonCluster, state: str, detail: str) -> None:
        with self._lock:
            clusters = list(self._clusters.values())
        failed = [c for c in clusters if c.socket.state == "failed" or c.auth_error]
        if state == "failed" or failed:
            reason = "; ".join(c.auth_error or c.socket.detail for c in failed) or detail
            healthy = [c for c in clusters if c not in failed]
            self._set_status("degraded" if healthy else "failed", reason)
        elif state == "reconnecting":
            self._set_status("degraded", f"polygon {cluster.cluster} feed: {detail}")
        elif all(c.socket.state == "connected" for c in clusters):
            self._set_status("running", "")

    def _set_status(self, state: str, detail: str) -> None:
        if (state, detail) != self._status:
            self._status = (state, detail)
            self.set_status(state, detail)
